"""Training a contrastive image-text model on the shared loop: `train_contrastive`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from mmgen.contrastive.model import ContrastiveImageText
from mmgen.contrastive.retrieval import SAVED_TEXT_ENCODER, ImageTextRetrieval, recall_at_k
from mmgen.data.collate import load_rows, sampled_rows
from mmgen.data.frozen import dataset_captions, item_captions
from mmgen.data.imagetext import item_key
from mmgen.data.sources import DataLike, described_source
from mmgen.errors import ConfigError, DataError
from mmgen.text import CachedTextEncoder, load_text_encoder
from mmgen.training import Trainer, TrainingConfig, TrainingResult, process_state

# Held-out and training items scored at each validation (recall among 100 captions).
VALIDATION_ITEMS = 1000


class ImageTextPairs(Dataset):
    """(image, caption) pairs of a dataset: one pair per item with a caption and image column
    with an image, so an item with several images (two vendors' glyphs, several photos)
    gives several pairs of one caption. `item` tells pairs of one item apart."""

    def __init__(self, dataset: Dataset, columns: list[str]):
        self.dataset, self.columns = dataset, columns
        has_image = getattr(dataset, "item_has_image", lambda index, column: True)
        self.pairs = [
            (index, column) for index in range(len(dataset)) if item_captions(dataset, index)
            for column in columns if has_image(index, column)
        ]
        if not self.pairs:
            raise DataError(f"no items with a caption and an image in column(s) {', '.join(columns)}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item, column = self.pairs[index]
        example = self.dataset[item]
        return {"pixel_values": example[column], "text": example["text"], "item": item}

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def random_shift(images: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image moved by up to `max_shift` px each way (edges repeated): glyphs and
    photos are not always centred, and a judge must not depend on exact placement."""
    if max_shift <= 0:
        return images
    size = images.shape[-2:]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2)).tolist()
    return torch.stack([padded[i, :, y : y + size[0], x : x + size[1]] for i, (y, x) in enumerate(offsets)])


class ContrastiveObjective(nn.Module):
    """Symmetric InfoNCE over a batch: each image against every caption and each caption
    against every image. Pairs of one item, or with one caption, are all positives (soft
    targets), so an item's two images in one batch are not each other's negatives.

    Captions are read from a frozen encoder's pooled states, computed once (`features`,
    one row per caption of `captions`). Under several processes each contrasts its own
    batch (no gather across processes: fewer negatives, same objective)."""

    def __init__(self, model: ContrastiveImageText, captions: list[str], features: torch.Tensor, max_shift: int = 0):
        super().__init__()
        self.model = model
        self.rows = {caption: row for row, caption in enumerate(captions)}
        self.register_buffer("features", features, persistent=False)
        self.max_shift = max_shift

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["pixel_values"]
        if self.training:
            images = random_shift(images, self.max_shift)
        rows = torch.tensor([self.rows[text] for text in batch["text"]], device=self.features.device)
        logits = self.model(images, self.features[rows])
        items = batch["item"].to(logits.device)
        positive = (items[:, None] == items[None, :]) | (rows[:, None] == rows[None, :])
        targets = positive.float() / positive.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        hits = positive.gather(1, logits.argmax(1, keepdim=True)).float().mean()
        return {"loss": loss, "accuracy": hits.detach(), "temperature": 1 / self.model.logit_scale.exp().detach()}


def train_contrastive(
    config: TrainingConfig,
    data: DataLike,
    image_columns: list[str] | None = None,
    image_size: int | None = None,
    text_encoder: str = "minilm",
    max_length: int = 77,
    widths: tuple[int, ...] = (32, 64, 128, 256),
    embed_dim: int = 256,
    max_shift: int = 4,
    caption_variants: int = 0,
    validation_data: DataLike | None = None,
) -> TrainingResult:
    """Train a ContrastiveImageText on the (image, caption) pairs of `data`'s `image_columns`
    (default: its main image), reading captions with the frozen `text_encoder` (minilm, or
    a folder with tokenizer/ and text_encoder/). Every checkpoint's `model/` loads with
    `ImageTextRetrieval.from_pretrained`. Each validation appends retrieval recall among
    100 captions to `validation.jsonl`: on training items, and on `validation_data`."""
    from mmgen.data import open_dataset

    if text_encoder == "clip":
        raise ConfigError("--text-encoder: a contrastive model reads a pretrained, frozen encoder (minilm or a folder)")
    columns = [item_key(column) for column in image_columns or ["file_name"]]
    dataset = open_dataset(data, size=image_size or 64, seed=config.seed, allow_missing=True, caption_variants=caption_variants)
    size = image_size or (dataset.native_image_size(columns[0]) if hasattr(dataset, "native_image_size") else 64)
    if hasattr(dataset, "set_image_sizes"):
        dataset.set_image_sizes({column: size for column in ("pixel_values", *columns)})
    _, distinct = dataset_captions(dataset)
    distinct = [caption for caption in distinct if caption is not None]
    if len(distinct) < 2:
        raise DataError(f"{described_source(data)}: contrastive training needs at least two distinct captions, found {len(distinct)}")
    encoder = load_text_encoder(text_encoder, distinct, max_length, hidden_size=0, layers=0)
    state = process_state()
    with state.main_process_first():  # the main process encodes, the others read its cache
        cached = CachedTextEncoder(encoder.to(state.device))
        cached.precompute(distinct)
    features = cached(distinct).pooled

    torch.manual_seed(config.seed)
    model = ContrastiveImageText(
        text_hidden_size=encoder.hidden_size, text_encoder="minilm" if text_encoder == "minilm" else SAVED_TEXT_ENCODER,
        max_length=encoder.max_length, image_size=size, widths=tuple(widths), embed_dim=embed_dim,
    )
    objective = ContrastiveObjective(model, distinct, features, max_shift=max_shift)
    scored = {"train": open_dataset(data, size=size, seed=config.seed, allow_missing=True)}
    if validation_data:
        scored["heldout"] = open_dataset(validation_data, size=size, seed=config.seed, allow_missing=True)

    def validate(objective: ContrastiveObjective, step: int, output_dir: Path) -> None:
        retrieval = ImageTextRetrieval(objective.model, encoder)
        record: dict[str, Any] = {"step": step}
        for name, split in scored.items():
            record[name] = dataset_recall(retrieval, split, columns[0])
        with open(output_dir / "validation.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        print(f"step {step}: image->text R@1 among 100 " + ", ".join(
            f"{name} {record[name]['image_to_text/R@1']:.3f}" for name in scored
        ))

    def export(objective: ContrastiveObjective, folder: Path) -> None:
        ImageTextRetrieval(objective.model, encoder).save_pretrained(folder)

    pairs = ImageTextPairs(dataset, columns)
    return Trainer(config, objective, pairs, validate_fn=validate, export_fn=export).train()


def dataset_recall(
    retrieval: ImageTextRetrieval, dataset: Dataset, column: str = "pixel_values", n: int = VALIDATION_ITEMS,
    candidates: int = 100, seed: int = 0, batch_size: int = 256,
) -> dict[str, float]:
    """Recall@1/5 both ways among `candidates` on `n` items of `dataset` (drawn by `seed`)
    with an image in `column` and a caption."""
    rows = sampled_rows(dataset, n, seed, column=column)
    if len(rows) < 2:
        raise DataError(f"retrieval needs at least two items with an image and a caption, found {len(rows)}")
    images, captions = load_rows(dataset, rows, column)
    return recall_at_k(
        retrieval.embed_images(images, batch_size), retrieval.embed_texts(captions, batch_size), captions,
        candidates=candidates, seed=seed,
    )
