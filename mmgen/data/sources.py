"""One way to name training data, whatever form it comes in.

`open_dataset(source)` understands:

- `shapes` or `shapes:SPLIT`: the built-in Shapes dataset, rendered on the fly;
- a folder with `metadata.jsonl` or `metadata.csv` (Hugging Face imagefolder) or with `foo.png` + `foo.txt` pairs;
- a folder written by `datasets.Dataset.save_to_disk` (of a `DatasetDict`: one split's subfolder);
- `hf:NAME` or `hf:NAME:SPLIT`: `datasets.load_dataset(NAME)` (from your local Hugging Face cache);
- in Python, also a `pathlib.Path`, or a dataset object: a `datasets.Dataset` (one split) or
  any object with len() and dict rows by index, read as `ImageTextDataset.from_hf` reads it.

Every one yields examples `{"pixel_values": [3, S, S] in [-1, 1], "text": str, ...extra columns}`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from torch.utils.data import Dataset, Subset

from mmgen.data.imagetext import ImageTextDataset, metadata_file
from mmgen.data.shapes import SPLITS, ShapesDataset
from mmgen.errors import DataError


@dataclass(frozen=True)
class DataSource:
    """A data source (anything `open_dataset` takes) with the names of its image and
    caption columns where they are not the defaults (metadata.jsonl: `file_name` and
    `text`; Hugging Face datasets: `image` and `text`), and what to do with bad entries
    ("skip"; default: raise); what `--data` with `--image-column` / `--text-column` /
    `--on-error` becomes."""

    path: str | os.PathLike | Any
    image_column: str | None = None
    text_column: str | None = None
    on_error: str | None = None

    def __str__(self) -> str:
        return described_source(self.path)


# What `open_dataset` takes (see the module docstring); dataset objects are of any type.
DataLike = Union[str, os.PathLike, DataSource, Any]


def described_source(source: DataLike) -> str:
    """`source` as messages name it: a path or name as given, a dataset object by its type
    (a `datasets.Dataset`'s own text runs over several lines)."""
    if isinstance(source, DataSource):
        source = source.path
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"the {type(source).__name__} given"


def open_dataset(
    source: DataLike,
    size: int = 64,
    n: int | None = None,
    seed: int = 0,
    random_flip: bool = False,
    on_error: str = "raise",
    image_column: str | None = None,
    text_column: str | None = None,
    allow_missing: bool = False,
    caption_variants: int = 0,
    image_sizes: dict[str, int] | None = None,
) -> Dataset:
    """Open `source` (see the module docstring) as an image-text dataset of `size` px images.
    `n` limits Shapes to its first n samples; other sources are used whole. `allow_missing`
    keeps entries without a caption or an image (None there; see ImageTextDataset).
    `caption_variants` K > 0 gives each image K augmented captions for training (Shapes:
    its phrasing grammar; other data: case, punctuation, lead-ins, typos). `image_sizes`
    loads a folder's further image columns (see ImageTextDataset) as images of those sizes.
    `image_column` and `text_column` (or a DataSource's) name the main image's and the
    caption's columns of a metadata.jsonl or a Hugging Face dataset."""
    if isinstance(source, DataSource):
        image_column, text_column = image_column or source.image_column, text_column or source.text_column
        on_error = source.on_error or on_error
        source = source.path
    options = dict(
        size=size, random_flip=random_flip, on_error=on_error, seed=seed, allow_missing=allow_missing,
        caption_variants=caption_variants,
    )
    if not isinstance(source, (str, os.PathLike)):
        if image_sizes:
            raise DataError("image columns come from folders with a metadata.jsonl or .csv, not dataset objects")
        return ImageTextDataset.from_hf(source, image_column=image_column or "image", text_column=text_column or "text", **options)
    source = os.fspath(source)
    if source == "shapes" or source.startswith("shapes:"):
        if image_column or text_column:
            raise DataError(f"{source}: Shapes has fixed columns; --image-column and --text-column are for your data")
        split = source.partition(":")[2] or "train"
        if split not in SPLITS:
            raise DataError(f"unknown Shapes split {split!r}; choose from {', '.join(SPLITS)}")
        if image_sizes:
            raise DataError(f"{source}: Shapes has one image; image columns come from folders with a metadata.jsonl or .csv")
        return ShapesDataset(split=split, n=n, size=size, seed=seed, caption_variants=caption_variants)
    if image_sizes and metadata_file(Path(source)) is None:
        raise DataError(f"{source}: image columns come from folders with a metadata.jsonl or .csv")
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        try:
            hub_dataset = _datasets().load_dataset(name, split=split or "train")
        except Exception as error:  # not found, offline, no such split: `datasets` raises many kinds
            raise DataError(f"{source}: datasets.load_dataset could not load it ({type(error).__name__}: {error})") from error
        return ImageTextDataset.from_hf(hub_dataset, image_column=image_column or "image", text_column=text_column or "text", **options)
    path = Path(source)
    if (path / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk: one subfolder per split
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
        raise DataError(
            f"{path} holds a DatasetDict with splits {', '.join(splits) or '(none)'}: "
            f"pass one split's folder, e.g. {path / (splits[0] if splits else 'train')}"
        )
    if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
        return ImageTextDataset.from_hf(
            _datasets().load_from_disk(str(path)), image_column=image_column or "image", text_column=text_column or "text",
            **options,
        )
    return ImageTextDataset.from_folder(
        path, image_sizes=image_sizes, image_column=image_column or "file_name", text_column=text_column or "text", **options
    )


def open_images(source: DataLike, **options) -> Dataset:
    """`open_dataset` for models of images alone (autoencoders, discrete VAEs): captions may
    be missing, and only the items that have an image are kept (a metadata row without one
    is no sample of such a model)."""
    dataset = open_dataset(source, allow_missing=True, **options)
    has_image = getattr(dataset, "item_has_image", None)
    rows = [i for i in range(len(dataset)) if has_image is None or has_image(i)]
    if not rows:
        raise DataError(f"{described_source(source)}: no entry has an image")
    return dataset if len(rows) == len(dataset) else Subset(dataset, rows)


def _datasets():
    try:
        import datasets
    except ImportError as error:
        raise DataError("this data source needs the Hugging Face `datasets` package: pip install 'mmgen[datasets]'") from error
    return datasets
