"""Latents of the training images, computed once by the frozen autoencoder.

diffusers' text-to-image example runs the VAE on every training step; with the
autoencoder frozen its output never changes, so mmgen encodes each image once (both
orientations when flips are on), keeps the posterior's mean and std, and draws a fresh
latent from them per step. A training step then runs only the UNet.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmgen.data.collate import collate_examples
from mmgen.data.seeding import derive_seed
from mmgen.fingerprint import update_with_weights


def item_captions(dataset: Dataset, index: int) -> tuple[str, ...]:
    """Every caption item `index` can draw, without loading its image."""
    if hasattr(dataset, "item_captions"):
        return tuple(dataset.item_captions(index))
    return (dataset[index]["text"],)


def _fingerprint(vae: AutoencoderKL, dataset: Dataset, flips: bool) -> str:
    """Autoencoder weights and config, plus the dataset's type, size, captions and first
    image: different data almost always differs in one of these (images are not all
    hashed, which would cost as much as encoding them)."""
    digest = hashlib.sha256(json.dumps([type(dataset).__name__, len(dataset), flips, dict(vae.config)], default=str).encode())
    update_with_weights(digest, vae)
    digest.update(json.dumps([item_captions(dataset, i) for i in range(len(dataset))]).encode())
    digest.update(dataset[0]["pixel_values"].numpy().tobytes())
    return digest.hexdigest()[:24]


@torch.no_grad()
def encode_dataset(
    vae: AutoencoderKL, dataset: Dataset, cache_dir: str | Path, flips: bool = False, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Posterior mean and std [N, F, C, h, w] of every image (F = 2 with flips, the second
    mirrored), from `cache_dir` when this autoencoder already encoded this dataset."""
    path = Path(cache_dir) / f"latents-{_fingerprint(vae, dataset, flips)}.safetensors"
    if path.is_file():
        return load_file(path)
    device = next(vae.parameters()).device
    means, stds = [], []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_examples)
    for batch in tqdm(loader, desc="encoding images"):
        images = batch["pixel_values"].to(device)
        views = [images, images.flip(-1)] if flips else [images]
        posteriors = [vae.encode(view).latent_dist for view in views]
        means.append(torch.stack([p.mean for p in posteriors], 1).cpu())
        stds.append(torch.stack([p.std for p in posteriors], 1).cpu())
    latents = {"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    save_file(latents, temporary)
    os.replace(temporary, path)
    return latents


def latent_scaling_factor(latents: dict[str, torch.Tensor], seed: int = 0) -> float:
    """1 / std of sampled latents, so the diffusion model sees unit-variance inputs
    (measured on the data rather than Stable Diffusion's 0.18215)."""
    generator = torch.Generator().manual_seed(seed)
    sample = latents["mean"] + latents["std"] * torch.randn(latents["mean"].shape, generator=generator)
    return float(1.0 / sample.std())


class CachedLatentDataset(Dataset):
    """Items `{"latent_mean", "latent_std", "text"}`: a cached image (mirrored at random
    when flips were cached) and one of its captions, chosen from (seed, epoch, index)."""

    def __init__(self, latents: dict[str, torch.Tensor], captions: list[tuple[str, ...]], seed: int = 0):
        if len(captions) != len(latents["mean"]):
            raise ValueError(f"{len(captions)} caption lists for {len(latents['mean'])} latents")
        self.latents = latents
        self.captions = captions
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        rng = random.Random(derive_seed(self.seed, self.epoch, index))
        view = rng.randrange(self.latents["mean"].shape[1])
        return {
            "latent_mean": self.latents["mean"][index, view],
            "latent_std": self.latents["std"][index, view],
            "text": rng.choice(self.captions[index]),
        }
