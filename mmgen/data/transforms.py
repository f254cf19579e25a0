"""Image <-> tensor conversions shared by every model family (no torchvision)."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image, ImageDraw

from mmgen.errors import DataError


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Return an RGB image; transparency is flattened onto `background` rather than dropped,
    since dropping alpha exposes whatever colour the transparent pixels happen to hold."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: scale to 8 bits first (convert("RGB") would clip at 255).
        array = np.asarray(image, dtype=np.float64)
        low, high = (0.0, 65535.0) if image.mode.startswith("I;16") else (array.min(), max(array.max(), array.min() + 1e-12))
        image = Image.fromarray(np.round((array - low) / (high - low) * 255).clip(0, 255).astype(np.uint8))
    # "transparency" in info: a palette or a colour key (PNG tRNS) marks transparent pixels.
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def resize_and_crop(
    image: Image.Image, size: int, rng: random.Random | None = None, random_crop: bool = False
) -> Image.Image:
    """Resize the shorter side to `size` (Lanczos) and crop a `size` x `size` square,
    centred unless `random_crop` (then placed by `rng`)."""
    width, height = image.size
    scale = size / min(width, height)
    if scale != 1.0:
        new_size = (max(size, math.ceil(width * scale - 1e-6)), max(size, math.ceil(height * scale - 1e-6)))
        image = image.resize(new_size, Image.Resampling.LANCZOS)
        width, height = image.size
    if random_crop and rng is not None:
        left, top = rng.randint(0, width - size), rng.randint(0, height - size)
    else:
        left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB (or greyscale "L") PIL image -> float tensor [3 (or 1), H, W] in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Tensor [B, 3, H, W] (or [3, H, W]) in [-1, 1] -> list of RGB PIL images (of
    greyscale "L" images for one channel)."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in array]


def tensor_image_to_pil(image: torch.Tensor) -> Image.Image:
    """One image tensor [C, H, W], C = 1 or 3, as PIL: uint8 in 0..255, or float in [-1, 1]
    (mmgen's and diffusers' model range, clipped to it; another scale, such as 0..255 as
    floats, is refused rather than turned white)."""
    if image.dim() != 3 or image.shape[0] not in (1, 3) or not (image.is_floating_point() or image.dtype == torch.uint8):
        raise DataError(f"image tensors are uint8 or float [C, H, W] with C = 1 or 3, got {image.dtype} of shape "
                        f"{tuple(image.shape)}")
    if image.is_floating_point():
        check_model_range(image)
        image = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = image.permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[..., 0] if image.shape[0] == 1 else array)


def array_to_pil(image: np.ndarray) -> Image.Image:
    """One numpy image [H, W] or [H, W, C], C = 1, 3 or 4, as PIL: uint8, or float in [0, 1]
    (diffusers' `output_type="np"`)."""
    if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise DataError(f"numpy images are [H, W] or [H, W, C] with C = 1, 3 or 4, got shape {image.shape}")
    if image.dtype.kind == "f":
        if image.size and (image.min() < -0.01 or image.max() > 1.5):
            raise DataError(f"float numpy images are in [0, 1], got values in [{image.min():g}, {image.max():g}] "
                            "(give 0..255 as uint8)")
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"numpy images are uint8 or floats in [0, 1], got {image.dtype}")
    return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)


def check_model_range(images: torch.Tensor) -> None:
    """A DataError for float images on another scale than [-1, 1] (0..255 as floats, say);
    a model's output a little beyond it (a reconstruction at -1.1) is let through, to clip."""
    if images.numel() and (images.min() < -1.5 or images.max() > 1.5):
        raise DataError(f"float image tensors are in [-1, 1], got values in [{images.min().item():g}, "
                        f"{images.max().item():g}] (give 0..255 as uint8)")


def make_grid(images: list[Image.Image], columns: int | None = None, padding: int = 2) -> Image.Image:
    """Tile images into one grid image (row-major); square images of several sizes are
    shown at the largest (nearest-neighbour, so that small images stay crisp)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    if len({image.size for image in images}) > 1:
        side = max(max(image.size) for image in images)
        images = [image.resize((side, side), Image.Resampling.NEAREST) for image in images]
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new(
        "RGB", (columns * width + (columns + 1) * padding, rows * height + (rows + 1) * padding), (128, 128, 128)
    )
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        grid.paste(image, (padding + column * (width + padding), padding + row * (height + padding)))
    return grid


def captioned_grid(images: list[Image.Image], captions: list[str], columns: int = 4, scale: int = 2) -> Image.Image:
    """Images in a grid with each caption written under its image."""
    width = images[0].width * scale
    tiles = []
    for image, caption in zip(images, captions):
        tile = Image.new("RGB", (max(width, 200), width + 26), (255, 255, 255))
        tile.paste(image.resize((width, width), Image.Resampling.NEAREST), ((tile.width - width) // 2, 0))
        draw = ImageDraw.Draw(tile)
        for line, text in enumerate(_wrap(caption, tile.width // 6)):
            draw.text((2, width + 1 + 12 * line), text, fill=(0, 0, 0))
        tiles.append(tile)
    return make_grid(tiles, columns=columns)


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines of up to `width` characters, at most two; "..." ends a cut one."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    if len(lines) > 2:
        lines = [lines[0], lines[1][: width - 3] + "..."]
    return lines
