"""The shared Accelerate training loop."""

from mmgen.training.config import TrainingConfig
from mmgen.training.trainer import Trainer, TrainingResult

__all__ = ["Trainer", "TrainingConfig", "TrainingResult"]
