"""Image-text retrieval with a trained contrastive model: rank captions for images and
images for captions, and the recall metrics that measure it (and text-to-image models)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmgen.checkpoints import load_trained
from mmgen.contrastive.model import ContrastiveImageText
from mmgen.data.transforms import (
    check_model_range, array_to_pil, pil_to_tensor, resize_and_crop, tensor_image_to_pil, to_rgb,
)
from mmgen.errors import ConfigError, DataError
from mmgen.text import TextEncoder

# The text encoder a checkpoint stores beside itself (any but the pretrained MiniLM).
SAVED_TEXT_ENCODER = "."


class ImageTextRetrieval:
    """A contrastive model with the frozen text encoder it reads.

    >>> retrieval = ImageTextRetrieval.from_pretrained("checkpoints/emoji-clip")
    >>> retrieval.rank_texts(images, ["red heart", "blue heart", "grinning face"], top_k=2)
    """

    def __init__(self, model: ContrastiveImageText, text_encoder: TextEncoder):
        if text_encoder.hidden_size != model.config.text_hidden_size:
            raise ConfigError(
                f"the text encoder is {text_encoder.hidden_size} wide; this contrastive model reads "
                f"{model.config.text_hidden_size}-wide states"
            )
        self.model = model
        self.text_encoder = text_encoder

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ImageTextRetrieval:
        path = Path(path)
        model = load_trained(ContrastiveImageText, path, "contrastive model", "mmgen train clip")
        if model.config.text_encoder == "minilm":
            text_encoder = TextEncoder.minilm(max_length=model.config.max_length)
        else:
            text_encoder = TextEncoder.from_pretrained(path)
        return cls(model.eval(), text_encoder.eval())

    def save_pretrained(self, path: str | Path) -> None:
        """The model's config and weights; the text encoder beside them unless it is MiniLM,
        which every mmgen install has."""
        self.model.save_pretrained(path)
        if self.model.config.text_encoder == SAVED_TEXT_ENCODER:
            self.text_encoder.save_pretrained(path)

    def to(self, device: torch.device | str) -> ImageTextRetrieval:
        self.model.to(device)
        self.text_encoder.to(device)
        return self

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def prepare_images(self, images: list[Image.Image] | Image.Image | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images of any size (centre-cropped) as a tensor of the model's: one image or a list
        of them, as PIL images, tensors [C, H, W] (uint8 in 0..255 or float in [-1, 1]) or numpy
        arrays [H, W, C] (uint8, or float in [0, 1] as diffusers' `output_type="np"`); or a
        batch: a tensor [N, C, H, W] or an array [N, H, W, C]."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, (Image.Image, np.ndarray)):
            images = [images]
        if isinstance(images, torch.Tensor):
            if images.dim() != 4:
                raise DataError(f"images as a tensor are [N, C, H, W], got shape {tuple(images.shape)}")
            if images.dtype == torch.uint8:
                return images.float() / 127.5 - 1
            check_model_range(images)
            return images.clamp(-1, 1)
        images = list(images)
        if not images:
            raise DataError("no images given")
        kinds = sorted({type(image).__name__ for image in images if not isinstance(image, (Image.Image, np.ndarray, torch.Tensor))})
        if kinds:
            raise DataError(f"images are PIL images, tensors or numpy arrays (one, a list, or a batch), got a list holding "
                            f"{', '.join(kinds)}")
        images = [array_to_pil(image) if isinstance(image, np.ndarray) else
                  tensor_image_to_pil(image) if isinstance(image, torch.Tensor) else image for image in images]
        return torch.stack([pil_to_tensor(resize_and_crop(to_rgb(image), self.image_size)) for image in images])

    @torch.no_grad()
    def image_features(self, images: list[Image.Image] | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Unnormalised image embeddings [N, D] (for FID)."""
        images = self.prepare_images(images)
        return torch.cat([self.model.image_features(images[i : i + batch_size]).cpu() for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image] | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Unit-length image embeddings [N, D]."""
        return torch.nn.functional.normalize(self.image_features(images, batch_size), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Unit-length text embeddings [N, D]."""
        texts = _text_list(texts)
        parts = [
            self.model.text_embeds(self.text_encoder(texts[i : i + batch_size]).pooled).cpu()
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(parts)

    def similarity(self, images: list[Image.Image] | torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Cosine similarities [N_images, N_texts]."""
        return self.embed_images(images) @ self.embed_texts(texts).T

    def rank_texts(self, images: list[Image.Image] | torch.Tensor, texts: list[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each image, the `top_k` best-matching texts with their cosine similarity."""
        texts = _text_list(texts)
        scores = self.similarity(images, texts)
        best = scores.topk(min(top_k, len(texts)), dim=1)
        return [[(texts[j], float(s)) for s, j in zip(row_scores, row)] for row_scores, row in zip(best.values, best.indices.tolist())]

    def rank_images(self, texts: list[str], images: list[Image.Image] | torch.Tensor, top_k: int = 5) -> list[list[tuple[int, float]]]:
        """For each text, the indices of the `top_k` best-matching images with their similarity."""
        scores = self.similarity(images, texts).T
        best = scores.topk(min(top_k, scores.shape[1]), dim=1)
        return [[(j, float(s)) for s, j in zip(row_scores, row)] for row_scores, row in zip(best.values, best.indices.tolist())]


def candidate_sets(captions: list[str], candidates: int = 100, seed: int = 0, queries: int | None = None) -> list[list[int]]:
    """For each of the first `queries` items i (default: all): i first, then up to
    `candidates` - 1 other items with distinct captions that differ from i's (a duplicate
    caption is not a wrong answer, nor a second distractor), drawn by `seed`. Items past
    `queries` are only ever candidates."""
    rng = random.Random(seed)
    first_item: dict[str, int] = {}  # each distinct caption's first item, in item order
    for j, caption in enumerate(captions):
        first_item.setdefault(caption, j)
    sets = []
    for i, caption in enumerate(captions[:queries]):
        others = [j for other, j in first_item.items() if other != caption]
        sets.append([i, *rng.sample(others, min(candidates - 1, len(others)))])
    return sets


def true_match_ranks(scores: torch.Tensor, captions: list[str], candidates: int = 100, seed: int = 0) -> list[int]:
    """For query i (row i of `scores` [N, M], M >= N, its true match in column i; `captions`
    those of the M columns): how many of its candidates (`candidate_sets`) score at least as
    high as the true match; 0 is first. Ties count against the true match."""
    if scores.shape[1] != len(captions) or scores.shape[0] > scores.shape[1]:
        raise ValueError(f"scores {list(scores.shape)} need a column per caption ({len(captions)}) and one per query")
    ranks = []
    for i, chosen in enumerate(candidate_sets(captions, candidates, seed, queries=len(scores))):
        row = scores[i, chosen]
        ranks.append(int((row[1:] >= row[0]).sum()))
    return ranks


def recall_at_k(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, captions: list[str], ks: tuple[int, ...] = (1, 5),
    candidates: int = 100, seed: int = 0, queries: int | None = None,
) -> dict[str, float]:
    """Retrieval among `candidates` items, as text-to-image benchmarks report it: image i's
    caption ranked among its own and 99 others' (image->text), and caption i's image among
    its own and 99 others' images (text->image). The first `queries` items (default: all)
    are scored; the rest are candidates only, so that a few queries still meet 99 others."""
    queries = len(captions) if queries is None else queries
    scores = image_embeds.float() @ text_embeds.float().T
    results: dict[str, float] = {}
    for direction, matrix in (("image_to_text", scores[:queries]), ("text_to_image", scores.T[:queries])):
        ranks = true_match_ranks(matrix, captions, candidates, seed)
        for k in ks:
            results[f"{direction}/R@{k}"] = sum(rank < k for rank in ranks) / len(ranks)
    results["candidates"] = min(candidates, len(captions))
    return results


def r_precision(image_embeds: torch.Tensor, text_embeds: torch.Tensor, captions: list[str], candidates: int = 100, seed: int = 0) -> float:
    """The share of images whose own caption ranks first among it and 99 others (R@1
    image->text): how text-to-image benchmarks score prompt adherence. Image i's caption is
    `captions[i]`; captions (and `text_embeds` rows) past the images' are further candidates."""
    ranks = true_match_ranks(image_embeds.float() @ text_embeds.float().T, captions, candidates, seed)
    return sum(rank == 0 for rank in ranks) / len(ranks)


def _text_list(texts: list[str] | str) -> list[str]:
    """One text or a list of them; none is an error (torch would fail to stack nothing)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise DataError("no texts given")
    return texts
