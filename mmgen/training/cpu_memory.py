"""Keep freed CPU memory for reuse while training (glibc's malloc only).

glibc serves an allocation above its mmap threshold (which adapts only up to 32 MiB)
with a fresh mapping and unmaps it on free. A training step allocates the same large
activations and gradients every step, so each of them is faulted in page by page again:
8,192 page faults for a 32 MiB activation of the 64 px image decoders. PyTorch's CPU
allocator keeps no cache of its own, and the usual advice (preloading jemalloc or
tcmalloc) cannot come with a pip install, so the loop raises glibc's mmap and trim
thresholds instead: freed memory stays in the process for the next step. The cost is
that the process's resident memory does not shrink after its peak; benchmarks/README.md
has the measured gain.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt's parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Above a training step's largest tensors (32 MiB for the 64 px models, batch 64), well
# below the machine's memory.
KEPT_BYTES = 1 << 30


def keep_freed_memory(threshold_bytes: int = KEPT_BYTES) -> bool:
    """Serve allocations up to `threshold_bytes` from the heap and keep up to that much
    freed memory at its top rather than returning it to the kernel. Process-wide; returns
    whether glibc took the setting (False on other C libraries, which are left alone)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # Both: fixing the mmap threshold also stops glibc raising the trim threshold with it.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes))
