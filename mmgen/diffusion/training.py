"""Training recipes for latent diffusion, on the shared loop: `train_autoencoder`, then
`train_ldm`. Every checkpoint of `train_ldm` holds a complete, loadable pipeline."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel

from mmgen.checkpoints import load_trained
from mmgen.data import open_dataset, open_images
from mmgen.data.frozen import dataset_captions, validation_prompts
from mmgen.data.transforms import tensor_to_pil
from mmgen.data.sources import DataLike
from mmgen.diffusion.autoencoder import AutoencoderObjective, build_autoencoder, reconstruct
from mmgen.diffusion.latents import cached_latent_dataset, encode_dataset, latent_scaling_factor
from mmgen.diffusion.objective import LatentDiffusionObjective, build_unet
from mmgen.diffusion.pipeline import TextToImagePipeline
from mmgen.errors import ConfigError
from mmgen.text import TextEncoder, load_text_encoder, training_conditioning
from mmgen.training import Trainer, TrainingConfig, TrainingResult, process_state, save_validation_grid


def train_autoencoder(
    config: TrainingConfig,
    data: DataLike = "shapes",
    image_size: int | None = None,
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128),
    latent_channels: int = 4,
    kl_weight: float = 1e-6,
    reconstruction_loss: str = "mse",
    random_flip: bool = False,
    pretrained: str | Path | None = None,
) -> TrainingResult:
    """Stage one. Every checkpoint holds the autoencoder (EMA weights) in `model/`, and
    validation writes originals above reconstructions to `samples/`. `pretrained` (an
    AutoencoderKL folder, or a pipeline whose vae/ to take) fine-tunes that autoencoder
    instead of a new one (the architecture options then do not apply). Images are
    `image_size` px (default: 64, or the pretrained autoencoder's size)."""
    torch.manual_seed(config.seed)
    if pretrained is not None:
        vae = _autoencoder(pretrained)
        vae.train().requires_grad_(True)
        image_size = _image_size(image_size, vae)
    else:
        vae = build_autoencoder(block_out_channels, latent_channels, image_size=64 if image_size is None else image_size)
        image_size = _image_size(image_size, vae)
    dataset = open_images(data, size=image_size, seed=config.seed, random_flip=random_flip)
    originals = torch.stack([dataset[i]["pixel_values"] for i in range(min(8, len(dataset)))])

    def validate(model: AutoencoderObjective, step: int, output_dir: Path) -> None:
        device = next(model.parameters()).device
        reconstructions = reconstruct(model.vae, originals.to(device)).cpu()
        save_validation_grid(tensor_to_pil(torch.cat([originals, reconstructions])), output_dir, step)

    def export(model: AutoencoderObjective, folder: Path) -> None:
        model.vae.save_pretrained(folder)

    objective = AutoencoderObjective(vae, kl_weight=kl_weight, reconstruction_loss=reconstruction_loss)
    return Trainer(config, objective, dataset, validate_fn=validate, export_fn=export).train()


def _image_size(image_size: int | None, vae: AutoencoderKL) -> int:
    """The image side to train `vae` on (default: its own), checked: the encoder halves
    the image once per block after the first, and a size it cannot halve that often
    would fail mid-step on mismatched shapes."""
    size = vae.config.sample_size if image_size is None else image_size
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if size <= 0 or size % factor:
        given = f"--image-size {size}" if image_size is not None else f"the autoencoder's image size {size} (sample_size)"
        raise ConfigError(f"{given} must be a positive multiple of {factor}: the autoencoder halves the image "
                          f"{factor.bit_length() - 1} times (once per --block-out-channels width after the first)")
    return size


def train_ldm(
    config: TrainingConfig,
    autoencoder: str | Path | None = None,
    data: DataLike = "shapes",
    image_size: int | None = None,
    text_encoder: str = "minilm",
    max_length: int = 77,
    text_hidden_size: int = 256,
    text_layers: int = 4,
    block_out_channels: tuple[int, ...] = (64, 128),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    prediction_type: str | None = None,
    snr_gamma: float | None = None,
    caption_dropout: float = 0.1,
    random_flip: bool = False,
    caption_variants: int = 0,
    gradient_checkpointing: bool = False,
    xformers: bool = False,
    prompts: list[str] | None = None,
    pretrained: str | Path | None = None,
    lora_rank: int | None = None,
    train_text_encoder: bool = False,
    preservation_data: DataLike | None = None,
) -> TrainingResult:
    """Stage two: a text-conditioned UNet on the frozen autoencoder's cached latents, of
    images at the autoencoder's size unless `image_size` says otherwise (it is convolutional).

    `pretrained` (a pipeline folder in the Stable Diffusion layout) fine-tunes that
    pipeline's UNet with its own autoencoder, text encoder and noise schedule, in
    place of a new UNet over `autoencoder` (its architecture and text encoder options then
    do not apply). `lora_rank` R trains only rank-R adapters on the UNet's attention
    projections (peft, as diffusers' LoRA script does); every checkpoint's `model/` then
    holds `pytorch_lora_weights.safetensors`, which `load_lora_weights` of the pipeline
    (mmgen's or diffusers') applies. `preservation_data` (with `lora_rank`) is trained
    beside `data` so that the adapters leave what the pipeline already draws alone: on its
    rows the target is the base UNet's own prediction (adapters switched off) for the same
    noisy latent and caption, not the noise, so the adapters learn to change nothing
    there (output preservation: a distillation form of DreamBooth's prior preservation,
    which trains on the class images' noise and so also moves the base towards those
    images). Rows of both are shuffled together: their numbers set the mix.
    `train_text_encoder` trains the text encoder with the UNet (a pretrained one is
    otherwise frozen, its states cached; LoRA on it is not offered: transformers' adapter
    loading, which diffusers' `load_lora_weights` uses for text encoders, wants a peft
    release newer than PyPI has). Each validation draws `prompts` (default: a few of the
    data's captions; Shapes' fixed prompts on Shapes) into a grid, each prompt written
    under its image.

    Attention runs on PyTorch's scaled-dot-product kernels; `xformers` switches the UNet to
    xformers' memory-efficient attention (CUDA only), `gradient_checkpointing` trades
    compute for memory at large resolutions. `caption_variants` K > 0 trains on K augmented
    captions per image (see `open_dataset`); a frozen encoder encodes each once."""
    if xformers:
        check_xformers()
    if lora_rank is not None and pretrained is None:
        raise ConfigError("--lora-rank adapts a trained pipeline: give it with --pretrained PIPELINE")
    if lora_rank is not None and lora_rank < 1:
        raise ConfigError(f"--lora-rank must be at least 1, got {lora_rank}")
    if lora_rank is not None and train_text_encoder:
        raise ConfigError("--train-text-encoder trains the whole text encoder; with --lora-rank only the UNet's adapters train")
    if preservation_data is not None and lora_rank is None:
        raise ConfigError(
            "--preservation-data trains towards the base pipeline's predictions (its adapters switched off): "
            "add --lora-rank"
        )
    torch.manual_seed(config.seed)
    state = process_state()
    if pretrained is not None:
        if autoencoder is not None:
            raise ConfigError("give --pretrained PIPELINE or --autoencoder, not both (a pipeline has its own autoencoder)")
        vae, encoder, unet, noise_scheduler = pretrained_ldm_parts(pretrained)
        trained_for = noise_scheduler.config.prediction_type
        if prediction_type not in (None, trained_for):
            raise ConfigError(f"--prediction-type {prediction_type}: {pretrained} was trained to predict {trained_for}")
    else:
        vae, encoder = _autoencoder(autoencoder), None
    vae = vae.to(state.device).eval().requires_grad_(False)
    size = _image_size(image_size, vae)
    datasets = [
        open_dataset(source, size=size, seed=config.seed, caption_variants=caption_variants)
        for source in ([data] if preservation_data is None else [data, preservation_data])
    ]
    captions = [caption for part in datasets for caption in dataset_captions(part)[0]]
    distinct = list(dict.fromkeys(c for item in captions for c in item))
    prompts = validation_prompts(datasets[0], prompts)
    if encoder is None:
        encoder = load_text_encoder(text_encoder, distinct, max_length, text_hidden_size, text_layers)
    if train_text_encoder:
        encoder.set_trainable(True)

    # Frozen parts are computed once, by the main process first so the others read its files.
    with state.main_process_first():
        parts = [encode_dataset(vae, part, Path(config.output_dir) / "cache", flips=random_flip) for part in datasets]
        latents = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        conditioning = training_conditioning(encoder, distinct, state.device)
    if pretrained is None:
        vae.register_to_config(scaling_factor=latent_scaling_factor(latents, seed=config.seed))
        noise_scheduler = DDPMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1,
            prediction_type=prediction_type or "epsilon",
        )
        unet = build_unet(
            cross_attention_dim=encoder.hidden_size, sample_size=latents["mean"].shape[-1],
            latent_channels=latents["mean"].shape[2], block_out_channels=block_out_channels,
            layers_per_block=layers_per_block, attention_head_dim=attention_head_dim,
        )
    if lora_rank is not None:
        add_lora_adapters(unet, lora_rank)
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
        images = pipeline(model)(prompts, num_inference_steps=20, guidance_scale=3.0, generator=generator).images
        save_validation_grid(images, output_dir, step, captions=prompts)

    def export(model: LatentDiffusionObjective, folder: Path) -> None:
        if lora_rank is not None:
            save_lora_weights(model.unet, folder)
            return
        with encoder.saved_as_half(folder):  # a frozen pretrained encoder is stored in float16
            pipeline(model).save_pretrained(folder)

    preserved = None
    if preservation_data is not None:  # the rows after `data`'s own
        preserved = torch.arange(len(latents["mean"])) >= len(parts[0]["mean"])
    train_data = cached_latent_dataset(latents, captions, seed=config.seed, preserved=preserved)
    return Trainer(config, objective, train_data, validate_fn=validate, export_fn=export).train()


