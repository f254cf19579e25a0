"""A CLIP-style image-text model over the shared text encoder.

No CLIP weights exist offline, so mmgen trains its own: an image tower embeds images, a
small MLP projects the (frozen) shared text encoder's pooled states into the same space,
and a learned temperature scales their cosine similarities (Radford et al. 2021).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from mmgen.errors import ConfigError

# CLIP caps the learned logit scale at 100 so that the softmax cannot become a hard max.
MAX_LOGIT_SCALE = math.log(100.0)


class ContrastiveImageText(ModelMixin, ConfigMixin):
    """Image tower: per width a strided 3 x 3 conv and a 3 x 3 conv (GroupNorm, SiLU), the
    final map flattened (where things are matters: flags, arrows, faces) and projected to
    `embed_dim`. Text: the text encoder's pooled state (`text_hidden_size` wide) through a
    two-layer MLP to `embed_dim`. Images of `image_size` px (others are resized).

    `text_encoder` names the frozen encoder it reads: "minilm" (the pretrained one, not
    stored again) or "." (the tokenizer/ and text_encoder/ saved beside this model)."""

    @register_to_config
    def __init__(
        self,
        text_hidden_size: int = 384,
        text_encoder: str = "minilm",
        max_length: int = 77,
        image_size: int = 64,
        channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        embed_dim: int = 256,
        text_projection_dim: int = 512,
        temperature: float = 0.07,
    ):
        super().__init__()
        if image_size < 2 ** len(widths):
            raise ConfigError(f"{image_size} px images are too small for {len(widths)} halving conv levels")
        layers: list[nn.Module] = []
        previous = channels
        for width in widths:
            groups = max(1, min(32, width // 4))
            layers += [
                nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(groups, width), nn.SiLU(),
                nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(groups, width), nn.SiLU(),
            ]
            previous = width
        side = image_size
        for _ in widths:
            side = (side + 1) // 2
        self.image_tower = nn.Sequential(*layers, nn.Flatten(), nn.Linear(previous * side * side, embed_dim))
        self.text_projection = nn.Sequential(
            nn.Linear(text_hidden_size, text_projection_dim), nn.GELU(), nn.Linear(text_projection_dim, embed_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings [B, embed_dim] of images [B, C, H, W] in [-1, 1]
        (the features FID is computed on)."""
        images = pixel_values.to(self.device, self.dtype)
        if images.shape[1] != self.config.channels:  # greyscale <-> RGB
            images = images.mean(1, keepdim=True) if self.config.channels == 1 else images.expand(-1, 3, -1, -1)
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return self.image_tower(images)

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings [B, embed_dim]."""
        return F.normalize(self.image_features(pixel_values), dim=-1)

    def text_embeds(self, pooled: torch.Tensor) -> torch.Tensor:
        """Unit-length text embeddings [B, embed_dim] of the text encoder's pooled states."""
        return F.normalize(self.text_projection(pooled.to(self.device, self.dtype)), dim=-1)

    def forward(self, pixel_values: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Logits [B_images, B_texts]: scaled cosine similarities."""
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return scale * self.image_embeds(pixel_values) @ self.text_embeds(pooled).T
