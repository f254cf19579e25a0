"""The Shapes judge: a small CNN that reads a Shapes image and names its four attributes.

No pretrained Inception or CLIP weights can be had offline, so mmgen measures generated
images with this classifier, trained on real Shapes images only: prompt adherence and
coherence are its accuracy on generated images, and its penultimate features are the
embedding for FID and diversity.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from mmgen.checkpoints import SHAPES_JUDGE, load_pretrained
from mmgen.data.shapes import ATTRIBUTES
from mmgen.errors import CheckpointError, DataError
from mmgen.training import Trainer, TrainingConfig, TrainingResult

ATTRIBUTE_NAMES = tuple(ATTRIBUTES)


class ShapesJudge(ModelMixin, ConfigMixin):
    """Strided conv stack -> a fixed 4 x 4 grid (which keeps where the object is, which a
    global pool would lose) -> `feature_dim` features -> one linear head per attribute.

    No normalisation layers: GroupNorm trains 4x slower on CPUs, and BatchNorm's running
    statistics lagged the fast-moving weights so badly that eval-mode accuracy collapsed
    (99% with batch statistics, 15% with running ones); this shallow net needs neither."""

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), feature_dim: int = 256):
        super().__init__()
        channels = tuple(channels)
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(channels, channels[1:] + (channels[-1],)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.project = nn.Sequential(nn.Linear(channels[-1] * 16, feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, len(ATTRIBUTES[name])) for name in ATTRIBUTE_NAMES})

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, feature_dim] of images in [-1, 1] (for FID and diversity)."""
        return self.project(self.backbone(pixel_values))

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(pixel_values)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 256) -> dict[str, list[str]]:
        """Attribute names for each image of a batch [B, 3, H, W] in [-1, 1]."""
        predictions: dict[str, list[str]] = {name: [] for name in ATTRIBUTE_NAMES}
        for start in range(0, len(pixel_values), batch_size):
            logits = self(pixel_values[start : start + batch_size].to(self.device, self.dtype))
            for name, values in logits.items():
                predictions[name] += [ATTRIBUTES[name][i] for i in values.argmax(-1).tolist()]
        return predictions


def attribute_targets(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """Class ids of a batch's attribute names (the Shapes metadata columns)."""
    return {
        name: torch.tensor([ATTRIBUTES[name].index(value) for value in batch[name]], device=device)
        for name in ATTRIBUTE_NAMES
    }


class JudgeObjective(nn.Module):
    """Sum of the four attributes' cross-entropies; logs each attribute's batch accuracy."""

    def __init__(self, judge: ShapesJudge):
        super().__init__()
        self.judge = judge

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.judge(batch["pixel_values"])
        targets = attribute_targets(batch, batch["pixel_values"].device)
        output = {"loss": sum(F.cross_entropy(logits[n], targets[n]) for n in ATTRIBUTE_NAMES)}
        for name in ATTRIBUTE_NAMES:
            output[f"accuracy/{name}"] = (logits[name].argmax(-1) == targets[name]).float().mean()
        return output


def load_judge(path: str | Path = SHAPES_JUDGE) -> ShapesJudge:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no Shapes judge there (train one with `mmgen train judge`, pass --judge)")
    if json.loads((path / "config.json").read_text()).get("_class_name") != ShapesJudge.__name__:
        raise CheckpointError(f"{path}: not a Shapes judge checkpoint")
    judge = load_pretrained(ShapesJudge, path)
    judge.eval()
    return judge


def attribute_accuracy(predicted: dict[str, list], attributes: dict[str, list[str | None]]) -> dict[str, float]:
    """Per-attribute accuracy of `predicted` against `attributes`, and `all`: the share
    with every attribute right. A None target is an attribute the prompt leaves open
    (a partial prompt): it is not scored, and `all` asks only for the determined ones."""
    correct = {
        name: [None if t is None else p == t for p, t in zip(predicted[name], attributes[name])] for name in ATTRIBUTE_NAMES
    }
    result = {}
    for name, hits in correct.items():
        scored = [hit for hit in hits if hit is not None]
        if scored:
            result[name] = sum(scored) / len(scored)
    rows = list(zip(*correct.values()))
    result["all"] = sum(all(hit is not False for hit in row) for row in rows) / len(rows)
    return result


def judge_accuracy(judge: ShapesJudge, images: torch.Tensor, attributes: dict[str, list[str]]) -> dict[str, float]:
    """How often the judge reads from `images` the `attributes` they should show."""
    return attribute_accuracy(judge.predict(images), attributes)


def real_images(split: str, n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """The first `n` real Shapes images of `split` and their attributes."""
    from mmgen.data.shapes import ShapesDataset

    dataset = ShapesDataset(split, n=n, size=size, seed=seed)
    examples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([e["pixel_values"] for e in examples])
    return images, {name: [e[name] for e in examples] for name in ATTRIBUTE_NAMES}


def train_judge(
    config: TrainingConfig,
    data: str = "shapes",
    image_size: int = 64,
    channels: tuple[int, ...] = (16, 32, 64, 128),
    feature_dim: int = 256,
    compositional_samples: int = 10_000,
    validation_size: int = 1000,
) -> TrainingResult:
    """Train a judge on the shared loop. Every checkpoint holds the judge (EMA weights) in
    `model/`; validation appends its accuracy on real `val` images to `validation.jsonl`.

    The hold-out pairs are withheld from the generative models, not from the judge: it
    must read every combination, and one trained without them confuses exactly those
    pairs (92% all-four on `compositional`). So `compositional_samples` real images of
    them are added, from seed `config.seed + 1`: disjoint from the evaluated split.
    """
    from torch.utils.data import ConcatDataset

    from mmgen.data import ShapesDataset, open_dataset

    torch.manual_seed(config.seed)
    objective = JudgeObjective(ShapesJudge(channels=tuple(channels), feature_dim=feature_dim))
    dataset = open_dataset(data, size=image_size, seed=config.seed)
    missing = [name for name in ATTRIBUTE_NAMES if name not in dataset[0]]
    if missing:
        raise DataError(f"{data}: the judge trains on the Shapes attribute columns; missing {', '.join(missing)}")
    if compositional_samples:
        held_out = ShapesDataset("compositional", n=compositional_samples, size=image_size, seed=config.seed + 1)
        dataset = ConcatDataset([dataset, held_out])
    val_images, val_attributes = real_images("val", validation_size, image_size)

    def validate(model: JudgeObjective, step: int, output_dir: Path) -> None:
        accuracy = judge_accuracy(model.judge, val_images, val_attributes)
        with open(output_dir / "validation.jsonl", "a") as log:
            log.write(json.dumps({"step": step, **accuracy}) + "\n")
        print(f"step {step}: val accuracy " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))

    def export(model: JudgeObjective, folder: Path) -> None:
        model.judge.save_pretrained(folder)

    return Trainer(config, objective, dataset, validate_fn=validate, export_fn=export).train()
