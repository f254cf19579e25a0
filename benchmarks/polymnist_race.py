"""PolyMNIST race: mmgen's `MultimodalVAE(aggregation="mopoe")` against MultiVae 1.0.3's `MoPoE`
on the five image modalities of PolyMNIST, with the same networks (mmgen's ImageModality for
28 px, built once and copied into both), likelihood, latent, beta, optimizer, batch, epochs
and batch order, trained in turn in one process on the same in-memory data. Reports seconds
per epoch and leave-k-out coherence (k = 1..4 modalities given, every other one drawn, read
by the same digit classifiers) on held-out samples: MultiVae's `predict` (a draw from the
given subset's posterior) against mmgen's `impute` given the product of the given experts
and given the mixture, each with no pseudo-Gibbs round (MultiVae has none) and with mmgen's
default rounds.

Needs an environment with both mmgen and multivae (see benchmarks/README.md):

    python benchmarks/polymnist_race.py --data DATA --classifiers m0=C0 m1=C1 ... --epochs 2 \\
        --out benchmarks/results/polymnist-race.json
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from harness import allow_multivae_import

allow_multivae_import()  # before transformers (imported by mmgen) tries torchvision too

from mmgen.data import open_dataset  # noqa: E402
from mmgen.eval.classifier import ImageClassifier  # noqa: E402
from mmgen.multimodal import MultimodalELBO, MultimodalVAE  # noqa: E402

NAMES = [f"m{m}" for m in range(5)]
# MultiVae's names of mmgen's image likelihoods.
MULTIVAE_DISTRIBUTIONS = {"gaussian": "normal", "laplace": "laplace"}


def load(folder: str, count: int | None) -> tuple[torch.Tensor, list[str]]:
    """The first `count` samples of a PolyMNIST split: uint8 images [N, 5, 3, 28, 28], labels."""
    dataset = open_dataset(folder, allow_missing=True)
    dataset.set_image_sizes({"pixel_values": 28, **{name: 28 for name in NAMES[1:]}})
    count = len(dataset) if count is None else min(count, len(dataset))
    images = torch.empty(count, 5, 3, 28, 28, dtype=torch.uint8)
    labels = []
    for i in range(count):
        item = dataset[i]
        for m, key in enumerate(["pixel_values", *NAMES[1:]]):
            images[i, m] = ((item[key] + 1) * 127.5).round().to(torch.uint8)
        labels.append(item["digit"])
    return images, labels


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(127.5).sub(1.0)


def train(step: Callable[[dict[str, torch.Tensor]], torch.Tensor], parameters: list, images: torch.Tensor,
          epochs: int, batch_size: int, learning_rate: float, seed: int) -> list[float]:
    """Adam over `epochs` passes in a seeded order; the seconds of each pass."""
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    seconds = []
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        start = time.perf_counter()
        for first in range(0, len(order) - batch_size + 1, batch_size):
            batch = as_float(images[order[first : first + batch_size]])
            loss = step({name: batch[:, m] for m, name in enumerate(NAMES)})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}: {seconds[-1]:.1f} s, loss {loss.item():.1f}", flush=True)
    return seconds


def coherence(draw: Callable[[dict[str, torch.Tensor], list[str], list[str]], dict[str, torch.Tensor]], images: torch.Tensor,
              labels: list[str], classifiers: dict[str, ImageClassifier], batch_size: int = 250) -> dict[str, float]:
    """Leave-k-out coherence: for k = 1..4, the mean over k-subsets given and modalities drawn
    of the fraction whose classifier reads the sample's digit. `draw(every modality's batch,
    the given ones, the targets)` may read only the given modalities."""
    hits: dict[int, list[float]] = {k: [] for k in range(1, len(NAMES))}
    for k in hits:
        for given in itertools.combinations(NAMES, k):
            targets = [name for name in NAMES if name not in given]
            right = dict.fromkeys(targets, 0)
            for first in range(0, len(images), batch_size):
                batch = as_float(images[first : first + batch_size])
                drawn = draw({name: batch[:, m] for m, name in enumerate(NAMES)}, list(given), targets)
                for name in targets:
                    predicted = classifiers[name].predict(drawn[name].float())
                    right[name] += sum(p == label for p, label in zip(predicted, labels[first : first + batch_size]))
            hits[k] += [right[name] / len(images) for name in targets]
    return {f"k={k}": sum(values) / len(values) for k, values in hits.items()}


def multivae_model(mmgen_model: MultimodalVAE, beta: float):
    """MultiVae's MoPoE over copies of mmgen's networks (so both start from the same weights)."""
    from multivae.models import MoPoE, MoPoEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, codec: nn.Module):
            super().__init__()
            self.codec = codec

        def forward(self, x: torch.Tensor) -> ModelOutput:
            mean, logvar = self.codec.encode(x)
            return ModelOutput(embedding=mean, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, codec: nn.Module):
            super().__init__()
            self.codec = codec

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.codec.decode(z))

    codecs = {name: copy.deepcopy(mmgen_model.codecs[name]) for name in NAMES}
    spec = codecs[NAMES[0]].spec()
    config = MoPoEConfig(
        n_modalities=len(NAMES), latent_dim=mmgen_model.config.latent_dim, beta=beta,
        input_dims={name: (3, 28, 28) for name in NAMES},
        decoders_dist={name: MULTIVAE_DISTRIBUTIONS[spec["likelihood"]] for name in NAMES},
        decoder_dist_params={name: {"scale": spec["scale"]} for name in NAMES},
    )
    return MoPoE(config, encoders={n: Encoder(c) for n, c in codecs.items()}, decoders={n: Decoder(c) for n, c in codecs.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="PolyMNIST folder (mmgen data polymnist): train/ and test/")
    parser.add_argument("--classifiers", nargs=5, required=True, metavar="NAME=PATH", help="a digit classifier per modality")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None, help="first N training samples (default: all 60,000)")
    parser.add_argument("--test-size", type=int, default=1000, help="held-out samples scored")
    parser.add_argument("--latent-dim", type=int, default=512)
    parser.add_argument("--likelihood", default="gaussian", choices=tuple(MULTIVAE_DISTRIBUTIONS))
    parser.add_argument("--scale", type=float, default=0.1, help="likelihood scale on [-1, 1] pixels")
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON to write")
    args = parser.parse_args()

    from importlib.metadata import version

    from multivae.data.datasets.base import MultimodalBaseDataset

    classifiers = {}
    for pair in args.classifiers:
        name, _, path = pair.partition("=")
        classifiers[name] = ImageClassifier.load(path)
    train_images, _ = load(str(Path(args.data) / "train"), args.train_size)
    test_images, test_labels = load(str(Path(args.data) / "test"), args.test_size)
    print(f"data: {len(train_images)} training, {len(test_images)} held-out samples", flush=True)

    torch.manual_seed(args.seed)
    spec = {name: {"kind": "image", "size": 28, "likelihood": args.likelihood, "scale": args.scale} for name in NAMES}
    mmgen_model = MultimodalVAE(spec, latent_dim=args.latent_dim, aggregation="mopoe")
    multivae = multivae_model(mmgen_model, args.beta)  # copies of the initial weights
    objective = MultimodalELBO(mmgen_model, beta=args.beta)
    setting = dict(images=train_images, epochs=args.epochs, batch_size=args.batch_size,
                   learning_rate=args.learning_rate, seed=args.seed)

    def multivae_step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return multivae(MultimodalBaseDataset(data=batch)).loss

    seconds = {
        "mmgen": train(lambda batch: objective(batch)["loss"], list(mmgen_model.parameters()), **setting),
        "multivae": train(multivae_step, list(multivae.parameters()), **setting),
    }
    mmgen_model.eval()
    multivae.eval()
    generator = torch.Generator().manual_seed(args.seed)

    def mmgen_draw(given: str, steps: int | None) -> Callable:
        def draw(batch: dict[str, torch.Tensor], names: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
            inputs = {name: batch[name] for name in names}
            return mmgen_model.impute(inputs, targets, generator=generator, output_type="pt", given=given, gibbs_steps=steps)
        return draw

    @torch.no_grad()
    def multivae_draw(batch: dict[str, torch.Tensor], names: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
        # It encodes every modality of its input but conditions on `cond_mod` only.
        output = multivae.predict(MultimodalBaseDataset(data=batch), cond_mod=names, gen_mod=targets)
        return {name: output[name] for name in targets}

    results = {
        "multivae predict (subset posterior)": coherence(multivae_draw, test_images, test_labels, classifiers),
        "mmgen impute given=product, 0 rounds": coherence(mmgen_draw("product", 0), test_images, test_labels, classifiers),
        "mmgen impute given=mixture, 0 rounds": coherence(mmgen_draw("mixture", 0), test_images, test_labels, classifiers),
        "mmgen impute given=product, default 2 rounds": coherence(mmgen_draw("product", None), test_images, test_labels, classifiers),
    }
    report = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "multivae": version("multivae"),
        "settings": {key: value for key, value in vars(args).items() if key not in ("classifiers", "out")},
        "parameters": sum(p.numel() for p in mmgen_model.parameters()),
        "seconds_per_epoch": {name: values for name, values in seconds.items()},
        "speedup_vs_multivae": sum(seconds["multivae"]) / sum(seconds["mmgen"]),
        "coherence": results,
        "classifier_accuracy": {
            name: sum(p == label for p, label in zip(
                classifier.predict(as_float(test_images[:, NAMES.index(name)])), test_labels)) / len(test_labels)
            for name, classifier in classifiers.items()
        },
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
