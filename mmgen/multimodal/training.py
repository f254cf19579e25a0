"""Training recipe for the multimodal VAEs on the shared loop, over the modalities a spec
declares (see mmgen.multimodal.spec) or, by default, those the data suggests: the image,
further image columns, the caption, categorical metadata columns grouped as one
`attributes` modality (Shapes: shape, color, size, position), numeric columns each a
`real` modality."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mmgen.data import open_dataset
from mmgen.data.frozen import validation_prompts
from mmgen.data.imagetext import ImageTextDataset, item_key
from mmgen.data.seeding import derive_seed
from mmgen.data.collate import as_label, collate_examples
from mmgen.data.sources import DataLike, described_source
from mmgen.errors import ConfigError, DataError
from mmgen.multimodal.conditional_vae import ConditionalVAE
from mmgen.multimodal.modalities import shown_labels
from mmgen.multimodal.multimodal_vae import MultimodalVAE
from mmgen.multimodal.objective import ConditionalELBO, MultimodalELBO
from mmgen.multimodal.spec import ModalityDefaults, complete_spec, infer_spec, modality_captions, read_spec
from mmgen.training import Trainer, TrainingConfig, TrainingResult, save_validation_grid

logger = logging.getLogger(__name__)
SPEC_FILE = "modalities.json"  # the run's completed spec, written beside its checkpoints


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
    modalities: str | Path | dict[str, dict[str, Any]] | None = None,
    aggregation: str = "mopoe",
    latent_dim: int = 32,
    likelihood_weights: dict[str, float] | None = None,
    private_dims: dict[str, int] | None = None,
    target: str = "image",
    conditions: list[str] | None = None,
    text_embedding: str | None = None,
    **defaults,
) -> MultimodalVAE | ConditionalVAE:
    """A model over the `modalities` a spec declares (a file, a dict; None: `infer_spec`'s
    from the data), completed from the data and `defaults` (ModalityDefaults' fields:
    image_size, image_widths, image_likelihood, image_scale, text_max_length, text_hidden,
    text_decoder, text_encoder, attribute_hide_probability): a MultimodalVAE (aggregation
    poe, moe or mopoe) or, for "cvae", a ConditionalVAE of `target` given `conditions`
    (default: every other modality). `text_embedding` (a shared text encoder: `minilm` or a
    pipeline folder) adds the captions as read by it, the modality "text_embedding", a
    condition only. `likelihood_weights` add to (and override) the spec's weights.

    Captions are read by `text_encoder`: "minilm" (frozen pretrained token states, MiniLM's
    WordPiece tokenizer) or "learned" (an encoder trained with the model, over a byte-level
    BPE tokenizer trained on the captions); both spell any word. The caption decoder writes
    the tokens the captions hold."""
    unknown = set(defaults) - {f.name for f in dataclasses.fields(ModalityDefaults)}
    if unknown:
        raise TypeError(f"build_model() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    declared = read_spec(modalities) if modalities is not None else infer_spec(dataset)
    if text_embedding:
        declared["text_embedding"] = {"kind": "text_embedding", "encoder": text_embedding, "column": "text"}
    specs, weights, tokenizer = complete_spec(declared, dataset, ModalityDefaults(**defaults))
    weights.update(likelihood_weights or {})
    if aggregation == "cvae":
        if private_dims:
            raise ConfigError("--private-dims: a conditional VAE has one latent; private latents are for multimodal VAEs")
        model = ConditionalVAE(specs, target=target, conditions=conditions, latent_dim=latent_dim)
    else:
        model = MultimodalVAE(
            specs, latent_dim=latent_dim, aggregation=aggregation, likelihood_weights=weights or None,
            private_dims=private_dims,
        )
    if tokenizer is not None:
        model.set_tokenizer(tokenizer)
    return model


# How far a fine-tune's real values may lie from the pretrained model's, in the model's
# standard deviations, before they look like another unit or another quantity.
_UNFAMILIAR_SHIFT, _UNFAMILIAR_SPREAD = 4.0, 10.0


def _warn_of_unfamiliar_data(
    model: MultimodalVAE | ConditionalVAE, dataset: Dataset, source: str, sample: int = 64
) -> None:
    """Warn when `sample` items spread over the data hold no value of one of a pretrained
    model's modalities (data for another model, or columns named otherwise, would teach it
    that the modality is always missing), or real values on another scale than the model's
    (a price in thousands where it learned units: the model keeps its own statistics).
    Warnings: data without a modality is also a way to train, and new data may well differ."""
    indices = range(0, len(dataset), max(1, len(dataset) // sample))[:sample]  # not the first: data may be sorted
    observed = model.observe(collate_examples([dataset[i] for i in indices]))
    for name, present in zip(model.names, observed.present):
        if not present.any():
            warnings.warn(
                f"{source}: no value of the model's modality {name!r} (columns: {', '.join(model.columns(name))}) in "
                f"{observed.size} items spread over it; fine-tuning teaches the model it is missing", stacklevel=3,
            )
        elif model.codecs[name].kind == "real" and model.codecs[name].mean is not None and present.sum() > 1:
            standardised = observed.values[name][present].double()  # in the model's standard deviations
            shift, spreads = standardised.mean(0).abs().max().item(), standardised.std(0)
            # Per dimension; a spread of 0, one value throughout, is a narrow subset, not a unit.
            off_scale = (spreads > _UNFAMILIAR_SPREAD) | ((spreads > 0) & (spreads < 1 / _UNFAMILIAR_SPREAD))
            if shift > _UNFAMILIAR_SHIFT or off_scale.any():
                spread = (spreads[off_scale] if off_scale.any() else spreads).max().item()
                warnings.warn(
                    f"{source}: the values of the model's modality {name!r} in {observed.size} items spread over it "
                    f"lie {shift:.3g} of the model's standard deviations from its mean and spread {spread:.3g} times "
                    "as wide: another unit or quantity? Fine-tuning reads them on the model's scale", stacklevel=3,
                )


def _check_labels_are_known(model: MultimodalVAE | ConditionalVAE, dataset: Dataset) -> None:
    """A DataError before fine-tuning, naming the first item whose label a pretrained
    categorical modality does not know (training would stop at its batch): its labels
    were fixed when it was built. Labels are read from the metadata, without images."""
    categorical = [codec for codec in model.codecs.values() if codec.kind == "categorical"]
    if not (categorical and isinstance(dataset, ImageTextDataset)):
        return
    for index in range(len(dataset)):
        metadata = dataset.item_metadata(index)
        for codec in categorical:
            for attribute, labels in codec.classes.items():
                label = as_label(metadata.get(attribute))
                if label is not None and label not in labels:
                    raise DataError(
                        f"{dataset.item_source(index)}: {attribute} {label!r} is a label the model does not know (it "
                        f"knows {shown_labels(labels)}); fine-tuning keeps a model's labels: leave such items out, or "
                        "train a new model on every label"
                    )


def _check_every_item_has_its_conditions(model: ConditionalVAE, dataset: Dataset, source: str) -> None:
    """A DataError before training, naming the first item without one of a conditional
    VAE's conditions (training would stop at its batch). Conditions read from metadata and
    captions are checked without loading images; Shapes has every one. (Only presence: an
    empty caption still stops training, with its own error.)"""
    if not isinstance(dataset, ImageTextDataset):
        return
    metadata = None  # every item's metadata and first caption, as one batch, read once if needed
    for name in model.conditions:
        codec = model.codecs[name]
        if codec.kind == "image":
            missing = [i for i in range(len(dataset)) if not dataset.item_has_image(i, item_key(codec.column))]
        else:
            if metadata is None:
                metadata = collate_examples([
                    {**dataset.item_metadata(i), "text": next(iter(dataset.item_captions(i)), None)}
                    for i in range(len(dataset))
                ])
            values = codec.read(metadata)
            # A column of numbers for every item is collated into one tensor: none missing.
            missing = ([] if isinstance(values, torch.Tensor) else
                       list(range(len(dataset))) if values is None else [i for i, value in enumerate(values) if value is None])
        if missing:
            raise DataError(
                f"{source}: {len(missing)} of {len(dataset)} items lack {name!r}, a condition of the conditional VAE "
                f"(the first: {dataset.item_source(missing[0])}); give every item its conditions, or leave those out"
            )


def train_multimodal_vae(
    config: TrainingConfig,
    data: DataLike = "shapes",
    aggregation: str = "mopoe",
    beta: float = 1.0,
    missing_fraction: float = 0.0,
    caption_variants: int = 0,
    prompts: list[str] | None = None,
    model: MultimodalVAE | ConditionalVAE | None = None,
    **model_options,
) -> TrainingResult:
    """Train a multimodal (or, with aggregation "cvae", conditional) VAE on `data` over the
    modalities `model_options["modalities"]` declares (default: those the data suggests;
    see `build_model` for the options), or train `model`, one built or loaded by you (its
    modalities' columns name the data's; with a text modality, its tokenizer set; its
    caption decoders learn, in place, to write the tokens of the data's captions). The
    completed spec is written to the run folder as modalities.json; every checkpoint's
    `model/` is the model (EMA weights).

    Validation (a grid in samples/) draws every image modality, the first 8 samples' given
    one: a multimodal VAE with captions from `prompts` (default: Shapes' prompts on Shapes,
    else 8 of the data's captions; written under the images), one without from the first 8 samples' first
    modality (shown in the first row); a conditional VAE of images from the first 8
    samples' conditions."""
    if not 0 <= missing_fraction <= 1:
        raise ConfigError(f"--missing-fraction must lie in [0, 1], not {missing_fraction}")
    torch.manual_seed(config.seed)
    # A sample without its caption or image trains the experts of what it has.
    dataset = open_dataset(
        data, size=model_options.get("image_size") or 64, seed=config.seed, allow_missing=True,
        caption_variants=caption_variants,
    )
    fine_tuning = model is not None
    if model is None:
        model = build_model(dataset, aggregation=aggregation, **model_options)
    elif model_options:
        raise ConfigError(f"train_multimodal_vae: {', '.join(model_options)} build a model; you gave one")
    dataset.set_image_sizes(model.image_sizes())
    if fine_tuning:
        _check_labels_are_known(model, dataset)
        _warn_of_unfamiliar_data(model, dataset, described_source(data))
        for name, codec in model.codecs.items():
            if codec.kind == "text":
                added = model.learn_to_write(name, modality_captions(name, codec.column, dataset))
                if added:
                    logger.info("modality %s: its caption decoder learns to write %d new tokens", name, added)
    if isinstance(model, ConditionalVAE):
        if missing_fraction > 0:
            raise ConfigError("--missing-fraction: a conditional VAE needs its conditions for every sample")
        _check_every_item_has_its_conditions(model, dataset, described_source(data))
    train_data = DropModalities(dataset, model, missing_fraction, config.seed) if missing_fraction > 0 else dataset
    shown = collate_examples([dataset[i] for i in range(min(8, len(dataset)))])
    drawn = [name for name, codec in model.codecs.items() if codec.kind == "image"]
    text = None  # the caption modality the validation prompts are given as
    if isinstance(model, ConditionalVAE):
        objective = ConditionalELBO(model, beta=beta)
        given = {name: model.codecs[name].read(shown) for name in model.conditions}
        drawn = [model.target] if model.target in drawn else []
    else:
        objective = MultimodalELBO(model, beta=beta)
        text = next((name for name, codec in model.codecs.items() if codec.kind == "text"), None)
        if text is not None:
            given = {text: validation_prompts(dataset, prompts)}
        else:
            given = {model.names[0]: model.codecs[model.names[0]].read(shown)}
        drawn = [name for name in drawn if name not in given]

    def validate(objective: MultimodalELBO | ConditionalELBO, step: int, output_dir: Path) -> None:
        if not drawn:
            return
        generator = torch.Generator().manual_seed(config.seed)
        imputed = objective.model.impute(given, targets=drawn, generator=generator)
        rows = []
        for name, values in given.items():  # the given images first
            codec = objective.model.codecs[name]
            if codec.kind == "image":
                rows.append(codec.from_decoded(codec.batch_tensors({name: values}, len(values))[0]))
        rows += [imputed[name] for name in drawn]
        captions = [prompt for _ in rows for prompt in given[text]] if text in given else None
        save_validation_grid([image for row in rows for image in row], output_dir, step, columns=len(rows[0]), captions=captions)

    def export(objective: MultimodalELBO | ConditionalELBO, folder: Path) -> None:
        objective.model.save_pretrained(folder)

    trainer = Trainer(config, objective, train_data, validate_fn=validate, export_fn=export)
    if trainer.accelerator.is_main_process:
        spec = {name: codec.spec() for name, codec in model.codecs.items()}
        (Path(config.output_dir) / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    logger.info("modalities: %s", ", ".join(f"{name} ({codec.kind})" for name, codec in model.codecs.items()))
    return trainer.train()
