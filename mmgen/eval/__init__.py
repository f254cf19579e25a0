"""Evaluation: the Shapes judge, the metrics built on it, and `mmgen eval`."""

from mmgen.eval.judge import ShapesJudge, judge_accuracy, load_judge

__all__ = ["ShapesJudge", "judge_accuracy", "load_judge"]
