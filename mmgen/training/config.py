"""Settings of a training run, shared by every model family and saved with each run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.errors import ConfigError


@dataclass
class TrainingConfig:
    output_dir: str
    max_steps: int = 1000
    # Per process; the effective batch is batch_size * processes * gradient_accumulation_steps.
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    # Any name that diffusers.optimization.get_scheduler accepts.
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    # "no" (fp32), "fp16" or "bf16". fp32 is right on CPUs, where bf16 is slower.
    mixed_precision: str = "no"
    # Exponential moving average of the weights; None turns it off.
    ema_decay: float | None = 0.999
    checkpoint_every: int = 500
    keep_last: int | None = 3
    validate_every: int | None = None
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    # "latest" or a checkpoint folder; with "latest" and no checkpoint yet, training starts fresh.
    resume: str | None = None
    report_to: str | None = "tensorboard"

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainingConfig:
        return cls(**json.loads(Path(path).read_text()))
