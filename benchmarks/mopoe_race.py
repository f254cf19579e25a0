"""MoPoE training side by side: mmgen's `MultimodalVAE(aggregation="mopoe")` against
multivae's `MoPoE`, with the same networks and likelihoods, trained by the same procedure
on the same Shapes samples (image, caption tokens, the four attributes).

`run.py --only mopoe-train --multivae-python PYTHON` renders the samples, races mmgen's
model here, then runs this file under PYTHON (an environment with multivae, kept apart
from mmgen's; see benchmarks/README.md) for the other model:

    PYTHON benchmarks/mopoe_race.py --images IMAGES.npy --text TEXT.npy --attributes ATTRIBUTES.npy \\
        --vocab-size 155 --attribute-classes 8,9,6,2 --likelihood-weights '{"image": 1, "text": 20, "attributes": 50}' \\
        --epochs 10 --out PREDICTIONS.npz

It prints a JSON summary (speed, parameters) and writes its predictions for the held-out
samples to PREDICTIONS.npz, which run.py scores with the Shapes judge (not installed
there). This file needs only torch and numpy, so it runs in either environment.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import allow_multivae_import, timed_adamw_steps

# mmgen's Shapes model (`build_model`'s arguments; the attributes' width is
# CategoricalModality's default, which build_model does not expose), re-declared below.
CONFIG = {"latent_dim": 32, "image_channels": (32, 64, 128, 128), "image_likelihood": "gaussian", "image_scale": 0.1,
          "text_max_length": 24, "text_hidden": 128,
          # multivae's decoders read the latent alone, so the race uses mmgen's parallel one;
          # and multivae cannot take unknown attributes, so none are hidden in training.
          "text_decoder": "parallel", "attribute_hide_probability": 0.0}
ATTRIBUTE_HIDDEN = 128
# mmgen's image likelihoods by multivae's names.
MULTIVAE_DISTRIBUTIONS = {"gaussian": "normal", "laplace": "laplace"}
BATCH_SIZE, LEARNING_RATE, HELD_OUT = 64, 1e-3, 256
# multivae's categorical likelihood is one log-softmax over the decoder output's last
# dimension, so each attribute's logits are padded to the most classes with a logit whose
# probability underflows to 0: the same per-attribute categoricals as mmgen's. Not -inf:
# the one-hot target multiplies the log-probabilities, and 0 * -inf is nan.
PAD_LOGIT = -1e4

# A training step on a batch {"image", "text", "attributes"} in mmgen's encoding, returning the loss.
Step = Callable[[dict[str, torch.Tensor]], torch.Tensor]
# Held-out samples -> what run.py scores, each conditioned on one modality alone:
# image_from_text and image_from_attributes [B, 3, 64, 64], attributes_from_image (label
# indices 0..K-1 in mmgen's attribute order [B, 4]), text_from_image (token ids [B, L]).
Predict = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class Expert(nn.Module):
    """`features`, then mmgen's GaussianHead: a linear layer to (mean, log-variance), the
    log-variance clamped to [-30, 30]."""

    def __init__(self, features: nn.Module, width: int, latent_dim: int):
        super().__init__()
        self.features, self.linear = features, nn.Linear(width, 2 * latent_dim)

    def forward(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.linear(self.features(values)).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 30.0)


class TokenFeatures(nn.Module):
    """mmgen's TextModality encoder body: token embeddings, two 1-D convs, flattened."""

    def __init__(self, vocab_size: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.body = nn.Sequential(
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Flatten(),
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.body(self.embedding(ids).transpose(1, 2))


class AttributeFeatures(nn.Module):
    """mmgen's CategoricalModality encoder body: one embedding per attribute (index 0 is
    "unknown", labels 1..K), summed, then an MLP."""

    def __init__(self, classes: list[int], hidden: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(count + 1, hidden) for count in classes)
        self.body = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.body(sum(embedding(values[:, i]) for i, embedding in enumerate(self.embeddings)))


def image_networks(latent_dim: int, channels: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """mmgen's ImageModality: strided convs down to 4 x 4 and back, a linear output."""
    layers: list[nn.Module] = []
    previous = 3
    for width in channels:
        layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.SiLU()]
        previous = width
    encoder = Expert(nn.Sequential(*layers, nn.Flatten()), previous * 16, latent_dim)
    decoder: list[nn.Module] = [nn.Linear(latent_dim, previous * 16), nn.SiLU(), nn.Unflatten(1, (previous, 4, 4))]
    for width in reversed((*channels[:-1], channels[0])):
        decoder += [nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1), nn.SiLU()]
        previous = width
    return encoder, nn.Sequential(*decoder, nn.Conv2d(previous, 3, 3, padding=1))


def text_networks(latent_dim: int, vocab_size: int, max_length: int, hidden: int) -> tuple[nn.Module, nn.Module]:
    """mmgen's TextModality: the decoder gives logits [B, vocab, length]."""
    encoder = Expert(TokenFeatures(vocab_size, hidden), hidden * max_length, latent_dim)
    decoder = nn.Sequential(
        nn.Linear(latent_dim, hidden * max_length), nn.SiLU(), nn.Unflatten(1, (hidden, max_length)),
        nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU(), nn.Conv1d(hidden, vocab_size, 1),
    )
    return encoder, decoder


def attribute_networks(latent_dim: int, classes: list[int], hidden: int) -> tuple[nn.Module, nn.Module]:
    """mmgen's CategoricalModality: the decoder gives every attribute's logits, concatenated."""
    encoder = Expert(AttributeFeatures(classes, hidden), hidden, latent_dim)
    decoder = nn.Sequential(
        nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, sum(classes)),
    )
    return encoder, decoder


