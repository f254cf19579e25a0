"""Shapes: mmgen's built-in captioned dataset.

Every sample is one flat-coloured shape on a black background, with a caption and four
attribute labels (shape, color, size, position). Samples are a pure function of
(seed, split, index): `make_sample` draws everything from
`random.Random(derive_seed("shapes", seed, split, index))`, using only `choice()` and
`uniform()`, whose outputs Python keeps stable across versions and platforms. Images are
cheap enough to render on the fly, so nothing is cached; `export_shapes` writes a split
as an image folder with `metadata.jsonl`, the layout user data comes in.

The eight (color, shape) pairs in `COMPOSITIONAL_PAIRS` never occur in train/val/test;
the `compositional` split holds only them, to measure generalisation to unseen pairs.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from mmgen.data.seeding import derive_seed
from mmgen.data.shapes_text import (  # noqa: F401 (the captions' vocabulary is part of Shapes' API)
    CAPTION_TEMPLATES,
    HELDOUT_SYNONYMS,
    HELDOUT_TEMPLATES,
    SYNONYMS,
    TRAINING_SYNONYMS,
    format_caption,
    heldout_caption,
    parse_caption,
    training_caption,
)
from mmgen.data.transforms import make_grid, pil_to_tensor
from mmgen.errors import ConfigError, DataError

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLORS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white")
SIZES = ("small", "large")
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
ATTRIBUTES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}

COLOR_RGB = {
    "red": (230, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 30),
    "green": (40, 190, 60),
    "cyan": (30, 205, 220),
    "blue": (40, 70, 230),
    "purple": (150, 50, 220),
    "white": (240, 240, 240),
}

COMPOSITIONAL_PAIRS = frozenset(
    {
        ("green", "circle"),
        ("purple", "square"),
        ("cyan", "triangle"),
        ("orange", "diamond"),
        ("blue", "star"),
        ("yellow", "cross"),
        ("white", "circle"),
        ("red", "triangle"),
    }
)

# `heldout-phrasing` draws its samples as `test` does, and words its captions with the
# held-out templates and synonyms of shapes_text, which no training caption uses.
SPLITS = ("train", "val", "test", "compositional", "heldout-phrasing")
DEFAULT_SPLIT_SIZES = {"train": 50_000, "val": 2_000, "test": 2_000, "compositional": 2_000, "heldout-phrasing": 2_000}

MIN_IMAGE_SIZE = 16
SUPERSAMPLE = 4
RADIUS = {"small": 0.11, "large": 0.20}  # circumscribed radius, as a fraction of the side
RADIUS_JITTER = (0.9, 1.1)
OFFSET_JITTER = 0.04  # centre jitter on each axis, as a fraction of the side
GRID = (1 / 6, 1 / 2, 5 / 6)
STAR_INNER_RADIUS = 0.45
CROSS_ARM_WIDTH = 0.4

@dataclass(frozen=True)
class ShapesSample:
    """One sample's labels, caption and the jitter that places it on the canvas."""

    shape: str
    color: str
    size: str
    position: str
    caption: str
    radius_jitter: float = 1.0  # factor on the circumscribed radius, in RADIUS_JITTER
    offset_x: float = 0.0  # centre offset from the grid cell centre, fraction of the side
    offset_y: float = 0.0

    def __post_init__(self) -> None:
        for name, values in ATTRIBUTES.items():
            if getattr(self, name) not in values:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(values)}")

    def attributes(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTES}

    def geometry(self, image_size: int) -> tuple[float, float, float]:
        """Centre x, centre y and circumscribed radius in pixels of an `image_size` canvas."""
        r = RADIUS[self.size] * self.radius_jitter * image_size
        row, column = divmod(POSITIONS.index(self.position), 3)
        cx = (GRID[column] + self.offset_x) * image_size
        cy = (GRID[row] + self.offset_y) * image_size
        return _clamp(cx, r, image_size - r), _clamp(cy, r, image_size - r), r


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# --- sampling ---------------------------------------------------------------------------

_COMBINATIONS = tuple(itertools.product(SHAPES, COLORS, SIZES, POSITIONS))
_HELD_IN = tuple(c for c in _COMBINATIONS if (c[1], c[0]) not in COMPOSITIONAL_PAIRS)
_HELD_OUT = tuple(c for c in _COMBINATIONS if (c[1], c[0]) in COMPOSITIONAL_PAIRS)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown Shapes split {split!r}; valid splits: {', '.join(SPLITS)}")


def _check_image_size(size: int) -> None:
    if size < MIN_IMAGE_SIZE:
        raise ConfigError(f"Shapes images need a side of at least {MIN_IMAGE_SIZE} pixels, got {size}")


