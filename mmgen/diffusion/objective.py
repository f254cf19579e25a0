"""Stage two of latent diffusion: the text-conditioned denoising objective."""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr
from torch import nn
from torch.nn import functional as F

from mmgen.errors import ConfigError
from mmgen.text import UNCONDITIONAL_PROMPT, CachedTextEncoder, TextEncoder


def build_unet(
    cross_attention_dim: int,
    sample_size: int = 8,
    latent_channels: int = 4,
    block_out_channels: tuple[int, ...] = (64, 128),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    norm_num_groups: int | None = None,
) -> UNet2DConditionModel:
    """A UNet2DConditionModel with cross-attention in every block but the lowest-resolution
    down block and its mirror (the usual small-Stable-Diffusion layout). Group norms have
    32 groups unless the widths need fewer (the largest divisor of 32 dividing them all)."""
    depth = len(block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * (depth - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (depth - 1),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups or math.gcd(32, *block_out_channels),
    )


class LatentDiffusionObjective(nn.Module):
    """Denoising loss on cached latents: draw a latent from the cached posterior, add
    DDPM noise at a random timestep, predict the noise (or v) from the captions' states.

    Captions are replaced by the unconditional prompt with probability `caption_dropout`,
    which is what classifier-free guidance needs at sampling time. `snr_gamma` turns on
    min-SNR loss weighting (Hang et al. 2023). A frozen text encoder is read through its
    cache; a trainable one runs (and learns) on every step. Rows a batch marks
    `"preserved"` take the UNet's prediction with its LoRA adapters switched off as
    their target (see `train_ldm`'s `preservation_data`).
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        noise_scheduler: DDPMScheduler,
        text_encoder: TextEncoder | CachedTextEncoder,
        scaling_factor: float,
        caption_dropout: float = 0.1,
        snr_gamma: float | None = None,
    ):
        super().__init__()
        if snr_gamma is not None and not snr_gamma > 0:
            raise ConfigError(f"snr_gamma must be above 0 (or none), got {snr_gamma}")
        if not 0 <= caption_dropout <= 1:
            raise ConfigError(f"caption_dropout must lie in [0, 1], got {caption_dropout}")
        self.unet = unet
        self.noise_scheduler = noise_scheduler
        self.text_encoder = text_encoder  # a TextEncoder is a submodule; it trains only if trainable
        self.scaling_factor = scaling_factor
        self.caption_dropout = caption_dropout
        self.snr_gamma = snr_gamma

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        mean, std = batch["latent_mean"], batch["latent_std"]
        latents = (mean + std * torch.randn_like(mean)) * self.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(latents),), device=latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)

        dropped = torch.rand(len(latents)) < self.caption_dropout
        texts = [UNCONDITIONAL_PROMPT if drop else text for text, drop in zip(batch["text"], dropped.tolist())]
        states = self.text_encoder(texts).hidden_states.to(latents.device, latents.dtype)

        prediction = self.unet(noisy, timesteps, states).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        preserved = batch.get("preserved")
        if preserved is not None and preserved.any():
            preserved = preserved.to(latents.device)
            target = target.clone()
            base = self.base_prediction(noisy[preserved], timesteps[preserved], states[preserved])
            target[preserved] = base.to(target.dtype)
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.snr_gamma:
            snr = compute_snr(self.noise_scheduler, timesteps)
            clipped = torch.clamp(snr, max=self.snr_gamma)
            v_prediction = self.noise_scheduler.config.prediction_type == "v_prediction"
            per_sample = per_sample * (clipped / (snr + 1) if v_prediction else clipped / snr)
        return {"loss": per_sample.mean()}

    @torch.no_grad()
    def base_prediction(self, noisy: torch.Tensor, timesteps: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The UNet's prediction with its LoRA adapters switched off: the pipeline's own.
        (Switching them back on makes every adapter weight trainable again, as training
        them wants.)"""
        self.unet.disable_adapters()
        try:
            return self.unet(noisy, timesteps, states).sample
        finally:
            self.unet.enable_adapters()
