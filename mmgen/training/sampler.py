"""Data order that a resumed run can replay exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from mmgen.data.seeding import derive_seed
from mmgen.errors import ConfigError


class ResumableShardedSampler(Sampler[int]):
    """Shuffles indices once per epoch from (seed, epoch) alone, gives each process its own
    equal share, and can start part-way into an epoch.

    mmgen orders and shards data itself instead of letting `accelerator.prepare` wrap the
    DataLoader: the order then depends on nothing but (seed, epoch, rank), so `--resume`
    skips to the exact sample where the interrupted run stopped, with no state to save.
    """

    def __init__(self, dataset_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if dataset_size < world_size:
            raise ConfigError(f"{dataset_size} samples cannot be shared among {world_size} processes")
        self.dataset_size = dataset_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip its first `start` samples (of this process's share)."""
        self.epoch = epoch
        self.start = start

    def __len__(self) -> int:
        return self.dataset_size // self.world_size - self.start

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
            order = torch.randperm(self.dataset_size, generator=generator)
        else:
            order = torch.arange(self.dataset_size)
        # Drop the tail so every process gets the same number of samples.
        share = order[self.rank : self.dataset_size - self.dataset_size % self.world_size : self.world_size]
        return iter(share[self.start :].tolist())
