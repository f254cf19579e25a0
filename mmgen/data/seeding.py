"""Platform-independent seeds.

Python's `hash()` is salted per process and numpy's distribution methods may change
between releases, so every seed mmgen derives goes through a cryptographic hash of its
parts: the same parts give the same sample on every machine, in every worker process.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed determined by `parts` (ints and strings), e.g. (seed, "train", index)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1
