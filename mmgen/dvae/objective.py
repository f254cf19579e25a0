"""Training objective of the discrete VAE: reconstruction + a ramped KL to the uniform prior,
through Gumbel-softmax codes whose temperature is annealed."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mmgen.dvae.discrete_vae import DiscreteVAE
from mmgen.text import UNCONDITIONAL_PROMPT


def cosine_anneal(step: int, total_steps: int, start: float, end: float) -> float:
    """`start` at step 0 to `end` at `total_steps` along a half cosine, then `end`."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_ramp(step: int, ramp_steps: int, end: float) -> float:
    """0 at step 0 to `end` at `ramp_steps`, then `end`."""
    return end * min(max(step / ramp_steps, 0.0), 1.0) if ramp_steps > 0 else end


def codebook_usage(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity of the chosen codes and how many distinct codes were chosen, over a
    batch of logits [B, K, h, w]. A perplexity far below K means codes are going unused."""
    chosen = logits.argmax(1).flatten()
    frequencies = torch.bincount(chosen, minlength=logits.shape[1]).float() / chosen.numel()
    entropy = -(frequencies * frequencies.clamp_min(1e-12).log()).sum()
    return entropy.exp(), (frequencies > 0).sum()


class DiscreteVAEObjective(nn.Module):
    """MSE reconstruction + `kl_weight` x KL(q(codes | image) || uniform), with the Gumbel
    temperature annealed from `temperature_start` to `temperature_end` over
    `temperature_steps` (cosine) and the KL weight optionally ramped linearly from 0 over
    `kl_ramp_steps`, as DALL-E did (to 6.6 over 5,000 updates).

    Both terms are per image element: the KL summed over an image's tokens is divided by
    its C x H x W values, as DALL-E normalised its loss per pixel. DALL-E's 6.6 does not
    carry over: its reconstruction term was a log-Laplace likelihood, on another scale
    than this MSE on [-1, 1] pixels.

    The defaults (weight 1 from step 0, no ramp) are what trained on Shapes, where ~87% of
    tokens are plain background: with the KL ramped up from 0 (weight 0.01 or 1 over 5,000
    steps; learning rate 1e-3 or 3e-4) the posteriors turned one-hot on one or three codes
    within the first 100-200 steps, before the ramp weighed anything, and never left them
    (token reconstructions: blobs of the mean colour). Weight 1 from the start kept 100+
    codes in use through the anneal."""

    def __init__(
        self,
        vae: DiscreteVAE,
        temperature_start: float = 1.0,
        temperature_end: float = 1.0 / 16,
        temperature_steps: int = 4000,
        kl_weight: float = 1.0,
        kl_ramp_steps: int = 0,
        kl_weight_end: float | None = None,
        kl_decay_steps: int = 2000,
        straight_through: bool = False,
    ):
        super().__init__()
        self.vae = vae
        self.temperature_start, self.temperature_end, self.temperature_steps = (
            temperature_start, temperature_end, temperature_steps,
        )
        self.kl_weight, self.kl_ramp_steps = kl_weight, kl_ramp_steps
        self.kl_weight_end, self.kl_decay_steps = kl_weight_end, kl_decay_steps
        self.straight_through = straight_through
        self.set_step(0)

    def set_step(self, step: int) -> None:
        """Called by the training loop before every update (and so right after a resume)."""
        self.temperature = cosine_anneal(step, self.temperature_steps, self.temperature_start, self.temperature_end)
        self.current_kl_weight = linear_ramp(step, self.kl_ramp_steps, self.kl_weight)
        if self.kl_weight_end is not None and step > self.temperature_steps:
            self.current_kl_weight = cosine_anneal(
                step - self.temperature_steps, self.kl_decay_steps, self.kl_weight, self.kl_weight_end
            )

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["pixel_values"]
        out = self.vae(images, temperature=self.temperature, straight_through=self.straight_through)
        reconstruction = F.mse_loss(out.reconstruction, images)
        log_q = F.log_softmax(out.logits, dim=1)
        # KL(q || uniform over K) = sum_k q_k (log q_k + log K), per token.
        kl_per_token = (log_q.exp() * (log_q + math.log(out.logits.shape[1]))).sum(1)
        kl = kl_per_token.flatten(1).sum(1).mean() / images[0].numel()
        perplexity, codes_used = codebook_usage(out.logits.detach())
        return {
            "loss": reconstruction + self.current_kl_weight * kl,
            "mse": reconstruction.detach(),
            "kl": kl.detach(),
            "temperature": self.temperature,
            "kl_weight": self.current_kl_weight,
            "perplexity": perplexity,
            "codes_used": codes_used,
        }


class DiscreteVAEPriorObjective(nn.Module):
    """Cross-entropy of the next image token given the caption's text-encoder states and
    the tokens before it. Captions become the unconditional (empty) prompt with
    probability `caption_dropout`, which classifier-free guidance needs at sampling."""

    def __init__(self, prior: nn.Module, text_encoder: nn.Module, caption_dropout: float = 0.1):
        super().__init__()
        self.prior = prior
        self.text_encoder = text_encoder  # a frozen encoder is read through its cache
        self.caption_dropout = caption_dropout

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        tokens = batch["tokens"].long()
        dropped = torch.rand(len(tokens)) < self.caption_dropout
        texts = [UNCONDITIONAL_PROMPT if drop else text for text, drop in zip(batch["text"], dropped.tolist())]
        states = self.text_encoder(texts).hidden_states.to(tokens.device)
        logits = self.prior(states, tokens)
        loss = F.cross_entropy(logits.transpose(1, 2), tokens)
        accuracy = (logits.argmax(-1) == tokens).float().mean()
        return {"loss": loss, "token_accuracy": accuracy.detach()}
