"""Training objectives of the multimodal VAE, one per aggregation. Every term counts only
the modalities a sample has, so samples with missing modalities train the experts and
decoders they have."""

from __future__ import annotations

import torch
from torch import nn

from mmgen.multimodal.aggregation import subset_kls_to_prior
from mmgen.multimodal.conditional_vae import ConditionalVAE
from mmgen.multimodal.modality_model import Observed, gaussian_kl_to_standard, gaussian_log_density
from mmgen.multimodal.multimodal_vae import MultimodalVAE, Posterior


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mean + (0.5 * logvar).exp() * torch.randn_like(mean)


class MultimodalELBO(nn.Module):
    """The negative ELBO of `model.config.aggregation`, averaged over the batch:

    - poe (MVAE, Wu & Goodman 2018): the sub-sampled ELBO, the sum of the ELBOs of the
      joint posterior, of each unimodal posterior and of `random_subsets` random subsets
      (each term reconstructs the modalities it conditions on);
    - moe (MMVAE, Shi et al. 2019): the stratified ELBO, one latent drawn from each present
      expert, every present modality reconstructed from it, the KL replaced by
      log p(z) - log q_mixture(z). One sample per expert: the IWAE / DReG estimators need K
      samples and K decoder passes each, K times the cost on a CPU;
    - mopoe (Sutter et al. 2021): one latent per sample from a random subset's product of
      experts, every present modality reconstructed, and the average KL of all subsets.

    Private latents (MMVAE+, Palumbo et al. 2023): in every term, a modality conditioned on
    draws its private latent from its own posterior (and pays that posterior's KL), any other
    reconstructed modality from an auxiliary prior, so that what modalities share has to
    pass through the shared latent. MMVAE+ learns the auxiliary prior's scale; here it is
    the standard normal, the prior that generation draws from.

    `beta` weighs the KL (or log-density ratio) terms."""

    def __init__(self, model: MultimodalVAE, beta: float = 1.0):
        super().__init__()
        self.model, self.beta = model, beta

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        observed = self.model.observe(batch)
        posterior = self.model.experts(observed)
        elbo, reconstruction, divergence, per_modality = {"poe": self._mvae, "moe": self._mmvae, "mopoe": self._mopoe}[
            self.model.config.aggregation
        ](observed, posterior)
        # Each modality's own log-likelihood (unweighted, over the samples that have it), so
        # that one can tell which modality is learning.
        present = observed.present.sum(1).clamp_min(1)
        return {
            "loss": -elbo.mean(),
            "log_likelihood": reconstruction.mean().detach(),
            "kl": divergence.mean().detach(),
            **{f"log_likelihood/{name}": (per_modality[name].sum() / present[index]).detach()
               for index, name in enumerate(self.model.names)},
        }

    def log_likelihoods(
        self, latent: torch.Tensor, observed: Observed, counted: torch.Tensor, private: dict[str, torch.Tensor],
        every_decoder: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum of the modalities' log-likelihoods where `counted` [M, B]: [B],
        from the shared `latent` and the `private` latents; and each modality's own
        (unweighted, zero where not counted): name -> [B].
        With `every_decoder`, decoders run even when no sample counts for them, so that all
        parameters get a (zero) gradient, as DistributedDataParallel requires; a loss with
        several terms needs that of one term only and lets the others skip them."""
        total = torch.zeros(observed.size, device=latent.device)
        each = {}
        for index, (name, modality) in enumerate(self.model.codecs.items()):
            if not (every_decoder or counted[index].any()):
                each[name] = torch.zeros_like(total)
                continue
            decoder_input = self.model.decoder_input(name, latent, private)
            each[name] = modality.reconstruction_log_likelihood(decoder_input, observed.values[name]) * counted[index]
            total = total + self.model.weights[name] * each[name]
        return total, each

    def _private(self, posterior: Posterior, conditioned: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The private latents of a term conditioned on `conditioned` [M, B] present
        modalities, and the KL of those drawn from their posteriors: [B]."""
        latents = self.model.private_latents(posterior, conditioned)
        divergence = torch.zeros(conditioned.shape[1], device=conditioned.device)
        for name, gaussian in posterior.private.items():
            divergence = divergence + gaussian_kl_to_standard(*gaussian) * conditioned[self.model.names.index(name)]
        return latents, divergence

    def _subset_elbo(
        self, observed: Observed, posterior: Posterior, masks: torch.Tensor, every_decoder: bool
    ) -> tuple[torch.Tensor, ...]:
        """ELBO of conditioning on, and reconstructing, `masks` [B, M] of present modalities."""
        counted = masks.T & observed.present
        mean, logvar = self.model.component_gaussian(posterior, masks)
        private, private_divergence = self._private(posterior, counted)
        reconstruction, each = self.log_likelihoods(reparameterize(mean, logvar), observed, counted, private, every_decoder)
        divergence = gaussian_kl_to_standard(mean, logvar) * counted.any(0) + private_divergence
        return reconstruction - self.beta * divergence, reconstruction, divergence, each

    def _mvae(self, observed: Observed, posterior: Posterior) -> tuple[torch.Tensor, ...]:
        count, size = len(self.model.names), observed.size
        subsets = [torch.ones(size, count, dtype=torch.bool, device=observed.present.device)]
        subsets += [torch.eye(count, dtype=torch.bool, device=observed.present.device)[m].expand(size, -1) for m in range(count)]
        subsets += [torch.rand(size, count, device=observed.present.device) < 0.5 for _ in range(self.model.config.random_subsets)]
        # The joint term runs every decoder; the others skip those no sample of theirs counts.
        terms = [self._subset_elbo(observed, posterior, masks, every_decoder=i == 0) for i, masks in enumerate(subsets)]
        elbo, reconstruction, divergence = (torch.stack(parts).sum(0) for parts in list(zip(*terms))[:3])
        return elbo, reconstruction, divergence, terms[0][3]  # each modality's from the joint posterior

    def _mmvae(self, observed: Observed, posterior: Posterior) -> tuple[torch.Tensor, ...]:
        present = observed.present
        experts = present.sum(0).clamp_min(1)
        elbo = reconstruction = divergence = torch.zeros(observed.size, device=present.device)
        each = {name: torch.zeros_like(elbo) for name in self.model.names}
        for m in range(len(self.model.names)):
            if not present[m].any():
                continue
            latent = reparameterize(posterior.mean[m], posterior.logvar[m])
            densities = gaussian_log_density(latent[None], posterior.mean, posterior.logvar)  # [M, B]
            # A sample given nothing counts zero below; left unmasked, its row stays finite (all
            # -inf would give nan values and gradients).
            log_mixture = densities.masked_fill(~present & present.any(0), float("-inf")).logsumexp(0) - experts.log()
            log_prior = gaussian_log_density(latent, torch.zeros_like(latent), torch.zeros_like(latent))
            expert_only = torch.zeros_like(present)
            expert_only[m] = present[m]
            private, private_divergence = self._private(posterior, expert_only)
            term_reconstruction, term_each = self.log_likelihoods(latent, observed, present, private)
            term_divergence = log_mixture - log_prior + private_divergence
            weight = present[m] / experts  # the average over each sample's present experts
            elbo = elbo + weight * (term_reconstruction - self.beta * term_divergence)
            reconstruction = reconstruction + weight * term_reconstruction
            divergence = divergence + weight * term_divergence
            each = {name: each[name] + weight * value for name, value in term_each.items()}
        return elbo, reconstruction, divergence, each

    def _mopoe(self, observed: Observed, posterior: Posterior) -> tuple[torch.Tensor, ...]:
        masks, valid = self.model.components(observed.present)
        chosen = self.model.draw_components(observed.present)
        mean, logvar = self.model.component_gaussian(posterior, chosen)
        private, private_divergence = self._private(posterior, chosen.T & observed.present)
        reconstruction, each = self.log_likelihoods(reparameterize(mean, logvar), observed, observed.present, private)
        divergences = subset_kls_to_prior(posterior.mean, posterior.logvar, posterior.present, masks)
        divergence = (divergences * valid).sum(1) / valid.sum(1).clamp_min(1) + private_divergence
        return reconstruction - self.beta * divergence, reconstruction, divergence, each


class ConditionalELBO(nn.Module):
    """The conditional VAE's negative ELBO, log p(x | z, y) - beta KL(q(z | x, y) || N(0, I)),
    averaged over the samples that have the target (the others have nothing to learn from)."""

    def __init__(self, model: ConditionalVAE, beta: float = 1.0):
        super().__init__()
        self.model, self.beta = model, beta

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        observed = self.model.observe(batch)
        conditions = self.model.condition_features(observed)
        mean, logvar = self.model.posterior_given(observed, conditions)
        latent = reparameterize(mean, logvar)
        target = self.model.codecs[self.model.target]
        has_target = observed.present[self.model.names.index(self.model.target)]
        decoder_input = self.model.decoder_input(latent, conditions)
        reconstruction = target.reconstruction_log_likelihood(decoder_input, observed.values[self.model.target])
        divergence = gaussian_kl_to_standard(mean, logvar)
        count = has_target.sum().clamp_min(1)

        def average(values: torch.Tensor) -> torch.Tensor:
            return (values * has_target).sum() / count

        return {
            "loss": -average(reconstruction - self.beta * divergence),
            "log_likelihood": average(reconstruction).detach(),
            "kl": average(divergence).detach(),
        }
