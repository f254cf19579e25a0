"""How sharp a multimodal VAE's images are, generated from the caption (one posterior
draw, then refined by 0 and by 2 pseudo-Gibbs rounds, `mmgen eval --task impute`'s default) and
reconstructed from the image, on the first N Shapes `test` samples, each relative to the
real images:

- soft-edge share: of the pixels brighter than the black background (0.1), the share
  below half the image's brightest; an antialiased edge has few, a blurred one many;
- brightness: the mean of the 64 brightest pixels (brightest channel), the shape's core.

    python benchmarks/impute_sharpness.py N MODEL [MODEL ...]
"""

import sys

import torch

from mmgen.data import ShapesDataset
from mmgen.eval.judge import real_images
from mmgen.multimodal import MultimodalVAE


def soft_edge_share(images: torch.Tensor) -> float:
    brightest = ((images + 1) / 2).amax(1).flatten(1)
    lit = brightest > 0.1
    soft = lit & (brightest < 0.5 * brightest.amax(1, keepdim=True))
    return float((soft.sum(1) / lit.sum(1).clamp_min(1)).mean())


def brightness(images: torch.Tensor) -> float:
    return float(((images + 1) / 2).amax(1).flatten(1).topk(64, dim=1).values.mean())


def main() -> None:
    n, paths = int(sys.argv[1]), sys.argv[2:]
    images, _ = real_images("test", n, 64)
    dataset = ShapesDataset("test", n=n)
    captions = [dataset.sample(i).caption for i in range(n)]
    for path in paths:
        model = MultimodalVAE.from_pretrained(path).eval()
        row = []
        for given, steps in (({"text": captions}, 0), ({"text": captions}, 2), ({"image": images}, 0)):
            generator = torch.Generator().manual_seed(0)
            generated = model.impute(given, ["image"], generator=generator, output_type="pt", gibbs_steps=steps)
            generated = generated["image"].clamp(-1, 1)
            row += [soft_edge_share(generated) / soft_edge_share(images), brightness(generated) / brightness(images)]
        print(f"{path}: from the caption soft edges x{row[0]:.2f}, brightness x{row[1]:.2f}; with 2 Gibbs rounds "
              f"x{row[2]:.2f}, x{row[3]:.2f}; reconstructed x{row[4]:.2f}, x{row[5]:.2f}", flush=True)


if __name__ == "__main__":
    main()
