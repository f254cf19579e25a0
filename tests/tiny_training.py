"""A tiny regression task on the shared Trainer, run in-process or as a script (for the
kill-and-resume and multi-process tests). It uses every source of randomness a real
family does: shuffled data, per-epoch augmentation, dropout, EMA."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from mmgen.data.seeding import derive_seed
from mmgen.training import Trainer, TrainingConfig


class NoisyLinearData(Dataset):
    """y = x @ w + noise; the noise is an augmentation redrawn every epoch."""

    def __init__(self, n: int = 64, dim: int = 8):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=generator)
        self.y = self.x @ torch.randn(dim, 1, generator=generator)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        noise = random.Random(derive_seed(0, self.epoch, index)).gauss(0, 0.01)
        return {"x": self.x[index], "y": self.y[index] + noise, "index": index}


class RegressionObjective(nn.Module):
    def __init__(self, dim: int = 8, step_delay: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 32), nn.Dropout(0.1), nn.ReLU(), nn.Linear(32, 1))
        self.step_delay = step_delay
        self.seen_indices: list[int] = []

    def forward(self, batch: dict) -> dict:
        self.seen_indices.extend(batch["index"].tolist())
        if self.step_delay:
            time.sleep(self.step_delay)  # lets a test kill the process mid-run
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        return {"loss": loss, "prediction_mean": loss.detach() * 0}


def make_trainer(output_dir: str | Path, step_delay: float = 0.0, data: Dataset | None = None, **overrides) -> Trainer:
    torch.manual_seed(0)
    settings = dict(
        output_dir=str(output_dir), max_steps=12, batch_size=8, learning_rate=1e-2, gradient_accumulation_steps=2,
        checkpoint_every=3, keep_last=2, ema_decay=0.9, report_to="none", num_workers=0,
    )
    settings.update(overrides)
    return Trainer(TrainingConfig(**settings), RegressionObjective(step_delay=step_delay), data or NoisyLinearData())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--report", default=None, help="write rank, world size, weights digest here")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--accumulation", type=int, default=2)
    args = parser.parse_args()
    trainer = make_trainer(args.out, step_delay=args.step_delay, max_steps=args.steps, resume=args.resume,
                           num_workers=args.num_workers, gradient_accumulation_steps=args.accumulation)
    result = trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.objective)
    rank = trainer.accelerator.process_index
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, Path(args.out) / f"final-rank{rank}.safetensors")
    if args.report:
        report = {
            "rank": rank,
            "world_size": trainer.accelerator.num_processes,
            "step": result.step,
            "weights": [p.detach().double().sum().item() for p in model.parameters()],
            "seen_indices": sorted(set(model.seen_indices)),
            "losses": result.losses,
        }
        Path(f"{args.report}.rank{rank}.json").write_text(json.dumps(report))
    sys.exit(0)


if __name__ == "__main__":
    main()
