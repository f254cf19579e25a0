"""Count how often an emoji pipeline draws a thing in its named colour.

  .venv/bin/python train/count_colours.py checkpoints/emoji-ldm [-n 32] [--noun heart] [--guidance G]

For "red heart", "green heart", "blue heart", "purple heart" and "yellow heart" (or another
noun: "balloon", whose one training glyph is red, measures colour words on pairs never
trained on), draws n images (seed 100, 20 DPM++ steps, the pipeline's guidance
unless `--guidance`) and names each one's colour by the median hue of its saturated
pixels. The bands were checked on the real glyphs: Google's five hearts read as their own
colours (its pink heart reads magenta).
"""

from __future__ import annotations

import argparse
import colorsys
import json

import numpy as np
import torch

from mmgen.eval.evaluate import load_text_to_image_pipeline

COLOURS = ("red", "green", "blue", "purple", "yellow")
HUE_BANDS = (  # degrees: [start, end)
    ("red", 0, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 170), ("blue", 170, 250),
    ("purple", 250, 300), ("magenta", 300, 340), ("red", 340, 361),
)


def colour_name(image) -> str:
    """The hue band of the median hue of the image's saturated, not-dark pixels ("grey" if
    there are too few of them)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    brightest, darkest = rgb.max(-1), rgb.min(-1)
    saturation = (brightest - darkest) / np.maximum(brightest, 1e-6)
    coloured = rgb[(saturation > 0.35) & (brightest > 0.25)]
    if len(coloured) < 50:
        return "grey"
    hue = float(np.median([colorsys.rgb_to_hsv(*pixel)[0] * 360 for pixel in coloured[::4]]))
    return next(name for name, start, end in HUE_BANDS if start <= hue < end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a text-to-image pipeline folder")
    parser.add_argument("-n", type=int, default=32, help="images per colour")
    parser.add_argument("--noun", default="heart", help="what to draw in each colour")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    args = parser.parse_args()
    pipe = load_text_to_image_pipeline(args.model, scheduler="dpm++")
    pipe.set_progress_bar_config(disable=True)
    counts = {}
    for colour in COLOURS:
        images = pipe([f"{colour} {args.noun}"] * args.n, num_inference_steps=20, guidance_scale=args.guidance,
                      generator=torch.Generator().manual_seed(100)).images
        names = [colour_name(image) for image in images]
        counts[colour] = {"right": names.count(colour), "n": args.n, "read": {n: names.count(n) for n in sorted(set(names))}}
    guidance = pipe.default_guidance_scale if args.guidance is None else args.guidance
    print(json.dumps({"model": args.model, "noun": args.noun, "guidance_scale": guidance, "counts": counts}, indent=2))


if __name__ == "__main__":
    main()
