"""Latent diffusion text-to-image: AutoencoderKL + UNet2DConditionModel + diffusers schedulers,
conditioned on the shared text encoder."""

from mmgen.diffusion.pipeline import SCHEDULERS, TextToImagePipeline

__all__ = ["SCHEDULERS", "TextToImagePipeline"]
