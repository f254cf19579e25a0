"""Teach checkpoints/shapes-ldm a shape it has never seen (a heart) with LoRA, and measure it.

  .venv/bin/python train/lora_new_shape.py [--run DIR] [--images 100] [--minutes 10 | --steps N] [--rank 8]
      [--preservation 6000] [--preservation-images rendered|generated]
      [--preservation-target noise|base] [--foreign-words 0] [--full]

1. Data: `--images` hearts drawn the Shapes way (the eight colours, two sizes, nine
   positions, the same jitter), repeated to half the rows, beside `--preservation`
   ordinary Shapes `train` images, so that the adapters keep the old vocabulary
   (DreamBooth's prior preservation: rendered images of the old classes, or with
   `--preservation-images generated` the base model's own drawings of their captions);
   all captioned as the base model was trained. The old rows train towards their noise
   (DreamBooth), or with `--preservation-target base` towards the base UNet's own
   prediction for the same noisy latent and caption (`train_ldm`'s `preservation_data`).
2. A shape classifier over the six Shapes shapes and the heart (`mmgen train classifier`),
   trained on other renderings, reads the shape of generated images; the Shapes judge
   reads colour, size and position.
3. LoRA on the UNet's attention (`train_ldm(pretrained=..., lora_rank=...)`) for at most
   `--minutes` of wall-clock training time (`max_minutes`), or to `--steps` (a rerun
   with more steps resumes the adapters where they stopped); `--full` also fine-tunes the whole UNet from the pipeline and
   trains a new UNet from scratch, on the same data and time at `--full-learning-rate`,
   for the curves of new-shape adherence per step (100 prompts per checkpoint).
4. Measured: new-shape adherence on 200 prompts (colours, sizes, positions and template
   phrasings drawn afresh) and on 200 in held-out phrasings (`heldout_caption`), and the
   old vocabulary's adherence on test, compositional, heldout-phrasing and freeform
   (`mmgen eval`'s splits) with the adapters applied, beside the base model's. Results
   go to RUN/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from mmgen.checkpoints import SHAPES_JUDGE, SHAPES_LDM
from mmgen.data.shapes import (
    CAPTION_TEMPLATES, COLOR_RGB, COLORS, OFFSET_JITTER, POSITIONS, RADIUS_JITTER, SIZES, SUPERSAMPLE, SYNONYMS,
    ShapesDataset, ShapesSample, format_caption, render,
)
from mmgen.data.shapes_text import heldout_caption, training_caption
from mmgen.data.transforms import pil_to_tensor, tensor_to_pil
from mmgen.diffusion.training import train_ldm
from mmgen.eval.classifier import ImageClassifier, train_classifier
from mmgen.eval.evaluate import evaluate_text_to_image, load_for_task
from mmgen.eval.judge import attribute_accuracy, load_judge
from mmgen.eval.metrics import generate_images
from mmgen.training import TrainingConfig

NEW_SHAPE = "heart"


def heart_outline(points: int = 96) -> list[tuple[float, float]]:
    """The classic parametric heart, centred and scaled to a circumscribed radius of 1
    (screen coordinates: y points down)."""
    raw = []
    for k in range(points):
        t = 2 * math.pi * k / points
        raw.append((16 * math.sin(t) ** 3, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))))
    cx = (max(x for x, _ in raw) + min(x for x, _ in raw)) / 2
    cy = (max(y for _, y in raw) + min(y for _, y in raw)) / 2
    radius = max(math.hypot(x - cx, y - cy) for x, y in raw)
    return [((x - cx) / radius, (y - cy) / radius) for x, y in raw]


HEART = heart_outline()


def draw_heart(color: str, size: str, position: str, rng: random.Random, side: int = 64) -> Image.Image:
    """A heart placed as Shapes places its shapes (ShapesSample's geometry and jitter)."""
    placed = ShapesSample(
        "circle", color, size, position, caption="", radius_jitter=rng.uniform(*RADIUS_JITTER),
        offset_x=rng.uniform(-OFFSET_JITTER, OFFSET_JITTER), offset_y=rng.uniform(-OFFSET_JITTER, OFFSET_JITTER),
    )
    cx, cy, r = (SUPERSAMPLE * v for v in placed.geometry(side))
    canvas = Image.new("RGB", (SUPERSAMPLE * side, SUPERSAMPLE * side))
    ImageDraw.Draw(canvas).polygon([(cx + r * x, cy + r * y) for x, y in HEART], fill=COLOR_RGB[color])
    return canvas.reduce(SUPERSAMPLE)


def heart_examples(n: int, seed: int, heldout_phrasing: bool = False) -> list[tuple[Image.Image, str, dict[str, str]]]:
    """n hearts with random colour, size and position, and a caption from the Shapes
    templates or (`heldout_phrasing`) from the heldout-phrasing split's sentence shapes
    and synonyms, which no training caption holds."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        color, size, position = rng.choice(COLORS), rng.choice(SIZES), rng.choice(POSITIONS)
        if heldout_phrasing:
            caption = heldout_caption({"shape": NEW_SHAPE, "color": color, "size": size, "position": position}, rng)
        else:
            caption = format_caption(
                rng.choice(CAPTION_TEMPLATES), shape=NEW_SHAPE, color=color,
                size=rng.choice(SYNONYMS["size"][size]), position=rng.choice(SYNONYMS["position"][position]),
            )
        examples.append((draw_heart(color, size, position, rng), caption, {"color": color, "size": size, "position": position}))
    return examples


def write_folder(folder: Path, rows: list[tuple[Image.Image, dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.jsonl", "w") as metadata:
        for i, (image, row) in enumerate(rows):
            image.save(folder / f"{i:05d}.png")
            metadata.write(json.dumps({"file_name": f"{i:05d}.png", **row}) + "\n")
    return folder


def tokenizer_words() -> list[str]:
    """The whole words of the base model's tokenizer (MiniLM's WordPiece vocabulary, 21,360
    of 3 letters or more), the new shape's word left out (words that contain it, such as
    "hearts", stay: shapes-heart-lora was trained with this list)."""
    from transformers import AutoTokenizer

    vocabulary = AutoTokenizer.from_pretrained(SHAPES_LDM / "tokenizer").get_vocab()
    return sorted(word for word in vocabulary if word.isalpha() and len(word) >= 3 and word != NEW_SHAPE)


def with_foreign_words(caption: str, words: list[str], count: int, rng: random.Random) -> str:
    """`caption` with `count` of `words` inserted at random places."""
    tokens = caption.split()
    for word in rng.sample(words, count):
        tokens.insert(rng.randrange(len(tokens) + 1), word)
    return " ".join(tokens)


def build_training_data(
    run: Path, images: int, preservation: int, draw_preservation=None, base_targets: bool = False, foreign_words: int = 0
) -> tuple[Path, Path | None]:
    """`images` hearts, each listed often enough to make half the rows, and `preservation`
    ordinary Shapes train captions with their images: rendered (the old classes cost the
    user nothing), or drawn by `draw_preservation` (the base model's own images of those
    captions, as DreamBooth's class images: the adapters then learn to keep what the base
    draws, not to move it towards the data). Every row is captioned as the base model was
    trained (`training_caption`: its phrasings, lexicon and partial captions), a fresh
    caption for each listing of a heart, so that the adapters learn the word in every
    phrasing and leave the base's phrasings alone. With `base_targets` the old rows go to
    their own folder, returned second, for `train_ldm`'s `preservation_data` (the base
    UNet's predictions as their targets); otherwise all rows share one folder. There,
    `foreign_words` N inserts N words drawn from the whole tokenizer vocabulary into each old
    caption: what the base draws for those (whatever it is) is kept too, so the adapters
    also learn to leave words alone that no training caption holds."""
    rng = random.Random(1)
    hearts = [(image, {"shape": NEW_SHAPE, **attributes}) for image, _, attributes in heart_examples(images, seed=1)]
    rows = [
        (image, {"text": training_caption(attributes, rng)})
        for _repeat in range(max(1, preservation // images))
        for image, attributes in hearts
    ]
    shapes = ShapesDataset("train", n=preservation)
    old = [(sample, training_caption(sample.attributes(), rng)) for sample in (shapes.sample(i) for i in range(preservation))]
    if draw_preservation is None:
        drawn = [render(sample, 64) for sample, _ in old]
    else:
        drawn = tensor_to_pil(generate_images(draw_preservation, [caption for _, caption in old], seed=2, batch_size=50))
    if foreign_words:
        words = tokenizer_words()
        old = [(sample, with_foreign_words(caption, words, foreign_words, rng)) for sample, caption in old]
    kept = [(image, {"text": caption}) for image, (_, caption) in zip(drawn, old)]
    if base_targets:
        return write_folder(run / "data", rows), write_folder(run / "preservation", kept)
    return write_folder(run / "data", rows + kept), None


def build_classifier_data(run: Path, per_shape: int = 400) -> Path:
    """Other renderings (other seeds than the training data): hearts and Shapes val images."""
    rows = [(image, {"text": caption, "shape": NEW_SHAPE}) for image, caption, _ in heart_examples(per_shape, seed=2)]
    shapes = ShapesDataset("val", n=6 * per_shape)
    rows += [(render(s, 64), {"text": s.caption, "shape": s.shape}) for s in (shapes.sample(i) for i in range(6 * per_shape))]
    return write_folder(run / "classifier-data", rows)


def read_hearts(images: torch.Tensor, examples: list, classifier: ImageClassifier, judge) -> dict[str, float]:
    """The share of `images` the classifier reads as hearts, the judge's colour, size and
    position accuracy against `examples`' attributes, and all four right."""
    n, others = len(examples), ("color", "size", "position")
    is_heart = [label == NEW_SHAPE for label in classifier.predict(images)]
    predicted = judge.predict(images)
    read = attribute_accuracy(predicted, {"shape": [None] * n, **{k: [t[k] for *_, t in examples] for k in others}})
    all_right = [heart and all(predicted[k][i] == examples[i][2][k] for k in others) for i, heart in enumerate(is_heart)]
    return {"heart": sum(is_heart) / n, **{k: read[k] for k in others}, "all": sum(all_right) / n}


