"""Real image-text data offline: the emoji of the npm packages `emoji-datasource-<vendor>`
(`npm pack emoji-datasource-google`: a tarball with `img/<vendor>/64/*.png` and
`emoji.json`, names, categories and subcategories), built into image folders.

Each emoji and each of its skin-tone variations is a row: `text` is its Unicode name in
lower case ("father christmas, medium skin tone"), `category`, `subcategory` and
`short_name` are columns. The first package's glyph is `file_name`; every further
package's is an image column `image_<vendor>` (null where that vendor draws none), so two
vendors make a two-image multimodal set. 5% of the names, chosen by a hash of the base
name (all tones of an emoji go together), are held out: `OUT/train` and `OUT/heldout`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmgen.errors import DataError

HELD_OUT_PERCENT = 5
SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}


def held_out(name: str) -> bool:
    """Whether an emoji's base name is in the held-out 5% (a fixed hash, not a seed)."""
    return int(hashlib.sha256(name.lower().encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def build_emoji(packages: list[str | os.PathLike], out: str | os.PathLike, progress: bool = True) -> Path:
    """Write the emoji of `packages` (npm tarballs, or folders they were unpacked into) to
    `out`/train and `out`/heldout; returns `out`."""
    if not packages:
        raise DataError("give at least one emoji-datasource package")
    sources = [_Package(Path(package)) for package in packages]
    vendors = [source.vendor for source in sources]
    if len(set(vendors)) != len(vendors):
        raise DataError(f"packages of one vendor given twice: {', '.join(vendors)}")
    out = Path(out)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "heldout": []}
    for entry in tqdm(_entries(sources[0].metadata()), desc="emoji", unit="emoji", disable=not progress):
        split = "heldout" if held_out(entry["base"]) else "train"
        row: dict[str, Any] = {}
        for index, source in enumerate(sources):
            column = "file_name" if index == 0 else f"image_{source.vendor}"
            image = source.image(entry["image"]) if entry["has"].get(source.vendor, True) else None
            if image is None:
                row[column] = None
                continue
            name = f"{source.vendor}/{entry['image']}"
            (out / split / source.vendor).mkdir(parents=True, exist_ok=True)
            (out / split / name).write_bytes(image)
            row[column] = name
        if row["file_name"] is None:
            continue  # the first package's vendor draws no glyph for it
        row.update(text=entry["text"], category=entry["category"], subcategory=entry["subcategory"],
                   short_name=entry["short_name"])
        rows[split].append(row)
    for split, split_rows in rows.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        partial = out / split / "metadata.jsonl.partial"  # renamed into place: it lists finished images only
        partial.write_text("".join(json.dumps(row) + "\n" for row in split_rows), encoding="utf-8")
        os.replace(partial, out / split / "metadata.jsonl")
    return out


def _entries(metadata: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every emoji and skin-tone variation: base name, caption, image file, categories and
    which vendors draw it, in the package's order."""
    entries = []
    for emoji in metadata:
        base = (emoji.get("name") or emoji.get("short_name") or "").lower()
        common = {"base": base, "category": emoji.get("category"), "subcategory": emoji.get("subcategory"),
                  "short_name": emoji.get("short_name")}
        entries.append({**common, "text": base, "image": emoji["image"], "has": _vendors(emoji)})
        for tones, variation in (emoji.get("skin_variations") or {}).items():
            named = ", ".join(f"{SKIN_TONES.get(tone, tone.lower())} skin tone" for tone in tones.split("-"))
            entries.append({**common, "text": f"{base}, {named}", "image": variation["image"], "has": _vendors(variation)})
    return entries


def _vendors(entry: dict[str, Any]) -> dict[str, bool]:
    return {key[len("has_img_"):]: bool(value) for key, value in entry.items() if key.startswith("has_img_")}


class _Package:
    """An emoji-datasource package, its npm tarball or the folder it was unpacked into, read
    whole in one pass (a gzip tarball cannot be read out of order cheaply): emoji.json and
    the 64 px glyphs (some 20 MB)."""

    def __init__(self, path: Path):
        if not path.exists():
            raise DataError(f"{path}: no such file or folder (npm pack emoji-datasource-google writes one)")
        self.path = path
        files: dict[str, bytes] = {}
        if path.is_file():
            try:
                with tarfile.open(path) as tar:
                    for member in tar:
                        if member.isfile() and (member.name.endswith("/emoji.json") or "/64/" in member.name):
                            files[member.name] = tar.extractfile(member).read()
            except tarfile.TarError as error:
                raise DataError(f"{path}: not a readable npm tarball ({error})") from error
        else:
            files = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*")
                     if p.is_file() and (p.name == "emoji.json" or p.parent.name == "64")}
        vendors = {Path(name).parts[-3] for name in files if Path(name).parent.name == "64" and name.endswith(".png")}
        emoji_json = [name for name in files if Path(name).name == "emoji.json"]
        if len(vendors) != 1 or not emoji_json:
            raise DataError(f"{path}: not an emoji-datasource package (expected emoji.json and img/<vendor>/64/*.png)")
        self.vendor = vendors.pop()
        self._json = files[emoji_json[0]]
        self._images = {Path(name).name: data for name, data in files.items() if name.endswith(".png")}

    def metadata(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self._json)
        except ValueError as error:
            raise DataError(f"{self.path}: emoji.json is not JSON ({error})") from error

    def image(self, file: str) -> bytes | None:
        return self._images.get(file)
