"""Users' own image-text pairs as a torch Dataset.

`ImageTextDataset.from_folder` reads two layouts:

* Hugging Face *imagefolder*: a top-level ``metadata.jsonl`` whose lines look like
  ``{"file_name": "sub/a.png", "text": "a caption", "score": 0.9}``; ``file_name`` is
  relative to the folder and every other key becomes an extra field of the item. A column
  whose values are all image paths (``"image_side": "side/a.png"``) is a further *image
  column*: its files are checked like ``file_name``'s, and with ``image_sizes`` naming it
  the item holds the image as a tensor of that size (else its path, as written). A
  ``metadata.csv`` with the same columns works the same way (numeric columns are numbers).
* DALLE-pytorch pairs (used when there is no metadata file): ``foo.png`` next to
  ``foo.txt`` (or ``foo.TXT``), found recursively; each non-empty line of the .txt is one
  caption, and one of them is drawn per item.

`ImageTextDataset.from_hf` wraps a `datasets.Dataset` (or any sized, indexable collection
of dict rows) whose image cells are PIL images, ``{"bytes", "path"}`` dicts or paths.

Items are ``{"pixel_values": FloatTensor[3, size, size] in [-1, 1], "text": str, **extra}``.
Every bad entry (unreadable image, missing caption, path escaping the folder, malformed
line) is a `DataError` naming the file, or with ``on_error="skip"`` is dropped with one
warning and listed in ``dataset.skipped``. With ``allow_missing=True`` (for models that
train on partial samples, the multimodal VAEs) an entry may lack its caption or, in
metadata.jsonl and HF datasets, its image: the item holds None there. All per-item
randomness (caption choice, crop, flip) comes from ``derive_seed(seed, epoch, index)``, so
an item is the same in every DataLoader worker and after a training resume.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mmgen.data.captions import caption_variants as variants_of
from mmgen.data.seeding import derive_seed
from mmgen.data.transforms import pil_to_tensor, resize_and_crop, to_rgb
from mmgen.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
ON_ERROR_CHOICES = ("raise", "skip")
# Keys every item has; an extra column with one of these names would silently overwrite it.
_ITEM_KEYS = ("pixel_values", "text")
# Below this many images, checking them is quick enough that a progress bar is just noise.
_PROGRESS_MIN_ITEMS = 500
# How many skip reasons the warning quotes; the rest are in `dataset.skipped`.
_REASONS_QUOTED = 3


@dataclass(frozen=True)
class _Record:
    label: str  # names the entry in errors: a file path, or an HF row and its path
    image: Any  # a Path, PIL image, {"bytes", "path"} dict or path string; None if missing
    captions: tuple[str, ...]  # () if missing
    extra: dict[str, Any]
    # Further image columns of metadata.jsonl (column -> the resolved file, None if missing).
    images: dict[str, Path | None] = field(default_factory=dict)


class ImageTextDataset(Dataset):
    """Image-caption pairs; build one with `from_folder` or `from_hf`.

    With a DataLoader, call `set_epoch` before each epoch (as with DistributedSampler);
    with ``persistent_workers=True`` the workers keep the epoch they were started with.
    """

    def __init__(
        self,
        records: Sequence[_Record],
        *,
        size: int = 64,
        random_flip: bool = False,
        random_crop: bool = False,
        seed: int = 0,
        skipped: Sequence[tuple[str, str]] = (),
        caption_variants: int = 0,
        image_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"size must be a positive int, got {size!r}")
        if caption_variants < 0:
            raise ConfigError(f"caption_variants must be 0 (captions as given) or more, got {caption_variants}")
        self.caption_variants = caption_variants
        self._records = records
        self.size = size
        self.image_columns = list(records[0].images) if records else []
        self.set_image_sizes(image_sizes or {})
        self.random_flip = random_flip
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = list(skipped)

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        size: int = 64,
        random_flip: bool = False,
        random_crop: bool = False,
        on_error: str = "raise",
        seed: int = 0,
        verify_images: bool = True,
        allow_missing: bool = False,
        caption_variants: int = 0,
        image_sizes: Mapping[str, int] | None = None,
        image_column: str = "file_name",
        text_column: str = "text",
    ) -> ImageTextDataset:
        """A folder with a top-level metadata.jsonl or metadata.csv (HF imagefolder), else
        image + .txt pairs. In the metadata, `image_column` holds the main image's path and
        `text_column` the caption (with other names, a `text` column is left out and a
        `file_name` column is kept as plain paths: mmgen calls the main image file_name).

        `verify_images` decodes every image now, so a bad file fails (or is skipped) here
        rather than hours into training. `allow_missing`: an entry without a caption (an
        image without its .txt, a null or absent "text") or, in the metadata, without an
        image (a null or absent "file_name") is kept with None there.
        """
        problems = _Problems(on_error)
        root = Path(path)
        if not root.exists():
            raise DataError(f"{root}: no such folder")
        if not root.is_dir():
            raise DataError(f"{root}: is a file, expected a folder of images")
        root = root.resolve()
        if metadata_file(root) is not None:
            records = _scan_metadata(root, problems, allow_missing, image_column, text_column)
        elif (image_column, text_column) != ("file_name", "text"):
            raise DataError(
                f"{root}: column names apply to a metadata.jsonl or .csv, or a Hugging Face dataset; this folder has none"
            )
        else:
            records = _scan_pairs(root, problems, allow_missing)
        if verify_images:
            records = [r for r in _progress(records, len(records)) if _readable(r, problems)]
        _report(
            problems,
            usable=len(records),
            source=str(root),
            empty="no images found (expected a metadata.jsonl or .csv, or images such as foo.png with captions in foo.txt)",
        )
        return cls(
            records, size=size, random_flip=random_flip, random_crop=random_crop, seed=seed, skipped=problems.items,
            caption_variants=caption_variants, image_sizes=image_sizes,
        )

    @classmethod
    def from_hf(
        cls,
        dataset: Any,
        image_column: str = "image",
        text_column: str = "text",
        size: int = 64,
        random_flip: bool = False,
        random_crop: bool = False,
        on_error: str = "raise",
        seed: int = 0,
        verify_images: bool = True,
        allow_missing: bool = False,
        caption_variants: int = 0,
    ) -> ImageTextDataset:
        """A `datasets.Dataset` (one split) or any object with len() and dict rows by index.

        Columns other than `image_column` and `text_column` become extra fields; the text
        cell may be a string or a list of alternative captions (one is drawn per item).
        `allow_missing`: a row with an empty caption or image cell is kept with None there.
        """
        problems = _Problems(on_error)
        columns = getattr(dataset, "column_names", None)
        if isinstance(columns, dict):
            raise DataError(f"got a DatasetDict with splits {sorted(columns)}; pass one split, e.g. dataset['train']")
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise DataError(
                f"from_hf needs a dataset with len() and indexing, got {type(dataset).__name__} "
                "(streaming datasets are not supported)"
            )
        if len(dataset) == 0:
            raise DataError("the dataset is empty")
        columns = list(columns if columns is not None else dataset[0].keys())
        for column in (image_column, text_column):
            if column not in columns:
                raise DataError(f"column {column!r} not found; available columns: {columns}")
        extra = _extra_columns(columns, exclude=(image_column, text_column, "text"), source="the dataset")
        rows = _HFRows(_undecoded(dataset, image_column), image_column, text_column, extra)
        kept = []
        for row in _progress(range(len(dataset)), len(dataset)):
            record = rows.read(row)
            if not (record.captions or allow_missing):
                problems.add(record.label, f"missing or empty caption in column {text_column!r}")
            elif _invalid_text(record.captions):
                problems.add(record.label, _invalid_text(record.captions))
            elif record.image is None and not allow_missing:
                problems.add(record.label, f"missing image in column {image_column!r}")
            elif not verify_images or _readable(record, problems):
                kept.append(row)
        rows.rows = kept
        _report(problems, usable=len(kept), source="the dataset", empty="the dataset is empty")
        return cls(
            rows, size=size, random_flip=random_flip, random_crop=random_crop, seed=seed, skipped=problems.items,
            caption_variants=caption_variants,
        )

    def set_epoch(self, epoch: int) -> None:
        """Items (caption choice, crop, flip) depend on the epoch: call this once per epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._records)

    def item_captions(self, index: int) -> tuple[str, ...]:
        """The captions item `index` draws from, without loading its image: its own, or with
        `caption_variants` K, K variants of each (`mmgen.data.captions.caption_variants`)."""
        captions = self._records[index].captions
        if self.caption_variants > 1:
            captions = tuple(v for caption in captions for v in variants_of(caption, self.caption_variants, self.seed))
        return captions

    def captions(self) -> list[str]:
        """Every caption an item can draw (for precomputing text encodings), without images."""
        return [caption for i in range(len(self)) for caption in self.item_captions(i)]

    def item_source(self, index: int) -> str:
        """Where item `index` comes from: its image file, or its metadata line or row."""
        return self._records[index].label

    def item_metadata(self, index: int) -> dict[str, Any]:
        """Item `index`'s extra metadata columns other than image columns, without loading
        its images."""
        record = self._records[index]
        return {column: value for column, value in record.extra.items() if column not in record.images}

    def has_images(self, column: str = "pixel_values") -> bool:
        """Whether any item has an image in `column` (pixel_values: the main image)."""
        return any(self._image_of(record, column) is not None for record in self._records)

    def item_has_image(self, index: int, column: str = "pixel_values") -> bool:
        """Whether item `index` has an image in `column`, without loading it."""
        return self._image_of(self._records[index], column) is not None

    def item_image_size(self, index: int, column: str = "pixel_values") -> tuple[int, int] | None:
        """(width, height) of item `index`'s image in `column` as stored (without decoding
        it), or None if it has none."""
        image = self._image_of(self._records[index], column)
        return None if image is None else stored_image_size(image)

    def native_image_size(self, column: str = "pixel_values") -> int:
        """The shorter side of the first image in `column` as stored (pixel_values: the main
        image; else an image column)."""
        image = next((image for r in self._records if (image := self._image_of(r, column)) is not None), None)
        if image is None:
            named = ("the main image column (file_name in a folder, image in a Hugging Face dataset, or the one "
                     "--image-column names)" if column == "pixel_values" else f"the image column {column!r}")
            raise DataError(f"{named} holds no image")
        return min(read_image(image).size)

    def set_image_sizes(self, sizes: Mapping[str, int]) -> None:
        """Give items' images at these sizes from now on: column -> px, pixel_values for the
        main image; other image columns are left as their paths."""
        sizes = dict(sizes)
        unknown = set(sizes) - {"pixel_values", *self.image_columns}
        if unknown:
            raise DataError(
                f"the data has no image column {sorted(unknown)[0]!r} "
                f"(its image columns: file_name{''.join(', ' + c for c in self.image_columns)})"
            )
        self.size = sizes.pop("pixel_values", self.size)
        self.image_sizes = sizes

    @staticmethod
    def _image_of(record: _Record, column: str) -> Any:
        return record.image if column == "pixel_values" else record.images.get(column)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = range(len(self))[index]  # IndexError when out of range; negative -> positive, for the seed
        record = self._records[index]
        # One generator per item, consumed in a fixed order, so workers and resumes agree.
        rng = random.Random(derive_seed(self.seed, self.epoch, index))
        captions = self.item_captions(index)
        text = rng.choice(captions) if captions else None
        item = {"pixel_values": self._tensor(record.image, record.label, self.size, rng), "text": text, **record.extra}
        for column, path in record.images.items():
            if column in self.image_sizes:
                item[column] = self._tensor(path, f"{record.label} ({column} {path})", self.image_sizes[column], rng)
        if self.random_flip and rng.random() < 0.5:  # all of an item's images, or none
            for column in ("pixel_values", *self.image_sizes):
                if item[column] is not None:
                    item[column] = item[column].flip(-1)
        return item

    def _tensor(self, image: Any, label: str, size: int, rng: random.Random) -> torch.Tensor | None:
        if image is None:
            return None
        try:
            image = read_image(image)
        except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
            raise DataError(f"{label}: {_unreadable(exc)}") from exc
        return pil_to_tensor(resize_and_crop(image, size, rng, self.random_crop))