def _autoencoder(path: str | Path | None) -> AutoencoderKL:
    if path is None:
        raise ConfigError("give --autoencoder (a trained AutoencoderKL) or --pretrained (a pipeline to fine-tune)")
    return load_trained(AutoencoderKL, path, "autoencoder", "mmgen train autoencoder", pipeline_part="vae")


def pretrained_ldm_parts(path: str | Path) -> tuple[AutoencoderKL, TextEncoder, UNet2DConditionModel, DDPMScheduler]:
    """A Stable-Diffusion-layout pipeline's autoencoder, text encoder (frozen), UNet (to
    train) and its noise schedule as a DDPM training scheduler, as diffusers' fine-tuning
    scripts take them."""
    pipe = TextToImagePipeline.from_pretrained(path)
    encoder = TextEncoder(pipe.tokenizer, pipe.text_encoder, trainable=False)
    unet = pipe.unet.train().requires_grad_(True)
    return pipe.vae, encoder, unet, DDPMScheduler.from_config(pipe.scheduler.config)


# The UNet's attention projections, the layers diffusers' LoRA training script adapts.
LORA_TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")


def add_lora_adapters(unet: UNet2DConditionModel, rank: int) -> None:
    """Freeze the UNet and give its attention projections rank-`rank` LoRA adapters (peft,
    Gaussian A and zero B, so the adapted UNet starts out equal to the base)."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGET_MODULES)))


def save_lora_weights(unet: UNet2DConditionModel, folder: Path) -> None:
    """The UNet's adapters as `pytorch_lora_weights.safetensors` in diffusers' format."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    TextToImagePipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)


def check_xformers() -> None:
    """Raise a ConfigError saying why xformers attention cannot be used here, if it cannot."""
    import importlib.util

    if not torch.cuda.is_available():
        raise ConfigError("--xformers needs a CUDA GPU; on this machine attention already uses PyTorch's SDPA kernels")
    if importlib.util.find_spec("xformers") is None:
        raise ConfigError("--xformers needs the optional extra: pip install 'mmgen[xformers]'")
