"""The `mmgen` command line.

Each command group is a function that adds its parser. A model family's commands live in
a module of their own, sharing `mmgen.cli.common`: `mmgen.cli.diffusion` (`train
autoencoder`, `train ldm`), `mmgen.cli.dvae` (`train dvae`, `train dvae-prior`),
`mmgen.cli.multimodal` (`train mvae`, `train classifier`, `impute`, `data polymnist`,
`data modalities`) and `mmgen.cli.contrastive` (`train clip`, `retrieve`); this module
holds the shared ones (`data`, `train judge`, `sample`, `eval`). User errors (bad paths,
bad data, bad settings) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import warnings
from pathlib import Path

from mmgen.cli import contrastive, diffusion, dvae, multimodal
from mmgen.cli.common import (
    HelpFormatter, add_column_arguments, add_command, add_lora_weight_argument, add_training_arguments, apply_columns,
    check_draws, check_guidance_scale, check_lora_weight, check_new_model_options, data_columns, image_output, int_list,
    report_training, training_config_from_args, writable_folder,
)
from mmgen.errors import MMGenError


# -- mmgen data --------------------------------------------------------------------------


def _data_shapes(args: argparse.Namespace) -> None:
    from mmgen.data.shapes import export_shapes

    out = export_shapes(args.out, split=args.split, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {out / 'metadata.jsonl'}")


def _data_emoji(args: argparse.Namespace) -> None:
    from mmgen.data.emoji import build_emoji

    writable_folder(Path(args.out), f"--out {args.out}")
    out = build_emoji(args.package, args.out)
    print(f"wrote {out / 'train'} and {out / 'heldout'}")


def _data_preview(args: argparse.Namespace) -> None:
    import math
    import random

    import torch

    from mmgen.data.transforms import captioned_grid, tensor_to_pil

    if args.n < 1:
        raise MMGenError(f"--n must be at least 1, got {args.n}")
    out = image_output(args.out)
    limit = None if args.shuffle else args.n  # Shapes renders only the first n unless they are drawn from all
    dataset = _open_for_inspection(args.source, size=args.size, n=limit, seed=args.seed, on_error=args.on_error)
    count = min(args.n, len(dataset))
    indices = sorted(random.Random(args.seed).sample(range(len(dataset)), count)) if args.shuffle else range(count)
    examples = [dataset[i] for i in indices]
    missing = torch.zeros(3, args.size, args.size)  # the tile of an entry without its image
    images = [tensor_to_pil(example["pixel_values"] if example["pixel_values"] is not None else missing)[0]
              for example in examples]
    captions = [str(example["text"]) if example["text"] is not None else "(no caption)" for example in examples]
    captioned_grid(images, captions, columns=math.ceil(math.sqrt(len(images)))).save(out)
    for i, caption in zip(indices, captions):
        print(f"{i:5d}  {caption}")
    print(f"wrote {args.out} ({len(images)} images of {len(dataset)})")


def _open_for_inspection(source: str, **options):
    """A dataset with its entries that lack a caption or image kept (None there), to show
    them as such; read strictly if no entry has its main image (a wrong column, most
    likely), so that the error says why."""
    from mmgen.data import open_dataset

    dataset = open_dataset(source, allow_missing=True, **options)
    if hasattr(dataset, "has_images") and not dataset.has_images():
        dataset = open_dataset(source, **options)
    return dataset


def _data_check(args: argparse.Namespace) -> None:
    with warnings.catch_warnings():  # the skipped entries are listed below, one per line
        warnings.simplefilter("ignore")
        dataset = _open_for_inspection(args.source, size=args.size, on_error="skip")
    skipped = getattr(dataset, "skipped", [])
    for file, reason in skipped:
        print(f"skipped  {file}: {reason}")
    # Entries lacking a caption or their image are usable by some trainers only: listed, not failed.
    partial = [(i, lacking) for i in range(len(dataset)) if (lacking := _lacking(dataset, i))]
    if partial and len(partial) == len(dataset) and all(lacking.startswith("caption") and not lacking.endswith(" image")
                                                        for _, lacking in partial):  # each has an image somewhere
        print(f"{len(dataset)} examples, none with a caption: data for the multimodal VAEs (text-to-image training "
              f"needs captions), {len(skipped)} skipped")
    else:
        for i, lacking in partial:
            print(f"no {lacking}  {dataset.item_source(i)}")
        print(f"{len(dataset) - len(partial)} usable examples, {len(skipped)} skipped"
              + (f", {len(partial)} without a caption or image (the multimodal VAEs train on what they have; "
                 "text-to-image training stops at them unless --on-error skip)" if partial else ""))
    _note_upscaled_images(dataset, args.size)
    if skipped:
        raise SystemExit(1)


def _note_upscaled_images(dataset, size: int) -> None:
    """Say how many images are smaller than `size` on their shorter side: upscaled, they
    train blurrier than the rest (icons or scans of a few dozen pixels, say)."""
    if not hasattr(dataset, "item_image_size"):  # Shapes: drawn at the size asked for
        return
    columns = ["pixel_values", *dataset.image_columns]
    sources = {(i, column): dataset.item_image_size(i, column) for i in range(len(dataset)) for column in columns}
    small = {key: found for key, found in sources.items() if found is not None and min(found) < size}
    if small:
        (index, column), (width, height) = min(small.items(), key=lambda entry: min(entry[1]))
        shown = dataset.item_source(index) + ("" if column == "pixel_values" else f" ({column})")
        print(f"{len(small)} of {sum(found is not None for found in sources.values())} images have a side under {size} px "
              f"and are upscaled to it, blurrier than the rest (the smallest: {width} x {height}, {shown}); "
              "train at a smaller image size, or leave them out")


def _lacking(dataset, index: int) -> str:
    """What item `index` lacks ("caption", "image", "main image (file_name)" where another
    image column has one, or both: "caption nor image"), or "" if complete."""
    if not hasattr(dataset, "item_has_image"):  # Shapes: always complete
        return ""
    lacking = [] if dataset.item_captions(index) else ["caption"]
    if not dataset.item_has_image(index):
        others = any(dataset.item_has_image(index, column) for column in dataset.image_columns)
        lacking.append("main image (file_name)" if others else "image")
    return " nor ".join(lacking)


def _data_encode_text(args: argparse.Namespace) -> None:
    from mmgen.data import open_dataset
    from mmgen.text import CachedTextEncoder, TextEncoder

    dataset = open_dataset(args.source, n=args.n)
    if not hasattr(dataset, "captions"):
        raise MMGenError(f"{args.source}: this dataset cannot list its captions")
    cache = CachedTextEncoder(TextEncoder.from_pretrained(args.text_encoder), cache_root=args.cache_dir)
    before = len(cache)
    cache.precompute(dataset.captions())
    print(f"{len(cache) - before} new caption encodings, {len(cache)} in {cache.directory}")


def _add_data_commands(subparsers) -> None:
    group = subparsers.add_parser("data", help="write, preview and check datasets", formatter_class=HelpFormatter)
    commands = group.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    from mmgen.data.shapes import SPLITS

    shapes = add_command(
        commands, "shapes", _data_shapes, "write Shapes as an image folder with metadata.jsonl",
    )
    shapes.add_argument("--out", required=True, help="folder to write into")
    shapes.add_argument("--split", default="train", choices=SPLITS, help="which split")
    shapes.add_argument("-n", "--n", type=int, default=None, help="number of samples (default: the split's size)")
    shapes.add_argument("--size", type=int, default=64, help="image side in pixels (>= 16)")
    shapes.add_argument("--seed", type=int, default=0, help="dataset seed: the same seed gives the same samples")

    emoji = add_command(
        commands, "emoji", _data_emoji, "build real emoji image folders from npm emoji-datasource packages",
        "Build the emoji of `npm pack emoji-datasource-google` (and of other vendors' packages) into OUT/train "
        "and OUT/heldout (5% of the names, fixed): rows with text = the Unicode name, category, subcategory "
        "and short_name; the first package's 64 px glyph is file_name, each further package's the image column "
        "image_<vendor>.",
    )
    emoji.add_argument("--package", nargs="+", required=True, help="npm tarballs (or unpacked folders), first the main one")
    emoji.add_argument("--out", required=True, help="folder to write into")

    source_help = "shapes[:SPLIT], an image folder (metadata.jsonl or .csv, or image+txt pairs), a saved HF dataset, or hf:NAME[:SPLIT]"
    preview = add_command(commands, "preview", _data_preview, "render a grid of a dataset's images with their captions under them (and print the captions)")
    preview.add_argument("source", help=source_help)
    preview.add_argument("--out", default="preview.png", help="PNG to write")
    preview.add_argument("-n", "--n", type=int, default=16, help="number of examples")
    preview.add_argument("--size", type=int, default=64, help="image side in pixels")
    preview.add_argument("--seed", type=int, default=0, help="seed of Shapes and of random captions")
    preview.add_argument(
        "--on-error", default="raise", choices=("raise", "skip"),
        help="bad entries: stop at the first, or skip them (`mmgen data check` lists them)",
    )
    preview.add_argument("--shuffle", action="store_true", help="show random entries (drawn by --seed), not the first n")

    check = add_command(
        commands, "check", _data_check, "check every entry of a dataset and list the unusable ones (exit 1 if any)"
    )
    check.add_argument("source", help=source_help)
    check.add_argument("--size", type=int, default=64, help="image side in pixels")
    check.add_argument("--on-error", default="skip", help=argparse.SUPPRESS)  # it always skips: no --on-error to give

    encode = add_command(
        commands, "encode-text", _data_encode_text,
        "encode a dataset's captions once with a frozen text encoder and cache them on disk",
        "Encode every caption of a dataset with a frozen text encoder and store the results in the "
        "text-encoding cache ($MMGEN_CACHE, default ~/.cache/mmgen), where every model family "
        "that uses the same encoder weights finds them.",
    )
    encode.add_argument("source", help=source_help)
    encode.add_argument("--text-encoder", default="minilm", help="`minilm`, or a folder with tokenizer/ and text_encoder/")
    encode.add_argument("-n", "--n", type=int, default=None, help="Shapes only: the first n samples")
    encode.add_argument("--cache-dir", default=None, help="cache root (default: $MMGEN_CACHE or ~/.cache/mmgen)")
    multimodal.add_data_commands(commands, source_help)


def _train_judge(args: argparse.Namespace) -> None:
    from mmgen.eval.judge import train_judge

    result = train_judge(
        training_config_from_args(args), data=args.data, image_size=args.image_size,
        channels=args.channels, feature_dim=args.feature_dim, compositional_samples=args.compositional_samples,
        validation_size=args.validation_size,
    )
    report_training(result, "judge")


def _add_train_commands(subparsers) -> None:
    group = subparsers.add_parser(
        "train",
        help="train a model on the shared Accelerate loop",
        description="Train a model. Every recipe runs single-process or under "
        "`accelerate launch --multi_gpu --num_processes N -m mmgen.cli train ...`, "
        "checkpoints every --checkpoint-every steps and continues with --resume latest.",
        formatter_class=HelpFormatter,
    )
    recipes = group.add_subparsers(dest="train_command", required=True, metavar="RECIPE")

    judge = add_command(
        recipes, "judge", _train_judge,
        "the Shapes judge: a CNN that reads shape, color, size and position (for evaluation)",
    )
    judge.add_argument("--data", default="shapes", help="training data with the four Shapes attribute columns")
    judge.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    judge.add_argument("--channels", type=int_list, default=(16, 32, 64, 128), help="conv widths, comma-separated")
    judge.add_argument("--feature-dim", type=int, default=256, help="width of the penultimate (FID) features")
    judge.add_argument(
        "--compositional-samples", type=int, default=10_000,
        help="real images of the held-out (color, shape) pairs added to the judge's training data (seed + 1)",
    )
    judge.add_argument("--validation-size", type=int, default=1000, help="real val images scored at each validation")
    add_training_arguments(judge)

    data_help = "shapes[:SPLIT], an image folder, a saved HF dataset, or hf:NAME[:SPLIT]"
    diffusion.add_train_commands(recipes, data_help)
    dvae.add_train_commands(recipes, data_help)
    multimodal.add_train_commands(recipes, data_help)
    contrastive.add_train_commands(recipes, data_help)


# -- mmgen sample ------------------------------------------------------------------------


def _sample(args: argparse.Namespace) -> None:
    import torch
    from tqdm.auto import tqdm

    from mmgen.data.transforms import make_grid
    from mmgen.eval.evaluate import SAMPLING_STEPS, default_guidance_scale, load_text_to_image_pipeline
    from mmgen.text.encoder import check_texts

    prompts = list(args.prompts)
    if args.prompts_file:
        if not Path(args.prompts_file).is_file():
            raise MMGenError(f"--prompts-file {args.prompts_file}: no such file")
        try:
            lines = Path(args.prompts_file).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise MMGenError(f"--prompts-file {args.prompts_file}: not UTF-8 text (byte {error.start})") from error
        prompts += [line.strip() for line in lines if line.strip()]
        if not any(line.strip() for line in lines):
            raise MMGenError(f"--prompts-file {args.prompts_file}: no prompts in it (one per line)")
    if not prompts:
        raise MMGenError("no prompt given: pass one or more prompts, or --prompts-file")
    if any(not p.strip() for p in prompts):
        raise MMGenError("empty prompt: describe the image (guidance needs a prompt to move towards)")
    check_texts(prompts if args.negative_prompt is None else [*prompts, args.negative_prompt])
    check_draws(args.n, len(prompts))
    if args.steps is not None and args.steps < 1:
        raise MMGenError(f"--steps must be at least 1, got {args.steps}")
    if args.batch_size < 1:
        raise MMGenError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_guidance_scale(args.guidance_scale)
    for option, value, rule, allowed in (
        ("--temperature", args.temperature, "above 0", lambda t: t > 0),
        ("--top-k", args.top_k, "at least 1", lambda k: k >= 1),
        ("--top-p", args.top_p, "in (0, 1]", lambda p: 0 < p <= 1),
    ):
        if value is not None and not allowed(value):
            raise MMGenError(f"{option} must be {rule}, got {value}")
    out = image_output(args.out)
    check_lora_weight(args)
    pipe = load_text_to_image_pipeline(
        args.model, scheduler=args.scheduler or "dpm++", lora=args.lora, lora_weight=args.lora_weight
    )
    pipe.set_progress_bar_config(disable=True)
    token_sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    if type(pipe).__name__ == "DiscreteVAEPipeline":
        given = [option for option, value in (("--steps", args.steps), ("--scheduler", args.scheduler)) if value is not None]
        if given:
            raise MMGenError(f"{', '.join(given)}: only for diffusion models; {args.model} is a discrete-VAE pipeline, "
                             "which draws its image tokens one by one")
    else:
        given = [f"--{name.replace('_', '-')}" for name, value in token_sampling.items() if value is not None]
        if given:
            raise MMGenError(f"{', '.join(given)}: only for discrete-VAE pipelines; {args.model} is a diffusion model")
        token_sampling = {}
    generator = torch.Generator().manual_seed(args.seed)
    guidance_scale = default_guidance_scale(pipe) if args.guidance_scale is None else args.guidance_scale
    requests = [p for p in prompts for _ in range(args.n)]
    batches = [requests[i : i + args.batch_size] for i in range(0, len(requests), args.batch_size)]
    images = []
    for batch in tqdm(batches, desc="sampling", unit="batch", disable=len(batches) == 1):
        images += pipe(
            batch, num_inference_steps=args.steps or SAMPLING_STEPS, guidance_scale=guidance_scale, generator=generator,
            negative_prompt=args.negative_prompt, **{name: value for name, value in token_sampling.items() if value is not None},
        ).images
    make_grid(images, columns=args.n).save(out)
    print(f"wrote {out}: {len(prompts)} prompt(s) x {args.n} images, one row per prompt")


def _add_sample_command(subparsers) -> None:
    from mmgen.checkpoints import SHAPES_LDM

    command = add_command(
        subparsers, "sample", _sample, "generate images from text prompts",
        "Generate images from prompts with a text-to-image checkpoint and write them as one PNG "
        "grid, a row per prompt. The same --seed gives the same images.",
    )
    command.add_argument("prompts", nargs="*", help="prompts, e.g. \"a big blue star in the middle\"")
    command.add_argument("--prompts-file", default=None, help="a text file with one prompt per line")
    command.add_argument("-n", "--n", type=int, default=4, help="images per prompt")
    command.add_argument(
        "--model", default=str(SHAPES_LDM), help="pipeline folder: latent diffusion or the discrete-VAE baseline"
    )
    command.add_argument(
        "--lora", default=None, metavar="PATH",
        help="LoRA adapters for --model (a folder with pytorch_lora_weights.safetensors: mmgen train ldm --lora-rank)",
    )
    add_lora_weight_argument(command)
    command.add_argument("--steps", type=int, default=None, help="sampling steps of diffusion models (default: 20)")
    command.add_argument(
        "--scheduler", default=None,
        help="sampler of diffusion models: dpm++ (the default), ddim, ddpm, euler, euler-a, pndm or unipc"
    )
    command.add_argument(
        "--guidance-scale", type=float, default=None,
        help="classifier-free guidance scale (default: the pipeline's; 3 for latent diffusion, 1.5 for the discrete-VAE baseline)",
    )
    command.add_argument(
        "--negative-prompt", default=None, metavar="TEXT",
        help="what guidance steers away from, for every prompt (default: the empty prompt)",
    )
    command.add_argument("--temperature", type=float, default=None, help="token sampling temperature (discrete VAE)")
    command.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens (discrete VAE)")
    command.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (discrete VAE)")
    command.add_argument("--batch-size", type=int, default=16, help="images generated at a time")
    command.add_argument("--seed", type=int, default=0, help="sampling seed")
    command.add_argument("--out", default="samples.png", help="PNG to write")


# -- mmgen eval --------------------------------------------------------------------------


def _eval(args: argparse.Namespace) -> None:
    import json

    import torch

    from mmgen.data.transforms import captioned_grid
    from mmgen.eval import evaluate

    if Path(args.out).suffix.lower() != ".json":
        raise MMGenError(f"--out {args.out}: the report is JSON; name a .json file (the grid goes beside it as .png)")
    writable_folder(Path(args.out).parent, f"--out {args.out}")
    check_guidance_scale(args.guidance_scale)
    for option, value in (("--n", args.n), ("--batch-size", args.batch_size)):
        if value < 1:
            raise MMGenError(f"{option} must be at least 1, got {value}")
    fewest_steps = 0 if args.task == "impute" else 1  # no Gibbs round is one posterior draw; no denoising step is noise
    if args.steps is not None and args.steps < fewest_steps:
        raise MMGenError(f"--steps must be at least {fewest_steps} for --task {args.task}, got {args.steps}")
    if args.lora and args.task != "text-to-image":
        raise MMGenError(f"--lora adapts text-to-image pipelines; --task {args.task} takes none")
    if args.splits and (args.task != "text-to-image" or args.data):
        raise MMGenError("--splits chooses the Shapes prompt splits of --task text-to-image (without --data)")
    _check_judges(args)
    check_lora_weight(args)
    torch.manual_seed(args.seed)
    if args.data:
        results, settings, images, captions = _evaluate_on_data(args)
    elif args.task == "retrieval":
        raise MMGenError("--task retrieval measures a contrastive model on --data FOLDER; give --data")
    else:
        results, settings, images, captions = evaluate.run_task(
            args.task, args.model, args.judge, n=args.n, seed=args.seed, batch_size=args.batch_size,
            steps=args.steps, guidance_scale=args.guidance_scale, scheduler=args.scheduler, lora=args.lora,
            lora_weight=args.lora_weight, **({"splits": args.splits} if args.splits else {}),
        )
    adapters = {"lora": args.lora, "lora_weight": args.lora_weight} if args.lora else {}
    report = {
        "model": str(args.model), **adapters, "task": args.task, **({"splits": args.splits} if args.splits else {}),
        "n": args.n, "seed": args.seed, **settings, "results": results,
    }
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(evaluate.format_table(results)))
    if images:
        grid = out.with_suffix(".png")
        captioned_grid(images, captions).save(grid)
        print(f"wrote {out} and {grid}")
    else:
        print(f"wrote {out}")


def _check_judges(args: argparse.Namespace) -> None:
    """One line for a judge that this evaluation would not read (it used to be ignored):
    the Shapes judge reads Shapes, --clip and the classifiers read --data."""
    from mmgen.checkpoints import SHAPES_JUDGE

    if args.clip and (not args.data or args.task == "retrieval"):
        raise MMGenError("--clip judges text-to-image, impute and reconstruct on --data; "
                         + ("--task retrieval measures --model itself" if args.data else "give --data, or leave it out"))
    if (args.classifier or args.label) and not (args.task == "impute" and args.data):
        raise MMGenError("--classifier and --label score --task impute on --data")
    if args.data and args.judge != str(SHAPES_JUDGE):
        raise MMGenError("--judge reads Shapes; on --data, --clip (or --classifier) judges")


def _evaluate_on_data(args: argparse.Namespace) -> tuple[dict, dict, list, list]:
    """`mmgen eval --data`: (results, settings, images, captions) as `evaluate.run_task` gives."""
    from mmgen.eval import on_data

    settings = {"data": str(args.data), **data_columns(args), "clip": args.clip}
    if args.task == "judge":
        raise MMGenError("--task judge measures the Shapes judge on Shapes; it takes no --data")
    if args.task == "impute":
        return multimodal.evaluate_on_data(args)
    if args.task == "retrieval":
        results, images, captions = on_data.evaluate_retrieval(args.model, args.data, args.n, args.seed)
        return results, settings, images, captions
    if args.task == "reconstruct":
        results, images, captions = on_data.evaluate_reconstruction(args.model, args.data, args.n, args.batch_size, args.clip)
        return results, settings, images, captions
    results, sampling, images, captions = on_data.evaluate_text_to_image(
        args.model, args.data, args.clip, args.n, args.seed, args.batch_size, args.steps, args.guidance_scale,
        args.scheduler, args.lora, args.lora_weight,
    )
    return results, {**settings, **sampling}, images, captions


def _add_eval_command(subparsers) -> None:
    from mmgen.checkpoints import SHAPES_JUDGE
    from mmgen.eval.prompts import PROMPT_SPLITS

    command = add_command(
        subparsers, "eval", _eval, "measure a checkpoint on Shapes with the judge, or on your data",
        "Measure a checkpoint on Shapes prompts with the Shapes judge: prompt adherence, FID on judge "
        "features (with the real-vs-real floor) and diversity for text-to-image; coherence per subset "
        "of observed modalities for imputation; PSNR/SSIM for reconstruction; a judge's own accuracy "
        "on real images (--task judge). With --data, on your own image-text data: PSNR/SSIM of "
        "reconstructions; text-to-image R-precision among 100 of the data's captions, CLIP score and FID "
        "on a contrastive model's features (--clip, from mmgen train clip), each beside the real images' "
        "own; a contrastive model's retrieval recall (--task retrieval); a multimodal VAE's coherence "
        "(--classifier, --label), leave-k-out for every k and joint. Writes a JSON of metrics and a PNG "
        "grid of samples next to it.",
    )
    command.add_argument("--model", required=True, help="checkpoint folder to evaluate")
    command.add_argument("--lora", default=None, metavar="PATH", help="LoRA adapters for a text-to-image --model")
    add_lora_weight_argument(command)
    command.add_argument(
        "--task", required=True, choices=("text-to-image", "impute", "reconstruct", "retrieval", "judge"), help="what to measure"
    )
    command.add_argument("-n", "--n", type=int, default=500, help="prompts (or images) per split")
    command.add_argument(
        "--splits", nargs="+", default=None, choices=PROMPT_SPLITS, metavar="SPLIT",
        help=f"text-to-image on Shapes: the prompt splits to measure, of {', '.join(PROMPT_SPLITS)} (default: all; "
        "FID and diversity come with test)",
    )
    command.add_argument("--seed", type=int, default=0, help="sampling seed")
    command.add_argument("--out", default="results.json", help="JSON to write; the grid goes next to it as .png")
    command.add_argument("--judge", default=str(SHAPES_JUDGE), help="Shapes judge checkpoint")
    command.add_argument(
        "--steps", type=int, default=None,
        help="sampling steps of diffusion models (default 20); pseudo-Gibbs rounds of multimodal VAEs' imputation "
        "(default 2, mixtures 0)",
    )
    command.add_argument("--scheduler", default="dpm++", help="sampler of diffusion models (see mmgen sample)")
    command.add_argument(
        "--guidance-scale", type=float, default=None,
        help="classifier-free guidance scale (default: the pipeline's; 3 for latent diffusion, 1.5 for the discrete-VAE baseline)",
    )
    command.add_argument("--batch-size", type=int, default=32, help="samples generated at a time")
    mine = command.add_argument_group("on your own data")
    mine.add_argument("--data", default=None, help="data to measure on (e.g. a held-out image folder) instead of Shapes")
    mine.add_argument(
        "--clip", default=None, metavar="PATH",
        help="contrastive model (mmgen train clip) that judges text-to-image (and FID of reconstructions) on --data",
    )
    mine.add_argument(
        "--classifier", nargs="+", default=None, metavar="[NAME=]PATH",
        help="classifiers (mmgen train classifier) that read --label in modality NAME's images; a bare PATH reads every "
        "image modality",
    )
    mine.add_argument("--label", default=None, help="the data's column of labels the classifiers read")
    mine.add_argument(
        "--given", default=None, choices=("product", "mixture"),
        help="posterior of the given modalities (default: product; mixture for moe); see mmgen impute --help",
    )


# -- entry point -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from mmgen import __version__

    parser = argparse.ArgumentParser(
        prog="mmgen",
        description="Generative multimodal models: data, training, sampling and evaluation.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmgen {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(subparsers)
    _add_train_commands(subparsers)
    _add_sample_command(subparsers)
    multimodal.add_impute_command(subparsers)
    contrastive.add_retrieve_command(subparsers)
    _add_eval_command(subparsers)
    add_column_arguments(parser)
    return parser


def _one_line(error: MMGenError) -> str:
    """The error's message; for one re-raised from a DataLoader worker, which carries the
    worker's traceback, only its last line without the exception's class name."""
    message = str(error).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message


_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _one_line_warnings(format_warning):
    """`warnings.formatwarning` that writes mmgen's own warnings as one line, as its errors
    are, and leaves others (torch's, diffusers') to `format_warning`: their file and source
    line help report them upstream."""

    def format(message, category, filename, lineno, line=None) -> str:
        if _PACKAGE_DIR in Path(filename).resolve().parents:
            return f"mmgen: warning: {message}\n"
        return format_warning(message, category, filename, lineno, line)

    return format


def _resume_point(args: argparse.Namespace) -> str:
    """For an interrupted training command, where `--resume latest` would continue."""
    if not getattr(args, "train_command", None) or not getattr(args, "output_dir", None):
        return ""
    from mmgen.training.checkpoint import list_checkpoints

    saved = list_checkpoints(Path(args.output_dir) / "checkpoints")
    return f"; --resume latest continues from {saved[-1]}" if saved else "; no checkpoint was saved yet"


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error on
    it; where poll is missing, as on Windows, say no)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _first_process() -> bool:
    """Whether this process is the first of a launched run (torchrun and `accelerate launch`
    set RANK), or runs alone."""
    rank = os.environ.get("RANK", "").strip()
    return not rank.isdigit() or int(rank) == 0


@contextlib.contextmanager
def _said_by_the_first_process():
    """The other processes of a launched run leave messages and warnings to the first, which
    says the same once; errors, which may be their own, they still print (stderr)."""
    if _first_process():
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _said_by_the_first_process():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    format_warning = warnings.formatwarning
    warnings.formatwarning = _one_line_warnings(format_warning)
    try:
        apply_columns(args)
        check_new_model_options(args)
        args.handler(args)
        sys.stdout.flush()  # here, so that a reader gone away is caught below rather than at exit
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe broke (a data loader's, say): a real failure
            raise
        # The reader of the output (`mmgen ... | head`) stopped reading: stop quietly, as Unix
        # tools do, with nothing left for Python to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except MMGenError as error:
        print(f"mmgen: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # On a line of its own (a progress bar may hold the cursor), with where training resumes.
        if _first_process():
            print(f"\nmmgen: interrupted{_resume_point(args)}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_warning
    return 0
