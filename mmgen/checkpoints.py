"""Where the checkpoints that ship with the repository live (found when mmgen runs from a clone)."""

from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
SHAPES_JUDGE = CHECKPOINTS_DIR / "shapes-judge"
SHAPES_LDM = CHECKPOINTS_DIR / "shapes-ldm"
