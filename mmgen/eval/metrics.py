"""Metrics shared by every model family, measured with the Shapes judge.

Each metric takes the model as a plain callable, so any family (or a stub in a test) is
measured the same way:

- text to image: `generate(prompts, generator) -> images [B, 3, H, W] in [-1, 1]`
- imputation:    `impute(observed, targets, generator) -> {modality: values}`, where
  modalities are `image` (tensor), `text` (list of captions) and `attributes`
  (dict of attribute name -> list of values)
- reconstruction: `reconstruct(images) -> images`
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import linalg
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from mmgen.data.shapes import parse_caption
from mmgen.eval.judge import ATTRIBUTE_NAMES, ShapesJudge, attribute_accuracy, judge_accuracy

GenerateFn = Callable[[list[str], torch.Generator], torch.Tensor]
ImputeFn = Callable[[dict[str, Any], list[str], torch.Generator], dict[str, Any]]
ReconstructFn = Callable[[torch.Tensor], torch.Tensor]

MODALITIES = ("image", "text", "attributes")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1^1/2 sigma2 sigma1^1/2)^1/2).

    Written here because torchmetrics' FID class needs torch-fidelity and torchvision. The
    symmetric form, through eigendecompositions of symmetric matrices, stays real and
    stable when few samples make the covariances singular (where sqrtm(sigma1 @ sigma2)
    returns complex noise)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    root1 = _psd_sqrt(sigma1)
    cross_trace = np.sqrt(np.clip(linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * cross_trace)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding-error
    eigenvalues clipped to 0)."""
    values, vectors = linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def feature_fid(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """FID between two sets of feature vectors [N, D] (Gaussians fitted to each). With N
    not above D the covariances are rank-deficient and the figure is mostly noise: said."""
    count, dimensions = min(len(features1), len(features2)), features1.shape[1]
    if count <= dimensions:
        warnings.warn(f"FID from {count} images of {dimensions}-dimensional features is mostly noise (the covariances "
                      f"need more images than dimensions): measure more than {dimensions}, better ten times that",
                      stacklevel=2)
    a, b = features1.double().cpu().numpy(), features2.double().cpu().numpy()
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


@torch.no_grad()
def judge_features(judge: ShapesJudge, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat(
        [judge.features(images[i : i + batch_size].to(judge.device, judge.dtype)).cpu() for i in range(0, len(images), batch_size)]
    )


def diversity(features: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance of samples' features: near 0 means mode collapse."""
    if len(features) < 2:
        raise ValueError("diversity needs at least two samples")
    distances = torch.cdist(features.double(), features.double())
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def reconstruction_metrics(images: torch.Tensor, reconstructions: torch.Tensor) -> dict[str, float]:
    """PSNR (dB, the mean of per-image values) and SSIM of reconstructions of images in [-1, 1]."""
    target, prediction = (images.float() + 1) / 2, (reconstructions.float().clamp(-1, 1) + 1) / 2
    return {
        "psnr": float(peak_signal_noise_ratio(prediction, target, data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean")),
        "ssim": float(structural_similarity_index_measure(prediction, target, data_range=1.0)),
    }


def _batched(items: list, batch_size: int):
    for start in range(0, len(items), batch_size):
        yield start, items[start : start + batch_size]


def generate_images(generate: GenerateFn, prompts: list[str], seed: int, batch_size: int) -> torch.Tensor:
    """All images for `prompts`, in batches, from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([generate(batch, generator).float().cpu() for _, batch in _batched(prompts, batch_size)])


def caption_accuracy(captions: list[str], attributes: dict[str, list[str]]) -> dict[str, float]:
    """Accuracy of generated captions, parsed back to attributes; an unparseable caption
    counts as wrong on every attribute."""
    parsed = [_parse_or_empty(caption) for caption in captions]
    return attribute_accuracy({name: [p.get(name) for p in parsed] for name in ATTRIBUTE_NAMES}, attributes)


def _parse_or_empty(caption: str) -> dict[str, str]:
    try:
        return parse_caption(caption)
    except ValueError:
        return {}


def coherence(
    impute: ImputeFn,
    judge: ShapesJudge,
    images: torch.Tensor,
    captions: list[str],
    attributes: dict[str, list[str]],
    seed: int = 0,
    batch_size: int = 128,
) -> dict[str, Any]:
    """For every non-empty proper subset of {image, text, attributes}, impute the other
    modalities and score them against the truth: images with the judge, captions by
    parsing them, attributes directly. Returns per-subset results ("text->image", ...) and
    the mean all-four coherence per number of observed modalities (as MoPoE reports it)."""
    truth = {"image": images, "text": captions, "attributes": attributes}
    results: dict[str, Any] = {"subsets": {}, "by_subset_size": {}}
    for size in range(1, len(MODALITIES)):
        scores = []
        for observed in itertools.combinations(MODALITIES, size):
            targets = [m for m in MODALITIES if m not in observed]
            generator = torch.Generator().manual_seed(seed)
            outputs: dict[str, list] = {m: [] for m in targets}
            for start, _ in _batched(captions, batch_size):
                stop = start + batch_size
                given = {m: _slice(truth[m], start, stop) for m in observed}
                imputed = impute(given, targets, generator)
                for m in targets:
                    outputs[m].append(imputed[m])
            for target in targets:
                generated = _concatenate(target, outputs[target])
                if target == "image":
                    score = judge_accuracy(judge, generated, attributes)
                elif target == "text":
                    score = caption_accuracy(generated, attributes)
                else:
                    score = attribute_accuracy(generated, attributes)
                results["subsets"][f"{'+'.join(observed)}->{target}"] = score
                scores.append(score["all"])
        results["by_subset_size"][size] = sum(scores) / len(scores)
    return results


def text_coherence(
    impute: ImputeFn,
    judge: ShapesJudge,
    captions: list[str],
    attributes: dict[str, list[str | None]],
    seed: int = 0,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Images and attributes imputed from captions alone, scored on the attributes each
    caption determines (None: left open): {"text->image": ..., "text->attributes": ...}."""
    generator = torch.Generator().manual_seed(seed)
    outputs: dict[str, list] = {"image": [], "attributes": []}
    for _, batch in _batched(captions, batch_size):
        imputed = impute({"text": batch}, ["image", "attributes"], generator)
        for m in outputs:
            outputs[m].append(imputed[m])
    return {
        "text->image": judge_accuracy(judge, _concatenate("image", outputs["image"]), attributes),
        "text->attributes": attribute_accuracy(_concatenate("attributes", outputs["attributes"]), attributes),
    }


def _slice(values: Any, start: int, stop: int) -> Any:
    if isinstance(values, dict):
        return {k: v[start:stop] for k, v in values.items()}
    return values[start:stop]


def _concatenate(modality: str, parts: list) -> Any:
    if modality == "image":
        return torch.cat([p.float().cpu() for p in parts])
    if modality == "attributes":
        return {name: [v for p in parts for v in p[name]] for name in ATTRIBUTE_NAMES}
    return [caption for p in parts for caption in p]
