"""Batching and sampling dataset examples (dicts), shared by every model family."""

from __future__ import annotations

import random
from typing import Any

import torch


def as_label(value: Any) -> Any:
    """A label as text: a whole number (a CSV's digit column, or its item in the tensor
    `collate_examples` stacks such a column into) becomes its digits; anything else (a
    string, None) is returned as it is."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        value = value.item()
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


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


def sampled_rows(dataset, n: int, seed: int, need_caption: bool = True, column: str = "pixel_values") -> list[int]:
    """Up to `n` items with an image in `column` (and a caption), in an order drawn by `seed`,
    chosen without loading their images."""
    has_image = getattr(dataset, "item_has_image", lambda index, column="pixel_values": True)
    captions = getattr(dataset, "item_captions", None)
    rows = [
        i for i in range(len(dataset))
        if has_image(i, column) and (not need_caption or captions is None or captions(i))
    ]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def load_rows(dataset, rows: list[int], column: str = "pixel_values") -> tuple[torch.Tensor, list[str]]:
    """The images in `column` of items `rows`, stacked, and their captions."""
    items = [dataset[i] for i in rows]
    return torch.stack([item[column] for item in items]), [item["text"] for item in items]
