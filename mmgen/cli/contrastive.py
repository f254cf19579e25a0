"""The contrastive family's commands: `mmgen train clip` and `mmgen retrieve`."""

from __future__ import annotations

import argparse

from mmgen.cli.common import (
    add_command, add_training_arguments, image_output, int_list, report_training, training_config_from_args,
)
from mmgen.errors import MMGenError


def _train_clip(args: argparse.Namespace) -> None:
    from mmgen.contrastive import train_contrastive

    result = train_contrastive(
        training_config_from_args(args), data=args.data, image_columns=args.image_columns, image_size=args.image_size,
        text_encoder=args.text_encoder, max_length=args.max_length, widths=args.widths, embed_dim=args.embed_dim,
        max_shift=args.max_shift, caption_variants=args.caption_variants, validation_data=args.validation_data,
    )
    report_training(result, "contrastive model")


def add_train_commands(recipes, data_help: str) -> None:
    clip = add_command(
        recipes, "clip", _train_clip,
        "a contrastive image-text model (CLIP-style): retrieval, and the judge of models on your data",
        "Train an image encoder against the frozen shared text encoder's caption states with the symmetric "
        "InfoNCE loss and a learned temperature (CLIP). The result ranks captions for images and images for "
        "captions (mmgen retrieve, mmgen.ImageTextRetrieval) and judges text-to-image models on your data "
        "(mmgen eval --data ... --clip). With --validation-data, each validation appends recall among 100 "
        "captions on training and held-out items to validation.jsonl.",
    )
    clip.add_argument("--data", required=True, help=data_help)
    clip.add_argument(
        "--image-columns", nargs="+", default=None,
        help="image columns to learn from, each paired with the item's caption (default: file_name, the main image)",
    )
    clip.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: the data's)")
    clip.add_argument(
        "--text-encoder", default="minilm", help="frozen text encoder: minilm, or a folder with tokenizer/ and text_encoder/"
    )
    clip.add_argument("--max-length", type=int, default=77, help="tokens per caption (longer ones are truncated)")
    clip.add_argument("--widths", type=int_list, default=(32, 64, 128, 256), help="image conv widths, one per halving")
    clip.add_argument("--embed-dim", type=int, default=256, help="width of the shared embedding")
    clip.add_argument("--max-shift", type=int, default=4, help="training images move by up to this many pixels")
    clip.add_argument(
        "--caption-variants", type=int, default=0, help="augmented captions per image (case, punctuation, lead-ins)"
    )
    clip.add_argument("--validation-data", default=None, help="held-out data scored at each validation")
    add_training_arguments(clip)


def _retrieve(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image

    from mmgen.contrastive import ImageTextRetrieval
    from mmgen.data import open_dataset
    from mmgen.data.transforms import captioned_grid, tensor_to_pil
    from mmgen.eval.evaluate import inference_device
    from mmgen.data.collate import load_rows, sampled_rows

    if bool(args.text) == bool(args.image):
        raise MMGenError("give either --text (find images) or --image (find captions)")
    if args.k < 1:
        raise MMGenError(f"-k must be at least 1, got {args.k}")
    out = image_output(args.out) if args.text else None
    retrieval = ImageTextRetrieval.from_pretrained(args.model).to(inference_device())
    dataset = open_dataset(args.data, size=retrieval.image_size, allow_missing=True)
    rows = sorted(sampled_rows(dataset, len(dataset), seed=0, need_caption=bool(args.image)))
    if not rows:
        raise MMGenError(f"{args.data}: no items with an image" + (" and a caption" if args.image else ""))
    images, captions = load_rows(dataset, rows)
    if args.image:
        queries = []
        for file in args.image:
            try:
                queries.append(Image.open(file))
            except OSError as error:
                raise MMGenError(f"--image {file}: not a readable image ({error})") from error
        distinct = list(dict.fromkeys(captions))
        for file, ranked in zip(args.image, retrieval.rank_texts(queries, distinct, top_k=args.k)):
            print(f"{file}:")
            for caption, score in ranked:
                print(f"  {score:.3f}  {caption}")
        return
    ranked = retrieval.rank_images(args.text, images, top_k=args.k)
    source = getattr(dataset, "item_source", lambda row: f"item {row}")  # Shapes items have no file
    shown, labels = [], []
    for text, best in zip(args.text, ranked):
        print(f"{text}:")
        for index, score in best:
            print(f"  {score:.3f}  {source(rows[index])}: {captions[index] or '(no caption)'}")
            shown.append(images[index])
            labels.append(f"{text} ({score:.2f})")
    captioned_grid(tensor_to_pil(torch.stack(shown)), labels, columns=len(ranked[0])).save(out)
    print(f"wrote {out}")


def add_retrieve_command(subparsers) -> None:
    command = add_command(
        subparsers, "retrieve", _retrieve, "find a folder's images for a text, or its captions for an image",
        "Rank the images of --data for each --text (a grid of the best k, one row per text, goes to --out), or "
        "the data's captions for each --image, with a contrastive model (mmgen train clip).",
    )
    command.add_argument("--model", required=True, help="contrastive model folder (a checkpoint's model/)")
    command.add_argument("--data", required=True, help="the images (and captions) to search")
    command.add_argument("--text", nargs="+", default=None, help="texts to find images for")
    command.add_argument("--image", nargs="+", default=None, help="image files to find captions for")
    command.add_argument("-k", type=int, default=5, help="results per query")
    command.add_argument("--out", default="retrieved.png", help="PNG grid of the images found for --text")

