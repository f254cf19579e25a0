"""`mmgen eval --data`: measure a checkpoint on the user's own image-text data, judged by a
contrastive model trained on such data (`mmgen train clip`) where a task needs a judge.

- retrieval: a contrastive model's recall@1/5 among 100 captions, both ways.
- reconstruct: PSNR/SSIM of an autoencoder's (or discrete VAE's) reconstructions of the
  data's images, and their FID on contrastive features when a judge is given.
- text-to-image: prompts are the data's captions; R-precision (the prompt's rank among
  99 other captions of the data, as CLIP R-precision) of the generated images beside that
  of the real images of the same captions, CLIP score of both, and FID on the contrastive
  model's image features with its real-vs-real floor.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from mmgen.contrastive import ImageTextRetrieval, r_precision, recall_at_k
from mmgen.data import open_dataset
from mmgen.data.collate import load_rows, sampled_rows
from mmgen.data.frozen import item_captions
from mmgen.data.sources import described_source
from mmgen.data.transforms import tensor_to_pil
from mmgen.errors import ConfigError, DataError
from mmgen.eval.evaluate import inference_device, load_for_task
from mmgen.eval.metrics import feature_fid, generate_images, reconstruction_metrics

CANDIDATES = 100  # captions each image is ranked among (CLIP R-precision's 1 + 99)


def _open(data: str, size: int) -> Dataset:
    dataset = open_dataset(data, size=size, allow_missing=True)
    if len(dataset) < 2:
        raise DataError(f"{data}: measuring needs at least two items, found {len(dataset)}")
    return dataset


def _captioned_rows(dataset: Dataset, data: str, n: int, seed: int) -> list[int]:
    """Up to `n` items with an image and a caption, drawn by `seed`; none is an error."""
    rows = sampled_rows(dataset, n, seed)
    if not rows:
        raise DataError(f"{described_source(data)}: no entry has both an image and a caption, which this task needs")
    return rows


def load_judge_model(path: str | Path | None, task: str) -> ImageTextRetrieval:
    if path is None:
        raise ConfigError(
            f"--task {task} on your data is judged by a contrastive model: give --clip PATH (train one with mmgen train clip)"
        )
    return ImageTextRetrieval.from_pretrained(path).to(inference_device())


def evaluate_retrieval(clip: str | Path, data: str, n: int, seed: int = 0, batch_size: int = 256):
    """Recall@1/5 both ways among 100 items on up to `n` items of `data` (with fewer, items
    drawn from the rest of the data are the other candidates); the grid shows each image's
    best caption."""
    retrieval = load_judge_model(clip, "retrieval")
    dataset = _open(data, retrieval.image_size)
    rows = _captioned_rows(dataset, data, max(n, CANDIDATES), seed)  # the first n are scored
    images, captions = load_rows(dataset, rows)
    queries = min(n, len(rows))
    image_embeds, text_embeds = retrieval.embed_images(images, batch_size), retrieval.embed_texts(captions, batch_size)
    results: dict[str, Any] = recall_at_k(
        image_embeds, text_embeds, captions, candidates=CANDIDATES, seed=seed, queries=queries
    )
    results["items"] = queries
    # Each shown image's best caption among all the candidates loaded, as the metric ranks them.
    shown = (image_embeds[: min(16, queries)] @ text_embeds.T).argmax(1).tolist()
    labels = [f"{'=' if captions[j] == caption else 'x'} {captions[j]}" for j, caption in zip(shown, captions)]
    return results, tensor_to_pil(images[: min(16, queries)]), labels


def evaluate_reconstruction(model: str | Path, data: str, n: int, batch_size: int = 32, clip: str | Path | None = None):
    """PSNR/SSIM of reconstructions of up to `n` of the data's images at the model's size,
    and FID against the originals on the contrastive model's features if `clip` is given."""
    reconstruct = load_for_task(model, "reconstruct")
    dataset = _open(data, reconstruct.image_size)
    images, _ = load_rows(dataset, sampled_rows(dataset, n, seed=0, need_caption=False))
    with torch.no_grad():
        output = torch.cat([reconstruct(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)])
    results: dict[str, Any] = {**reconstruction_metrics(images, output), "images": len(images)}
    if clip is not None:
        judge = load_judge_model(clip, "reconstruct")
        results["fid"] = feature_fid(judge.image_features(output), judge.image_features(images))
    pairs = [image for pair in zip(tensor_to_pil(images[:8]), tensor_to_pil(output[:8])) for image in pair]
    return results, pairs, [label for _ in range(len(pairs) // 2) for label in ("original", "reconstruction")]


def evaluate_text_to_image(
    model: str | Path, data: str, clip: str | Path | None, n: int, seed: int = 0, batch_size: int = 32,
    steps: int | None = None, guidance_scale: float | None = None, scheduler: str = "dpm++", lora: str | Path | None = None,
    lora_weight: float = 1.0,
) -> tuple[dict[str, Any], dict[str, Any], list[Image.Image], list[str]]:
    """Images generated (with `lora` adapters at `lora_weight`) from the captions of up to
    `n` items of `data`, judged by the contrastive model `clip`: R-precision and CLIP
    score beside the real images' own; FID of the first half's generated images against
    the second half's real images, beside the floor of the first half's real images
    against the same."""
    judge = load_judge_model(clip, "text-to-image")
    generate = load_for_task(
        model, "text-to-image", steps=steps, guidance_scale=guidance_scale, scheduler=scheduler, lora=lora,
        lora_weight=lora_weight,
    )
    dataset = _open(data, judge.image_size)
    rows = _captioned_rows(dataset, data, n, seed)
    real, captions = load_rows(dataset, rows)
    generated = generate_images(generate, captions, seed, batch_size)
    candidates = captions + other_captions(dataset, rows, captions, seed)
    candidate_embeds = judge.embed_texts(candidates)
    text_embeds = candidate_embeds[: len(captions)]
    generated_features, real_features = judge.image_features(generated), judge.image_features(real)
    normalize = torch.nn.functional.normalize
    generated_embeds, real_embeds = normalize(generated_features, dim=-1), normalize(real_features, dim=-1)
    results: dict[str, Any] = {
        "r_precision": r_precision(generated_embeds, candidate_embeds, candidates, CANDIDATES, seed),
        "r_precision_real": r_precision(real_embeds, candidate_embeds, candidates, CANDIDATES, seed),
    }
    results["r_precision_relative"] = results["r_precision"] / max(results["r_precision_real"], 1e-12)
    results["clip_score"] = 100 * float((generated_embeds * text_embeds).sum(1).mean())
    results["clip_score_real"] = 100 * float((real_embeds * text_embeds).sum(1).mean())
    half = len(rows) // 2
    if half >= 2:
        reference = real_features[half : 2 * half]
        results["fid"] = feature_fid(generated_features[:half], reference)
        results["fid_real_floor"] = feature_fid(real_features[:half], reference)
    results["prompts"] = len(captions)
    results["candidates"] = min(CANDIDATES, len(set(candidates)))
    return results, getattr(generate, "settings", {}), tensor_to_pil(generated[:16]), captions[:16]


def other_captions(dataset: Dataset, rows: list[int], captions: list[str], seed: int) -> list[str]:
    """Captions of items other than `rows` (whose captions are `captions`), drawn by `seed`,
    until they and `captions` make CANDIDATES distinct captions: each prompt is then ranked
    among 99 others of the data however few prompts are measured (none are added when the
    prompts suffice)."""
    distinct, chosen = set(captions), set(rows)
    others = [i for i in range(len(dataset)) if i not in chosen]
    random.Random(seed).shuffle(others)
    added = []
    for i in others:
        if len(distinct) >= CANDIDATES:
            break
        caption = next(iter(item_captions(dataset, i)), None)
        if caption and caption not in distinct:
            distinct.add(caption)
            added.append(caption)
    return added


def evaluate_imputation(
    model, data: str, clip: str | Path, n: int, seed: int = 0, batch_size: int = 32, given: str | None = None,
    gibbs_steps: int | None = None,
) -> tuple[dict[str, Any], list[Image.Image], list[str]]:
    """A multimodal VAE's images drawn from captions, for every caption modality and image
    modality, on those of `n` items of `data` (drawn by `seed`) that have a caption:
    R-precision among up to 100 of those captions under the contrastive model `clip`, beside
    the real images' own (where the item has that image), and how many captions each
    caption modality gave. Needs no labels."""
    from mmgen.data.collate import collate_examples

    texts = [name for name, codec in model.codecs.items() if codec.kind == "text"]
    images = [name for name, codec in model.codecs.items() if codec.kind == "image"]
    if not texts or not images:
        raise ConfigError(
            f"--clip scores images drawn from captions: the model needs a text and an image modality, it has {', '.join(model.names)}"
        )
    judge = load_judge_model(clip, "impute")
    dataset = open_dataset(data, allow_missing=True)
    dataset.set_image_sizes(model.image_sizes())
    rows = sampled_rows(dataset, n, seed, need_caption=False)
    batch = collate_examples([dataset[i] for i in rows])
    generator = torch.Generator().manual_seed(seed)
    results: dict[str, Any] = {}
    grid: tuple[list[Image.Image], list[str]] = ([], [])
    for text in texts:
        captions = model.codecs[text].read(batch) or [None] * len(rows)
        kept = [i for i, caption in enumerate(captions) if caption is not None]
        if len(kept) < 2:
            raise DataError(f"{data}: fewer than two items with a caption in modality {text!r}")
        prompts = [captions[i] for i in kept]
        results[f"{text}/captions"] = len(prompts)
        text_embeds = judge.embed_texts(prompts)
        for image in images:
            drawn = torch.cat([
                model.impute({text: prompts[start : start + batch_size]}, targets=[image], generator=generator,
                             output_type="pt", given=given, gibbs_steps=gibbs_steps)[image].float().cpu()
                for start in range(0, len(prompts), batch_size)
            ])
            pair = f"{text}->{image}"
            results[f"{pair}/r_precision"] = r_precision(judge.embed_images(drawn), text_embeds, prompts, CANDIDATES, seed)
            real, present = model.codecs[image].batch_tensors(batch, len(rows))
            with_image = [j for j, i in enumerate(kept) if present[i]]
            if len(with_image) >= 2:
                results[f"{pair}/r_precision_real"] = r_precision(
                    judge.embed_images(real[[kept[j] for j in with_image]]), text_embeds[with_image],
                    [prompts[j] for j in with_image], CANDIDATES, seed,
                )
            grid[0].extend(tensor_to_pil(drawn[:8].clamp(-1, 1)))
            grid[1].extend(f"{image}: {prompt}" for prompt in prompts[:8])
    return results, *grid