class _Problems:
    """Bad entries: raise on the first (on_error="raise") or collect them to skip."""

    def __init__(self, on_error: str) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ConfigError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        self.on_error = on_error
        self.items: list[tuple[str, str]] = []

    def add(self, file: str, reason: str) -> None:
        if self.on_error == "raise":
            raise DataError(f"{file}: {reason} (`mmgen data check` lists every bad entry to fix or remove; "
                            "--on-error skip, in Python on_error='skip', skips them)")
        self.items.append((file, reason))


def _report(problems: _Problems, usable: int, source: str, empty: str) -> None:
    """Warn once about skipped entries; fail if nothing usable is left."""
    if not problems.items:
        if not usable:
            raise DataError(f"{source}: {empty}")
        return
    count = len(problems.items)
    if not usable and count > 1 and len({reason for _, reason in problems.items}) == 1:  # one cause: a wrong column?
        file, reason = problems.items[0]
        raise DataError(f"{source}: no usable entries, all {count} alike: {file}: {reason}")
    reasons = "; ".join(f"{file}: {reason}" for file, reason in problems.items[:_REASONS_QUOTED])
    if count > _REASONS_QUOTED:
        reasons += f"; ... and {count - _REASONS_QUOTED} more (`mmgen data check` lists them all)"
    if not usable:
        raise DataError(f"{source}: no usable entries, all {count} are bad: {reasons}")
    # stacklevel 3: point at the user's from_folder / from_hf call.
    warnings.warn(f"{source}: skipped {count} of {count + usable} entries: {reasons}", stacklevel=3)