def new_shape_adherence(
    generate, classifier: ImageClassifier, judge, n: int = 200, seed: int = 0, heldout_phrasing: bool = False
) -> dict[str, float]:
    """`read_hearts` of images generated for n heart prompts (colours, sizes, positions and
    phrasings drawn afresh; see `heart_examples`)."""
    examples = heart_examples(n, seed=1000 + seed, heldout_phrasing=heldout_phrasing)
    images = generate_images(generate, [caption for _, caption, _ in examples], seed, batch_size=50)
    return read_hearts(images, examples, classifier, judge)


def real_heart_ceiling(
    classifier: ImageClassifier, judge, n: int = 200, seed: int = 0, heldout_phrasing: bool = False
) -> dict[str, float]:
    """`read_hearts` of the real renderings of the same n prompts: what the readers allow."""
    examples = heart_examples(n, seed=1000 + seed, heldout_phrasing=heldout_phrasing)
    return read_hearts(torch.stack([pil_to_tensor(image) for image, *_ in examples]), examples, classifier, judge)


def checkpoints_of(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("checkpoint-*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(Path.home() / "mmgen-runs" / "lora-heart"))
    parser.add_argument("--images", type=int, default=100, help="hearts to learn from")
    parser.add_argument("--preservation", type=int, default=6000, help="old-shape images trained beside them")
    parser.add_argument(
        "--preservation-images", choices=("rendered", "generated"), default="rendered",
        help="the old-shape images: rendered, or drawn by the base model from their captions (DreamBooth's class images)",
    )
    parser.add_argument(
        "--preservation-target", choices=("noise", "base"), default="noise",
        help="what the old-shape rows train towards: their noise (DreamBooth), or the base UNet's own prediction "
        "(train_ldm's preservation_data: output preservation)",
    )
    parser.add_argument(
        "--foreign-words", type=int, default=0,
        help="with --preservation-target base: words of the whole tokenizer vocabulary inserted into each old caption",
    )
    parser.add_argument("--minutes", type=float, default=10, help="training time budget of each fine-tune")
    parser.add_argument(
        "--steps", type=int, default=None,
        help="train the adapters to this many steps instead of for --minutes (resuming adapters that stopped short)",
    )
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="of the LoRA adapters")
    parser.add_argument(
        "--lora-weight", type=float, default=1.0,
        help="the adapters' weight when measured (shapes-heart-lora is stored at 0.9 of the trained weights)",
    )
    parser.add_argument("--n", type=int, default=1000, help="prompts per old-vocabulary split")
    parser.add_argument("--full", action="store_true", help="also full fine-tuning and from-scratch runs (curves)")
    parser.add_argument(
        "--full-learning-rate", type=float, default=3e-4,
        help="of the full fine-tune and the from-scratch run (shapes-ldm's own; LoRA takes a larger one)",
    )
    parser.add_argument(
        "--measure-base", action="store_true",
        help="also measure the base model's old vocabulary (checkpoints/shapes-ldm/README.md has it: same prompts and seed)",
    )
    args = parser.parse_args()
    if args.full and args.preservation_target == "base":
        parser.error("--full trains every UNet on one folder of hearts and old shapes: give --preservation-target noise")
    if args.foreign_words < 0:
        parser.error(f"--foreign-words must be at least 0, got {args.foreign_words}")
    if args.foreign_words and args.preservation_target != "base":
        parser.error("--foreign-words: only old rows trained towards the base's predictions can take any caption")
    run = Path(args.run)
    # A rerun keeps what the run folder has (trained adapters, measurements) and adds the rest.
    saved = run / "results.json"
    results: dict = json.loads(saved.read_text()) if saved.is_file() else {}
    results.update(images=args.images, preservation=args.preservation, preservation_images=args.preservation_images,
                   preservation_target=args.preservation_target, foreign_words=args.foreign_words,
                   minutes=None if args.steps else args.minutes, rank=args.rank, learning_rate=args.learning_rate,
                   **({"full_learning_rate": args.full_learning_rate} if args.full else {}))

    def save() -> None:
        saved.write_text(json.dumps(results, indent=2) + "\n")

    classifier_run = run / "classifier"
    if not checkpoints_of(classifier_run):
        train_classifier(TrainingConfig(output_dir=str(classifier_run), epochs=30, batch_size=64, learning_rate=2e-3,
                                        lr_scheduler="cosine", report_to="none", checkpoint_every=100_000),
                         str(build_classifier_data(run)), "shape")
    classifier = ImageClassifier.load(checkpoints_of(classifier_run)[-1] / "model")
    judge = load_judge(SHAPES_JUDGE)
    results["real_hearts"] = real_heart_ceiling(classifier, judge)
    results["real_hearts_heldout_phrasing"] = real_heart_ceiling(classifier, judge, heldout_phrasing=True)

    def training(folder: str, learning_rate: float, checkpoint_every: int = 100) -> TrainingConfig:
        return TrainingConfig(output_dir=str(run / folder), max_steps=args.steps or 100_000,
                              max_minutes=None if args.steps else args.minutes, batch_size=32,
                              learning_rate=learning_rate, lr_scheduler="constant", ema_decay=None,
                              checkpoint_every=checkpoint_every, keep_last=None, report_to="none", resume="latest")

    prompts = ["a large red heart in the center", "a small blue heart in the top left", "a large green star at the bottom"]
    trained = checkpoints_of(run / "lora")
    if not trained or args.steps and int(trained[-1].name.split("-")[1]) < args.steps:
        started = time.time()
        draw = load_for_task(SHAPES_LDM, "text-to-image") if args.preservation_images == "generated" else None
        data, kept = build_training_data(
            run, args.images, args.preservation, draw, args.preservation_target == "base", args.foreign_words
        )
        results["data_seconds"] = round(time.time() - started)
        started = time.time()
        train_ldm(training("lora", args.learning_rate), pretrained=SHAPES_LDM, data=str(data), lora_rank=args.rank,
                  prompts=prompts, preservation_data=str(kept) if kept else None)
        results["lora"] = {"seconds": results.get("lora", {}).get("seconds", 0) + round(time.time() - started)}
    adapters = checkpoints_of(run / "lora")[-1] / "model"
    results.setdefault("lora", {}).update(steps=int(adapters.parent.name.split("-")[1]),
                           adapter_bytes=(adapters / "pytorch_lora_weights.safetensors").stat().st_size)
    adapted = load_for_task(SHAPES_LDM, "text-to-image", lora=adapters, lora_weight=args.lora_weight)
    base = load_for_task(SHAPES_LDM, "text-to-image")
    # Each weight's measurements under their own name: a rerun at another weight adds them.
    measured = "lora" if args.lora_weight == 1.0 else f"lora_at_weight_{args.lora_weight}"
    for name, generate in ((measured, adapted), ("base", base)):
        results.setdefault(name, {})["new_shape"] = new_shape_adherence(generate, classifier, judge)
        results[name]["new_shape_heldout_phrasing"] = new_shape_adherence(generate, classifier, judge, heldout_phrasing=True)
    save()
    print(json.dumps(results, indent=2))
    for name, generate in ((measured, adapted), ("base", base))[: 2 if args.measure_base else 1]:
        if "old_vocabulary" not in results[name]:
            old, _, _ = evaluate_text_to_image(generate, judge, n=args.n, seed=0, batch_size=50)
            results[name]["old_vocabulary"] = {k: v["all"] for k, v in old.items() if k.startswith("adherence/")}
            save()

    if args.full:
        data = run / "data"
        curves = {}
        for name, options in (("full", {"pretrained": SHAPES_LDM}), ("scratch", {"autoencoder": SHAPES_LDM / "vae"})):
            if not checkpoints_of(run / name):
                train_ldm(training(name, args.full_learning_rate, checkpoint_every=200), data=str(data),
                          prompts=prompts, **options)
            curves[name] = {
                int(folder.name.split("-")[1]): {
                    key: value for key, value in new_shape_adherence(
                        load_for_task(folder / "model", "text-to-image"), classifier, judge, n=100
                    ).items() if key in ("heart", "all")
                }
                for folder in checkpoints_of(run / name)
            }
        results["curves"] = curves
    save()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
