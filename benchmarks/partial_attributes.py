"""How a multimodal VAE over Shapes images and attributes does when given only some of the
four attributes (`mmgen impute --attributes color=red shape=star`), on the first N Shapes
`test` samples: for k = 1, 2, 3 and 4 given attributes (a random k per sample, seeded),
one image and the attributes are imputed from one posterior draw, refined by 0, 1 and 2
pseudo-Gibbs steps (`MultimodalVAE.impute(..., gibbs_steps=)`, 2 by default), and

- image adherence: the share of images in which the Shapes judge reads every given
  attribute right;
- agreement: the share in which the attributes the model fills in are the ones the judge
  reads from the image drawn with them (the same latent);
- fill-in spread: given only a colour (each of the 8, 100 draws each), the entropy of the
  filled-in shape, size and position over the draws, relative to a uniform choice (1.0:
  as spread as Shapes draws them).

    python benchmarks/partial_attributes.py N MODEL [MODEL ...]
"""

import math
import random
import sys
from collections import Counter

import torch

from mmgen.data.shapes import ATTRIBUTES, ShapesDataset
from mmgen.eval.judge import load_judge
from mmgen.multimodal import MultimodalVAE


def main() -> None:
    n, paths = int(sys.argv[1]), sys.argv[2:]
    dataset = ShapesDataset("test", n=n)
    labels = [dataset.sample(i).attributes() for i in range(n)]
    judge = load_judge()
    for path in paths:
        model = MultimodalVAE.from_pretrained(path).eval()
        rng = random.Random(0)
        for k in (1, 2, 3, 4):
            given = [{name: sample[name] for name in rng.sample(sorted(ATTRIBUTES), k)} for sample in labels]
            for steps in (0, 1, 2):
                report(model, given, steps, judge, n, f"{path}: {k} given, {steps} Gibbs steps:")
        print(f"{path}: fill-in spread given a colour {100 * spread(model):.0f}% of uniform", flush=True)


def spread(model: MultimodalVAE, draws: int = 100) -> float:
    entropies = []
    for color in ATTRIBUTES["color"]:
        filled = model.impute({"attributes": [{"color": color}]}, ["attributes"], n=draws,
                              generator=torch.Generator().manual_seed(0))["attributes"]
        for name in ("shape", "size", "position"):
            counts = Counter(row[name] for row in filled).values()
            entropy = -sum(c / draws * math.log(c / draws) for c in counts)
            entropies.append(entropy / math.log(len(ATTRIBUTES[name])))
    return sum(entropies) / len(entropies)


def report(model: MultimodalVAE, given: list[dict[str, str]], steps: int, judge, n: int, prefix: str) -> None:
        generator = torch.Generator().manual_seed(0)
        out = model.impute({"attributes": given}, ["image", "attributes"], generator=generator, gibbs_steps=steps)
        images = model.codecs["image"].batch_tensors({"image": out["image"]}, n)[0]
        read = judge.predict(images)
        read = [{name: read[name][i] for name in ATTRIBUTES} for i in range(n)]
        adherent = sum(all(read[i][a] == v for a, v in given[i].items()) for i in range(n)) / n
        agree = sum(out["attributes"][i] == read[i] for i in range(n)) / n
        print(f"{prefix} image adherence {100 * adherent:.1f}%, image and filled-in attributes "
              f"agree {100 * agree:.1f}%", flush=True)


if __name__ == "__main__":
    main()
