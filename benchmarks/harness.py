"""Measurement helpers for mmgen's benchmarks (scripts, not tests). They run on the CPU,
or on a GPU where a benchmark takes `--device cuda` (timings then wait for its queue).

Throughput is reported as the median and spread over repeats; FLOP utilisation of a
training step is FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` divided by
the step time, against an fp32 matmul peak measured in the same run.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    warmup_s: float = 0.0  # the untimed first calls together (a compiled step compiles there)

    def rate(self, items: int) -> dict[str, float]:
        """items/s at the median, and its spread (from the slowest and fastest repeats)."""
        return {"median": items / self.median_s, "low": items / self.max_s, "high": items / self.min_s}


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on a GPU, so that a clock read after it counts that work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 2, device: torch.device | str = "cpu") -> Timing:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times), repeats)


def timed_adamw_steps(
    parameters: list[torch.nn.Parameter], draw: Callable[[int], object], step: Callable[[object, int], torch.Tensor],
    steps: int, learning_rate: float, warmup: int = 5,
) -> tuple[Timing, torch.Tensor]:
    """Train `steps` AdamW steps (gradient norm clipped to 1, as mmgen's loop does), the
    batch of step i being `draw(i)` and its loss `step(batch, i)`; time each step after
    the draw. Returns the timing of the steps after `warmup`, and the last loss. Shared by
    the side-by-side races, which run it in other libraries' environments too."""
    if steps <= warmup:
        raise ValueError(f"{steps} steps leave none to time after {warmup} warm-up steps; train for longer")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    device = parameters[0].device
    times = []
    for index in range(steps):
        batch = draw(index)
        synchronize(device)
        start = time.perf_counter()
        loss = step(batch, index)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        times.append(time.perf_counter() - start)
    timed = times[warmup:]
    return Timing(statistics.median(timed), min(timed), max(timed), len(timed), sum(times[:warmup])), loss


def matmul_peak_flops(size: int = 2048, repeats: int = 5, device: torch.device | str = "cpu") -> float:
    """Measured fp32 matmul FLOP/s on the device the benchmarks run on: the ceiling to
    compare against."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / time_call(lambda: a @ b, repeats=repeats, device=device).min_s


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (forward and backward if `fn` runs both)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def training_row(name: str, step: Callable[[], object], batch_size: int, peak: float, repeats: int) -> dict:
    """Images/s and steps/s of a full training step (forward, backward, optimizer), with
    its FLOP utilisation against `peak`."""
    timing = time_call(step, repeats=repeats)
    flops = count_flops(step)
    return {
        "benchmark": name,
        "kind": "train",
        "batch_size": batch_size,
        "images_per_s": timing.rate(batch_size),
        "steps_per_s": timing.rate(1),
        "flops_per_step": flops,
        "flop_utilisation": flops / timing.median_s / peak,
        "timing": asdict(timing),
    }


def sampling_row(name: str, sample: Callable[[], object], batch_size: int, repeats: int, **details) -> dict:
    timing = time_call(sample, repeats=repeats, warmup=1)
    return {
        "benchmark": name,
        "kind": "sample",
        "batch_size": batch_size,
        "images_per_s": timing.rate(batch_size),
        "timing": asdict(timing),
        **details,
    }


def allow_multivae_import() -> None:
    """Let multivae import on a CPU build of torch: PyPI's torchvision is a CUDA build that
    fails at import unless its `nms`/`qnms` op schemas exist; multivae imports torchvision
    but uses none of its ops."""
    if torch.version.cuda is None and not _TORCHVISION_OPS:
        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_OPS.append(library)  # the ops live as long as this library object


_TORCHVISION_OPS: list = []
