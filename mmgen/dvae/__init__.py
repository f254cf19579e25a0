"""The DALL-E-style baseline: a Gumbel-softmax discrete VAE and, over its image tokens, an
autoregressive transformer conditioned on the shared text encoder."""

from mmgen.dvae.discrete_vae import DiscreteVAE
from mmgen.dvae.pipeline import DiscreteVAEPipeline
from mmgen.dvae.prior import DiscreteVAEPrior

__all__ = ["DiscreteVAE", "DiscreteVAEPipeline", "DiscreteVAEPrior"]
