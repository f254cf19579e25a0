"""Batching for dataset examples (dicts), shared by every model family."""

from __future__ import annotations

from typing import Any

import torch


def collate_examples(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors and numbers; keep everything else (captions, labels, optional
    metadata columns that may be missing for some rows) as plain lists."""
    batch: dict[str, Any] = {}
    keys = dict.fromkeys(key for example in examples for key in example)  # any row may lack a column
    for key in keys:
        values = [example.get(key) for example in examples]
        if all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = torch.stack(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
