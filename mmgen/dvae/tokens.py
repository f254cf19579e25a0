"""Image tokens of the training images, computed once by the frozen discrete VAE, so a
prior training step runs only the transformer."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmgen.data.collate import collate_examples
from mmgen.data.frozen import dataset_fingerprint, load_or_compute
from mmgen.dvae.discrete_vae import DiscreteVAE


@torch.no_grad()
def tokenize_dataset(
    vae: DiscreteVAE, dataset: Dataset, cache_dir: str | Path, flips: bool = False, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """`{"tokens": [N, F, h * w]}` (F = 2 with flips, the second mirrored), from
    `cache_dir` when this discrete VAE already tokenized this dataset."""

    def tokenize() -> dict[str, torch.Tensor]:
        device = next(vae.parameters()).device
        tokens = []
        for batch in tqdm(DataLoader(dataset, batch_size=batch_size, collate_fn=collate_examples), desc="tokenizing images"):
            images = batch["pixel_values"].to(device)
            views = [images, images.flip(-1)] if flips else [images]
            tokens.append(torch.stack([vae.tokenize(view) for view in views], 1).cpu())
        return {"tokens": torch.cat(tokens)}

    fingerprint = dataset_fingerprint(dataset, vae, "tokens", flips)
    return load_or_compute(Path(cache_dir) / f"tokens-{fingerprint}.safetensors", tokenize)
