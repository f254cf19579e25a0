"""A conditional VAE (Sohn et al. 2015): p(x | z, y) with q(z | x, y) and a standard-normal
prior, where x is one `target` modality and y any others (attributes, captions, vectors)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from torch import nn

from mmgen.errors import ConfigError, DataError
from mmgen.multimodal.modalities import GaussianHead
from mmgen.multimodal.modality_model import ModalityModel, Observed


class ConditionalVAE(ModalityModel):
    """q(z | x, y) reads the target's and the conditions' encoder features together; the
    target's decoder reads z plus a projection of the conditions' features. Conditions may
    not be missing (categorical ones may leave single attributes unknown)."""

    @register_to_config
    def __init__(
        self,
        modalities: dict[str, dict[str, Any]],
        target: str = "image",
        conditions: list[str] | None = None,
        latent_dim: int = 32,
    ):
        super().__init__()
        conditions = sorted(conditions or [name for name in modalities if name != target])
        if target not in modalities:
            raise ConfigError(f"target modality {target!r} is not among {', '.join(sorted(modalities))}")
        if not conditions or target in conditions or set(conditions) - set(modalities):
            raise ConfigError(f"conditions must be other declared modalities than the target, got {conditions}")
        self.build_codecs({name: modalities[name] for name in (target, *conditions)}, latent_dim)
        if not self.codecs[target].generated:
            raise ConfigError(f"target {target!r} ({self.codecs[target].kind}) can only be a condition")
        self.target, self.conditions = target, conditions
        condition_size = sum(self.codecs[name].feature_size for name in conditions)
        self.posterior = GaussianHead(self.codecs[target].feature_size + condition_size, latent_dim)
        self.condition_projection = nn.Linear(condition_size, latent_dim)
        # Unused here: the target's own expert head and the conditions' decoders.
        self.codecs[target].encoder_head = None
        for name in conditions:
            self.codecs[name].decoder = None

    def condition_features(self, observed: Observed) -> torch.Tensor:
        missing = [name for i, name in enumerate(self.names) if name in self.conditions and not observed.present[i].all()]
        if missing:
            raise DataError(f"the conditional VAE needs {missing[0]!r} for every sample (it conditions on it)")
        return torch.cat([self.codecs[name].features(observed.values[name]) for name in self.conditions], dim=1)

    def posterior_given(self, observed: Observed, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.posterior(torch.cat([self.codecs[self.target].features(observed.values[self.target]), conditions], 1))

    def decoder_input(self, latent: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """What the target's decoder reads: the latent shifted by the projected conditions."""
        return latent + self.condition_projection(conditions)

    def decode(self, latent: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        return self.codecs[self.target].decode(self.decoder_input(latent, conditions))

    @torch.no_grad()
    def impute(
        self, inputs: dict[str, Any], targets: str | list[str] | None = None, n: int = 1,
        generator: torch.Generator | None = None, mean: bool = False, output_type: str = "values",
    ) -> dict[str, Any]:
        """The target modality given the conditions: n draws per sample from the prior (its
        mean, z = 0, if `mean`), as MultimodalVAE.impute returns them."""
        if targets not in (None, self.target, [self.target]):
            raise ConfigError(f"this conditional VAE generates {self.target!r} only, not {targets}")
        self.check_draws(n)
        inputs = self.user_batch(inputs)
        with self.evaluating():
            conditions = self.condition_features(self.observe(inputs)).repeat_interleave(n, dim=0)
            latent = torch.randn(len(conditions), self.config.latent_dim, generator=generator).to(conditions)
            decoded = self.decode(latent * (not mean), conditions)
        if output_type == "pt":
            return {self.target: decoded}
        return {self.target: self.codecs[self.target].from_decoded(decoded)}
