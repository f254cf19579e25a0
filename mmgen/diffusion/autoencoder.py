"""Stage one of latent diffusion: a diffusers `AutoencoderKL` trained from scratch."""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.nn import functional as F


def build_autoencoder(
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128),
    latent_channels: int = 4,
    layers_per_block: int = 1,
    image_size: int = 64,
) -> AutoencoderKL:
    """An AutoencoderKL that downsamples by 2 ** (len(block_out_channels) - 1): with the
    defaults, 64 x 64 images become 8 x 8 x 4 latents.

    GroupNorm gets 4 channels per group in the narrowest block (Stable Diffusion's VAE
    has 4 too). One channel per group is instance normalisation, which on flat shapes on
    black keeps only the sign of each channel's response: an autoencoder built so (16
    groups on 16 channels) learned shape and position but gave colors back as grays."""
    return AutoencoderKL(
        block_out_channels=tuple(block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
        latent_channels=latent_channels,
        layers_per_block=layers_per_block,
        norm_num_groups=max(1, min(32, math.gcd(*block_out_channels) // 4)),
        sample_size=image_size,
    )


class AutoencoderObjective(nn.Module):
    """L1 reconstruction plus `kl_weight` x KL to N(0, 1), both per element.

    The KL term only keeps the latent space smooth and bounded; its scale is normalised
    later by the scaling factor measured on the data (1 / std of the latents). Keep it
    weak: at 1e-4 the posterior std stayed at 0.28 (latent spread 0.95) and the decoder
    returned Shapes' colors as grays, possibly because that noise drowns them.
    (Stable Diffusion's 1e-6 on summed losses is about 2e-8 per element.)"""

    def __init__(self, vae: AutoencoderKL, kl_weight: float = 1e-6):
        super().__init__()
        self.vae = vae
        self.kl_weight = kl_weight

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["pixel_values"]
        posterior = self.vae.encode(images).latent_dist
        reconstruction = self.vae.decode(posterior.sample()).sample
        l1 = F.l1_loss(reconstruction, images)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        return {"loss": l1 + self.kl_weight * kl, "l1": l1.detach(), "kl": kl.detach()}


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Decode the latent mean of `images` (how reconstruction quality is measured)."""
    return vae.decode(vae.encode(images).latent_dist.mode()).sample
