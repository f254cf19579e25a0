"""Coherence of a multimodal VAE on any data, read by the user's classifiers: for every set of
given modalities, how often each modality it draws shows the sample's label (leave-k-out
coherence, Sutter et al. 2021: k modalities given, the rest drawn), and how often a joint
sample's modalities all show one label (joint coherence).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import torch
from torch.utils.data import Dataset

from mmgen.data.collate import as_label, collate_examples
from mmgen.errors import ConfigError, DataError
from mmgen.eval.classifier import ImageClassifier


def _check_labels(classifiers: dict[str, ImageClassifier], labels: list[str], label_column: str) -> None:
    """A DataError when a classifier knows none of the labels the data's column holds (one
    trained on another column scores 0 everywhere, which reads like a result)."""
    for name, classifier in classifiers.items():
        known = classifier.config.labels
        if not set(known) & set(labels):
            raise DataError(
                f"the classifier for {name!r} knows the labels {', '.join(known[:5])}{', ...' if len(known) > 5 else ''}, "
                f"none of which the column {label_column!r} holds ({', '.join(sorted(set(labels))[:5])}"
                f"{', ...' if len(set(labels)) > 5 else ''}): "
                "was it trained on another column?"
            )


def coherence_on_data(
    model, dataset: Dataset, classifiers: dict[str, ImageClassifier], label_column: str, n: int = 1000,
    batch_size: int = 250, seed: int = 0, given: str | None = None, gibbs_steps: int | None = None,
) -> dict[str, Any]:
    """Leave-k-out and joint coherence of `model` (a MultimodalVAE) on `n` samples of
    `dataset` (all of them, or `n` drawn by `seed`: data is often sorted, by class or
    source), `classifiers` naming the modalities scored. Results: `items` (how many were
    scored), `coherence/k=K` (the
    mean over every K-subset of the modalities given and every scored modality outside it),
    `coherence/k=K/NAME` (the same per drawn modality), `coherence/subsets` (each
    "given -> drawn" pair), `coherence/joint` (of n joint samples, those whose scored
    modalities all show one label) and `classifier/NAME` (each classifier's accuracy on the
    real images, the ceiling)."""
    unknown = set(classifiers) - set(model.names)
    if unknown:
        raise ConfigError(f"a classifier for {sorted(unknown)[0]!r}, which is not a modality of the model ({', '.join(model.names)})")
    if not classifiers:
        raise ConfigError("no classifier given: name at least one modality's classifier")
    count = min(n, len(dataset))
    if count < 1:
        raise DataError("the data is empty")
    subsets = [subset for size in range(1, len(model.names)) for subset in itertools.combinations(model.names, size)]
    # (right, scored) per (given subset, drawn modality), and per classifier on real images;
    # a sample counts where it has every given modality (real images: where it has one).
    hits: dict[tuple[tuple[str, ...], str], list[int]] = {}
    real = {name: [0, 0] for name in classifiers}
    generator = torch.Generator().manual_seed(seed)
    rows = range(count) if count == len(dataset) else sorted(random.Random(seed).sample(range(len(dataset)), count))
    for start in range(0, count, batch_size):
        batch = collate_examples([dataset[i] for i in rows[start : start + batch_size]])
        if label_column not in batch:
            raise DataError(f"the data has no label column {label_column!r}")
        labels = [str(as_label(value)) for value in batch[label_column]]
        if start == 0:
            _check_labels(classifiers, labels, label_column)
        values = {name: model.codecs[name].read(batch) for name in model.names}
        tensors = {name: model.codecs[name].batch_tensors({name: values[name]}, len(labels)) for name in model.names}
        for name, classifier in classifiers.items():
            images, present = tensors[name]
            _count(real[name], classifier.predict(images), labels, present)
        for subset in subsets:
            targets = [name for name in classifiers if name not in subset]
            present = torch.stack([tensors[name][1] for name in subset]).all(0)
            if not targets or not present.any():
                continue
            # The values as read, not their tensors: impute makes those (a real modality's standardised) itself.
            drawn = model.impute({name: _where(values[name], present) for name in subset}, targets=targets,
                                 generator=generator, output_type="pt", given=given, gibbs_steps=gibbs_steps)
            kept = [label for label, keep in zip(labels, present.tolist()) if keep]
            for name in targets:
                _count(hits.setdefault((subset, name), [0, 0]), classifiers[name].predict(drawn[name]), kept)
    results: dict[str, Any] = {"items": count}
    for size in range(1, len(model.names)):
        pairs = {key: value for key, value in hits.items() if len(key[0]) == size}
        if pairs:
            results[f"coherence/k={size}"] = _mean(pairs.values())
            for name in classifiers:
                mine = [value for (_, drawn), value in pairs.items() if drawn == name]
                if mine:
                    results[f"coherence/k={size}/{name}"] = _mean(mine)
    results["coherence/subsets"] = {f"{','.join(subset)}->{name}": right / max(scored, 1)
                                    for (subset, name), (right, scored) in hits.items()}
    if len(classifiers) > 1:
        sampled = model.sample(count, generator=generator, output_type="pt", gibbs_steps=gibbs_steps)
        readings = [classifiers[name].predict(sampled[name]) for name in classifiers]
        results["coherence/joint"] = sum(len(set(row)) == 1 for row in zip(*readings)) / count
    results.update({f"classifier/{name}": right / max(scored, 1) for name, (right, scored) in real.items()})
    return results


def _where(values: torch.Tensor | list[Any], keep: torch.Tensor) -> torch.Tensor | list[Any]:
    """The entries of a batch column (a stacked tensor or a list) where `keep` is true."""
    return values[keep] if isinstance(values, torch.Tensor) else [v for v, k in zip(values, keep.tolist()) if k]


def _count(tally: list[int], predicted: list[str], labels: list[str], present: torch.Tensor | None = None) -> None:
    """Add the right readings and the number scored to `tally`, where `present` (default: all)."""
    keep = [True] * len(labels) if present is None else present.tolist()
    tally[0] += sum(p == label for p, label, k in zip(predicted, labels, keep) if k)
    tally[1] += sum(keep)


def _mean(tallies) -> float:
    """The mean of the tallies' accuracies (each pair of given subset and drawn modality counts once)."""
    tallies = list(tallies)
    return sum(right / max(scored, 1) for right, scored in tallies) / len(tallies)
