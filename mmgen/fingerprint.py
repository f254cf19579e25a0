"""Digests that key caches by what determines their contents, and that tell a data set
from another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn


def update_with_weights(digest, module: nn.Module) -> None:
    """Feed every tensor of `module`'s state (names and exact bytes) into `digest`, a
    `hashlib` hash object."""
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(_tensor_bytes(tensor))


def update_with_item(digest, item: Any) -> None:
    """Feed a data set's item into `digest`: tensors, arrays and images by their exact
    values, text as it is, mappings by key, sequences in order, other values by their
    text. A value whose text names its memory address (a default `repr`), or whose order
    differs from run to run (a set), is left out."""
    if isinstance(item, str):
        digest.update(item.encode("utf-8", "surrogatepass"))
    elif isinstance(item, torch.Tensor):
        _update_with_tensor(digest, item)
    elif isinstance(item, np.ndarray) and item.dtype.kind in "biuf":
        _update_with_tensor(digest, torch.from_numpy(np.ascontiguousarray(item)))
    elif isinstance(item, np.ndarray):  # text or objects
        update_with_item(digest, item.tolist())
    elif isinstance(item, Image.Image):
        digest.update(f"{item.mode} {item.size}".encode())
        digest.update(item.tobytes())
    elif isinstance(item, Mapping):
        for key in sorted(item, key=str):
            digest.update(str(key).encode())
            update_with_item(digest, item[key])
    elif isinstance(item, (list, tuple)):
        for value in item:
            update_with_item(digest, value)
    elif not isinstance(item, (set, frozenset)) and " at 0x" not in (text := repr(item)):
        digest.update(text.encode())


def _update_with_tensor(digest, tensor: torch.Tensor) -> None:
    digest.update(f"{tensor.dtype} {tuple(tensor.shape)}".encode())
    digest.update(_tensor_bytes(tensor))


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