def _progress(items: Iterable, total: int) -> Iterable:
    return tqdm(items, total=total, desc="Checking images", unit="img", disable=total < _PROGRESS_MIN_ITEMS)


def _readable(record: _Record, problems: _Problems) -> bool:
    for image in (record.image, *record.images.values()):
        if image is None:  # missing, and allowed to be
            continue
        try:
            read_image(image)
        except Exception as exc:  # see __getitem__
            problems.add(record.label if image is record.image else str(image), _unreadable(exc))
            return False
    return True


def _unreadable(exc: Exception) -> str:
    return f"cannot read image ({type(exc).__name__}: {exc})"


def read_image(cell: Any) -> Image.Image:
    """Decode an image cell to RGB. exif_transpose (which applies a camera's Orientation tag)
    returns a new, fully decoded image: corrupt and truncated data fail here, and the result
    stays valid after the file is closed."""
    if isinstance(cell, Image.Image):
        return to_rgb(ImageOps.exif_transpose(cell))
    with Image.open(_image_source(cell)) as image:
        return to_rgb(ImageOps.exif_transpose(image))


def stored_image_size(cell: Any) -> tuple[int, int]:
    """(width, height) of an image cell as stored, read from its header alone."""
    if isinstance(cell, Image.Image):
        return cell.size
    with Image.open(_image_source(cell)) as image:
        return image.size


