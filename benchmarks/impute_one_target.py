"""Caption <-> attributes of a multimodal VAE over Shapes asked for one target at a time
(`impute({"text": captions}, ["attributes"])`, default Gibbs rounds), on the first N Shapes
`test` samples: all four attributes right, as `mmgen eval --task impute` scores them. That
evaluation imputes every missing modality at once, so its rounds also draw the image; here
the rounds fill in the requested target alone.

    python benchmarks/impute_one_target.py N MODEL [MODEL ...]
"""

import sys

import torch

from mmgen.data import ShapesDataset
from mmgen.data.shapes import ATTRIBUTES
from mmgen.eval.metrics import attribute_accuracy, caption_accuracy
from mmgen.multimodal import MultimodalVAE

BATCH = 100


def main() -> None:
    n, paths = int(sys.argv[1]), sys.argv[2:]
    dataset = ShapesDataset("test", n=n)
    samples = [dataset[i] for i in range(n)]
    truth = {name: [sample[name] for sample in samples] for name in ATTRIBUTES}
    captions = [sample["text"] for sample in samples]
    labels = [{name: sample[name] for name in ATTRIBUTES} for sample in samples]
    for path in paths:
        model = MultimodalVAE.from_pretrained(path)
        generator = torch.Generator().manual_seed(0)
        read, written = [], []
        for start in range(0, n, BATCH):
            read += model.impute({"text": captions[start:start + BATCH]}, ["attributes"], generator=generator)["attributes"]
            written += model.impute({"attributes": labels[start:start + BATCH]}, ["text"], generator=generator)["text"]
        from_text = attribute_accuracy({name: [row[name] for row in read] for name in ATTRIBUTES}, truth)["all"]
        from_attributes = caption_accuracy(written, truth)["all"]
        print(f"{path}: text -> attributes {100 * from_text:.1f}%, attributes -> text {100 * from_attributes:.1f}%")


if __name__ == "__main__":
    main()
