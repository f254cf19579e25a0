"""The shared Accelerate training loop."""

from mmgen.training.config import TrainingConfig
from mmgen.training.trainer import Trainer, TrainingResult, process_state, save_validation_grid

__all__ = ["Trainer", "TrainingConfig", "TrainingResult", "process_state", "save_validation_grid"]
