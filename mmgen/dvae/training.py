"""Training recipes for the discrete-VAE baseline, on the shared loop."""

from __future__ import annotations

from pathlib import Path

import torch

from mmgen.data import open_dataset
from mmgen.data.transforms import make_grid, tensor_to_pil
from mmgen.dvae.discrete_vae import DiscreteVAE
from mmgen.dvae.objective import DiscreteVAEObjective
from mmgen.training import Trainer, TrainingConfig, TrainingResult


def train_dvae(
    config: TrainingConfig,
    data: str = "shapes",
    image_size: int = 64,
    num_tokens: int = 512,
    codebook_dim: int = 256,
    hidden_channels: int = 64,
    num_layers: int = 3,
    num_resnet_blocks: int = 1,
    temperature_start: float = 1.0,
    temperature_end: float = 1.0 / 16,
    temperature_steps: int = 5000,
    kl_weight: float = 0.01,
    kl_ramp_steps: int = 5000,
    straight_through: bool = False,
    random_flip: bool = False,
) -> TrainingResult:
    """Stage one of the baseline. Every checkpoint holds the discrete VAE (EMA weights) in
    `model/`; validation writes originals above their token reconstructions to `samples/`."""
    torch.manual_seed(config.seed)
    vae = DiscreteVAE(
        image_size=image_size, num_tokens=num_tokens, codebook_dim=codebook_dim, hidden_channels=hidden_channels,
        num_layers=num_layers, num_resnet_blocks=num_resnet_blocks,
    )
    dataset = open_dataset(data, size=image_size, seed=config.seed, random_flip=random_flip)
    originals = torch.stack([dataset[i]["pixel_values"] for i in range(8)])

    def validate(model: DiscreteVAEObjective, step: int, output_dir: Path) -> None:
        device = next(model.parameters()).device
        with torch.no_grad():
            reconstructions = model.vae.decode_tokens(model.vae.tokenize(originals.to(device))).cpu()
        path = output_dir / "samples" / f"step-{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid(tensor_to_pil(torch.cat([originals, reconstructions])), columns=len(originals)).save(path)

    def export(model: DiscreteVAEObjective, folder: Path) -> None:
        model.vae.save_pretrained(folder)

    objective = DiscreteVAEObjective(
        vae, temperature_start=temperature_start, temperature_end=temperature_end,
        temperature_steps=temperature_steps, kl_weight=kl_weight, kl_ramp_steps=kl_ramp_steps,
        straight_through=straight_through,
    )
    return Trainer(config, objective, dataset, validate_fn=validate, export_fn=export).train()
