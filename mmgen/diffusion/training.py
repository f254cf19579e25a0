"""Training recipes for latent diffusion, on the shared loop: `train_autoencoder`, then
`train_ldm`. Every checkpoint of `train_ldm` holds a complete, loadable pipeline."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import PartialState
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler

from mmgen.checkpoints import load_pretrained, require_checkpoint_class
from mmgen.data import open_dataset
from mmgen.data.frozen import dataset_captions
from mmgen.data.shapes import VALIDATION_PROMPTS
from mmgen.data.transforms import tensor_to_pil
from mmgen.diffusion.autoencoder import AutoencoderObjective, build_autoencoder, reconstruct
from mmgen.diffusion.latents import cached_latent_dataset, encode_dataset, latent_scaling_factor
from mmgen.diffusion.objective import LatentDiffusionObjective, build_unet
from mmgen.diffusion.pipeline import TextToImagePipeline
from mmgen.errors import CheckpointError, ConfigError
from mmgen.text import load_text_encoder, training_conditioning
from mmgen.training import Trainer, TrainingConfig, TrainingResult, save_validation_grid


def train_autoencoder(
    config: TrainingConfig,
    data: str = "shapes",
    image_size: int = 64,
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128),
    latent_channels: int = 4,
    kl_weight: float = 1e-6,
    reconstruction_loss: str = "mse",
    random_flip: bool = False,
) -> TrainingResult:
    """Stage one. Every checkpoint holds the autoencoder (EMA weights) in `model/`, and
    validation writes originals above reconstructions to `samples/`."""
    torch.manual_seed(config.seed)
    vae = build_autoencoder(block_out_channels, latent_channels, image_size=image_size)
    dataset = open_dataset(data, size=image_size, seed=config.seed, random_flip=random_flip)
    originals = torch.stack([dataset[i]["pixel_values"] for i in range(min(8, len(dataset)))])

    def validate(model: AutoencoderObjective, step: int, output_dir: Path) -> None:
        device = next(model.parameters()).device
        reconstructions = reconstruct(model.vae, originals.to(device)).cpu()
        save_validation_grid(tensor_to_pil(torch.cat([originals, reconstructions])), output_dir, step)

    def export(model: AutoencoderObjective, folder: Path) -> None:
        model.vae.save_pretrained(folder)

    objective = AutoencoderObjective(vae, kl_weight=kl_weight, reconstruction_loss=reconstruction_loss)
    return Trainer(config, objective, dataset, validate_fn=validate, export_fn=export).train()


def train_ldm(
    config: TrainingConfig,
    autoencoder: str | Path,
    data: str = "shapes",
    image_size: int | None = None,
    text_encoder: str = "minilm",
    max_length: int = 77,
    text_hidden_size: int = 256,
    text_layers: int = 4,
    block_out_channels: tuple[int, ...] = (64, 128),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    prediction_type: str = "epsilon",
    snr_gamma: float | None = None,
    caption_dropout: float = 0.1,
    random_flip: bool = False,
    caption_variants: int = 0,
    gradient_checkpointing: bool = False,
    xformers: bool = False,
    validation_prompts: tuple[str, ...] = VALIDATION_PROMPTS,
) -> TrainingResult:
    """Stage two: a text-conditioned UNet on the frozen autoencoder's cached latents, of
    images at the autoencoder's size unless `image_size` says otherwise (it is convolutional).

    Attention runs on PyTorch's scaled-dot-product kernels; `xformers` switches the UNet to
    xformers' memory-efficient attention (CUDA only), `gradient_checkpointing` trades
    compute for memory at large resolutions. `caption_variants` K > 0 trains on K augmented
    captions per image (see `open_dataset`); a frozen encoder encodes each once."""
    if xformers:
        check_xformers()
    if not (Path(autoencoder) / "config.json").is_file():
        raise CheckpointError(f"{autoencoder}: no autoencoder there (train one with `mmgen train autoencoder`)")
    require_checkpoint_class(autoencoder, "AutoencoderKL", "mmgen train autoencoder")
    torch.manual_seed(config.seed)
    state = PartialState()
    vae = load_pretrained(AutoencoderKL, autoencoder).to(state.device).eval().requires_grad_(False)
    dataset = open_dataset(data, size=image_size or vae.config.sample_size, seed=config.seed, caption_variants=caption_variants)
    captions, distinct = dataset_captions(dataset)
    encoder = load_text_encoder(text_encoder, distinct, max_length, text_hidden_size, text_layers)

    # Frozen parts are computed once, by the main process first so the others read its files.
    with state.main_process_first():
        latents = encode_dataset(vae, dataset, Path(config.output_dir) / "cache", flips=random_flip)
        conditioning = training_conditioning(encoder, distinct, state.device)
    vae.register_to_config(scaling_factor=latent_scaling_factor(latents, seed=config.seed))

    noise_scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1,
        prediction_type=prediction_type,
    )
    unet = build_unet(
        cross_attention_dim=encoder.hidden_size, sample_size=latents["mean"].shape[-1],
        latent_channels=latents["mean"].shape[2], block_out_channels=block_out_channels,
        layers_per_block=layers_per_block, attention_head_dim=attention_head_dim,
    )
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if xformers:
        unet.enable_xformers_memory_efficient_attention()
    objective = LatentDiffusionObjective(
        unet, noise_scheduler, conditioning, vae.config.scaling_factor, caption_dropout, snr_gamma
    )

    def pipeline(model: LatentDiffusionObjective) -> TextToImagePipeline:
        pipe = TextToImagePipeline(
            vae=vae, text_encoder=encoder.model, tokenizer=encoder.tokenizer, unet=model.unet,
            scheduler=DPMSolverMultistepScheduler.from_config(noise_scheduler.config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(model: LatentDiffusionObjective, step: int, output_dir: Path) -> None:
        generator = torch.Generator().manual_seed(config.seed)
        images = pipeline(model)(list(validation_prompts), num_inference_steps=20, guidance_scale=3.0, generator=generator).images
        save_validation_grid(images, output_dir, step)

    def export(model: LatentDiffusionObjective, folder: Path) -> None:
        with encoder.saved_as_half(folder):  # a frozen pretrained encoder is stored in float16
            pipeline(model).save_pretrained(folder)

    train_data = cached_latent_dataset(latents, captions, seed=config.seed)
    return Trainer(config, objective, train_data, validate_fn=validate, export_fn=export).train()


def check_xformers() -> None:
    """Raise a ConfigError saying why xformers attention cannot be used here, if it cannot."""
    import importlib.util

    if not torch.cuda.is_available():
        raise ConfigError("--xformers needs a CUDA GPU; on this machine attention already uses PyTorch's SDPA kernels")
    if importlib.util.find_spec("xformers") is None:
        raise ConfigError("--xformers needs the optional extra: pip install 'mmgen[xformers]'")
