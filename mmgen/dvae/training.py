"""Training recipes for the discrete-VAE baseline, on the shared loop."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from mmgen.checkpoints import load_trained
from mmgen.data import open_dataset, open_images
from mmgen.data.frozen import CachedViewsDataset, dataset_captions, validation_prompts
from mmgen.data.transforms import tensor_to_pil
from mmgen.data.sources import DataLike
from mmgen.dvae.discrete_vae import DiscreteVAE
from mmgen.dvae.objective import DiscreteVAEObjective, DiscreteVAEPriorObjective
from mmgen.dvae.pipeline import DiscreteVAEPipeline
from mmgen.dvae.prior import DiscreteVAEPrior
from mmgen.dvae.tokens import tokenize_dataset
from mmgen.errors import ConfigError
from mmgen.text import TextEncoder, load_text_encoder, training_conditioning
from mmgen.training import Trainer, TrainingConfig, TrainingResult, process_state, save_validation_grid


def train_dvae(
    config: TrainingConfig,
    data: DataLike = "shapes",
    image_size: int = 64,
    num_tokens: int = 512,
    codebook_dim: int = 256,
    hidden_channels: int = 64,
    num_layers: int = 3,
    num_resnet_blocks: int = 1,
    temperature_start: float | None = None,
    temperature_end: float = 1.0 / 16,
    temperature_steps: int = 4000,
    kl_weight: float = 1.0,
    kl_ramp_steps: int = 0,
    kl_weight_end: float | None = None,
    kl_decay_steps: int = 2000,
    straight_through: bool = False,
    random_flip: bool = False,
    pretrained: str | Path | None = None,
) -> TrainingResult:
    """Stage one of the baseline. Every checkpoint holds the discrete VAE (EMA weights) in
    `model/`; validation writes originals above their token reconstructions to `samples/`.
    `pretrained` (a DiscreteVAE folder, or a discrete-VAE pipeline whose vae/ to take)
    fine-tunes that model (its architecture options then do not apply). The Gumbel
    temperature anneals from `temperature_start` (default: 1 for a new model; for a
    pretrained one, already annealed, `temperature_end`, so that it is not heated again) to
    `temperature_end`; the KL schedule starts again from step 0."""
    torch.manual_seed(config.seed)
    if temperature_start is None:
        temperature_start = 1.0 if pretrained is None else temperature_end
    if pretrained is not None:
        vae = _discrete_vae(pretrained)
        vae.train().requires_grad_(True)
        image_size = vae.config.image_size
    else:
        vae = DiscreteVAE(
            image_size=image_size, num_tokens=num_tokens, codebook_dim=codebook_dim, hidden_channels=hidden_channels,
            num_layers=num_layers, num_resnet_blocks=num_resnet_blocks,
        )
    dataset = open_images(data, size=image_size, seed=config.seed, random_flip=random_flip)
    steps = config.steps_for_epochs(len(dataset), process_state().num_processes)
    if steps < temperature_steps and temperature_start != temperature_end:
        warnings.warn(
            f"the run has {steps} steps, fewer than the {temperature_steps}-step temperature anneal: it ends at temperature "
            f"above {temperature_end:g} (lower --temperature-steps to finish the anneal)", stacklevel=2,
        )
    originals = torch.stack([dataset[i]["pixel_values"] for i in range(min(8, len(dataset)))])

    def validate(model: DiscreteVAEObjective, step: int, output_dir: Path) -> None:
        device = next(model.parameters()).device
        with torch.no_grad():
            reconstructions = model.vae.decode_tokens(model.vae.tokenize(originals.to(device))).cpu()
        save_validation_grid(tensor_to_pil(torch.cat([originals, reconstructions])), output_dir, step)

    def export(model: DiscreteVAEObjective, folder: Path) -> None:
        model.vae.save_pretrained(folder)

    objective = DiscreteVAEObjective(
        vae, temperature_start=temperature_start, temperature_end=temperature_end,
        temperature_steps=temperature_steps, kl_weight=kl_weight, kl_ramp_steps=kl_ramp_steps,
        kl_weight_end=kl_weight_end, kl_decay_steps=kl_decay_steps, straight_through=straight_through,
    )
    return Trainer(config, objective, dataset, validate_fn=validate, export_fn=export).train()


def train_dvae_prior(
    config: TrainingConfig,
    dvae: str | Path | None = None,
    data: DataLike = "shapes",
    image_size: int | None = None,
    text_encoder: str = "minilm",
    max_length: int = 77,
    text_hidden_size: int = 256,
    text_layers: int = 4,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    dropout: float = 0.0,
    caption_dropout: float = 0.1,
    random_flip: bool = False,
    caption_variants: int = 0,
    prompts: list[str] | None = None,
    pretrained: str | Path | None = None,
) -> TrainingResult:
    """Stage two: the transformer prior over the frozen discrete VAE's cached image tokens,
    conditioned on a text encoder given like latent diffusion's (`minilm`, `clip`, or a
    folder such as a latent-diffusion pipeline, to share its encoder). Every checkpoint's
    `model/` is a `DiscreteVAEPipeline`. `caption_variants` and the validation `prompts` as
    for `train_ldm`. `pretrained` (a DiscreteVAEPipeline folder) fine-tunes that pipeline's
    prior with its own discrete VAE and frozen text encoder, instead of a new prior over
    `dvae` (the prior and text encoder options then do not apply)."""
    torch.manual_seed(config.seed)
    state = process_state()
    if pretrained is not None:
        if dvae is not None:
            raise ConfigError("give --pretrained PIPELINE or --dvae, not both (a pipeline has its own discrete VAE)")
        pipe = DiscreteVAEPipeline.from_pretrained(pretrained)
        vae, prior, guidance_scale = pipe.vae, pipe.prior.train().requires_grad_(True), pipe.config.guidance_scale
        encoder = TextEncoder(pipe.tokenizer, pipe.text_encoder, trainable=False)
    else:
        vae, prior, encoder, guidance_scale = _discrete_vae(dvae), None, None, None
    vae = vae.to(state.device).eval().requires_grad_(False)
    if image_size not in (None, vae.config.image_size):
        raise ConfigError(f"--image-size {image_size}: the prior's token grid is the discrete VAE's, of {vae.config.image_size} px images")
    dataset = open_dataset(data, size=vae.config.image_size, seed=config.seed, caption_variants=caption_variants)
    captions, distinct = dataset_captions(dataset)
    prompts = validation_prompts(dataset, prompts)
    if encoder is None:
        encoder = load_text_encoder(text_encoder, distinct, max_length, text_hidden_size, text_layers)

    # Frozen parts are computed once, by the main process first so the others read its files.
    with state.main_process_first():
        tokens = tokenize_dataset(vae, dataset, Path(config.output_dir) / "cache", flips=random_flip)
        conditioning = training_conditioning(encoder, distinct, state.device)

    if prior is None:
        prior = DiscreteVAEPrior(
            num_image_tokens=vae.config.num_tokens, image_seq_len=vae.token_grid**2, text_hidden_size=encoder.hidden_size,
            text_seq_len=encoder.max_length, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
            dropout=dropout,
        )
    objective = DiscreteVAEPriorObjective(prior, conditioning, caption_dropout)

    def pipeline(model: DiscreteVAEPriorObjective) -> DiscreteVAEPipeline:
        pipe = DiscreteVAEPipeline(
            vae=vae, prior=model.prior, text_encoder=encoder.model, tokenizer=encoder.tokenizer,
            **({"guidance_scale": guidance_scale} if guidance_scale is not None else {}),  # the fine-tuned one's
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(model: DiscreteVAEPriorObjective, step: int, output_dir: Path) -> None:
        generator = torch.Generator().manual_seed(config.seed)
        images = pipeline(model)(prompts, generator=generator).images
        save_validation_grid(images, output_dir, step, captions=prompts)

    def export(model: DiscreteVAEPriorObjective, folder: Path) -> None:
        with encoder.saved_as_half(folder):  # a frozen pretrained encoder is stored in float16
            pipeline(model).save_pretrained(folder)

    train_data = CachedViewsDataset(tokens, captions, seed=config.seed)
    return Trainer(config, objective, train_data, validate_fn=validate, export_fn=export).train()


def _discrete_vae(path: str | Path | None) -> DiscreteVAE:
    if path is None:
        raise ConfigError("give --dvae (a trained discrete VAE) or --pretrained (a discrete-VAE pipeline to fine-tune)")
    return load_trained(DiscreteVAE, path, "discrete VAE", "mmgen train dvae", pipeline_part="vae")
