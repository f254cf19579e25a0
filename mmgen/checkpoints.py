"""Where the checkpoints that ship with the repository live (found when mmgen runs from a clone)."""

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

from mmgen.errors import CheckpointError, MMGenError

CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
SHAPES_JUDGE = CHECKPOINTS_DIR / "shapes-judge"
SHAPES_LDM = CHECKPOINTS_DIR / "shapes-ldm"
SHAPES_DVAE = CHECKPOINTS_DIR / "shapes-dvae"
SHAPES_MOPOE = CHECKPOINTS_DIR / "shapes-mopoe"


# The file diffusers' `save_lora_weights` writes and `load_lora_weights` reads.
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def pipeline_class_name(path: str | Path, kind: str) -> str:
    """The `_class_name` of the pipeline folder at `path`; a CheckpointError says when there
    is no folder or no model_index.json (`kind` names what was expected)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    index = path / "model_index.json"
    if not index.is_file():
        raise CheckpointError(f"{path}: not a {kind} (no model_index.json){_inner_model_hint(path)}")
    config = _read_config(index)
    for name, value in config.items():
        if name.startswith("_") or not isinstance(value, list) or None in value:
            continue
        if not (path / name).is_dir():
            raise CheckpointError(f"{path}: incomplete pipeline, its {name}/ folder is missing")
        if (path / name / "config.json").is_file():
            require_safetensors(path / name)
    return config.get("_class_name")


def require_safetensors(folder: str | Path) -> None:
    """A CheckpointError unless the model folder holds safetensors weights: mmgen never
    unpickles weights (a .bin file can run code when loaded)."""
    folder = Path(folder)
    if not any(folder.glob("*.safetensors")):
        found = sorted(p.name for p in folder.glob("*.bin")) or ["no weights"]
        raise CheckpointError(f"{folder}: no .safetensors weights (found {', '.join(found)}); mmgen loads safetensors only")


@contextlib.contextmanager
def loading(path: str | Path) -> Iterator[None]:
    """Errors of the libraries reading a checkpoint's files (a truncated weight file, a
    config that is not JSON, a file missing) as one CheckpointError that names the folder."""
    try:
        yield
    except MMGenError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        detail = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise CheckpointError(f"{path}: damaged or incomplete checkpoint ({detail})") from error


def load_pretrained(model_class, path: str | Path, **kwargs):
    """`model_class.from_pretrained(path)` for a diffusers model folder, from safetensors
    only, its loading errors as one-line CheckpointErrors."""
    require_safetensors(path)
    with loading(path):
        return model_class.from_pretrained(path, use_safetensors=True, **kwargs)


def _read_config(file: Path) -> dict:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{file}: not a readable JSON config ({error})") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: not a JSON config object")
    return config


def checkpoint_class(path: str | Path) -> str:
    """The `_class_name` a checkpoint folder declares."""
    path = Path(path)
    for name in ("model_index.json", "config.json"):
        if (path / name).is_file():
            class_name = _read_config(path / name).get("_class_name")
            if class_name:
                return class_name
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    raise CheckpointError(
        f"{path}: not a model checkpoint (no model_index.json or config.json with _class_name){_inner_model_hint(path)}"
    )


def _inner_model_hint(path: Path) -> str:
    """A training checkpoint folder (checkpoint-0001000/) holds the model in model/, beside
    the optimizer state, and a run folder its checkpoints in checkpoints/: name the model
    folder when it is what was meant; and LoRA adapters are applied to a pipeline, not
    loaded as one."""
    path = Path(path)
    latest = sorted(path.glob("checkpoints/checkpoint-*/model"))
    inner = latest[-1] if latest else path / "model"
    for holder in (path, inner):
        if (holder / LORA_WEIGHTS).is_file():
            return (f"; {holder} holds LoRA adapters, to apply to the pipeline they were trained on "
                    "(`mmgen sample --lora`, `pipe.load_lora`)")
    return f"; did you mean {inner}?" if (inner / "model_index.json").is_file() or (inner / "config.json").is_file() else ""


def require_checkpoint_class(path: str | Path, expected: str, trained_by: str) -> None:
    """A CheckpointError unless `path` is a checkpoint of `expected` (`trained_by`: the
    command that makes one, named in the message)."""
    found = checkpoint_class(path)
    if found != expected:
        raise CheckpointError(f"{path}: a checkpoint of {found}, not of {expected} (`{trained_by}` trains one)")


def load_trained(model_class, path: str | Path, what: str, trained_by: str, pipeline_part: str | None = None):
    """The `model_class` an earlier training stage saved at `path` (or, given a pipeline
    folder, at its `pipeline_part` subfolder); one-line errors name what is missing and the
    command (`trained_by`) that makes it."""
    if pipeline_part is not None and (Path(path) / "model_index.json").is_file():
        path = Path(path) / pipeline_part
    if not (Path(path) / "config.json").is_file():
        raise CheckpointError(f"{path}: no {what} there (train one with `{trained_by}`){_inner_model_hint(path)}")
    require_checkpoint_class(path, model_class.__name__, trained_by)
    return load_pretrained(model_class, path)
