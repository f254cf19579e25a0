"""Where the checkpoints that ship with the repository live (found when mmgen runs from a clone)."""

import json
from pathlib import Path

from mmgen.errors import CheckpointError

CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
SHAPES_JUDGE = CHECKPOINTS_DIR / "shapes-judge"
SHAPES_LDM = CHECKPOINTS_DIR / "shapes-ldm"
SHAPES_DVAE = CHECKPOINTS_DIR / "shapes-dvae"
SHAPES_MOPOE = CHECKPOINTS_DIR / "shapes-mopoe"


def pipeline_class_name(path: str | Path, kind: str) -> str:
    """The `_class_name` of the pipeline folder at `path`; a CheckpointError says when there
    is no folder or no model_index.json (`kind` names what was expected)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    index = path / "model_index.json"
    if not index.is_file():
        raise CheckpointError(f"{path}: not a {kind} (no model_index.json)")
    return json.loads(index.read_text()).get("_class_name")


def checkpoint_class(path: str | Path) -> str:
    """The `_class_name` a checkpoint folder declares."""
    path = Path(path)
    for name in ("model_index.json", "config.json"):
        if (path / name).is_file():
            class_name = json.loads((path / name).read_text()).get("_class_name")
            if class_name:
                return class_name
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    raise CheckpointError(f"{path}: not a model checkpoint (no model_index.json or config.json with _class_name)")


def require_checkpoint_class(path: str | Path, expected: str, trained_by: str) -> None:
    """A CheckpointError unless `path` is a checkpoint of `expected` (`trained_by`: the
    command that makes one, named in the message)."""
    found = checkpoint_class(path)
    if found != expected:
        raise CheckpointError(f"{path}: a checkpoint of {found}, not of {expected} (`{trained_by}` trains one)")
