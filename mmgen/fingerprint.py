"""Digests that key caches by what determines their contents."""

from __future__ import annotations

import torch
from torch import nn


def update_with_weights(digest, module: nn.Module) -> None:
    """Feed every tensor of `module`'s state (names and exact bytes) into `digest`, a
    `hashlib` hash object."""
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