def _image_source(cell: Any) -> Any:
    """What `Image.open` reads for an image cell that is not a PIL image: its path or bytes."""
    if isinstance(cell, Mapping):
        if cell.get("bytes") is not None:
            return io.BytesIO(cell["bytes"])
        if cell.get("path"):
            return cell["path"]
        raise ValueError("image cell has neither 'bytes' nor 'path'")
    if isinstance(cell, (str, os.PathLike)):
        return cell
    raise TypeError(f"expected an image, a {{'bytes', 'path'}} dict or a path, got {type(cell).__name__}")


def _captions(value: Any) -> tuple[str, ...]:
    """The non-empty captions in `value` (a string or a list of alternatives); () if none."""
    values = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    return tuple(v.strip() for v in values if isinstance(v, str) and v.strip())


def _why_missing(row: dict, column: str, option: str) -> str:
    """Why a metadata row gives no value for `column`: the column is absent (listing the ones
    it has, which a wrong name shows), not text, or empty."""
    if column not in row:
        return f"no {column!r} column (this line has {', '.join(map(repr, row)) or 'none'}; {option} names another)"
    value = row[column]
    if value is None or value == [] or isinstance(value, str) and not value.strip():
        return f"empty {column!r}"
    return f"{column!r} is {type(value).__name__} {value!r}, expected text"


