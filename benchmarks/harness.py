"""Measurement helpers for mmgen's benchmarks (scripts, not tests). They run on the CPU.

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

    def rate(self, items: int) -> dict[str, float]:
        """items/s at the median, and its spread (from the slowest and fastest repeats)."""
        return {"median": items / self.median_s, "low": items / self.max_s, "high": items / self.min_s}


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> Timing:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
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
    times = []
    for index in range(steps):
        batch = draw(index)
        start = time.perf_counter()
        loss = step(batch, index)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    timed = times[warmup:]
    return Timing(statistics.median(timed), min(timed), max(timed), len(timed)), loss


def matmul_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul FLOP/s on the CPU, where the benchmarks run: the ceiling to
    compare against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / time_call(lambda: a @ b, repeats=repeats).min_s


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
