"""Choose a 64 x 64 Shapes text-to-image pipeline's guidance scale on `train` prompts, so
that the evaluation splits stay out of the choice.

  .venv/bin/python train/guidance_sweep.py checkpoints/shapes-dvae --n 300 --scales 1 1.5 2 2.5

Draws the captions of the first n `train` images at each scale, as `mmgen eval` samples
(seed 0; diffusion: 20 DPM++ steps), and prints, as one JSON line per scale, the fraction
of images the Shapes judge reads each attribute right in, and all four. The batch size
changes a discrete-VAE prior's draws (its tokens are sampled batch by batch).
"""

from __future__ import annotations

import argparse
import json

from mmgen.data import ShapesDataset
from mmgen.data.shapes import ATTRIBUTES
from mmgen.eval.evaluate import load_for_task
from mmgen.eval.judge import judge_accuracy, load_judge
from mmgen.eval.metrics import generate_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a text-to-image pipeline folder (latent diffusion or the discrete-VAE baseline)")
    parser.add_argument("--n", type=int, default=300, help="train prompts per scale")
    parser.add_argument("--scales", type=float, nargs="+", required=True, help="guidance scales to compare")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts drawn at a time (mmgen eval's default)")
    args = parser.parse_args()
    dataset = ShapesDataset("train", n=args.n)
    samples = [dataset.sample(i) for i in range(args.n)]
    attributes = {name: [getattr(sample, name) for sample in samples] for name in ATTRIBUTES}
    judge = load_judge()
    for scale in args.scales:  # a pipeline per scale: the scale is bound when it is loaded
        generate = load_for_task(args.model, "text-to-image", guidance_scale=scale)
        images = generate_images(generate, [sample.caption for sample in samples], seed=0, batch_size=args.batch_size)
        print(json.dumps({"guidance_scale": scale, **judge_accuracy(judge, images, attributes)}), flush=True)


if __name__ == "__main__":
    main()
