"""Declared modalities: which modalities a multimodal (or conditional) VAE has, read from a
spec (a JSON or YAML file, or the same dict in Python) or inferred from the data, then
completed from the data. A spec maps each modality's name to its kind, the column it reads
and its settings, e.g. for a folder whose metadata.jsonl has `file_name`, `image_side`,
`text`, `digit` and `xy` columns:

    {"front": {"kind": "image", "column": "file_name", "size": 28},
     "side": {"kind": "image", "column": "image_side"},
     "caption": {"kind": "text"},
     "labels": {"kind": "categorical", "columns": ["digit"]},
     "position": {"kind": "real", "column": "xy", "weight": 10}}

Kinds and their settings (see mmgen.multimodal.modalities for each):

- image: `column` (the folder's main image is `file_name`, which items carry as
  `pixel_values`; any other image column by its name), `size` (default: the data's),
  `channels` (3 or 1), `widths`, `likelihood`, `scale`;
- text: `column` (default `text`), `max_length`, `hidden`, `encoder`, `decoder`; the
  tokenizer and the tokens the decoder writes come from the captions;
- categorical: `columns` (metadata columns of labels; their labels come from the data) or
  `classes` ({column: [labels]}), `hidden`, `hide_probability`;
- real: `column` (default: the name), `dim` (default: the data's), `hidden`, `scale` (in
  standard deviations), `mean` and `std` (per dimension, default: the data's; values are
  modelled standardised, given and returned raw);
- text_embedding (a condition of the conditional VAE): `encoder`, `column`.

Every kind also takes `weight`, the factor on its log-likelihood in the ELBO (default 1).
Settings left out come from the data, then from `ModalityDefaults` (the command line's
--image-*, --text-* flags). Two modalities never read one column.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from numbers import Number
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mmgen.data.collate import as_label
from mmgen.data.frozen import dataset_captions
from mmgen.data.imagetext import item_key
from mmgen.errors import ConfigError, DataError
from mmgen.multimodal.modalities import KINDS, caption_tokens, default_widths
from mmgen.text.encoder import minilm_path

MAIN_IMAGE = "pixel_values"  # the item key of a dataset's main image (a folder's file_name)
ATTRIBUTES = "attributes"  # the inferred categorical modality's name


@dataclass
class ModalityDefaults:
    """Settings of the modalities that neither the spec nor the data fix."""

    image_size: int | None = None  # None: the data's
    image_widths: tuple[int, ...] | None = None  # None: chosen from the size
    image_likelihood: str = "gaussian"
    image_scale: float = 0.1
    text_max_length: int = 32
    text_hidden: int = 128
    text_decoder: str = "autoregressive"
    text_encoder: str = "minilm"
    attribute_hide_probability: float = 0.25


def read_spec(source: str | Path | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A spec from a .json / .yaml file or a dict, checked for shape: name -> {"kind", ...}."""
    if isinstance(source, dict):
        spec = source
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the modality spec ({error})") from error
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                spec = yaml.safe_load(text)
            else:
                spec = json.loads(text)
        except ValueError as error:  # JSONDecodeError, yaml.YAMLError
            raise ConfigError(f"{path}: not a readable {path.suffix.lstrip('.') or 'JSON'} spec ({error})") from error
    if not isinstance(spec, dict) or not spec:
        raise ConfigError("a modality spec maps each modality's name to its settings, e.g. "
                          '{"front": {"kind": "image", "column": "file_name"}}')
    for name, settings in spec.items():
        if not isinstance(settings, dict) or settings.get("kind") not in KINDS:
            kind = settings.get("kind") if isinstance(settings, dict) else None
            raise ConfigError(f"modality {name!r}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return {name: dict(settings) for name, settings in spec.items()}


# Above this many distinct labels, and above one label per two items, a text column is
# read as an identifier (a name, a file id) and not inferred as a category.
_MOST_DISTINCT_LABELS = 20


def infer_spec(dataset: Dataset) -> dict[str, dict[str, Any]]:
    """The spec the data suggests: its main image (`image`), each further image column, its
    captions (`text`, if any sample has one), columns of labels as one categorical modality
    (`attributes`) and columns of numbers (or equal-length lists of numbers) each a real one."""
    spec: dict[str, dict[str, Any]] = {}
    if _has_main_image(dataset):
        spec["image"] = {"kind": "image", "column": "file_name"}
    for column in getattr(dataset, "image_columns", []):
        spec[column] = {"kind": "image", "column": column}
    if any(dataset_captions(dataset)[1]):
        spec["text"] = {"kind": "text", "column": "text"}
    labels = []
    for column, values in _metadata_columns(dataset).items():
        given = [v for v in values if v is not None]
        if given and all(isinstance(v, str) for v in given):
            distinct = len(set(given))
            if distinct > max(_MOST_DISTINCT_LABELS, len(given) // 2):
                warnings.warn(
                    f"metadata column {column!r} holds {distinct} distinct labels in {len(given)} items: an identifier "
                    "rather than a category, left out of the inferred modalities (declare it in a spec to keep it)",
                    stacklevel=2,
                )
            else:
                labels.append(column)
        elif _numeric(given) is not None:
            if column in spec:
                raise DataError(f"metadata column {column!r} has the name of another modality; rename it")
            spec[column] = {"kind": "real", "column": column}
        elif any(isinstance(v, bool) for v in given):
            raise DataError(f"metadata column {column!r} holds true/false values; write them as labels (strings) or 0/1")
        else:
            raise DataError(f"metadata column {column!r} mixes kinds of values; use strings (labels) or numbers")
    if labels:
        if ATTRIBUTES in spec:
            raise DataError(f"a metadata column is called {ATTRIBUTES!r}, the name of the categorical modality")
        spec[ATTRIBUTES] = {"kind": "categorical", "columns": labels}
    if not spec:
        raise DataError("the data holds nothing a modality could read (no images, captions or metadata columns)")
    return spec


def complete_spec(
    spec: dict[str, dict[str, Any]], dataset: Dataset, defaults: ModalityDefaults | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, float], Any]:
    """The models' modality specs with every setting filled in from the data and `defaults`,
    the likelihood weights the spec gives, and the caption tokenizer (None without text)."""
    defaults = defaults or ModalityDefaults()
    metadata = _metadata_columns(dataset)
    modalities, weights, text_modalities = {}, {}, []
    for name, given in read_spec(spec).items():
        settings = dict(given)
        if "weight" in settings:
            weights[name] = settings.pop("weight")
        kind = settings["kind"]
        if kind == "image":
            settings = _image(name, settings, dataset, defaults)
        elif kind == "text":
            settings.setdefault("column", "text")
            for key, value in (("max_length", defaults.text_max_length), ("hidden", defaults.text_hidden),
                               ("decoder", defaults.text_decoder), ("encoder", defaults.text_encoder)):
                settings.setdefault(key, value)
            text_modalities.append(name)
        elif kind == "categorical":
            settings = _categorical(name, settings, metadata, defaults)
        elif kind == "real":
            settings = _real(name, settings, metadata)
        modalities[name] = settings
    tokenizer = _tokenizer(modalities, text_modalities, dataset, metadata)
    return modalities, weights, tokenizer


def _has_main_image(dataset: Dataset) -> bool:
    return dataset.has_images() if hasattr(dataset, "has_images") else True  # Shapes: always


def _metadata_columns(dataset: Dataset) -> dict[str, list[Any]]:
    """Each metadata column's values (None where an item lacks it), read without images."""
    if not hasattr(dataset, "item_metadata"):
        return {}
    rows = [dataset.item_metadata(index) for index in range(len(dataset))]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return {column: [row.get(column) for row in rows] for column in columns}


def _numeric(values: list[Any]) -> int | None:
    """The vector length of a column of numbers (1) or of equal-length lists of numbers; None
    if the values are not numbers."""
    if values and all(isinstance(v, Number) and not isinstance(v, bool) for v in values):
        return 1
    if values and all(isinstance(v, (list, tuple)) and v and all(isinstance(x, Number) for x in v) for v in values):
        lengths = {len(v) for v in values}
        if len(lengths) != 1:
            raise DataError(f"a metadata column holds vectors of different lengths {sorted(lengths)}")
        return lengths.pop()
    return None


def _image(name: str, settings: dict[str, Any], dataset: Dataset, defaults: ModalityDefaults) -> dict[str, Any]:
    column = item_key(settings.get("column", name))
    known = [MAIN_IMAGE, *getattr(dataset, "image_columns", [])]
    if column not in known:
        shown = ", ".join("file_name" if c == MAIN_IMAGE else c for c in known)
        raise DataError(f"modality {name!r} reads the image column {column!r}, which the data lacks (its image columns: {shown})")
    settings["column"] = column
    settings.setdefault("size", defaults.image_size or dataset.native_image_size(column))
    settings.setdefault("channels", 3)
    # Written out, so that a saved model does not depend on how the default may change.
    settings.setdefault("widths", list(defaults.image_widths or default_widths(settings["size"])))
    settings.setdefault("likelihood", defaults.image_likelihood)
    settings.setdefault("scale", defaults.image_scale)
    return settings


def _categorical(
    name: str, settings: dict[str, Any], metadata: dict[str, list[Any]], defaults: ModalityDefaults
) -> dict[str, Any]:
    if "columns" in settings:
        if "classes" in settings:
            raise ConfigError(f"modality {name!r}: give `columns` (labels from the data) or `classes`, not both")
        columns = settings.pop("columns")
        if isinstance(columns, str) or not columns:
            raise ConfigError(f"modality {name!r}: columns must be a list of metadata columns, not {columns!r}")
        classes = {}
        for column in columns:
            if column not in metadata:
                raise DataError(f"modality {name!r} reads the column {column!r}, which the data lacks "
                                f"(its metadata columns: {', '.join(metadata) or 'none'})")
            labels = [v for v in metadata[column] if v is not None]
            labels = [as_label(v) for v in labels]  # a CSV's digits are numbers: their labels are text
            if not all(isinstance(v, str) for v in labels):
                raise DataError(f"modality {name!r}: column {column!r} must hold labels (strings or whole numbers)")
            classes[column] = sorted(set(labels))
        settings["classes"] = classes
    settings.setdefault("hide_probability", defaults.attribute_hide_probability)
    return settings


def _real(name: str, settings: dict[str, Any], metadata: dict[str, list[Any]]) -> dict[str, Any]:
    column = settings.setdefault("column", name)
    given = [v for v in metadata.get(column, []) if v is not None]
    length = _numeric(given)
    if "dim" not in settings:
        if column not in metadata:
            raise DataError(f"modality {name!r} reads the column {column!r}, which the data lacks "
                            f"(its metadata columns: {', '.join(metadata) or 'none'})")
        if length is None:
            raise DataError(f"modality {name!r}: column {column!r} must hold numbers or lists of numbers")
        settings["dim"] = length
    # Statistics only of values this modality can read: others are named when it reads them.
    if settings.get("mean") is None and settings.get("std") is None and length == settings["dim"]:
        settings.update(_standardisation(name, given))
    return settings


def _standardisation(name: str, values: list[Any]) -> dict[str, list[float]]:
    """Per-dimension mean and standard deviation of a column's finite numbers (a constant
    dimension, whose deviation is rounding error, gets 1: it is only shifted)."""
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in values])
    stacked = stacked[stacked.isfinite().all(1)]
    if not len(stacked):
        raise DataError(f"modality {name!r}: its column holds no finite numbers")
    mean, std = stacked.mean(0), stacked.std(0, correction=0)
    std = torch.where((std > 0) & (std > 1e-9 * mean.abs()), std, torch.ones_like(std))
    return {"mean": mean.tolist(), "std": std.tolist()}


