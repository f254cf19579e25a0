"""Discrete-VAE training side by side: mmgen's `DiscreteVAE` against dalle-pytorch's, in the
same configuration, trained by the same procedure on the same Shapes images.

`run.py --only dvae-train --dalle-pytorch-python PYTHON` renders the images, races mmgen's
model here, then runs this file under PYTHON (an environment with dalle-pytorch, kept apart
from mmgen's; see benchmarks/README.md) for the other model:

    PYTHON benchmarks/dvae_race.py --images IMAGES.npy --steps 1000

This file needs only torch and numpy, so it runs in either environment.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from harness import timed_adamw_steps

# The configuration the issue names (64 px, 512 codes, 3 layers, hidden 64, batch 32), with
# mmgen's defaults for what dalle-pytorch leaves open (one residual block, 256-d codes).
CONFIG = {"image_size": 64, "num_tokens": 512, "codebook_dim": 256, "hidden": 64, "num_layers": 3, "num_resnet_blocks": 1}
BATCH_SIZE, LEARNING_RATE, HELD_OUT = 32, 1e-3, 256
KL_WEIGHT_PER_ELEMENT = 1.0  # mmgen's per-element KL weight; dalle-pytorch's is per image
TEMPERATURE_START, TEMPERATURE_END = 1.0, 1.0 / 16

# A training step on images in [-1, 1] at a Gumbel temperature, returning the loss.
Step = Callable[[torch.Tensor, float], torch.Tensor]
# Argmax tokens of images in [-1, 1], decoded back to [-1, 1].
TokenRoundTrip = Callable[[torch.Tensor], torch.Tensor]


def temperature_at(step: int, steps: int) -> float:
    """The cosine anneal both models follow (mmgen.dvae.objective.cosine_anneal's formula)."""
    progress = min(step / max(steps, 1), 1.0)
    return TEMPERATURE_END + (TEMPERATURE_START - TEMPERATURE_END) * 0.5 * (1.0 + math.cos(math.pi * progress))


def token_psnr(round_trip: TokenRoundTrip, images: torch.Tensor) -> float:
    """PSNR (dB, pixels in [0, 1]) of images rebuilt from their argmax tokens."""
    with torch.no_grad():
        mse = F.mse_loss(round_trip(images).clamp(-1, 1), images).item() / 4  # [-1, 1] -> [0, 1] scale
    return 10 * math.log10(1.0 / mse)


def race(
    parameters: list[torch.nn.Parameter], step: Step, round_trip: TokenRoundTrip, images: torch.Tensor, steps: int,
    warmup: int = 5,
) -> dict:
    """Train `steps` AdamW steps (lr 1e-3, gradient norm clipped to 1, as mmgen's loop does)
    on batches drawn from all but the last HELD_OUT images; time every step after `warmup`
    and measure token reconstruction on the held-out images at the end."""
    train, held_out = images[:-HELD_OUT], images[-HELD_OUT:]
    generator = torch.Generator().manual_seed(0)
    timing, loss = timed_adamw_steps(
        parameters, lambda index: train[torch.randint(len(train), (BATCH_SIZE,), generator=generator)],
        lambda batch, index: step(batch, temperature_at(index, steps)), steps, LEARNING_RATE, warmup,
    )
    return {
        "batch_size": BATCH_SIZE,
        "images_per_s": timing.rate(BATCH_SIZE),
        "steps_per_s": timing.rate(1),
        "steps": steps,
        "final_loss": loss.item(),
        "token_psnr_db": token_psnr(round_trip, held_out),
        "parameters": sum(p.numel() for p in parameters),
    }


def race_dalle_pytorch(images: torch.Tensor, steps: int) -> dict:
    # torchvision 0.28.0 is a CUDA build that fails at import on this torch unless these op
    # schemas exist; dalle-pytorch imports it but uses none of its ops.
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from dalle_pytorch import DiscreteVAE

    image_elements = 3 * CONFIG["image_size"] ** 2
    torch.manual_seed(0)
    vae = DiscreteVAE(
        image_size=CONFIG["image_size"], num_tokens=CONFIG["num_tokens"], codebook_dim=CONFIG["codebook_dim"],
        hidden_dim=CONFIG["hidden"], num_layers=CONFIG["num_layers"], num_resnet_blocks=CONFIG["num_resnet_blocks"],
        # Its KL is summed over an image's tokens (batchmean), mmgen's divided by the image's elements.
        kl_div_loss_weight=KL_WEIGHT_PER_ELEMENT / image_elements,
    )

    def step(batch: torch.Tensor, temperature: float) -> torch.Tensor:
        # It takes images in [0, 1] and normalises them to [-1, 1] itself; MSE in that space.
        return vae((batch + 1) / 2, return_loss=True, temp=temperature)

    def round_trip(batch: torch.Tensor) -> torch.Tensor:
        return vae.decode(vae.get_codebook_indices((batch + 1) / 2))

    return race(list(vae.parameters()), step, round_trip, images, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help=".npy float32 array [N, 3, 64, 64] in [-1, 1]")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.from_numpy(np.load(args.images, allow_pickle=False))
    print(json.dumps(race_dalle_pytorch(images, args.steps)))


if __name__ == "__main__":
    main()
