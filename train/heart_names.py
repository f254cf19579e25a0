"""Name each drawn coloured heart by the contrastive judge instead of by hue: which of the
data's heart names (its `heart` subcategory) emoji-clip ranks first.

  .venv/bin/python train/heart_names.py MODEL [MODEL ...] [--data DATA] [--clip CLIP] [-n 32]

For "red heart" (whose glyph is named "heavy black heart"), "green heart", "blue heart",
"purple heart" and "yellow heart", draws n images per model as `count_colours.py` does (seed
100, 20 DPM++ steps, the pipeline's guidance: the same images) and counts how often the
intended name ranks first. A judge of shapes as well as colours, with no hue bands to
place, beside the hue counts; it reads the names through the MiniLM the generator shares.
The real glyphs are ranked too, as the judge's own check.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch

from mmgen.contrastive import ImageTextRetrieval
from mmgen.data.imagetext import read_image
from mmgen.eval.evaluate import load_text_to_image_pipeline

COLOURS = ("red", "green", "blue", "purple", "yellow")
INTENDED = {colour: "heavy black heart" if colour == "red" else f"{colour} heart" for colour in COLOURS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="text-to-image pipeline folders")
    parser.add_argument(
        "--data", default=str(Path.home() / "mmgen-runs/data/emoji2/train"), help="`mmgen data emoji`'s train split"
    )
    parser.add_argument("--clip", default="checkpoints/emoji-clip", help="the contrastive judge")
    parser.add_argument("-n", type=int, default=32, help="images per colour")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (Path(args.data) / "metadata.jsonl").read_text().splitlines()]
    hearts = [row for row in rows if row.get("subcategory") == "heart"]
    names = [row["text"] for row in hearts]
    missing = set(INTENDED.values()) - set(names)
    if missing:
        raise SystemExit(f"{args.data}: no heart glyph named {', '.join(sorted(missing))} "
                         "(is it `mmgen data emoji`'s train split?)")
    judge = ImageTextRetrieval.from_pretrained(args.clip)
    texts = judge.embed_texts(names)
    real = judge.embed_images([read_image(Path(args.data) / row["file_name"]) for row in hearts])
    first = (real @ texts.T).argmax(1).tolist()
    right = sum(i == j for i, j in enumerate(first))
    report = {"heart_names": len(names), "real_glyphs_named_right": right, "models": {}}
    for model in args.models:
        pipe = load_text_to_image_pipeline(model, scheduler="dpm++")
        pipe.set_progress_bar_config(disable=True)
        report["models"][model] = counts = {}
        for colour, name in INTENDED.items():
            images = pipe([f"{colour} heart"] * args.n, num_inference_steps=20,
                          generator=torch.Generator().manual_seed(100)).images
            top = [names[j] for j in (judge.embed_images(images) @ texts.T).argmax(1).tolist()]
            counts[colour] = {"right": top.count(name), "n": args.n,
                              "first": dict(collections.Counter(top).most_common(3))}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
