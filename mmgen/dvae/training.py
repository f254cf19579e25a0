"""Training recipes for the discrete-VAE baseline, on the shared loop."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import PartialState

from mmgen.checkpoints import load_pretrained, require_checkpoint_class
from mmgen.data import open_dataset
from mmgen.data.frozen import CachedViewsDataset, dataset_captions
from mmgen.data.shapes import VALIDATION_PROMPTS
from mmgen.data.transforms import tensor_to_pil
from mmgen.dvae.discrete_vae import DiscreteVAE
from mmgen.dvae.objective import DiscreteVAEObjective, DiscreteVAEPriorObjective
from mmgen.dvae.pipeline import DiscreteVAEPipeline
from mmgen.dvae.prior import DiscreteVAEPrior
from mmgen.dvae.tokens import tokenize_dataset
from mmgen.errors import CheckpointError, ConfigError
from mmgen.text import load_text_encoder, training_conditioning
from mmgen.training import Trainer, TrainingConfig, TrainingResult, save_validation_grid


def train_dvae(
    config: TrainingConfig,
    data: str = "shapes",
    image_size: int = 64,
    num_tokens: int = 512,
    codebook_dim: int = 256,
    hidden_channels: int = 64,
    num_layers: int = 3,
    num_resnet_blocks: int = 1,
    temperature_start: float = 1.0,
    temperature_end: float = 1.0 / 16,
    temperature_steps: int = 4000,
    kl_weight: float = 1.0,
    kl_ramp_steps: int = 0,
    kl_weight_end: float | None = None,
    kl_decay_steps: int = 2000,
    straight_through: bool = False,
    random_flip: bool = False,
) -> TrainingResult:
    """Stage one of the baseline. Every checkpoint holds the discrete VAE (EMA weights) in
    `model/`; validation writes originals above their token reconstructions to `samples/`."""
    torch.manual_seed(config.seed)
    vae = DiscreteVAE(
        image_size=image_size, num_tokens=num_tokens, codebook_dim=codebook_dim, hidden_channels=hidden_channels,
        num_layers=num_layers, num_resnet_blocks=num_resnet_blocks,
    )
    dataset = open_dataset(data, size=image_size, seed=config.seed, random_flip=random_flip)
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
    dvae: str | Path,
    data: str = "shapes",
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
    validation_prompts: tuple[str, ...] = VALIDATION_PROMPTS,
) -> TrainingResult:
    """Stage two: the transformer prior over the frozen discrete VAE's cached image tokens,
    conditioned on a text encoder given like latent diffusion's (`minilm`, `clip`, or a
    folder such as a latent-diffusion pipeline, to share its encoder). Every checkpoint's
    `model/` is a `DiscreteVAEPipeline`. `caption_variants` as for `train_ldm`."""
    if not (Path(dvae) / "config.json").is_file():
        raise CheckpointError(f"{dvae}: no discrete VAE there (train one with `mmgen train dvae`)")
    require_checkpoint_class(dvae, "DiscreteVAE", "mmgen train dvae")
    torch.manual_seed(config.seed)
    state = PartialState()
    vae = load_pretrained(DiscreteVAE, dvae).to(state.device).eval().requires_grad_(False)
    if image_size not in (None, vae.config.image_size):
        raise ConfigError(f"--image-size {image_size}: the prior's token grid is the discrete VAE's, of {vae.config.image_size} px images")
    dataset = open_dataset(data, size=vae.config.image_size, seed=config.seed, caption_variants=caption_variants)
    captions, distinct = dataset_captions(dataset)
    encoder = load_text_encoder(text_encoder, distinct, max_length, text_hidden_size, text_layers)

    # Frozen parts are computed once, by the main process first so the others read its files.
    with state.main_process_first():
        tokens = tokenize_dataset(vae, dataset, Path(config.output_dir) / "cache", flips=random_flip)
        conditioning = training_conditioning(encoder, distinct, state.device)

    prior = DiscreteVAEPrior(
        num_image_tokens=vae.config.num_tokens, image_seq_len=vae.token_grid**2, text_hidden_size=encoder.hidden_size,
        text_seq_len=encoder.max_length, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
        dropout=dropout,
    )
    objective = DiscreteVAEPriorObjective(prior, conditioning, caption_dropout)

    def pipeline(model: DiscreteVAEPriorObjective) -> DiscreteVAEPipeline:
        pipe = DiscreteVAEPipeline(vae=vae, prior=model.prior, text_encoder=encoder.model, tokenizer=encoder.tokenizer)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(model: DiscreteVAEPriorObjective, step: int, output_dir: Path) -> None:
        generator = torch.Generator().manual_seed(config.seed)
        images = pipeline(model)(list(validation_prompts), generator=generator).images
        save_validation_grid(images, output_dir, step)

    def export(model: DiscreteVAEPriorObjective, folder: Path) -> None:
        with encoder.saved_as_half(folder):  # a frozen pretrained encoder is stored in float16
            pipeline(model).save_pretrained(folder)

    train_data = CachedViewsDataset(tokens, captions, seed=config.seed)
    return Trainer(config, objective, train_data, validate_fn=validate, export_fn=export).train()