def _extra_columns(columns: Iterable[str], exclude: Sequence[str], source: str) -> list[str]:
    extra = [c for c in dict.fromkeys(columns) if c not in exclude]
    clashing = [c for c in extra if c in _ITEM_KEYS]
    if clashing:
        raise DataError(f"{source}: column(s) {clashing} clash with the item keys {_ITEM_KEYS}; rename or remove them")
    return extra


def _outside_or_missing(root: Path, path: Path) -> str | None:
    """Why `path` cannot be read as part of the folder `root` (resolved), or None if it can.
    Resolving first means a symlink pointing out of the folder is caught too."""
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            return f"resolves outside the dataset folder {root}"
        if not resolved.is_file():
            return "file not found"
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, names too long, NUL bytes
        return f"not a usable path ({type(exc).__name__}: {exc})"
    return None


def _invalid_text(captions: tuple[str, ...]) -> str | None:
    """Why a caption cannot be used as text, or None: lone surrogates (a JSON "\\udcff", or
    bytes that were not UTF-8) pass as Python strings but no tokenizer can encode them."""
    for caption in captions:
        try:
            caption.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"caption {caption[:40]!r} is not valid Unicode text (a lone surrogate at character {exc.start})"
    return None


def metadata_file(root: Path) -> Path | None:
    """The folder's metadata.jsonl or metadata.csv (as Hugging Face imagefolder reads them);
    None if it has neither, a DataError if both (which one is meant is not clear)."""
    found = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{root}: holds both {' and '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


def _jsonl_rows(metadata: Path, lines: list[bytes], problems: _Problems) -> Iterator[tuple[str, dict]]:
    """(where, row) for each object line; bad lines are reported."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():  # blank lines (a trailing newline, say) are not entries
            continue
        try:
            # bytes: json detects UTF-8/16/32 and a BOM itself. NaN and Infinity (which Python's
            # json writes) are missing values, as NA cells of a CSV.
            row = json.loads(line, parse_constant=lambda _: None)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            problems.add(f"{metadata} line {number}", f"not valid JSON ({exc})")
            continue
        except RecursionError:
            problems.add(f"{metadata} line {number}", "not valid JSON (nested too deeply to read)")
            continue
        if not isinstance(row, dict):
            problems.add(f"{metadata} line {number}", f"expected a JSON object, got {type(row).__name__}")
            continue
        yield f"{metadata.name} line {number}", row


def _csv_rows(metadata: Path, data: bytes, text_columns: Sequence[str], problems: _Problems) -> Iterator[tuple[str, dict]]:
    """(where, row) for each CSV row; a row with more cells than the header is reported.
    Cells are text, so a column other than `text_columns` whose every filled cell is a number
    becomes numbers, and empty and NA cells there are missing (None), as pandas (which
    Hugging Face reads CSVs with) does: the multimodal VAEs then see real-valued columns."""
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often save a BOM
    except UnicodeDecodeError as exc:
        raise DataError(f"{metadata}: not UTF-8 text (byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # strict: an unclosed quote is an error
    rows, header = [], None
    try:
        while True:
            first_line = reader.line_num + 1  # a quoted cell may span lines: name the row's first
            cells = next(reader, None)
            if cells is None:
                break
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _csv_header(metadata, cells)
            elif len(cells) > len(header):
                problems.add(f"{metadata} line {first_line}", f"{len(cells)} cells, the header has {len(header)} "
                             "(quote a cell that holds a comma)")
            else:
                rows.append((first_line, dict(zip(header, cells))))  # missing trailing cells: missing values
    except csv.Error as exc:
        raise DataError(f"{metadata} line {reader.line_num}: not valid CSV ({exc})") from exc
    if header is None or not rows and not problems.items:
        raise DataError(f"{metadata}: no rows under a header")
    columns = {}
    for column in header:
        cells = [row.get(column) for _, row in rows]
        cells = [None if cell is None or not cell.strip() else cell for cell in cells]
        if column not in text_columns:
            filled = [None if cell is None or cell.strip().lower() in _NA_CELLS else cell for cell in cells]
            numbers = [None if cell is None else _number(cell) for cell in filled]
            if any(number is not None for number in numbers) and all(
                (number is None) == (cell is None) for number, cell in zip(numbers, filled)
            ):
                cells = numbers
        columns[column] = cells
    for i, (line, _) in enumerate(rows):
        yield f"{metadata.name} line {line}", {column: cells[i] for column, cells in columns.items()}


# Cells pandas reads as missing in a numeric column (its default na_values, the common ones).
_NA_CELLS = {"na", "n/a", "nan", "null", "none", "#n/a", "<na>", "-nan"}


def _csv_header(metadata: Path, cells: list[str]) -> list[str]:
    header = [cell.strip() for cell in cells]
    for position, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{metadata}: the header's column {position} has no name")
        if header.count(name) > 1:
            raise DataError(f"{metadata}: the header names the column {name!r} twice")
    return header


def _number(cell: str) -> int | float | None:
    """The cell as a finite int or float, or None if it is not one ("1_000" is text)."""
    cell = cell.strip()
    if re.fullmatch(r"[+-]?\d+", cell):
        return int(cell)
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", cell):
        return float(cell)
    return None


def _scan_metadata(
    root: Path, problems: _Problems, allow_missing: bool = False, image_column: str = "file_name", text_column: str = "text"
) -> list[_Record]:
    metadata = metadata_file(root)
    try:
        data = metadata.read_bytes()
    except OSError as exc:
        raise DataError(f"{metadata}: cannot read ({exc})") from exc
    if metadata.suffix == ".csv":
        rows = _csv_rows(metadata, data, (image_column, text_column), problems)
    else:
        rows = _jsonl_rows(metadata, data.splitlines(), problems)
    entries: list[tuple[str, Path | None, tuple[str, ...], dict]] = []  # label, image, captions, row
    for where, row in rows:
        file_name, captions = row.get(image_column), _captions(row.get(text_column))
        if file_name is None and allow_missing:
            invalid = _invalid_text(captions)
            if invalid:
                problems.add(str(root / where), invalid)
                continue
            entries.append((str(root / where), None, captions, row))
            continue
        if not isinstance(file_name, str) or not file_name.strip():
            problems.add(str(root / where), _why_missing(row, image_column, "--image-column"))
            continue
        if PurePosixPath(file_name).is_absolute() or PureWindowsPath(file_name).is_absolute():
            problems.add(file_name, f"{image_column} must be relative to the dataset folder ({where})")
            continue
        path = root / file_name
        reason = _outside_or_missing(root, path)
        if reason:
            problems.add(str(path), f"{reason} ({where})")
            continue
        if not captions and not allow_missing:
            problems.add(str(path), f"{_why_missing(row, text_column, '--text-column')} ({where})")
            continue
        invalid = _invalid_text(captions)
        if invalid:
            problems.add(str(path), f"{invalid} ({where})")
            continue
        entries.append((str(path), path, captions, row))
    # With other column names, "text" would clash with the caption's item key, and "file_name"
    # (mmgen's name for the main image) stays a plain column of paths.
    extra = _extra_columns((key for *_, row in entries for key in row), (image_column, text_column, "text"), str(metadata))
    image_columns = [
        column for column in extra if column != "file_name" and _holds_image_paths([row.get(column) for *_, row in entries])
    ]
    records = []
    for label, path, captions, row in entries:
        images = {column: _image_cell(root, row.get(column), column, label, problems) for column in image_columns}
        if all(images[column] is not False for column in image_columns):
            records.append(_Record(label, path, captions, {c: row.get(c) for c in extra}, images))
    return records


def item_key(column: str) -> str:
    """The item key that holds `column`'s image: the folder's main image, `file_name`, is
    carried as `pixel_values` (diffusers' name); any other image column under its own name."""
    return "pixel_values" if column == "file_name" else column


def _holds_image_paths(values: list[Any]) -> bool:
    """Whether a metadata column is an image column: its values are image paths (or null)."""
    given = [value for value in values if value is not None]
    return bool(given) and all(isinstance(v, str) and Path(v).suffix.lower() in IMAGE_EXTENSIONS for v in given)


def _image_cell(root: Path, value: str | None, column: str, label: str, problems: _Problems) -> Path | None | bool:
    """An image column's cell as the file it names (None where missing), or False after
    reporting why it cannot be read."""
    if value is None:
        return None
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        problems.add(label, f"{column} {value!r} must be relative to the dataset folder")
        return False
    reason = _outside_or_missing(root, root / value)
    if reason:
        problems.add(label, f"{column} {value!r}: {reason}")
        return False
    return root / value


def _scan_pairs(root: Path, problems: _Problems, allow_missing: bool = False) -> list[_Record]:
    records = []
    # Sorted, so the index -> pair mapping (and thus every seed) is the same on every machine.
    for directory, subdirs, files in os.walk(root):
        # Hidden entries are tool droppings (.git, .ipynb_checkpoints, macOS ._foo.png), not data.
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        # foo.PNG's caption may be foo.TXT (cameras and Windows tools write upper case); an
        # exact foo.txt wins where both exist.
        caption_names = {}
        for name in sorted(files, key=lambda name: (Path(name).suffix != ".txt", name)):
            if Path(name).suffix.lower() == ".txt":
                caption_names.setdefault(Path(name).stem, name)
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or suffix == ".txt":
                continue
            image = Path(directory, name)
            if suffix not in IMAGE_EXTENSIONS:
                if Path(name).stem in caption_names:  # captioned, so meant as data: say why it is left out
                    problems.add(str(image), f"{suffix or 'no extension'} is not an image format mmgen reads "
                                             f"({', '.join(IMAGE_EXTENSIONS)})")
                continue
            caption_file = image.with_name(caption_names.get(image.stem, image.stem + ".txt"))
            reason = _outside_or_missing(root, image)
            if reason:
                problems.add(str(image), reason)
                continue
            if allow_missing and not os.path.lexists(caption_file):  # no caption: kept without one
                records.append(_Record(str(image), image, (), {}))
                continue
            reason = _outside_or_missing(root, caption_file)
            if reason:
                problems.add(str(image), f"caption file {caption_file.name}: {reason}")
                continue
            try:
                text = caption_file.read_text(encoding="utf-8-sig")  # Windows editors start files with a BOM
            except (OSError, UnicodeDecodeError) as exc:
                problems.add(str(image), f"cannot read caption file {caption_file.name} ({exc})")
                continue
            captions = _captions(text.splitlines())
            if not captions:
                problems.add(str(image), f"caption file {caption_file.name} is empty")
                continue
            invalid = _invalid_text(captions)
            if invalid:
                problems.add(str(image), invalid)
                continue
            records.append(_Record(str(image), image, captions, {}))
    return records


def _undecoded(dataset: Any, image_column: str) -> Any:
    """Have `datasets` hand over raw {"bytes", "path"} cells, so that we decode the images
    ourselves and can name the file when one is bad."""
    features = getattr(dataset, "features", None)
    if not isinstance(features, Mapping) or not hasattr(dataset, "cast_column"):
        return dataset
    import datasets  # an optional extra, only needed (and installed) when given its Dataset

    feature = features.get(image_column)
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_column, datasets.Image(decode=False))
    return dataset


class _HFRows:
    """Kept rows of an HF-style dataset, read as records on demand, so images stay in the
    dataset (Arrow on disk) until an item is drawn."""

    def __init__(self, dataset: Any, image_column: str, text_column: str, extra: list[str]) -> None:
        self.dataset = dataset
        self.image_column = image_column
        self.text_column = text_column
        self.extra = extra
        self.rows: list[int] = []

    def read(self, row: int) -> _Record:
        values = self.dataset[row]
        image = values.get(self.image_column)
        if isinstance(image, Mapping):
            path = image.get("path")
        elif isinstance(image, (str, os.PathLike)):
            path = image
        else:
            path = getattr(image, "filename", None)
        label = f"row {row} ({path})" if path else f"row {row}"
        return _Record(label, image, _captions(values.get(self.text_column)), {c: values.get(c) for c in self.extra})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> _Record:
        return self.read(self.rows[index])
