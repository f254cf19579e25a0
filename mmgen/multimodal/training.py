"""Training recipe for the multimodal VAEs on the shared loop, with the modalities read off
the data: the image, the caption, categorical metadata columns grouped as one
`attributes` modality (Shapes: shape, color, size, position), numeric columns each a
`real` modality."""

from __future__ import annotations

import random
from numbers import Number
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import AutoTokenizer

from mmgen.data import ShapesDataset, open_dataset
from mmgen.data.frozen import dataset_captions
from mmgen.data.seeding import derive_seed
from mmgen.data.shapes import VALIDATION_PROMPTS
from mmgen.data.collate import collate_examples
from mmgen.errors import ConfigError, DataError
from mmgen.multimodal.conditional_vae import ConditionalVAE
from mmgen.multimodal.multimodal_vae import MultimodalVAE
from mmgen.multimodal.objective import ConditionalELBO, MultimodalELBO
from mmgen.text.encoder import minilm_path
from mmgen.text.tokenizer import train_caption_tokenizer
from mmgen.training import Trainer, TrainingConfig, TrainingResult, save_validation_grid

ATTRIBUTES = "attributes"


def metadata_modalities(dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Specs of the modalities in a dataset's metadata columns (read without images):
    columns of strings become attributes of one categorical modality, columns of numbers or
    equal-length lists of numbers each a real modality. None marks a missing value."""
    if not hasattr(dataset, "item_metadata"):
        return {}
    columns: dict[str, list[Any]] = {}
    for index in range(len(dataset)):
        for column, value in dataset.item_metadata(index).items():
            columns.setdefault(column, []).append(value)
    specs: dict[str, dict[str, Any]] = {}
    classes: dict[str, list[str]] = {}
    for column, values in columns.items():
        given = [v for v in values if v is not None]
        if given and all(isinstance(v, str) for v in given):
            classes[column] = sorted(set(given))
        elif given and all(isinstance(v, Number) and not isinstance(v, bool) for v in given):
            specs[column] = {"kind": "real", "dim": 1, "column": column}
        elif given and all(isinstance(v, (list, tuple)) and all(isinstance(x, Number) for x in v) for v in given):
            lengths = {len(v) for v in given}
            if len(lengths) != 1:
                raise DataError(f"metadata column {column!r} holds vectors of different lengths {sorted(lengths)}")
            specs[column] = {"kind": "real", "dim": lengths.pop(), "column": column}
        elif any(isinstance(v, bool) for v in given):
            raise DataError(f"metadata column {column!r} holds true/false values; write them as labels (strings) or 0/1")
        else:
            raise DataError(f"metadata column {column!r} mixes kinds of values; use strings (labels) or numbers")
    if classes:
        if ATTRIBUTES in specs:
            raise DataError(f"a numeric metadata column is called {ATTRIBUTES!r}, the name of the categorical modality")
        specs[ATTRIBUTES] = {"kind": "categorical", "classes": classes}
    return specs


class DropModalities(Dataset):
    """Each item, with probability `fraction` (fixed per item and seed), loses one of its
    modalities, chosen uniformly: the experiment of training with missing data."""

    def __init__(self, dataset: Dataset, model: MultimodalVAE, fraction: float, seed: int = 0):
        self.dataset, self.fraction, self.seed = dataset, fraction, seed
        self.columns = {name: model.columns(name) for name in model.names}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        rng = random.Random(derive_seed(self.seed, 0, index))
        if rng.random() < self.fraction:
            for column in self.columns[rng.choice(sorted(self.columns))]:
                item[column] = None
        return item

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def build_model(
    dataset: Dataset,
    aggregation: str = "mopoe",
    latent_dim: int = 32,
    image_size: int = 64,
    image_channels: tuple[int, ...] = (32, 64, 128, 128),
    image_likelihood: str = "gaussian",
    image_scale: float = 0.1,
    text_max_length: int = 32,
    text_hidden: int = 128,
    text_decoder: str = "autoregressive",
    text_encoder: str = "minilm",
    likelihood_weights: dict[str, float] | None = None,
    private_dims: dict[str, int] | None = None,
    target: str = "image",
    conditions: list[str] | None = None,
    text_embedding: str | None = None,
    attribute_hide_probability: float = 0.25,
) -> MultimodalVAE | ConditionalVAE:
    """A model over the dataset's image, captions and metadata columns: a MultimodalVAE
    (aggregation poe, moe or mopoe) or, for "cvae", a ConditionalVAE of `target` given
    `conditions` (default: every other modality). `text_embedding` (a shared text encoder:
    `minilm` or a pipeline folder) adds the captions as read by it, the modality
    "text_embedding", a condition only. Training hides each given attribute with
    probability `attribute_hide_probability`, so that partial attributes can be given.

    Captions are read by `text_encoder`: "minilm" (frozen pretrained token states, MiniLM's
    WordPiece tokenizer) or "learned" (an encoder trained with the model, over a byte-level
    BPE tokenizer trained on the captions); both spell any word. The caption decoder writes
    the tokens the captions hold."""
    _, distinct = dataset_captions(dataset)
    if text_encoder == "minilm":
        tokenizer = AutoTokenizer.from_pretrained(minilm_path(), model_max_length=text_max_length)
    elif text_encoder == "learned":
        tokenizer = train_caption_tokenizer(distinct, vocab_size=2048, max_length=text_max_length)
    else:
        raise ConfigError(f"text_encoder must be 'minilm' or 'learned', not {text_encoder!r}")
    written = sorted({i for ids in tokenizer(distinct, truncation=True, max_length=text_max_length)["input_ids"] for i in ids})
    modalities = {
        "image": {"kind": "image", "size": image_size, "channels": list(image_channels), "likelihood": image_likelihood,
                  "scale": image_scale},
        "text": {"kind": "text", "vocab_size": len(tokenizer), "max_length": text_max_length, "hidden": text_hidden,
                 "decoder": text_decoder, "encoder": text_encoder, "decoder_vocabulary": written},
        **metadata_modalities(dataset),
    }
    if ATTRIBUTES in modalities and modalities[ATTRIBUTES]["kind"] == "categorical":
        modalities[ATTRIBUTES]["hide_probability"] = attribute_hide_probability
    if text_embedding:
        modalities["text_embedding"] = {"kind": "text_embedding", "encoder": text_embedding, "column": "text"}
    if aggregation == "cvae":
        if private_dims:
            raise ConfigError("--private-dims: a conditional VAE has one latent; private latents are for multimodal VAEs")
        model = ConditionalVAE(modalities, target=target, conditions=conditions, latent_dim=latent_dim)
    else:
        model = MultimodalVAE(
            modalities, latent_dim=latent_dim, aggregation=aggregation, likelihood_weights=likelihood_weights,
            private_dims=private_dims,
        )
    model.set_tokenizer(tokenizer)
    return model


def train_multimodal_vae(
    config: TrainingConfig,
    data: str = "shapes",
    aggregation: str = "mopoe",
    beta: float = 1.0,
    missing_fraction: float = 0.0,
    caption_variants: int = 0,
    validation_prompts: tuple[str, ...] | None = None,
    **model_options,
) -> TrainingResult:
    """Train a multimodal (or, with aggregation "cvae", conditional) VAE; every checkpoint's
    `model/` is the model (EMA weights). Validation draws images: from
    `validation_prompts` (multimodal VAEs; default: Shapes' prompts on Shapes, else the
    data's first 8 captions, whose words the caption tokenizer knows), or from the first 8
    samples' conditions (a conditional VAE of images)."""
    if not 0 <= missing_fraction <= 1:
        raise ConfigError(f"--missing-fraction must lie in [0, 1], not {missing_fraction}")
    torch.manual_seed(config.seed)
    # A sample without its caption or image trains the experts of what it has.
    dataset = open_dataset(
        data, size=model_options.get("image_size", 64), seed=config.seed, allow_missing=True,
        caption_variants=caption_variants,
    )
    model = build_model(dataset, aggregation=aggregation, **model_options)
    if missing_fraction > 0 and isinstance(model, ConditionalVAE):
        raise ConfigError("--missing-fraction: a conditional VAE needs its conditions for every sample")
    train_data = DropModalities(dataset, model, missing_fraction, config.seed) if missing_fraction > 0 else dataset
    if isinstance(model, ConditionalVAE):
        objective = ConditionalELBO(model, beta=beta)
        shown = collate_examples([dataset[i] for i in range(min(8, len(dataset)))])
        given = {name: model.codecs[name].read(shown) for name in model.conditions}
    else:
        objective = MultimodalELBO(model, beta=beta)
        if validation_prompts is None:
            validation_prompts = VALIDATION_PROMPTS if isinstance(dataset, ShapesDataset) else dataset_captions(dataset)[1][:8]
        given = {"text": list(validation_prompts)}

    def validate(objective: MultimodalELBO | ConditionalELBO, step: int, output_dir: Path) -> None:
        if "image" in objective.model.names and getattr(objective.model, "target", "image") == "image":
            generator = torch.Generator().manual_seed(config.seed)
            images = objective.model.impute(given, targets=["image"], generator=generator)
            save_validation_grid(images["image"], output_dir, step)

    def export(objective: MultimodalELBO | ConditionalELBO, folder: Path) -> None:
        objective.model.save_pretrained(folder)

    return Trainer(config, objective, train_data, validate_fn=validate, export_fn=export).train()
