"""What every model over declared modalities shares: the modalities' networks ("codecs"),
reading batches with missing values, Gaussian helpers, and saving the caption tokenizer
beside the weights."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin

from mmgen.checkpoints import checkpoint_class, loading, require_safetensors
from mmgen.data.imagetext import item_key
from mmgen.errors import CheckpointError, ConfigError, DataError
from mmgen.multimodal.modalities import TextModality, build_modality, caption_tokens

TOKENIZER_FOLDER = "tokenizer"


@dataclass
class Observed:
    """A batch as the model sees it: tensors with zeros where missing, presence [M, B]."""

    values: dict[str, torch.Tensor]
    present: torch.Tensor

    @property
    def size(self) -> int:
        return self.present.shape[1]


def gaussian_kl_to_standard(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over the last dimension."""
    return 0.5 * (logvar.exp() + mean.square() - 1.0 - logvar).sum(-1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(logvar)), summed over the last dimension."""
    return -0.5 * ((z - mean).square() / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


class ModalityModel(ModelMixin, ConfigMixin):
    """Base of the models here; a subclass's registered config holds `modalities` (name ->
    spec) and calls `build_codecs`."""

    def build_codecs(
        self, modalities: dict[str, dict[str, Any]], latent_dim: int, private_dims: dict[str, int] | None = None
    ) -> None:
        """One codec per modality; a modality with a private latent of P dimensions encodes
        to, and decodes from, latent_dim + P (the shared latent first)."""
        if not modalities:
            raise ConfigError(f"a {type(self).__name__} needs at least one modality")
        private_dims = private_dims or {}
        # Ordered by name: a saved config's keys come back sorted, and draws follow this order.
        self.codecs = torch.nn.ModuleDict(
            {name: build_modality(name, modalities[name], latent_dim + private_dims.get(name, 0)) for name in sorted(modalities)}
        )
        readers: dict[str, str] = {}
        for name in self.names:
            for key in dict.fromkeys((name, *self.columns(name))):
                if key in readers:
                    raise ConfigError(f"modalities {readers[key]!r} and {name!r} both read the column {key!r}; "
                                      "give each its own column")
                readers[key] = name

    # ----- tokenizer (saved beside the weights for text modalities) -----

    def set_tokenizer(self, tokenizer) -> None:
        for modality in self.codecs.values():
            if isinstance(modality, TextModality):
                if len(tokenizer) > modality.vocab_size:
                    raise ConfigError(f"tokenizer has {len(tokenizer)} tokens; modality {modality.name!r} holds {modality.vocab_size}")
                modality.tokenizer = tokenizer

    def set_caption_length(self, max_length: int) -> None:
        """Give every caption modality a window of `max_length` tokens (see
        `TextModality.set_max_length`); the saved config follows."""
        captions = [m for m in self.codecs.values() if isinstance(m, TextModality)]
        if not captions:
            raise ConfigError(f"a caption window of {max_length} tokens: the model reads no captions")
        for modality in captions:  # all checked before any changes
            modality.check_max_length(max_length)
        for modality in captions:
            modality.set_max_length(max_length)
        if self.tokenizer is not None:
            self.tokenizer.model_max_length = max_length  # saved with it
        self._record_caption_specs()

    def learn_to_write(self, name: str, captions: list[str]) -> int:
        """Let caption modality `name`'s decoder write every token of `captions` (see
        `TextModality.extend_decoder_vocabulary`); returns how many tokens it adds."""
        modality = self.codecs[name]
        added = modality.extend_decoder_vocabulary(caption_tokens(modality.tokenizer, captions, modality.max_length))
        self._record_caption_specs()
        return added

    def _record_caption_specs(self) -> None:
        """The saved config follows the caption modalities' windows and decoder vocabularies."""
        specs = dict(self.config.modalities)
        for modality in self.codecs.values():
            if isinstance(modality, TextModality):
                specs[modality.name] = {**specs[modality.name], **modality.spec()}
        self.register_to_config(modalities=specs)

    @property
    def tokenizer(self):
        return next((m.tokenizer for m in self.codecs.values() if isinstance(m, TextModality)), None)

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        super().save_pretrained(save_directory, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(Path(save_directory) / TOKENIZER_FOLDER)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> ModalityModel:
        folder = Path(path) / kwargs.get("subfolder", "")
        class_name = checkpoint_class(folder)
        if class_name != cls.__name__:
            hint = f" (load it with mmgen.{class_name})" if class_name in ("MultimodalVAE", "ConditionalVAE") else ""
            raise CheckpointError(f"{folder}: a {class_name} checkpoint, not a {cls.__name__}{hint}")
        require_safetensors(folder)
        from transformers import AutoTokenizer

        with loading(folder):
            model = super().from_pretrained(path, use_safetensors=True, **kwargs)
            if (folder / TOKENIZER_FOLDER).is_dir():
                model.set_tokenizer(AutoTokenizer.from_pretrained(folder / TOKENIZER_FOLDER))
        return model

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode for inference (a categorical modality hides attributes at random only
        in training), then the caller's mode back."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ----- batches -----

    @property
    def names(self) -> list[str]:
        return list(self.codecs)

    def columns(self, name: str) -> list[str]:
        """The dataset columns that can hold modality `name`'s values besides its name (an
        image is read from pixel_values, attributes from a column each)."""
        codec = self.codecs[name]
        return list(codec.classes) if codec.kind == "categorical" else [codec.column]

    def image_sizes(self) -> dict[str, int]:
        """The size each image modality's column is read at: column -> px (for a dataset's
        `set_image_sizes`)."""
        return {codec.column: codec.size for codec in self.codecs.values() if codec.kind == "image"}

    @staticmethod
    def check_draws(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n (draws per sample) must be a whole number >= 1, not {n!r}")

    def user_batch(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` of the inference methods, checked: each key names a modality or one of
        its columns, and a lone value (a caption, a PIL image, a dict of labels) is a batch
        of one. Lists (None where missing) and tensors [B, ...] are batches as they are."""
        if not isinstance(inputs, dict):
            raise DataError(f"inputs must be a dict of modality name -> per-sample values, not {type(inputs).__name__}")
        # The main image as the data's metadata names it (file_name), not only as items carry it.
        inputs = {key if key in self.names else item_key(key): value for key, value in inputs.items()}
        known = {key for name in self.names for key in (name, *self.columns(name))}
        unknown = set(inputs) - known
        if unknown:
            raise DataError(f"inputs name no modality of this model: {', '.join(map(repr, sorted(unknown)))}; "
                            f"it has {', '.join(self.names)}")
        return {key: _as_batch(value) for key, value in inputs.items()}

    # Never traced by torch.compile: it reads Python values (captions, labels) whose every
    # new batch would make a compiled objective recompile; what follows it compiles.
    @torch.compiler.disable
    def observe(self, batch: dict[str, Any]) -> Observed:
        """Tensors and presence of every modality in a batch: dataset columns (e.g. Shapes'
        pixel_values, text, shape, color, ...) or user values keyed by modality name,
        None for a missing value or a whole missing modality."""
        sizes = {len(v) for v in batch.values() if isinstance(v, (list, tuple, torch.Tensor))}
        if len(sizes) != 1:
            raise DataError(
                f"batch entries disagree on the number of samples: {sorted(sizes)}" if sizes
                else "no values given: give at least one modality's per-sample values"
            )
        size = sizes.pop()
        if not size:
            raise DataError("empty batch: no samples given")
        values, present = {}, []
        for name, modality in self.codecs.items():
            tensor, mask = modality.batch_tensors(batch, size)
            dtype = self.dtype if tensor.is_floating_point() else None  # e.g. loaded with torch_dtype
            values[name], present = tensor.to(self.device, dtype), [*present, mask]
        return Observed(values, torch.stack(present).to(self.device))


def _as_batch(value: Any) -> Any:
    """A user's per-sample values as a batch: lists and tensors [B, ...] as they are, a
    stack of numpy images [B, H, W, C] (diffusers' `output_type="np"`) as a list of them,
    and a lone value as a batch of one."""
    if value is None or isinstance(value, (list, tuple, torch.Tensor)):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 4:
        return list(value)
    return [value]
