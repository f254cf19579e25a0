"""Modalities of a multimodal VAE, declared rather than hard-coded: each has an encoder to a
diagonal Gaussian over the shared latent, a decoder back, a log-likelihood, and converts
between user values (PIL images, captions, named labels, lists of floats) and tensors.

A modality is built from a JSON-able spec, `{"kind": "image" | "text" | "categorical" |
"real", ...}`, which the model stores in its config. Values may be missing per sample:
`batch_tensors` returns the tensor with zeros where a value is missing, and a presence mask.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from mmgen.data.collate import as_label
from mmgen.data.transforms import array_to_pil, pil_to_tensor, resize_and_crop, tensor_image_to_pil, tensor_to_pil, to_rgb
from mmgen.errors import ConfigError, DataError
from mmgen.text import TextEncoder, text_encoder_config
from mmgen.text.encoder import check_texts


class GaussianHead(nn.Module):
    """Features -> (mean, log-variance) of the latent; the log-variance is clamped so that
    an untrained or overconfident expert cannot dominate a product with precision e^30."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(features, 2 * latent_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.linear(features).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 30.0)


class Modality(nn.Module):
    """Base class. Subclasses implement `features` (tensor -> flat features), set
    `self.encoder_head` (features -> Gaussian) and `self.decoder` (latent -> distribution
    parameters), and implement the rest."""

    kind: str
    # Whether the modality has a decoder and likelihood (can be generated), or only conditions.
    generated = True

    def __init__(self, name: str, latent_dim: int):
        super().__init__()
        self.name, self.latent_dim = name, latent_dim

    def spec(self) -> dict[str, Any]:
        """The JSON-able spec that rebuilds this modality."""
        raise NotImplementedError

    @property
    def dimension(self) -> int:
        """Number of observed values per sample (for likelihood rescaling)."""
        raise NotImplementedError

    def features(self, values: torch.Tensor) -> torch.Tensor:
        """The encoder's features [B, feature_size] before its Gaussian head."""
        raise NotImplementedError

    @property
    def feature_size(self) -> int:
        return self.encoder_head.linear.in_features

    def encode(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This modality's expert: (mean, logvar) of q(z | values)."""
        return self.encoder_head(self.features(values))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def log_likelihood(self, decoded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """log p(values | decoded parameters), summed per sample: [B]."""
        raise NotImplementedError

    def reconstruction_log_likelihood(self, latent: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """log p(values | latent) [B], the ELBO's reconstruction term (an autoregressive
        decoder reads `values` too, teacher-forced)."""
        return self.log_likelihood(self.decode(latent), values)

    def to_tensor(self, value: Any) -> torch.Tensor:
        """One user value -> its tensor."""
        raise NotImplementedError

    def from_decoded(self, decoded: torch.Tensor) -> list[Any]:
        """Decoder outputs -> user values (the distribution's mode)."""
        raise NotImplementedError

    def keep_given(self, imputed: list[Any], given: torch.Tensor, n: int) -> list[Any]:
        """Imputed user values (n per given sample, sample-major), with what the user gave
        kept where a modality is only partly given (categorical attributes). `given`: the
        value tensors the model observed [B, ...], whatever form the user gave them in."""
        return imputed

    def unknown(self, values: torch.Tensor) -> torch.Tensor | None:
        """Which entries of given values are unknown (a modality that can be partly given),
        shaped like `values`; None if a given value is always whole."""
        return None

    def fill_in(self, decoded: torch.Tensor) -> torch.Tensor:
        """Value tensors standing in for missing values: the decoded distribution's mode
        (here its mean). Not a draw: a drawn label that is wrong would pull the next latent
        its way (image -> attributes fell from 97% to 94% with draws)."""
        return decoded

    def draw(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Value tensors drawn from the decoded distribution, for the unknown entries of a
        partly given value (only modalities with `unknown` entries implement it)."""
        raise NotImplementedError

    def read(self, batch: dict[str, Any]) -> list[Any] | torch.Tensor | None:
        """This modality's values in a dataset batch (None: absent for every sample)."""
        return batch.get(self.name)

    def checked(self, values: torch.Tensor) -> torch.Tensor:
        """Values given as tensors [B, ...] (stacked by the user or by collation), checked
        against the shape and kind of this modality's value tensors, so that a wrong one is
        named here rather than deep inside a network."""
        template = self.empty()
        if tuple(values.shape[1:]) != tuple(template.shape) or values.is_floating_point() != template.is_floating_point():
            kind = "floats" if template.is_floating_point() else "integers"
            raise DataError(
                f"modality {self.name!r} takes tensors of shape [batch, {', '.join(map(str, template.shape))}] of "
                f"{kind}, got {values.dtype} of shape {tuple(values.shape)}"
            )
        return values

    def batch_tensors(self, batch: dict[str, Any], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [B, ...] with zeros where missing, present: bool [B]) from a batch whose
        entry is a stacked tensor, a list with None for missing samples, or absent."""
        values = self.read(batch)
        if isinstance(values, torch.Tensor):
            return self.checked(values), torch.ones(len(values), dtype=torch.bool)
        if values is None:
            values = [None] * size
        if len(values) != size:
            raise DataError(f"modality {self.name!r} has {len(values)} values for a batch of {size}")
        present = torch.tensor([value is not None for value in values], dtype=torch.bool)
        return torch.stack([self.to_tensor(v) if v is not None else self.empty() for v in values]), present

    def empty(self) -> torch.Tensor:
        """The zero tensor that stands in for a missing value."""
        raise NotImplementedError


def conv_sizes(size: int, levels: int) -> list[int]:
    """Spatial sizes of an image of `size` px through `levels` stride-2 convolutions
    (kernel 4, padding 1: each takes s to floor(s / 2))."""
    sizes = [size]
    for _ in range(levels):
        sizes.append(sizes[-1] // 2)
    return sizes


def default_widths(size: int) -> tuple[int, ...]:
    """Conv widths for `size` px: halve while the map stays at least 3 x 3 (64 px: 4 levels
    to 4 x 4; 28 px: 3 levels to 3 x 3), 32 channels doubling per level up to 128. A small
    final map keeps the linear layers to and from the latent small."""
    levels = 0
    while size // 2 ** (levels + 1) >= 3:
        levels += 1
    return tuple(min(32 * 2**level, 128) for level in range(max(levels, 1)))


class ImageModality(Modality):
    """Images of `channels` (3: RGB, 1: greyscale) of any square size in [-1, 1]: strided
    convs (`widths`, one per level; default from the size, see `default_widths`), a linear
    head; the decoder mirrors it with transposed convs, whose output padding restores odd
    sizes (28 -> 14 -> 7 -> 14 -> 28; 97 -> ... -> 6 -> ... -> 97), and a linear output (a
    sigmoid output under a Gaussian likelihood has been seen to collapse to the mean image,
    MultiVae's included). Likelihood: Gaussian (default) or Laplace with a fixed scale,
    summed over pixels. On Shapes (a small shape on a black background) the Laplace's L1
    error collapsed to its median, an all-black image, within 1,000 steps, and the image
    expert carried nothing.

    Values: PIL images (resized and centre-cropped), uint8 tensors [C, H, W] (0..255) or
    float tensors [C, H, W] in [-1, 1]; tensors of another size are resized as PIL images
    are, and RGB given to a greyscale modality (or the reverse) is converted."""

    kind = "image"

    def __init__(
        self, name: str, latent_dim: int, size: int = 64, channels: int = 3, widths: tuple[int, ...] | None = None,
        likelihood: str = "gaussian", scale: float = 0.1, column: str | None = None,
        decoder_widths: tuple[int, ...] | None = None,
    ):
        super().__init__(name, latent_dim)
        if likelihood not in ("laplace", "gaussian"):
            raise ConfigError(f"image likelihood must be 'laplace' or 'gaussian', not {likelihood!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ConfigError(f"modality {name!r}: image size must be a whole number of pixels >= 2, not {size!r}")
        if channels not in (1, 3):
            raise ConfigError(f"modality {name!r}: images have 1 (greyscale) or 3 (RGB) channels, not {channels!r}")
        widths = default_widths(size) if widths is None else tuple(widths)
        most = int(math.log2(size))
        if not 1 <= len(widths) <= most:
            raise ConfigError(
                f"modality {name!r}: {size} px images take 1 to {most} conv levels (each halves the size), "
                f"got {len(widths)} widths"
            )
        # The transposed convs' widths, deepest first: by default the encoder's mirrored.
        decoder_widths = (*widths[-2::-1], widths[0]) if decoder_widths is None else tuple(decoder_widths)
        if len(decoder_widths) != len(widths):
            raise ConfigError(f"modality {name!r}: {len(widths)} encoder levels need as many decoder_widths, "
                              f"got {len(decoder_widths)}")
        self.size, self.channels, self.widths, self.decoder_widths = size, channels, widths, decoder_widths
        self.likelihood, self.scale, self.column = likelihood, scale, column or name
        sizes = conv_sizes(size, len(widths))
        layers: list[nn.Module] = []
        previous = channels
        for width in widths:
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.SiLU()]
            previous = width
        cells = sizes[-1] ** 2
        self.encoder_body = nn.Sequential(*layers, nn.Flatten())
        self.encoder_head = GaussianHead(previous * cells, latent_dim)
        decoder: list[nn.Module] = [
            nn.Linear(latent_dim, previous * cells), nn.SiLU(), nn.Unflatten(1, (previous, sizes[-1], sizes[-1]))
        ]
        for level, width in zip(reversed(range(len(widths))), decoder_widths):
            # A transposed conv doubles the size; one more pixel where the encoder floored an odd size.
            extra = sizes[level] - 2 * sizes[level + 1]
            decoder += [nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1, output_padding=extra), nn.SiLU()]
            previous = width
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(previous, channels, 3, padding=1))
        # Convolution weights in channels-last layout, which oneDNN's CPU kernels prefer: a
        # MoPoE training step of batch 64 on 64 px took 0.37 s instead of 0.52 s. (Weights
        # loaded by from_pretrained come back contiguous; that costs inference little.)
        self.to(memory_format=torch.channels_last)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size, "channels": self.channels, "widths": list(self.widths),
                "decoder_widths": list(self.decoder_widths), "likelihood": self.likelihood, "scale": self.scale,
                "column": self.column}

    @property
    def dimension(self) -> int:
        return self.channels * self.size**2

    def features(self, values: torch.Tensor) -> torch.Tensor:
        return self.encoder_body(values)

    def log_likelihood(self, decoded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        error = (decoded - values).flatten(1)
        if self.likelihood == "laplace":
            return -(error.abs() / self.scale).sum(1) - error.shape[1] * math.log(2 * self.scale)
        return -0.5 * (error / self.scale).square().sum(1) - error.shape[1] * math.log(self.scale * math.sqrt(2 * math.pi))

    def read(self, batch: dict[str, Any]) -> Any:
        return batch.get(self.name, batch.get(self.column))

    def checked(self, values: torch.Tensor) -> torch.Tensor:
        if values.dim() == 4 and tuple(values.shape[1:]) == (self.channels, self.size, self.size) and values.is_floating_point():
            return values
        if values.dim() != 4:
            raise DataError(f"modality {self.name!r} takes a batch of images [batch, channels, height, width], "
                            f"got a tensor of shape {tuple(values.shape)}")
        return torch.stack([self.to_tensor(value) for value in values])

    def to_tensor(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and tuple(value.shape) == (self.channels, self.size, self.size):
                return value  # already this modality's tensor
            value = self._named(tensor_image_to_pil, value)
        if isinstance(value, np.ndarray):
            value = self._named(array_to_pil, value)
        if not isinstance(value, Image.Image):
            raise DataError(
                f"modality {self.name!r} takes images: PIL, uint8 tensors [C, H, W], float tensors in [-1, 1] or "
                f"numpy arrays [H, W, C], got {_describe(value)}"
            )
        image = resize_and_crop(to_rgb(value), self.size)
        return pil_to_tensor(image.convert("L") if self.channels == 1 else image)

    def _named(self, convert, value: Any) -> Image.Image:
        """`convert(value)`, its error naming this modality."""
        try:
            return convert(value)
        except DataError as error:
            raise DataError(f"modality {self.name!r}: {error}") from None

    def empty(self) -> torch.Tensor:
        return torch.zeros(self.channels, self.size, self.size)

    def from_decoded(self, decoded: torch.Tensor) -> list[Image.Image]:
        return tensor_to_pil(decoded.float().clamp(-1, 1))


class TextModality(Modality):
    """Captions as token sequences of the model's tokenizer, padded to `max_length`.

    Encoder (`encoder`): "learned", a 1-D conv over token embeddings trained with the model;
    or "minilm", the frozen pretrained all-MiniLM-L6-v2's token states (from the installed
    package, not saved with the model; computed once per distinct caption and kept in
    memory) projected per token, then mean- and max-pooled. The pretrained encoder reads
    words the training captions never held ("crimson"); the model's tokenizer must then be
    MiniLM's WordPiece tokenizer, which spells any English word.

    Decoder (`decoder`): autoregressive (default: a GRU started from the latent, which also
    enters every step; greedy decoding) or parallel (logits at every position at once, from
    the latent alone), over `decoder_vocabulary`: the token ids it can write (default: the
    whole vocabulary). A model trained on captions can only learn to write their tokens, so
    training passes those; a 30,522-token softmax at every position would cost more than the
    rest of the model. Categorical likelihood over all positions (padding included, so the
    length is generated too).

    A parallel decoder cannot choose between phrasings the latent does not pin down ("a
    big red star at the top" / "large red star, upper middle"): its per-position argmax
    mixes them into word salad. On Shapes it generated no parseable caption from an image
    (0.5%) while reading attributes from captions perfectly."""

    kind = "text"

    def __init__(
        self, name: str, latent_dim: int, vocab_size: int, max_length: int = 24, hidden: int = 128,
        column: str = "text", decoder: str = "autoregressive", encoder: str = "learned",
        decoder_vocabulary: list[int] | None = None,
    ):
        super().__init__(name, latent_dim)
        if decoder not in ("autoregressive", "parallel"):
            raise ConfigError(f"text decoder must be 'autoregressive' or 'parallel', not {decoder!r}")
        if encoder not in ("learned", "minilm"):
            raise ConfigError(f"text encoder must be 'learned' or 'minilm', not {encoder!r}")
        written = list(range(vocab_size)) if decoder_vocabulary is None else sorted(set(decoder_vocabulary) | {0})
        if written[-1] >= vocab_size or written[0] < 0:
            raise ConfigError(f"decoder_vocabulary of modality {name!r} holds ids outside [0, {vocab_size})")
        self.vocab_size, self.max_length, self.hidden, self.column = vocab_size, max_length, hidden, column
        self.decoder_kind, self.encoder_kind = decoder, encoder
        self.decoder_vocabulary = None if decoder_vocabulary is None else written
        self.tokenizer = None  # set by the model (it is saved beside the weights)
        # Token id -> the decoder's index of it (ids it cannot write map to 0, padding: none
        # occurs in the captions it trained on), and back.
        self.register_buffer("written_ids", torch.tensor(written), persistent=False)
        self.register_buffer("to_written", self._token_to_written(self.written_ids), persistent=False)
        if encoder == "minilm":
            self._text_encoder: list[TextEncoder] = []  # loaded at first use, kept out of the module tree
            self._states: dict[bytes, torch.Tensor] = {}
            features = text_encoder_config("minilm").hidden_size
            self.token_projection = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.encoder_body = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU())
            self.encoder_head = GaussianHead(hidden, latent_dim)
        else:
            self.embedding = nn.Embedding(vocab_size, hidden)
            self.encoder_body = nn.Sequential(
                nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU(),
                nn.Flatten(),
            )
            self.encoder_head = GaussianHead(hidden * max_length, latent_dim)
        outputs = len(written)
        if decoder == "parallel":
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, hidden * max_length), nn.SiLU(), nn.Unflatten(1, (hidden, max_length)),
                nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU(), nn.Conv1d(hidden, outputs, 1),
            )
        else:
            self.decoder = nn.ModuleDict({
                "latent": nn.Linear(latent_dim, 2 * hidden),  # -> the GRU's first state and every step's input
                "embedding": nn.Embedding(outputs, hidden),
                "gru": nn.GRU(hidden, hidden, batch_first=True),
                "output": nn.Linear(hidden, outputs),
            })

    def spec(self) -> dict[str, Any]:
        spec = {"kind": self.kind, "vocab_size": self.vocab_size, "max_length": self.max_length, "hidden": self.hidden,
                "column": self.column, "decoder": self.decoder_kind}
        spec["encoder"] = self.encoder_kind  # always: a spec's default encoder is minilm, the class's learned
        if self.decoder_vocabulary is not None:
            spec["decoder_vocabulary"] = self.decoder_vocabulary
        return spec

    def extend_decoder_vocabulary(self, ids: set[int]) -> int:
        """Let the decoder write the token `ids` too (a fine-tune on captions with words it
        never wrote would otherwise teach it to write padding in their place): new rows in
        its token embedding and output layer, the output's with zero weights and the lowest
        bias of the old ones, so that they start unlikely and the old tokens' logits stay
        as they were. Returns how many (0 for a condition-only caption, which decodes
        nothing)."""
        if self.decoder is None or self.decoder_vocabulary is None:  # decodes nothing, or the whole vocabulary
            return 0
        new = set(ids) - set(self.decoder_vocabulary)
        if not new:
            return 0
        if min(new) < 0 or max(new) >= self.vocab_size:
            raise ConfigError(f"modality {self.name!r}: token ids must lie in [0, {self.vocab_size})")
        written = sorted(set(self.decoder_vocabulary) | new)
        position = {token: index for index, token in enumerate(written)}
        kept = torch.tensor([position[token] for token in self.decoder_vocabulary])
        if self.decoder_kind == "parallel":
            self.decoder[-1] = _with_rows(self.decoder[-1], kept, len(written), silent=True)
        else:
            self.decoder["embedding"] = _with_rows(self.decoder["embedding"], kept, len(written))
            self.decoder["output"] = _with_rows(self.decoder["output"], kept, len(written), silent=True)
        self.decoder_vocabulary = written
        self.written_ids = torch.tensor(written, device=self.written_ids.device)
        self.to_written = self._token_to_written(self.written_ids)
        return len(new)

    def _token_to_written(self, written_ids: torch.Tensor) -> torch.Tensor:
        to_written = torch.zeros(self.vocab_size, dtype=torch.long, device=written_ids.device)
        to_written[written_ids] = torch.arange(len(written_ids), device=written_ids.device)
        return to_written

    def check_max_length(self, max_length: int) -> None:
        """Raise unless this caption modality can read and write `max_length` tokens: only
        the MiniLM encoder's and the autoregressive decoder's weights do not depend on it."""
        if max_length == self.max_length:
            return
        if self.encoder_kind != "minilm" or self.decoder_kind != "autoregressive":
            raise ConfigError(f"modality {self.name!r}: a trained caption window can only change with the MiniLM "
                              "encoder and the autoregressive decoder (the others' weights depend on its length)")
        longest = text_encoder_config("minilm").max_position_embeddings
        if not 2 <= max_length <= longest:
            raise ConfigError(f"modality {self.name!r}: MiniLM reads caption windows of 2 to {longest} tokens, not {max_length}")

    def set_max_length(self, max_length: int) -> None:
        """Read and write captions of up to `max_length` tokens (see `check_max_length`)."""
        self.check_max_length(max_length)
        self.max_length = max_length

    @property
    def dimension(self) -> int:
        return self.max_length

    def features(self, values: torch.Tensor) -> torch.Tensor:
        if self.encoder_kind == "learned":
            return self.encoder_body(self.embedding(values).transpose(1, 2))
        mask = (values != 0).unsqueeze(-1)
        tokens = self.token_projection(self._pretrained_states(values).to(self.token_projection[0].weight))
        mean = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1)
        largest = tokens.masked_fill(~mask, torch.finfo(tokens.dtype).min).amax(1)
        largest = torch.where(mask.any(1), largest, torch.zeros_like(largest))  # a missing caption: all padding
        return self.encoder_body(torch.cat([mean, largest], dim=1))

    def _pretrained_states(self, values: torch.Tensor) -> torch.Tensor:
        """The frozen MiniLM's token states [B, L, D] of token ids [B, L], each distinct row
        encoded once (float16 in memory: a training run's captions fit in well under a GB)."""
        keys = [row.tobytes() for row in values.cpu().numpy()]
        new = {key: index for index, key in enumerate(keys) if key not in self._states}
        if new:
            if not self._text_encoder:
                self._text_encoder.append(TextEncoder.minilm(max_length=self.max_length).to(values.device))
            model = self._text_encoder[0].model
            rows = values[list(new.values())].to(model.device)
            with torch.no_grad():
                states = model(input_ids=rows, attention_mask=(rows != 0).long()).last_hidden_state
            self._states.update(zip(new, states.half().cpu()))
        return torch.stack([self._states[key] for key in keys]).to(values.device)

    def _steps(self, latent: torch.Tensor, previous: torch.Tensor, state: torch.Tensor | None = None):
        """Logits [B, T, V] for the tokens after `previous` [B, T] (decoder indices), and the GRU state."""
        start, step_input = torch.tanh(self.decoder["latent"](latent)).chunk(2, dim=-1)
        inputs = self.decoder["embedding"](previous) + step_input[:, None]
        output, state = self.decoder["gru"](inputs, start[None].contiguous() if state is None else state)
        return self.decoder["output"](output), state

    def _shifted(self, written: torch.Tensor) -> torch.Tensor:
        # Index 0 (padding) stands for "nothing yet" before the first position.
        return torch.cat([torch.zeros_like(written[:, :1]), written[:, :-1]], dim=1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Logits [B, V, L] over the decoder vocabulary: the parallel decoder's, or those of greedy decoding."""
        if self.decoder_kind == "parallel":
            return self.decoder(latent)
        token = torch.zeros(len(latent), 1, dtype=torch.long, device=latent.device)
        state, steps = None, []
        for _ in range(self.max_length):
            logits, state = self._steps(latent, token, state)
            steps.append(logits[:, 0])
            token = logits.argmax(-1)
        return torch.stack(steps, dim=2)

    def reconstruction_log_likelihood(self, latent: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        if self.decoder_kind == "parallel":
            return super().reconstruction_log_likelihood(latent, values)
        logits, _ = self._steps(latent, self._shifted(self.to_written[values]))
        return self.log_likelihood(logits.transpose(1, 2), values)

    def log_likelihood(self, decoded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(decoded, self.to_written[values], reduction="none").sum(1)

    def read(self, batch: dict[str, Any]) -> Any:
        return batch.get(self.name, batch.get(self.column))

    def checked(self, values: torch.Tensor) -> torch.Tensor:
        values = super().checked(values)
        if values.numel() and (values.min() < 0 or values.max() >= self.vocab_size):
            raise DataError(f"modality {self.name!r}: token ids must lie in [0, {self.vocab_size}), got {values.min()}..{values.max()}")
        return values

    def to_tensor(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return self.checked(value[None])[0]
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"modality {self.name!r} takes non-empty captions, got {_describe(value)}")
        check_texts([value])
        ids = self.tokenizer(value, padding="max_length", truncation=True, max_length=self.max_length)["input_ids"]
        truncated = ids[-1] != self.tokenizer.pad_token_id and len(self.tokenizer(value, verbose=False)["input_ids"]) > len(ids)
        if truncated:  # one message for every caption, so that Python shows it once, not once per sample
            warnings.warn(f"modality {self.name!r}: captions longer than {self.max_length} tokens are truncated",
                          stacklevel=2)
        return torch.tensor(ids)

    def empty(self) -> torch.Tensor:
        return torch.zeros(self.max_length, dtype=torch.long)

    def fill_in(self, decoded: torch.Tensor) -> torch.Tensor:
        return self.written_ids[decoded.argmax(1)]  # the decoded (greedy) tokens

    def from_decoded(self, decoded: torch.Tensor) -> list[str]:
        texts = self.tokenizer.batch_decode(self.fill_in(decoded), skip_special_tokens=True)
        # Tokenizers split punctuation into words of their own; join it back.
        return [re.sub(r" ([,.;:!?'])", r"\1", re.sub(r" ?- ?", "-", text)).strip() for text in texts]


class CategoricalModality(Modality):
    """Named categorical attributes, e.g. {"shape": [...], "color": [...]}, read from columns
    of those names. Each attribute may also be unknown (its own embedding), so a sample can
    give some attributes and leave the rest to be imputed; training hides each given
    attribute with probability `hide_probability` to teach the encoder partial input."""

    kind = "categorical"

    def __init__(
        self, name: str, latent_dim: int, classes: dict[str, list[str]], hidden: int = 128,
        hide_probability: float = 0.0,
    ):
        super().__init__(name, latent_dim)
        if not classes:
            raise ConfigError(f"categorical modality {name!r} needs at least one attribute")
        # Sorted: a saved config's keys come back sorted, and the embeddings follow this order.
        self.classes = {attribute: list(classes[attribute]) for attribute in sorted(classes)}
        self.hidden, self.hide_probability = hidden, hide_probability
        # index 0 of every attribute is "unknown"; labels are 1..K
        self.embeddings = nn.ModuleList(nn.Embedding(len(labels) + 1, hidden) for labels in self.classes.values())
        self.encoder_body = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.encoder_head = GaussianHead(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, sum(len(labels) for labels in self.classes.values())),
        )

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": self.classes, "hidden": self.hidden,
                "hide_probability": self.hide_probability}

    @property
    def dimension(self) -> int:
        return len(self.classes)

    def features(self, values: torch.Tensor) -> torch.Tensor:
        if self.training and self.hide_probability > 0:
            values = values.masked_fill(torch.rand(values.shape, device=values.device) < self.hide_probability, 0)
        summed = sum(embedding(values[:, i]) for i, embedding in enumerate(self.embeddings))
        return self.encoder_body(summed)

    def _split(self, decoded: torch.Tensor) -> list[torch.Tensor]:
        return list(decoded.split([len(labels) for labels in self.classes.values()], dim=1))

    def log_likelihood(self, decoded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Summed over the attributes that are known (value index > 0)."""
        total = torch.zeros(len(values), device=values.device)
        for i, logits in enumerate(self._split(decoded)):
            known = values[:, i] > 0
            log_p = -F.cross_entropy(logits, (values[:, i] - 1).clamp_min(0), reduction="none")
            total = total + torch.where(known, log_p, torch.zeros_like(log_p))
        return total

    def read(self, batch: dict[str, Any]) -> Any:
        values = batch.get(self.name)
        # Under its own name, unless that is also one of its columns holding labels (a
        # modality "category" over the column "category"; a batch of whole-number labels
        # is a tensor [B], where the modality's own values are [B, attributes]).
        whole = values is not None and (
            self.name not in self.classes or isinstance(values, torch.Tensor) and values.ndim == 2
            or any(isinstance(v, dict) for v in values)
        )
        if whole:
            return values
        if not any(attribute in batch for attribute in self.classes):
            return None
        size = len(next(batch[a] for a in self.classes if a in batch))
        rows = [{a: batch[a][i] for a in self.classes if a in batch and batch[a][i] is not None} for i in range(size)]
        return [row or None for row in rows]

    def checked(self, values: torch.Tensor) -> torch.Tensor:
        values = super().checked(values)
        sizes = torch.tensor([len(labels) for labels in self.classes.values()], device=values.device)
        if values.numel() and ((values < 0) | (values > sizes)).any():
            raise DataError(
                f"modality {self.name!r}: attribute indices must lie in 0 (unknown) .. the number of labels "
                f"({', '.join(f'{a} {len(l)}' for a, l in self.classes.items())})"
            )
        return values

    def to_tensor(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return self.checked(value[None])[0]
        if not isinstance(value, dict) or not value:
            raise DataError(f"modality {self.name!r} takes a dict of attribute labels, got {_describe(value)}")
        unknown = set(value) - set(self.classes)
        if unknown:
            raise DataError(f"modality {self.name!r} has no attribute {sorted(unknown)[0]!r}; known: {', '.join(self.classes)}")
        indices = []
        for attribute, labels in self.classes.items():
            label = as_label(value.get(attribute))
            if label is not None and label not in labels:
                raise DataError(f"{attribute} {label!r} is not one of {shown_labels(labels)}")
            indices.append(labels.index(label) + 1 if label is not None else 0)
        return torch.tensor(indices)

    def empty(self) -> torch.Tensor:
        return torch.zeros(len(self.classes), dtype=torch.long)

    def keep_given(self, imputed: list[Any], given: torch.Tensor, n: int) -> list[Any]:
        # Read off the observed indices (0: unknown, also for a missing sample), so that
        # labels given as dicts with None, tensors or lists of tensors are all kept.
        return [
            {attribute: labels[index - 1] if index else row[attribute]
             for (attribute, labels), index in zip(self.classes.items(), known)}
            for row, known in zip(imputed, given.repeat_interleave(n, dim=0).tolist())
        ]

    def unknown(self, values: torch.Tensor) -> torch.Tensor:
        return values == 0

    def fill_in(self, decoded: torch.Tensor) -> torch.Tensor:
        return torch.stack([logits.argmax(1) for logits in self._split(decoded)], 1) + 1  # labels are 1..K

    def draw(self, decoded: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        drawn = [torch.multinomial(logits.softmax(1).cpu(), 1, generator=generator)[:, 0] for logits in self._split(decoded)]
        return torch.stack(drawn, 1).to(decoded.device) + 1

    def from_decoded(self, decoded: torch.Tensor) -> list[dict[str, str]]:
        chosen = [logits.argmax(1).tolist() for logits in self._split(decoded)]
        return [
            {attribute: labels[chosen[i][row]] for i, (attribute, labels) in enumerate(self.classes.items())}
            for row in range(len(decoded))
        ]


def shown_labels(labels: list[str], most: int = 12) -> str:
    """A modality's labels as a message lists them: all of a few, else the first `most` and
    how many there are (an identifier column can hold thousands)."""
    if len(labels) <= most:
        return ", ".join(labels)
    return f"{', '.join(labels[:most])}, ... ({len(labels)} labels)"


class RealModality(Modality):
    """Real vectors of a fixed length: MLP encoder and decoder, Gaussian likelihood with a
    fixed scale. With `mean` and `std` (per dimension; the spec takes them from the data)
    values are modelled standardised, so that a column in thousands and one in thousandths
    weigh alike and `scale` is in standard deviations; users give and get raw values."""

    kind = "real"

    def __init__(
        self, name: str, latent_dim: int, dim: int, hidden: int = 128, scale: float = 1.0, column: str | None = None,
        mean: list[float] | None = None, std: list[float] | None = None,
    ):
        super().__init__(name, latent_dim)
        self.dim, self.hidden, self.scale, self.column = dim, hidden, scale, column or name
        if (mean is None) != (std is None):
            raise ConfigError(f"modality {name!r}: give both mean and std, or neither")
        for setting, value in (("mean", mean), ("std", std)):
            if value is not None and not (isinstance(value, (list, tuple)) and len(value) == dim):
                raise ConfigError(f"modality {name!r}: {setting} must be a list of {dim} numbers, got {value!r}")
        if std is not None and min(std) <= 0:
            raise ConfigError(f"modality {name!r}: std must be positive, got {std}")
        self.mean, self.std = mean, std
        self.encoder_body = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.encoder_head = GaussianHead(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def spec(self) -> dict[str, Any]:
        standardisation = {"mean": self.mean, "std": self.std} if self.mean is not None else {}
        return {"kind": self.kind, "dim": self.dim, "hidden": self.hidden, "scale": self.scale, "column": self.column,
                **standardisation}

    @property
    def dimension(self) -> int:
        return self.dim

    def features(self, values: torch.Tensor) -> torch.Tensor:
        return self.encoder_body(values)

    def log_likelihood(self, decoded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        error = (decoded - values) / self.scale
        return -0.5 * error.square().sum(1) - self.dim * math.log(self.scale * math.sqrt(2 * math.pi))

    def read(self, batch: dict[str, Any]) -> Any:
        return batch.get(self.name, batch.get(self.column))

    def checked(self, values: torch.Tensor) -> torch.Tensor:
        # Collation stacks a column of numbers into [B] (integers stay integers, made float64 here).
        values = values.reshape(len(values), -1) if values.dim() == 1 else values
        values = super().checked(values if values.is_floating_point() else values.double())
        return self._standardised(self._finite(values, "NaN or infinity in a tensor"))

    def to_tensor(self, value: Any) -> torch.Tensor:
        try:
            tensor = torch.as_tensor(value, dtype=torch.float64).reshape(-1)  # a number is a vector of one
        except (TypeError, ValueError, RuntimeError) as error:
            raise DataError(f"modality {self.name!r} takes numbers, got {value!r}") from error
        if tensor.shape != (self.dim,):
            raise DataError(f"modality {self.name!r} takes vectors of {self.dim} numbers, got shape {tuple(tensor.shape)}")
        return self._standardised(self._finite(tensor, repr(value)))

    def _finite(self, values: torch.Tensor, shown: str) -> torch.Tensor:
        # A NaN would reach the loss ("training diverged") or every imputed value, far from its cause.
        if not values.isfinite().all():
            raise DataError(f"modality {self.name!r} takes finite numbers, got {shown} (leave a missing value out)")
        return values

    def _standardised(self, values: torch.Tensor) -> torch.Tensor:
        """Float32 values, standardised in float64 on the CPU (a timestamp's offset would
        swamp float32; some accelerators have no float64)."""
        if self.mean is None:
            return values.float()
        mean, std = self._statistics()
        return ((values.detach().cpu().double() - mean) / std).float().to(values.device)

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.mean, dtype=torch.float64), torch.tensor(self.std, dtype=torch.float64)

    def empty(self) -> torch.Tensor:
        return torch.zeros(self.dim)

    def from_decoded(self, decoded: torch.Tensor) -> list[list[float]] | list[float]:
        """Raw values, a number per sample where the modality holds one (a column of numbers)."""
        if self.mean is not None:
            mean, std = self._statistics()
            decoded = decoded.detach().cpu().double() * std + mean
        return decoded[:, 0].tolist() if self.dim == 1 else decoded.tolist()


class TextEmbeddingModality(Modality):
    """Captions read by a frozen shared text encoder of mmgen.text (`minilm`, or a folder
    with tokenizer/ and text_encoder/ such as a diffusion pipeline's), its pooled vector
    then an MLP. Only a condition (of the conditional VAE): nothing decodes to an embedding.

    The encoder is loaded by name, not saved with the model, and its vectors are kept in
    memory per distinct caption: a caption is encoded once, not at every step (a MiniLM
    pass costs about as much as the rest of a training step)."""

    kind = "text_embedding"
    generated = False

    def __init__(
        self, name: str, latent_dim: int, encoder: str = "minilm", hidden: int = 128, max_length: int = 32,
        column: str = "text",
    ):
        super().__init__(name, latent_dim)
        self.encoder, self.hidden, self.max_length, self.column = encoder, hidden, max_length, column
        self.embedding_dim = text_encoder_config(encoder).hidden_size
        # Loaded at first use and kept out of the module tree, so that its weights are neither
        # trained nor saved (and not built on the meta device when the model is loaded).
        self._text_encoder: list[TextEncoder] = []
        self._vectors: dict[str, torch.Tensor] = {}
        self.encoder_body = nn.Sequential(nn.Linear(self.embedding_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.encoder_head = GaussianHead(hidden, latent_dim)
        self.decoder = None

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "encoder": self.encoder, "hidden": self.hidden, "max_length": self.max_length,
                "column": self.column}

    @property
    def dimension(self) -> int:
        return self.embedding_dim

    def features(self, values: torch.Tensor) -> torch.Tensor:
        return self.encoder_body(values)

    def read(self, batch: dict[str, Any]) -> Any:
        return batch.get(self.name, batch.get(self.column))

    def batch_tensors(self, batch: dict[str, Any], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.read(batch)
        if isinstance(values, list):  # one encoder pass for the batch's new captions
            self._embed([value for value in values if value is not None])
        return super().batch_tensors(batch, size)

    def _embed(self, captions: list[Any]) -> None:
        for caption in captions:
            if not isinstance(caption, str) or not caption.strip():
                raise DataError(f"modality {self.name!r} takes non-empty captions, got {_describe(caption)}")
        new = [caption for caption in dict.fromkeys(captions) if caption not in self._vectors]
        if new:
            if not self._text_encoder:
                minilm = self.encoder == "minilm"
                self._text_encoder.append(
                    TextEncoder.minilm(max_length=self.max_length) if minilm else TextEncoder.from_pretrained(self.encoder)
                )
            with torch.no_grad():
                self._vectors.update(zip(new, self._text_encoder[0](new).pooled.float().cpu()))

    def to_tensor(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return self.checked(value[None])[0]
        self._embed([value])
        return self._vectors[value]

    def empty(self) -> torch.Tensor:
        return torch.zeros(self.embedding_dim)


def caption_tokens(tokenizer, captions: list[str], max_length: int) -> set[int]:
    """The token ids of `captions` within a window of `max_length`: what a caption decoder
    trained on them must be able to write."""
    return {token for row in tokenizer(captions, truncation=True, max_length=max_length)["input_ids"] for token in row}


def _with_rows(layer: nn.Embedding | nn.Linear | nn.Conv1d, kept: torch.Tensor, rows: int, silent: bool = False):
    """A copy of `layer` with `rows` output rows, its own at the positions `kept`; the new
    rows freshly initialised, or `silent` (zero weights, the lowest bias)."""
    if isinstance(layer, nn.Embedding):
        grown = nn.Embedding(rows, layer.embedding_dim)
    elif isinstance(layer, nn.Linear):
        grown = nn.Linear(layer.in_features, rows)
    else:
        grown = nn.Conv1d(layer.in_channels, rows, layer.kernel_size)
    grown = grown.to(layer.weight)
    with torch.no_grad():
        if silent:
            grown.weight.zero_()
            grown.bias.fill_(layer.bias.min().item())
        grown.weight[kept] = layer.weight
        if not isinstance(layer, nn.Embedding):
            grown.bias[kept] = layer.bias
    return grown


KINDS: dict[str, type[Modality]] = {
    m.kind: m for m in (ImageModality, TextModality, CategoricalModality, RealModality, TextEmbeddingModality)
}


def build_modality(name: str, spec: dict[str, Any], latent_dim: int) -> Modality:
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(f"modality {name!r}: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    for key in ("widths", "decoder_widths"):
        if key in options:
            options[key] = tuple(options[key])
    return KINDS[kind](name, latent_dim, **options)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]
