"""Latents of the training images, computed once by the frozen autoencoder.

diffusers' text-to-image example runs the VAE on every training step; with the
autoencoder frozen its output never changes, so mmgen encodes each image once (both
orientations when flips are on), keeps the posterior's mean and std, and draws a fresh
latent from them per step. A training step then runs only the UNet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmgen.data.collate import collate_examples
from mmgen.data.frozen import CachedViewsDataset, dataset_fingerprint, load_or_compute


@torch.no_grad()
def encode_dataset(
    vae: AutoencoderKL, dataset: Dataset, cache_dir: str | Path, flips: bool = False, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Posterior mean and std [N, F, C, h, w] of every image (F = 2 with flips, the second
    mirrored), from `cache_dir` when this autoencoder already encoded this dataset."""

    def encode() -> dict[str, torch.Tensor]:
        device = next(vae.parameters()).device
        means, stds = [], []
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_examples)
        for batch in tqdm(loader, desc="encoding images"):
            images = batch["pixel_values"].to(device)
            views = [images, images.flip(-1)] if flips else [images]
            posteriors = [vae.encode(view).latent_dist for view in views]
            means.append(torch.stack([p.mean for p in posteriors], 1).cpu())
            stds.append(torch.stack([p.std for p in posteriors], 1).cpu())
        return {"mean": torch.cat(means), "std": torch.cat(stds)}

    fingerprint = dataset_fingerprint(dataset, vae, "latents", flips)
    return load_or_compute(Path(cache_dir) / f"latents-{fingerprint}.safetensors", encode)


def latent_scaling_factor(latents: dict[str, torch.Tensor], seed: int = 0) -> float:
    """1 / std of sampled latents, so the diffusion model sees unit-variance inputs
    (measured on the data rather than Stable Diffusion's 0.18215)."""
    generator = torch.Generator().manual_seed(seed)
    sample = latents["mean"] + latents["std"] * torch.randn(latents["mean"].shape, generator=generator)
    return float(1.0 / sample.std())


def cached_latent_dataset(
    latents: dict[str, torch.Tensor], captions: list[tuple[str, ...]], seed: int = 0,
    preserved: torch.Tensor | None = None,
) -> Dataset:
    """Items `{"latent_mean", "latent_std", "text"}`: a cached image (mirrored at random
    when flips were cached) and one of its captions; with `preserved` (a bool per image)
    also `"preserved"`, marking the rows whose target is the base model's prediction. Its
    `resume_settings` count those rows, so a run resumes only with the same split."""
    tensors = {"latent_mean": latents["mean"], "latent_std": latents["std"]}
    if preserved is not None:
        tensors["preserved"] = preserved[:, None].expand(latents["mean"].shape[:2])
    dataset = CachedViewsDataset(tensors, captions, seed=seed)
    dataset.resume_settings = {"preserved_rows": 0 if preserved is None else int(preserved.sum())}
    return dataset