def _tokenizer(
    modalities: dict[str, dict[str, Any]], names: list[str], dataset: Dataset, metadata: dict[str, list[Any]]
) -> Any:
    """One tokenizer for every text modality (the model saves one), and each one's vocabulary
    and the tokens its decoder writes: those its captions hold."""
    if not names:
        return None
    from transformers import AutoTokenizer

    from mmgen.text.tokenizer import train_caption_tokenizer

    encoders = {modalities[name]["encoder"] for name in names}
    if len(encoders) > 1:
        raise ConfigError(f"text modalities {', '.join(names)} must share one encoder kind, got {', '.join(sorted(encoders))}")
    captions = {name: _captions(name, modalities[name]["column"], dataset, metadata) for name in names}
    longest = max(modalities[name]["max_length"] for name in names)
    encoder = encoders.pop()
    if encoder == "minilm":
        tokenizer = AutoTokenizer.from_pretrained(minilm_path(), model_max_length=longest)
    elif encoder == "learned":
        every = list(dict.fromkeys(c for texts in captions.values() for c in texts))
        tokenizer = train_caption_tokenizer(every, vocab_size=2048, max_length=longest)
    else:
        raise ConfigError(f"text encoder must be 'minilm' or 'learned', not {encoder!r}")
    for name in names:
        settings = modalities[name]
        settings.setdefault("vocab_size", len(tokenizer))
        if "decoder_vocabulary" not in settings:
            settings["decoder_vocabulary"] = sorted(caption_tokens(tokenizer, captions[name], settings["max_length"]))
    return tokenizer


def modality_captions(name: str, column: str, dataset: Dataset) -> list[str]:
    """The distinct captions of `dataset` that text modality `name` reads from `column`."""
    return _captions(name, column, dataset, {} if column == "text" else _metadata_columns(dataset))


def _captions(name: str, column: str, dataset: Dataset, metadata: dict[str, list[Any]]) -> list[str]:
    if column == "text":
        captions = dataset_captions(dataset)[1]
    elif column in metadata:
        captions = list(dict.fromkeys(v for v in metadata[column] if v is not None))
        if not all(isinstance(v, str) for v in captions):
            raise DataError(f"modality {name!r}: column {column!r} must hold text")
    else:
        raise DataError(f"modality {name!r} reads the column {column!r}, which the data lacks")
    if not captions:
        raise DataError(f"modality {name!r}: the column {column!r} holds no text")
    return captions