def make_sample(split: str, index: int, seed: int = 0) -> ShapesSample:
    """The sample at `index` of `split`: a pure function of (seed, split, index)."""
    _check_split(split)
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    # The split name is part of the seed, so splits draw from disjoint streams.
    rng = random.Random(derive_seed("shapes", seed, split, index))
    shape, color, size, position = rng.choice(_HELD_OUT if split == "compositional" else _HELD_IN)
    radius_jitter = rng.uniform(*RADIUS_JITTER)
    offset_x = rng.uniform(-OFFSET_JITTER, OFFSET_JITTER)
    offset_y = rng.uniform(-OFFSET_JITTER, OFFSET_JITTER)
    if split == "heldout-phrasing":
        caption = heldout_caption({"shape": shape, "color": color, "size": size, "position": position}, rng)
    else:
        caption = format_caption(
            rng.choice(CAPTION_TEMPLATES),
            shape=shape,
            color=color,
            size=rng.choice(SYNONYMS["size"][size]),
            position=rng.choice(SYNONYMS["position"][position]),
        )
    return ShapesSample(shape, color, size, position, caption, radius_jitter, offset_x, offset_y)


# --- rendering --------------------------------------------------------------------------


def _polar(radius: float, degrees: float) -> tuple[float, float]:
    """A point at `degrees` clockwise from +x on screen (y points down, so -90 is up)."""
    return radius * math.cos(math.radians(degrees)), radius * math.sin(math.radians(degrees))


def _cross_outline() -> list[tuple[float, float]]:
    a = CROSS_ARM_WIDTH / 2
    end = math.sqrt(1 - a * a)  # arm ends reach the circumscribed circle at their corners
    return [
        (a, -end), (a, -a), (end, -a), (end, a), (a, a), (a, end),
        (-a, end), (-a, a), (-end, a), (-end, -a), (-a, -a), (-a, -end),
    ]  # fmt: skip


# Unit outlines (circumscribed radius 1, centred on 0), vertices clockwise on screen. The
# circle is a 96-gon so that every shape goes through the same polygon fill and edge fix.
_UNIT_OUTLINES = {
    "circle": [_polar(1, 360 * k / 96) for k in range(96)],
    "square": [_polar(1, angle) for angle in (-135, -45, 45, 135)],
    "triangle": [_polar(1, angle) for angle in (-90, 30, 150)],
    "diamond": [_polar(1, angle) for angle in (-90, 0, 90, 180)],
    "star": [_polar(1 if k % 2 == 0 else STAR_INNER_RADIUS, -90 + 36 * k) for k in range(10)],
    "cross": _cross_outline(),
}


