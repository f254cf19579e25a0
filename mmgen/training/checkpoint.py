"""Checkpoint folders: atomic to write, rotated, and easy to find again.

A checkpoint is written under a hidden temporary name and renamed into place only once
complete, so a run killed mid-save leaves the previous checkpoints intact and `latest`
never points at a half-written folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

from safetensors import safe_open

from mmgen.errors import CheckpointError

PREFIX = "checkpoint-"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


def temporary_path(directory: Path, step: int) -> Path:
    return directory / f".{checkpoint_name(step)}.tmp"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def finalize(temporary: Path, step: int, keep_last: int | None) -> Path:
    """Move a fully written checkpoint into place, then delete the oldest beyond `keep_last`."""
    final = temporary.parent / checkpoint_name(step)
    if final.exists():  # re-saving a step after a resume: the new one replaces it
        shutil.rmtree(final)
    os.replace(temporary, final)
    if keep_last:
        for old in list_checkpoints(temporary.parent)[:-keep_last]:
            shutil.rmtree(old)
    return final


def clean_temporary(directory: Path) -> None:
    """Remove the leftovers of saves that were interrupted."""
    if directory.is_dir():
        for leftover in directory.glob(f".{PREFIX}*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)


def damage(path: Path) -> str | None:
    """What makes the checkpoint at `path` unusable (a file missing or cut short, e.g. by
    a disk that filled up or a copy that stopped), or None if it is complete."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError) as error:
        return f"trainer_state.json cannot be read ({error})"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return "trainer_state.json holds no step"
    processes = state.get("data_order", {}).get("num_processes", 1)
    needed = ["optimizer.bin", "scheduler.bin", *(f"random_states_{rank}.pkl" for rank in range(processes))]
    for name in needed:
        if not (path / name).is_file() or (path / name).stat().st_size == 0:
            return f"{name} is missing or empty"
    weights = ["model.safetensors", *(["ema.safetensors"] if "ema" in state else [])]
    for name in weights:
        try:
            with safe_open(path / name, framework="pt"):
                pass
        except FileNotFoundError:
            return f"{name} is missing"
        except Exception as error:  # safetensors' own error: the file is cut short or not safetensors
            return f"{name} is damaged ({error})"
    return None


def resolve_resume(resume: str, directory: Path) -> Path | None:
    """`latest` -> the newest complete checkpoint (None when there is none yet, so a
    first run and its restarts can share one command), passing over damaged ones with a
    warning that names them; otherwise a checkpoint path, which must be complete."""
    if resume == "latest":
        damaged = []
        for path in reversed(list_checkpoints(directory)):
            reason = damage(path)
            if reason is None:
                if damaged:
                    warnings.warn(f"resuming from {path.name}: the newer {'; '.join(damaged)}", stacklevel=3)
                return path
            damaged.append(f"{path.name} is damaged ({reason})")
        if damaged:
            raise CheckpointError(
                f"{directory}: no complete checkpoint to resume from: {'; '.join(damaged)}; "
                "move them away to start over"
            )
        return None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(f"{path}: not an mmgen training checkpoint (no trainer_state.json)")
    reason = damage(path)
    if reason:
        raise CheckpointError(f"{path}: the checkpoint is damaged ({reason}); resume from an earlier one")
    # Later checkpoints in the run's folder belong to the run being abandoned: the new one
    # would overwrite some of them, and rotation (by step) would delete its own instead.
    step = json.loads((path / "trainer_state.json").read_text())["step"]
    later = [p.name for p in list_checkpoints(directory) if int(_NAME.match(p.name).group(1)) > step]
    if later:
        raise CheckpointError(
            f"{path}: {directory} already holds later checkpoints ({', '.join(later)}); move them away, "
            "or resume into another output directory"
        )
    return path
