"""Settings of a training run, shared by every model family and saved with each run."""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate.utils import LoggerType
from diffusers.optimization import SchedulerType

from mmgen.errors import ConfigError


# torch.compile's modes.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _setting(default: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A field with a default and the help text that its command-line flag shows."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class TrainingConfig:
    output_dir: str = _setting(help="run folder: checkpoints/, logs/, samples/")
    max_steps: int = _setting(1000, "optimizer steps to train for")
    epochs: int | None = _setting(
        None, "train for this many passes over the data instead (sets max_steps from the data's size and the batch)"
    )
    max_minutes: float | None = _setting(
        None, "stop after this many minutes of training (this run's), with a checkpoint to resume from with --resume latest"
    )
    batch_size: int = _setting(
        32, "examples per process per micro-batch; the effective batch is this x processes x accumulation"
    )
    gradient_accumulation_steps: int = _setting(1, "micro-batches per optimizer step")
    learning_rate: float = _setting(1e-4, "peak learning rate (AdamW)")
    weight_decay: float = _setting(0.0, "AdamW weight decay")
    adam_beta1: float = _setting(0.9, "AdamW beta1")
    adam_beta2: float = _setting(0.999, "AdamW beta2")
    lr_scheduler: str = _setting(
        "constant_with_warmup", "any name diffusers' get_scheduler accepts: constant_with_warmup, cosine, linear, ..."
    )
    lr_warmup_steps: int = _setting(0, "linear warmup steps")
    max_grad_norm: float | None = _setting(1.0, "clip the gradient norm to this ('none': no clipping)")
    mixed_precision: str = _setting("no", "no (fp32), fp16 or bf16; keep fp32 on CPUs, where bf16 is slower")
    compile: str | None = _setting(
        None,
        "torch.compile the objective in place with this mode (default, reduce-overhead, max-autotune, "
        "max-autotune-no-cudagraphs; 'none': eager), after a one-off compile (76 s for MoPoE on an H100). For GPUs, "
        "where a small model's step waits on kernel launches: the MoPoE objective's step on an H100 went from 62 to "
        "93-114 steps/s (benchmarks/README.md); nothing on CPUs. For the multimodal VAEs only: the other "
        "objectives read captions inside forward and would recompile every batch. Checkpoints are the same either way",
    )
    ema_decay: float | None = _setting(0.999, "decay of the EMA of the weights ('none': no EMA)")
    checkpoint_every: int = _setting(500, "save a checkpoint every N steps (and at the end)")
    keep_last: int | None = _setting(3, "keep only the newest N checkpoints ('none': keep all)")
    validate_every: int | None = _setting(None, "run validation (e.g. a sample grid) every N steps")
    log_every: int = _setting(10, "log scalars to the trackers every N steps")
    seed: int = _setting(0, "seed of the data order and all randomness in training (recipes also seed the init)")
    num_workers: int = _setting(0, "DataLoader worker processes")
    resume: str | None = _setting(
        None, "'latest' (the newest checkpoint; start fresh if none) or a checkpoint folder"
    )
    report_to: str | None = _setting("tensorboard", "Accelerate tracker for logs, or 'none'")

    def __post_init__(self) -> None:
        for name in ("output_dir", "resume"):  # a Path is as good as its string
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        self._check_types()
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1 (or none to train for max_steps), got {self.epochs}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be above 0 (or none), got {self.max_minutes}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.compile not in (None, *COMPILE_MODES):
            raise ConfigError(f"compile must be none or one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be above 0, got {self.learning_rate}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be above 0 (or none for no clipping), got {self.max_grad_norm}")
        for name in ("num_workers", "lr_warmup_steps", "seed", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.validate_every is not None and self.validate_every < 1:
            raise ConfigError(f"validate_every must be at least 1 (or none), got {self.validate_every}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.keep_last is not None and self.keep_last < 1:
            raise ConfigError(f"keep_last must be at least 1 (or none to keep all), got {self.keep_last}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be between 0 and 1 (or none), got {self.ema_decay}")
        schedules = [s.value for s in SchedulerType]
        if self.lr_scheduler not in schedules:
            raise ConfigError(f"unknown lr_scheduler {self.lr_scheduler!r}; choose from {', '.join(schedules)}")
        trackers = [t.value for t in LoggerType]
        if self.report_to not in (None, "none", *trackers):
            raise ConfigError(f"unknown report_to {self.report_to!r}; choose none or one of {', '.join(trackers)}")

    def _check_types(self) -> None:
        """Each setting of its annotated type: a whole number where steps are counted (2.5
        steps would train and never reach a checkpoint), a number for rates (an int will do),
        text for names; None where the annotation allows it."""
        names = {int: "a whole number", float: "a number", str: "text"}
        for field, hint in typing.get_type_hints(type(self)).items():
            value, kinds = getattr(self, field), typing.get_args(hint) or (hint,)
            if value is None and type(None) in kinds:
                continue
            kind = next(kind for kind in kinds if kind is not type(None))
            allowed = {int: numbers.Integral, float: numbers.Real}.get(kind, kind)  # numpy's numbers too
            if isinstance(value, bool) or not isinstance(value, allowed):
                optional = " (or none)" if type(None) in kinds else ""
                raise ConfigError(f"{field} must be {names[kind]}{optional}, got {type(value).__name__} {value!r:.40}")
            setattr(self, field, kind(value))  # a numpy number as Python's, which JSON writes

    def steps_for_epochs(self, dataset_size: int, num_processes: int) -> int:
        """Optimizer steps in `epochs` passes over `dataset_size` samples (the last partial
        batch of each pass is dropped); `max_steps` without `epochs`."""
        if self.epochs is None:
            return self.max_steps
        batches = dataset_size // num_processes // self.batch_size
        return max(1, self.epochs * batches // self.gradient_accumulation_steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
