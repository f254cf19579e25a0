"""The discrete VAE of the DALL-E baseline: images <-> a grid of tokens from a codebook.

The encoder gives logits over `num_tokens` codes at every position of an 8 x 8 grid (for
64 px and three downsamplings). Training relaxes the choice of code with Gumbel-softmax;
tokenizing takes the argmax. diffusers has no Gumbel-softmax VAE (its VQModel quantizes
to the nearest code), so this one is written here, laid out like a diffusers model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from mmgen.errors import ConfigError


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


@dataclass
class DiscreteVAEOutput:
    reconstruction: torch.Tensor  # [B, C, H, W]
    logits: torch.Tensor  # [B, num_tokens, h, w]


class DiscreteVAE(ModelMixin, ConfigMixin):
    """Strided convs -> residual blocks -> 1x1 conv to code logits; the decoder mirrors it
    from the (relaxed) one-hot codes times the codebook.

    With the defaults a 64 x 64 image becomes 8 x 8 = 64 tokens from 512 codes (the
    configuration of DALL-E's dVAE, scaled down, and of dalle-pytorch's `DiscreteVAE`)."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        num_tokens: int = 512,
        codebook_dim: int = 256,
        hidden_channels: int = 64,
        num_layers: int = 3,
        num_resnet_blocks: int = 1,
    ):
        super().__init__()
        if image_size % 2**num_layers:
            raise ConfigError(f"image_size {image_size} is not divisible by 2 ** num_layers = {2**num_layers}")
        encoder: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_layers):
            encoder += [nn.Conv2d(channels, hidden_channels, 4, stride=2, padding=1), nn.ReLU()]
            channels = hidden_channels
        encoder += [ResidualBlock(hidden_channels) for _ in range(num_resnet_blocks)]
        self.encoder = nn.Sequential(*encoder, nn.Conv2d(hidden_channels, num_tokens, 1))

        decoder: list[nn.Module] = [nn.Conv2d(codebook_dim, hidden_channels, 1)]
        decoder += [ResidualBlock(hidden_channels) for _ in range(num_resnet_blocks)]
        for _ in range(num_layers):
            decoder += [nn.ConvTranspose2d(hidden_channels, hidden_channels, 4, stride=2, padding=1), nn.ReLU()]
        # Linear output: the reconstruction loss is Gaussian (MSE) on pixels in [-1, 1].
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(hidden_channels, in_channels, 1))
        self.codebook = nn.Embedding(num_tokens, codebook_dim)

    @property
    def token_grid(self) -> int:
        """Side of the token grid (8 for 64 px and three downsamplings)."""
        return self.config.image_size // 2**self.config.num_layers

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Code logits [B, num_tokens, h, w] of images in [-1, 1]."""
        return self.encoder(pixel_values)

    @torch.no_grad()
    def tokenize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The most likely code at every position, row-major: LongTensor [B, h * w]."""
        return self.logits(pixel_values).argmax(1).flatten(1)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Images from (relaxed) one-hot codes [B, num_tokens, h, w]."""
        embedded = torch.einsum("bkhw,kd->bdhw", codes, self.codebook.weight)
        return self.decoder(embedded)

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] from tokens [B, h * w] (or [B, h, w])."""
        grid = tokens.reshape(len(tokens), self.token_grid, self.token_grid)
        embedded = self.codebook(grid).permute(0, 3, 1, 2)
        return self.decoder(embedded)

    def forward(
        self, pixel_values: torch.Tensor, temperature: float = 1.0, straight_through: bool = False
    ) -> DiscreteVAEOutput:
        """Reconstruct through Gumbel-softmax codes at `temperature`; `straight_through`
        decodes hard one-hot codes while gradients flow through the soft ones."""
        logits = self.logits(pixel_values)
        codes = F.gumbel_softmax(logits, tau=temperature, hard=straight_through, dim=1)
        return DiscreteVAEOutput(reconstruction=self.decode_codes(codes), logits=logits)
