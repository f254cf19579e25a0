"""An image classifier for the user's own labels, the yardstick of coherence on any data: a
multimodal VAE's image drawn for a sample is coherent when this classifier, trained on real
images, reads the sample's label in it (the standard measure of Shi et al. 2019 and Sutter
et al. 2021, e.g. the digit in PolyMNIST).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from mmgen.checkpoints import load_trained
from mmgen.data.imagetext import item_key
from mmgen.errors import ConfigError, DataError
from mmgen.training import Trainer, TrainingConfig, TrainingResult


class ImageClassifier(ModelMixin, ConfigMixin):
    """Strided 3 x 3 convs (each halving the size, rounding up), the final map flattened (a
    global pool, which forgets where strokes are, read 80% of PolyMNIST's digits after an
    epoch), a linear head over `labels`; images of `size` px (others are resized),
    `channels` 1 or 3."""

    @register_to_config
    def __init__(self, labels: list[str], size: int = 28, channels: int = 3, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ConfigError(f"a classifier needs at least two distinct labels, got {labels!r}")
        layers: list[nn.Module] = []
        previous = channels
        for width in widths:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.SiLU()]
            previous = width
        side = size
        for _ in widths:
            side = (side + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(previous * side * side, len(labels))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self._prepared(pixel_values)))

    def _prepared(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] in [-1, 1] at this classifier's size and channels."""
        images = images.to(self.device, self.dtype)
        if images.shape[1] != self.config.channels:  # greyscale <-> RGB
            images = images.mean(1, keepdim=True) if self.config.channels == 1 else images.expand(-1, 3, -1, -1)
        if images.shape[-2:] != (self.config.size, self.config.size):
            images = F.interpolate(images, size=(self.config.size, self.config.size), mode="bilinear", antialias=True)
        return images

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 512) -> list[str]:
        """The label of each image of a batch [B, C, H, W] in [-1, 1]."""
        indices = [self(pixel_values[i : i + batch_size]).argmax(-1) for i in range(0, len(pixel_values), batch_size)]
        return [self.config.labels[i] for i in torch.cat(indices).tolist()]

    @classmethod
    def load(cls, path: str | Path) -> ImageClassifier:
        return load_trained(cls, path, "image classifier", "mmgen train classifier").eval()


class LabelledImages(Dataset):
    """(image, label index) pairs from image columns of a dataset: each item of the dataset
    gives one pair per column where both are present."""

    def __init__(self, dataset: Dataset, columns: list[str], label_column: str, labels: list[str]):
        self.dataset, self.columns, self.label_column, self.labels = dataset, columns, label_column, labels
        has_image = getattr(dataset, "item_has_image", lambda index, column: True)
        self.pairs = [(index, column) for index in range(len(dataset)) for column in columns
                      if item_label(dataset, index, label_column) is not None and has_image(index, column)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item, column = self.pairs[index]
        example = self.dataset[item]
        return {"pixel_values": example[column], "label": self.labels.index(str(example[self.label_column]))}

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def item_label(dataset: Dataset, index: int, column: str) -> str | None:
    value = dataset.item_metadata(index).get(column) if hasattr(dataset, "item_metadata") else dataset[index].get(column)
    return None if value is None else str(value)


class ClassifierObjective(nn.Module):
    def __init__(self, classifier: ImageClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.classifier(batch["pixel_values"])
        return {"loss": F.cross_entropy(logits, batch["label"]),
                "accuracy": (logits.argmax(-1) == batch["label"]).float().mean().detach()}


def train_classifier(
    config: TrainingConfig, data: str, label_column: str, image_columns: list[str] | None = None,
    image_size: int | None = None, validation_data: str | None = None,
) -> TrainingResult:
    """Train an ImageClassifier of `label_column` on the images of `image_columns` of `data`
    (default: its main image; several columns train one classifier on all of them). Every
    checkpoint's `model/` is the classifier; with `validation_data`, each validation appends
    its accuracy there per column to `validation.jsonl`."""
    from mmgen.data import open_dataset

    columns = [item_key(column) for column in image_columns or ["file_name"]]
    dataset = open_dataset(data, size=image_size or 64, seed=config.seed, allow_missing=True)
    size = image_size or dataset.native_image_size(columns[0])
    dataset.set_image_sizes({column: size for column in ("pixel_values", *columns)})
    labels = sorted({label for i in range(len(dataset)) if (label := item_label(dataset, i, label_column)) is not None})
    if len(labels) < 2:
        raise DataError(f"{data}: column {label_column!r} needs at least two distinct labels, found {labels}")
    torch.manual_seed(config.seed)
    objective = ClassifierObjective(ImageClassifier(labels, size=size))
    held_out = None
    if validation_data:
        held_out = open_dataset(validation_data, size=size, seed=config.seed, allow_missing=True)
        held_out.set_image_sizes({column: size for column in ("pixel_values", *columns)})

    def validate(objective: ClassifierObjective, step: int, output_dir: Path) -> None:
        if held_out is None:
            return
        accuracy = {column: classifier_accuracy(objective.classifier, held_out, column, label_column) for column in columns}
        with open(output_dir / "validation.jsonl", "a") as log:
            log.write(json.dumps({"step": step, **accuracy}) + "\n")
        print(f"step {step}: held-out accuracy " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))

    def export(objective: ClassifierObjective, folder: Path) -> None:
        objective.classifier.save_pretrained(folder)

    train = LabelledImages(dataset, columns, label_column, labels)
    return Trainer(config, objective, train, validate_fn=validate, export_fn=export).train()


def classifier_accuracy(classifier: ImageClassifier, dataset: Dataset, column: str, label_column: str,
                        batch_size: int = 512) -> float:
    """The classifier's accuracy on the real images of `column` in `dataset`."""
    has_image = getattr(dataset, "item_has_image", lambda index, column: True)
    indices = [i for i in range(len(dataset)) if item_label(dataset, i, label_column) is not None and has_image(i, column)]
    correct = 0
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start : start + batch_size]]
        predicted = classifier.predict(torch.stack([item[column] for item in items]))
        correct += sum(p == str(item[label_column]) for p, item in zip(predicted, items))
    return correct / max(len(indices), 1)