def _miters(outline: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Per vertex, how far it moves when both adjacent edges move out by 1. PIL fills
    polygons inclusively (half a pixel beyond the edge), so rendering pulls every edge in
    by half a supersampled pixel along these; they do not change with scale."""
    normals = []
    for (x0, y0), (x1, y1) in zip(outline, outline[1:] + outline[:1]):
        length = math.hypot(x1 - x0, y1 - y0)
        normals.append(((y1 - y0) / length, (x0 - x1) / length))  # outward: vertices run clockwise
    miters = []
    for (ax, ay), (bx, by) in zip(normals[-1:] + normals[:-1], normals):
        scale = 1 / (1 + ax * bx + ay * by)
        miters.append(((ax + bx) * scale, (ay + by) * scale))
    return miters


_OUTLINES = {
    shape: [(x, y, mx, my) for (x, y), (mx, my) in zip(outline, _miters(outline))]
    for shape, outline in _UNIT_OUTLINES.items()
}


def render(sample: ShapesSample, size: int = 64) -> Image.Image:
    """Draw `sample` on a `size` x `size` RGB canvas, anti-aliased by 4x supersampling."""
    _check_image_size(size)
    cx, cy, r = (SUPERSAMPLE * v for v in sample.geometry(size))
    # Integer polygon coordinates are pixel corners in PIL, so no half-pixel shift is needed.
    points = [(cx + r * x - 0.5 * mx, cy + r * y - 0.5 * my) for x, y, mx, my in _OUTLINES[sample.shape]]
    canvas = Image.new("RGB", (SUPERSAMPLE * size, SUPERSAMPLE * size))
    ImageDraw.Draw(canvas).polygon(points, fill=COLOR_RGB[sample.color])
    return canvas.reduce(SUPERSAMPLE)  # box filter: each pixel averages its 4 x 4 block


def shapes_grid(n: int = 16, size: int = 64, split: str = "train", seed: int = 0) -> Image.Image:
    """The first `n` samples of a split tiled into one image (the README demo)."""
    return make_grid([render(make_sample(split, i, seed), size) for i in range(n)])


# --- dataset and export -----------------------------------------------------------------


class ShapesDataset(torch.utils.data.Dataset):
    """A Shapes split rendered on the fly; the same (split, seed) gives the same data anywhere.

    With `caption_variants` K > 0, every image is captioned by one of K augmented captions
    of its attributes (`training_caption`: other frames, synonyms, partial captions, case,
    typos), drawn per epoch. The K captions belong to the attribute combination, not the
    image, so a frozen text encoder encodes at most K per combination (its outputs are
    cached) while every image still sees K phrasings over the epochs."""

    def __init__(
        self, split: str = "train", n: int | None = None, size: int = 64, seed: int = 0, caption_variants: int = 0
    ):
        _check_split(split)
        _check_image_size(size)
        n = DEFAULT_SPLIT_SIZES[split] if n is None else n
        if n < 0:
            raise ConfigError(f"a Shapes split cannot have {n} samples")
        if caption_variants < 0:
            raise ConfigError(f"caption_variants must be 0 (the split's own captions) or more, got {caption_variants}")
        self.split, self.n, self.size, self.seed = split, n, size, seed
        self.caption_variants = caption_variants
        self.epoch = 0
        self._pools: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def sample(self, i: int) -> ShapesSample:
        i = operator.index(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for Shapes {self.split} with {self.n} samples")
        return make_sample(self.split, i % self.n, self.seed)

    def image(self, i: int) -> Image.Image:
        return render(self.sample(i), self.size)

    def _caption_pool(self, sample: ShapesSample) -> tuple[str, ...]:
        key = tuple(sample.attributes().values())
        if key not in self._pools:
            rng = random.Random(derive_seed("shapes-captions", self.seed, *key))
            self._pools[key] = tuple(dict.fromkeys(training_caption(sample.attributes(), rng) for _ in range(self.caption_variants)))
        return self._pools[key]

    def item_captions(self, index: int) -> tuple[str, ...]:
        """The captions sample `index` may carry, without rendering it."""
        sample = self.sample(index)
        return self._caption_pool(sample) if self.caption_variants else (sample.caption,)

    def captions(self) -> list[str]:
        """Every caption of the split (for precomputing text encodings), without rendering."""
        return list(dict.fromkeys(caption for i in range(self.n) for caption in self.item_captions(i)))

    def native_image_size(self, column: str = "pixel_values") -> int:
        """The size Shapes is rendered at (it has one image column, pixel_values)."""
        return self.size

    def set_image_sizes(self, sizes: dict[str, int]) -> None:
        """Render at sizes["pixel_values"] from now on (Shapes has no other image column)."""
        unknown = set(sizes) - {"pixel_values"}
        if unknown:
            raise DataError(f"Shapes has no image column {sorted(unknown)[0]!r}; its one image is pixel_values")
        if "pixel_values" in sizes:
            _check_image_size(sizes["pixel_values"])
            self.size = sizes["pixel_values"]

    def item_metadata(self, index: int) -> dict[str, str]:
        """Sample `index`'s columns besides image and caption (its attributes), without rendering."""
        return self.sample(index).attributes()

    def __getitem__(self, i: int) -> dict[str, object]:
        sample = self.sample(i)
        caption = sample.caption
        if self.caption_variants:
            caption = random.Random(derive_seed("shapes-caption", self.seed, self.epoch, i)).choice(self._caption_pool(sample))
        pixel_values = pil_to_tensor(render(sample, self.size))
        return {"pixel_values": pixel_values, "text": caption, **sample.attributes()}


def export_shapes(
    out_dir: str | os.PathLike,
    split: str = "train",
    n: int | None = None,
    size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a split as an image folder: `{index:06d}.png` plus `metadata.jsonl` (one JSON
    object per image: file_name, text and the four attributes). Returns the folder. The
    folder must be new, empty or an earlier export, which this one replaces."""
    dataset = ShapesDataset(split, n, size, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # An earlier export is replaced whole (a smaller one leaves no stale images); a folder
    # holding anything else, such as the user's own data, is left alone.
    for file in _earlier_export(out):
        file.unlink()
    rows = []
    for i in tqdm(range(len(dataset)), desc=f"shapes {split}", unit="img", disable=not progress):
        sample = dataset.sample(i)
        file_name = f"{i:06d}.png"
        render(sample, size).save(out / file_name)
        rows.append({"file_name": file_name, "text": sample.caption, **sample.attributes()})
    # Written last and renamed into place, so metadata.jsonl only ever lists finished images.
    partial = out / "metadata.jsonl.partial"
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(partial, out / "metadata.jsonl")
    return out


_EXPORTED_FILE = re.compile(r"\d{6}\.png|metadata\.jsonl(\.partial)?")
_EXPORTED_COLUMNS = {"file_name", "text", *ATTRIBUTES}


def _earlier_export(folder: Path) -> list[Path]:
    """The files of an earlier (maybe interrupted) `export_shapes` into `folder`; a
    ConfigError if it holds anything else."""
    files = sorted(folder.iterdir())
    metadata = folder / "metadata.jsonl"
    try:
        rows = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines()] if metadata.exists() else []
        exported = all(isinstance(row, dict) and set(row) == _EXPORTED_COLUMNS for row in rows)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        exported = False
    if not exported or not all(file.is_file() and _EXPORTED_FILE.fullmatch(file.name) for file in files):
        raise ConfigError(f"{folder} holds other files than a Shapes export; give an empty or new folder")
    return files


# Prompts that text-to-image training renders at every validation (Shapes vocabulary, varied phrasing).
VALIDATION_PROMPTS = (
    "a large red circle in the top left",
    "a small blue star in the middle",
    "big yellow cross, bottom right",
    "a tiny white diamond on the left",
    "a large green square at the top",
    "a small purple triangle in the lower right",
    "a big cyan circle at the bottom",
    "an orange star that is large, in the center",
)
