"""How well the modalities of a multimodal VAE's joint samples (`model.sample`) agree,
after 0 or more pseudo-Gibbs rounds: over N samples, how often the caption parses, names
the attributes drawn with it (all four), and how often the Shapes judge reads those
attributes in the image; and how varied the drawn attributes are (entropy over that of a
uniform choice, averaged over the four).

    python benchmarks/joint_samples.py N MODEL [ROUNDS,ROUNDS,...]
"""

import collections
import math
import sys

import torch

from mmgen.data import parse_caption
from mmgen.data.shapes import ATTRIBUTES
from mmgen.eval.judge import load_judge
from mmgen.multimodal import MultimodalVAE


def main() -> None:
    n, path = int(sys.argv[1]), sys.argv[2]
    rounds = [int(r) for r in (sys.argv[3] if len(sys.argv) > 3 else "0,2,5,10,20").split(",")]
    model, judge = MultimodalVAE.from_pretrained(path), load_judge()
    for steps in rounds:
        out = model.sample(n, generator=torch.Generator().manual_seed(0), output_type="pt", gibbs_steps=steps)
        drawn = model.codecs["attributes"].from_decoded(out["attributes"])
        captions = model.codecs["text"].from_decoded(out["text"])
        seen = judge.predict(out["image"].clamp(-1, 1).float())
        parsed = named = shown = 0
        for i, attributes in enumerate(drawn):
            try:
                read = parse_caption(captions[i])
            except ValueError:  # the caption does not name all four
                read = None
            parsed += read is not None
            named += read is not None and all(read[a] == attributes[a] for a in ATTRIBUTES)
            shown += all(seen[a][i] == attributes[a] for a in ATTRIBUTES)
        spread = sum(
            -sum(c / n * math.log(c / n) for c in collections.Counter(row[a] for row in drawn).values()) / math.log(len(labels))
            for a, labels in ATTRIBUTES.items()
        ) / len(ATTRIBUTES)
        print(f"{steps} rounds: caption parses {100 * parsed / n:.1f}%, names the attributes {100 * named / n:.1f}%, "
              f"image shows them {100 * shown / n:.1f}%; attribute spread {100 * spread:.0f}% of uniform")


if __name__ == "__main__":
    main()
