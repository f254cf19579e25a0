"""What frozen models make of a dataset, computed once and kept on disk.

A model family whose second stage trains on the outputs of a frozen first stage (latent
diffusion on an autoencoder's latents, the discrete-VAE prior on image tokens) computes
them once per image (and per orientation when flips are on), saves them as safetensors
keyed by the frozen weights and the data, and trains from a `CachedViewsDataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from mmgen.data.seeding import derive_seed
from mmgen.fingerprint import update_with_weights


def item_captions(dataset: Dataset, index: int) -> tuple[str, ...]:
    """Every caption item `index` can draw, without loading its image."""
    if hasattr(dataset, "item_captions"):
        return tuple(dataset.item_captions(index))
    return (dataset[index]["text"],)


def dataset_captions(dataset: Dataset) -> tuple[list[tuple[str, ...]], list[str]]:
    """Every item's captions, and all distinct captions in first-seen order."""
    captions = [item_captions(dataset, i) for i in range(len(dataset))]
    return captions, list(dict.fromkeys(c for item in captions for c in item))


def validation_prompts(dataset: Dataset, given: list[str] | tuple[str, ...] | None = None, count: int = 8) -> list[str]:
    """The prompts a text-conditioned run draws at each validation: `given`, else Shapes'
    fixed prompts on Shapes, else `count` of the data's distinct captions, spread over them."""
    if given:
        return list(given)
    from mmgen.data.shapes import VALIDATION_PROMPTS, ShapesDataset

    if isinstance(dataset, ShapesDataset):
        return list(VALIDATION_PROMPTS)
    distinct = [caption for caption in dataset_captions(dataset)[1] if caption]
    return distinct[:: max(1, len(distinct) // count)][:count]


def dataset_fingerprint(dataset: Dataset, model: nn.Module, *settings) -> str:
    """The frozen model's weights and config and `settings`, plus the dataset's type,
    size, captions and first image: different data almost always differs in one of these
    (hashing every image would cost as much as encoding them)."""
    config = dict(getattr(model, "config", {}))
    digest = hashlib.sha256(json.dumps([type(dataset).__name__, len(dataset), settings, config], default=str).encode())
    update_with_weights(digest, model)
    digest.update(json.dumps([item_captions(dataset, i) for i in range(len(dataset))]).encode())
    digest.update(dataset[0]["pixel_values"].numpy().tobytes())
    return digest.hexdigest()[:24]


def load_or_compute(path: str | Path, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors saved at `path`, or `compute()`'s, saved there atomically first."""
    path = Path(path)
    if path.is_file():
        return load_file(path)
    tensors = {name: tensor.contiguous() for name, tensor in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    save_file(tensors, temporary)
    os.replace(temporary, path)
    return tensors


class CachedViewsDataset(Dataset):
    """Items `{name: tensors[name][index, view], ..., "text": caption}` from tensors
    [N, F, ...] holding F views of each image (F = 2 when the mirrored view is cached):
    the view and one of the item's captions are drawn from (seed, epoch, index)."""

    def __init__(self, tensors: dict[str, torch.Tensor], captions: list[tuple[str, ...]], seed: int = 0):
        for name, tensor in tensors.items():
            if len(tensor) != len(captions):
                raise ValueError(f"{len(captions)} caption lists for {len(tensor)} cached {name!r} entries")
        self.tensors = tensors
        self.views = next(iter(tensors.values())).shape[1]
        self.captions = captions
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        rng = random.Random(derive_seed(self.seed, self.epoch, index))
        view = rng.randrange(self.views)
        item = {name: tensor[index, view] for name, tensor in self.tensors.items()}
        item["text"] = rng.choice(self.captions[index])
        return item