def race(
    parameters: list[torch.nn.Parameter], step: Step, predict: Predict, data: dict[str, torch.Tensor], epochs: int,
    warmup: int = 5,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Train `epochs` epochs' worth of AdamW steps (lr 1e-3, gradient norm clipped to 1, as
    mmgen's loop does) on batches drawn from all but the last HELD_OUT samples; time every
    step after `warmup` (a compiled step compiles in those), then predict from the held-out
    samples under a fixed seed. The samples go to the parameters' device first, so that a
    GPU's steps copy nothing."""
    device = parameters[0].device
    train = {name: values[:-HELD_OUT].to(device) for name, values in data.items()}
    held_out = {name: values[-HELD_OUT:].to(device) for name, values in data.items()}
    size = len(train["image"])
    steps_per_epoch = math.ceil(size / BATCH_SIZE)
    steps = epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(0)

    def draw(_: int) -> dict[str, torch.Tensor]:
        index = torch.randint(size, (BATCH_SIZE,), generator=generator).to(device)
        return {name: values[index] for name, values in train.items()}

    timing, loss = timed_adamw_steps(parameters, draw, lambda batch, _: step(batch), steps, LEARNING_RATE, warmup)
    torch.manual_seed(0)  # both models draw their posterior samples from the same seed
    with torch.no_grad():
        predictions = {name: value.cpu().numpy() for name, value in predict(held_out).items()}
    summary = {
        "batch_size": BATCH_SIZE,
        "images_per_s": timing.rate(BATCH_SIZE),
        "steps_per_s": timing.rate(1),
        "seconds_per_epoch": steps_per_epoch * timing.median_s,
        "epochs": epochs,
        "steps": steps,
        "final_loss": loss.item(),
        "warmup_s": timing.warmup_s,
        "parameters": sum(p.numel() for p in parameters),
    }
    return summary, predictions


def race_multivae(
    data: dict[str, torch.Tensor], epochs: int, vocab_size: int, classes: list[int], weights: dict[str, float],
    beta: float, device: str = "cpu", compile_mode: str | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    allow_multivae_import()
    from importlib.metadata import version

    from multivae.data.datasets.base import MultimodalBaseDataset
    from multivae.models import MoPoE, MoPoEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder

    if not (data["attributes"] > 0).all():
        # Its categorical likelihood takes class ids: it cannot skip an unknown attribute as mmgen's does.
        raise ValueError("multivae's model needs every attribute given (mmgen's index 0, unknown, found)")

    class Encoder(BaseEncoder):
        """A network above, reading its input out of multivae's data with `read`."""

        def __init__(self, network: nn.Module, read: Callable):
            super().__init__()
            self.network, self.read = network, read

        def forward(self, x) -> ModelOutput:
            mean, logvar = self.network(self.read(x))
            return ModelOutput(embedding=mean, log_covariance=logvar)

    class Decoder(BaseDecoder):
        """A network above, its output laid out by `layout` as multivae's likelihood takes it."""

        def __init__(self, network: nn.Module, layout: Callable):
            super().__init__()
            self.network, self.layout = network, layout

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.layout(self.network(z)))

    def padded_attributes(logits: torch.Tensor) -> torch.Tensor:
        """[B, sum K] -> [B, attributes, max K], classes last (see PAD_LOGIT)."""
        parts = logits.split(classes, dim=1)
        return torch.stack([F.pad(part, (0, max(classes) - part.shape[1]), value=PAD_LOGIT) for part in parts], 1)

    def identity(x: torch.Tensor) -> torch.Tensor:
        return x

    torch.manual_seed(0)
    latent_dim = CONFIG["latent_dim"]
    image_encoder, image_decoder = image_networks(latent_dim, CONFIG["image_channels"])
    text_encoder, text_decoder = text_networks(latent_dim, vocab_size, data["text"].shape[1], CONFIG["text_hidden"])
    attribute_encoder, attribute_decoder = attribute_networks(latent_dim, classes, ATTRIBUTE_HIDDEN)
    # Its categorical likelihood reads {"tokens": ids} as the one-hot of the decoder's last
    # dimension, so text logits go classes-last and attributes hold label ids 0..K-1 (the
    # encoder adds mmgen's 1 back).
    encoders = {
        "image": Encoder(image_encoder, identity),
        "text": Encoder(text_encoder, lambda x: x["tokens"]),
        "attributes": Encoder(attribute_encoder, lambda x: x["tokens"] + 1),
    }
    decoders = {
        "image": Decoder(image_decoder, identity),
        "text": Decoder(text_decoder, lambda logits: logits.transpose(1, 2)),
        "attributes": Decoder(attribute_decoder, padded_attributes),
    }
    config = MoPoEConfig(
        n_modalities=3, latent_dim=latent_dim, beta=beta,
        # Its rescale factors multiply each modality's log-likelihood, as mmgen's weights do.
        uses_likelihood_rescaling=True, rescale_factors=dict(weights),
        decoders_dist={"image": MULTIVAE_DISTRIBUTIONS[CONFIG["image_likelihood"]], "text": "categorical", "attributes": "categorical"},
        decoder_dist_params={"image": {"scale": CONFIG["image_scale"]}},
    )
    model = MoPoE(config, encoders=encoders, decoders=decoders).to(device)
    if compile_mode:
        # Not the whole loss, as for mmgen: dynamo rebuilds pythae's ModelOutput without
        # its attributes (AttributeError: no attribute 'embedding', torch 2.13), so the
        # plain-torch networks inside the encoders and decoders are compiled one by one,
        # as a multivae user could.
        for wrapper in (*model.encoders.values(), *model.decoders.values()):
            wrapper.network.compile(mode=compile_mode)

    def as_multivae(batch: dict[str, torch.Tensor]) -> MultimodalBaseDataset:
        # The image first: multivae reads the batch's device and length off the first modality.
        return MultimodalBaseDataset(data={
            "image": batch["image"], "text": {"tokens": batch["text"]}, "attributes": {"tokens": batch["attributes"] - 1},
        })

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(as_multivae(batch)).loss

    def predict(held_out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # A sample of the subset posterior (return_mean=False), as mmgen's impute draws by default.
        inputs = as_multivae(held_out)
        from_image = model.predict(inputs, cond_mod=["image"], gen_mod=["attributes", "text"])
        return {
            "image_from_text": model.predict(inputs, cond_mod=["text"], gen_mod="image").image,
            "image_from_attributes": model.predict(inputs, cond_mod=["attributes"], gen_mod="image").image,
            "attributes_from_image": from_image.attributes.argmax(-1),
            "text_from_image": from_image.text.argmax(-1),
        }

    summary, predictions = race(list(model.parameters()), step, predict, data, epochs)
    summary["compile_mode"] = compile_mode
    summary["parameters_per_modality"] = {
        name: sum(p.numel() for p in (*model.encoders[name].parameters(), *model.decoders[name].parameters()))
        for name in encoders
    }
    summary["multivae"] = version("multivae")
    return summary, predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help=".npy float32 array [N, 3, 64, 64] in [-1, 1]")
    parser.add_argument("--text", required=True, help=".npy int64 array [N, L] of caption token ids")
    parser.add_argument("--attributes", required=True, help=".npy int64 array [N, A] of labels 1..K (mmgen's encoding)")
    parser.add_argument("--vocab-size", type=int, required=True, help="caption tokenizer's vocabulary")
    parser.add_argument("--attribute-classes", required=True, help="class count of each attribute, in column order: 8,9,6,2")
    parser.add_argument("--likelihood-weights", required=True, help='JSON: {"image": 1, "text": 20, "attributes": 50}')
    parser.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="where to train: cpu or cuda")
    parser.add_argument(
        "--compile", help="torch.compile mode for the networks (multivae's loss does not compile whole; default: eager)"
    )
    parser.add_argument("--out", required=True, help=".npz for the held-out predictions")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = {
        name: torch.from_numpy(np.load(path, allow_pickle=False))
        for name, path in (("image", args.images), ("text", args.text), ("attributes", args.attributes))
    }
    classes = [int(count) for count in args.attribute_classes.split(",")]
    summary, predictions = race_multivae(
        data, args.epochs, args.vocab_size, classes, json.loads(args.likelihood_weights), args.beta, args.device,
        args.compile,
    )
    np.savez(args.out, **predictions)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
