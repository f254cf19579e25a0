"""ImageTextDataset: both folder layouts, HF datasets, randomness and every bad-input path."""

from __future__ import annotations

import gc
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.data.collate import collate_examples
from mmgen.data.imagetext import ImageTextDataset
from mmgen.errors import DataError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save_image(path: Path, color=RED, size=(20, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def write_metadata(folder: Path, rows: list[dict | str]) -> None:
    """Rows are dicts (dumped as JSON) or raw strings (written verbatim, e.g. broken JSON)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def write_pair(folder: Path, stem: str, caption: str, color=RED, ext=".png") -> Path:
    image = save_image(folder / f"{stem}{ext}", color)
    (folder / f"{stem}.txt").write_text(caption)
    return image


def assert_solid(pixels: torch.Tensor, rgb: tuple[float, float, float]) -> None:
    for channel, value in enumerate(rgb):
        assert torch.allclose(pixels[channel], torch.full_like(pixels[channel], value), atol=0.02), (channel, value)


@pytest.fixture
def metadata_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "meta"
    save_image(folder / "red.png", RED)
    save_image(folder / "sub" / "rgba.png", (*GREEN, 255), mode="RGBA")
    save_image(folder / "gray.png", 0, mode="L")
    write_metadata(
        folder,
        [
            {"file_name": "red.png", "text": "a red square", "score": 0.5, "source": "web"},
            {"file_name": "sub/rgba.png", "text": "green", "score": 2},
            {"file_name": "gray.png", "text": "dark"},
        ],
    )
    return folder


def test_metadata_folder_items(metadata_folder: Path) -> None:
    dataset = ImageTextDataset.from_folder(metadata_folder, size=16)
    assert len(dataset) == 3 and dataset.skipped == []

    red = dataset[0]
    assert set(red) == {"pixel_values", "text", "score", "source"}
    assert red["pixel_values"].shape == (3, 16, 16) and red["pixel_values"].dtype == torch.float32
    assert_solid(red["pixel_values"], (1, -1, -1))
    assert (red["text"], red["score"], red["source"]) == ("a red square", 0.5, "web")

    rgba = dataset[1]
    assert_solid(rgba["pixel_values"], (-1, 1, -1))
    assert (rgba["text"], rgba["score"], rgba["source"]) == ("green", 2, None)

    gray = dataset[2]
    assert gray["pixel_values"].shape == (3, 16, 16)
    assert_solid(gray["pixel_values"], (-1, -1, -1))
    assert (gray["score"], gray["source"]) == (None, None)


def test_a_metadata_csv_reads_like_the_jsonl(metadata_folder: Path) -> None:
    from_jsonl = ImageTextDataset.from_folder(metadata_folder, size=16)
    (metadata_folder / "metadata.jsonl").unlink()
    # As a spreadsheet saves it: a BOM, quoted cells, empty cells, numbers as text.
    (metadata_folder / "metadata.csv").write_text(
        '\ufefffile_name,text,score,source\r\nred.png,a red square,0.5,web\r\nsub/rgba.png,"green",2,\r\n'
        'gray.png,dark,,\r\n', encoding="utf-8")
    from_csv = ImageTextDataset.from_folder(metadata_folder, size=16)
    assert len(from_csv) == len(from_jsonl) == 3
    for csv_item, jsonl_item in zip(from_csv, from_jsonl):
        assert {k: v for k, v in csv_item.items() if k != "pixel_values"} == \
            {k: v for k, v in jsonl_item.items() if k != "pixel_values"}
        assert torch.equal(csv_item["pixel_values"], jsonl_item["pixel_values"])
    (metadata_folder / "metadata.csv").write_text("file_name,text\nred.png,12\nmissing.png,x\n")
    with pytest.warns(UserWarning, match="skipped 1 of 2 entries"):
        skipping = ImageTextDataset.from_folder(metadata_folder, size=16, on_error="skip")
    assert skipping[0]["text"] == "12"  # a caption column stays text
    with pytest.raises(DataError, match=r"missing.png: file not found \(metadata.csv line 3\)"):
        ImageTextDataset.from_folder(metadata_folder)
    # Every entry failing alike (a wrong column, most likely) is said once, not entry by entry.
    (metadata_folder / "metadata.csv").write_text("img,caption\nred.png,red\ngray.png,dark\nsub/rgba.png,green\n")
    with pytest.raises(DataError) as error:
        ImageTextDataset.from_folder(metadata_folder, on_error="skip")
    assert str(error.value) == (f"{metadata_folder}: no usable entries, all 3 alike: {metadata_folder / 'metadata.csv'} "
                                "line 2: no 'file_name' column (this line has 'img', 'caption'; --image-column names another)")
    write_metadata(metadata_folder, [{"file_name": "red.png", "text": "red"}])
    with pytest.raises(DataError, match="holds both metadata.jsonl and metadata.csv; keep one"):
        ImageTextDataset.from_folder(metadata_folder)
    (metadata_folder / "metadata.jsonl").unlink()


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("file_name,text\nred.png,a red, round square\n", "line 2: 3 cells, the header has 2 (quote a cell that holds a comma)"),
        ('file_name,text\nred.png,"unclosed\ngray.png,dark\n', "not valid CSV"),
        ("file_name,text,text\nred.png,one,two\n", "the header names the column 'text' twice"),
        ("file_name,,text\nred.png,x,red\n", "the header's column 2 has no name"),
        ("file_name,text\n", "metadata.csv: no rows under a header"),
        ("", "metadata.csv: no rows under a header"),
    ],
)
def test_a_bad_metadata_csv_is_named(metadata_folder: Path, csv_text: str, message: str) -> None:
    (metadata_folder / "metadata.jsonl").unlink()
    (metadata_folder / "metadata.csv").write_text(csv_text)
    with pytest.raises(DataError, match=re.escape(message)):
        ImageTextDataset.from_folder(metadata_folder)


def test_metadata_csv_numbers_and_missing_cells(metadata_folder: Path) -> None:
    (metadata_folder / "metadata.jsonl").unlink()
    (metadata_folder / "metadata.csv").write_text(
        'file_name,text,weight,count,code,label\nred.png,"a red, round\nsquare",2.5,NA,007,1_000\n'
        "sub/rgba.png,green,-1e3,3,12,x\ngray.png,dark,nan,,inf,\n")
    items = list(ImageTextDataset.from_folder(metadata_folder, size=16))
    assert items[0]["text"] == "a red, round\nsquare"  # a quoted cell keeps its comma and line break
    assert [item["weight"] for item in items] == [2.5, -1000.0, None]  # nan: missing, as pandas reads it
    assert [item["count"] for item in items] == [None, 3, None]
    assert [item["code"] for item in items] == ["007", "12", "inf"]  # not all finite numbers: text
    assert [item["label"] for item in items] == ["1_000", "x", None]


def test_pixel_values_in_range_and_centre_cropped(tmp_path: Path) -> None:
    # 16 wide, 32 tall: top quarter blue, middle half red, bottom quarter blue.
    # The centre 16x16 crop is all red; a crop from the top would include blue.
    image = np.zeros((32, 16, 3), dtype=np.uint8)
    image[:, :] = BLUE
    image[8:24] = RED
    Image.fromarray(image).save(tmp_path / "tall.png")
    (tmp_path / "tall.txt").write_text("tall")
    pixels = ImageTextDataset.from_folder(tmp_path, size=16)[0]["pixel_values"]
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert_solid(pixels, (1, -1, -1))


def test_pairs_folder_captions(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", "first\n\nsecond\n   third  \n")
    write_pair(tmp_path / "nested" / "deeper", "b", "only", color=BLUE, ext=".jpg")
    (tmp_path / "notes.txt").write_text("a stray text file is not an entry")

    dataset = ImageTextDataset.from_folder(tmp_path, size=16, seed=7)
    assert len(dataset) == 2
    assert dataset[1]["text"] == "only", "image in a nested subfolder not found (or not sorted after a.png)"
    index = 0  # a.png, the multi-caption pair
    captions = {"first", "second", "third"}
    assert dataset[index]["text"] in captions

    again = ImageTextDataset.from_folder(tmp_path, size=16, seed=7)
    seen = set()
    for epoch in range(20):
        dataset.set_epoch(epoch)
        again.set_epoch(epoch)
        text = dataset[index]["text"]
        assert text == dataset[index]["text"] == again[index]["text"]
        seen.add(text)
    assert seen == captions, "the caption should vary across epochs"


def test_upper_case_caption_files_pair_and_an_exact_txt_wins(tmp_path: Path) -> None:
    save_image(tmp_path / "CAMERA.JPG")
    (tmp_path / "CAMERA.TXT").write_text("from a camera")
    save_image(tmp_path / "both.png")
    (tmp_path / "both.TXT").write_text("upper")
    (tmp_path / "both.txt").write_text("lower")

    save_image(tmp_path / "notepad.png")
    (tmp_path / "notepad.txt").write_text("\ufeffsaved with a byte order mark", encoding="utf-8")

    dataset = ImageTextDataset.from_folder(tmp_path, size=16)
    assert [dataset[i]["text"] for i in range(len(dataset))] == [
        "from a camera", "lower", "saved with a byte order mark"]


def test_hf_dataset_with_custom_columns(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    paths = [str(save_image(tmp_path / "r.png", RED)), str(save_image(tmp_path / "g.png", GREEN))]
    hf = datasets.Dataset.from_dict({"picture": paths, "caption": ["red", "green"], "label": [3, 4]})
    hf = hf.cast_column("picture", datasets.Image())

    dataset = ImageTextDataset.from_hf(hf, image_column="picture", text_column="caption", size=16)
    assert len(dataset) == 2
    item = dataset[1]
    assert set(item) == {"pixel_values", "text", "label"}
    assert (item["text"], item["label"]) == ("green", 4)
    assert_solid(item["pixel_values"], (-1, 1, -1))


def test_hf_missing_column_names_it_and_the_available_ones(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({"image": [str(save_image(tmp_path / "r.png"))], "text": ["red"]})
    with pytest.raises(DataError, match="'caption'.*'image', 'text'"):
        ImageTextDataset.from_hf(hf, text_column="caption")


def test_hf_dataset_bad_image_is_named_or_skipped(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    paths = [str(save_image(tmp_path / "r.png")), str(tmp_path / "corrupt.png")]
    hf = datasets.Dataset.from_dict({"image": paths, "text": ["red", "broken"]}).cast_column("image", datasets.Image())
    with pytest.raises(DataError, match="row 1 .*corrupt.png"):
        ImageTextDataset.from_hf(hf)
    with pytest.warns(UserWarning, match="skipped 1 of 2 entries.*corrupt.png"):
        dataset = ImageTextDataset.from_hf(hf, on_error="skip", size=16)
    assert len(dataset) == 1 and dataset[0]["text"] == "red"


def test_plain_rows_with_pil_bytes_and_path_cells(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), BLUE).save(buffer, format="PNG")
    rows = [
        {"image": Image.new("RGB", (20, 20), RED), "text": "pil"},
        {"image": {"bytes": buffer.getvalue(), "path": None}, "text": ["bytes", "alt"]},
        {"image": str(save_image(tmp_path / "g.png", GREEN)), "text": "path"},
    ]
    dataset = ImageTextDataset.from_hf(rows, size=16)
    assert_solid(dataset[0]["pixel_values"], (1, -1, -1))
    assert_solid(dataset[1]["pixel_values"], (-1, -1, 1))
    assert dataset[1]["text"] in {"bytes", "alt"}
    assert_solid(dataset[2]["pixel_values"], (-1, 1, -1))


def test_hf_bad_rows_are_named_or_skipped(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = str(save_image(tmp_path / "good.png"))
    rows = [
        {"image": good, "text": "ok"},
        {"image": str(tmp_path / "broken.png"), "text": "x"},
        {"image": good, "text": ""},
    ]
    with pytest.raises(DataError, match="broken.png"):
        ImageTextDataset.from_hf(rows)
    with pytest.warns(UserWarning, match="skipped 2 of 3 entries"):
        dataset = ImageTextDataset.from_hf(rows, on_error="skip")
    assert len(dataset) == 1 and dataset[0]["text"] == "ok"
    assert [file for file, _ in dataset.skipped] == [f"row 1 ({tmp_path / 'broken.png'})", f"row 2 ({good})"]


def test_entries_missing_a_caption_or_an_image_are_kept_with_none_when_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "meta"
    folder.mkdir()
    save_image(folder / "a.png", RED)
    save_image(folder / "b.png", BLUE)
    rows = [{"file_name": "a.png", "text": "red", "mood": "calm"}, {"file_name": "b.png", "text": None, "mood": "busy"},
            {"text": "no image", "mood": "calm"}, {"file_name": None, "mood": "busy"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match="b.png: empty 'text'"):
        ImageTextDataset.from_folder(folder)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": 123}) + "\n")
    with pytest.raises(DataError, match="a.png: 'text' is int 123, expected text"):
        ImageTextDataset.from_folder(folder)
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = [item for item in ImageTextDataset.from_folder(folder, size=16, allow_missing=True)]
    assert [item["text"] for item in items] == ["red", None, "no image", None]
    assert [item["pixel_values"] is None for item in items] == [False, False, True, True]
    assert [item["mood"] for item in items] == ["calm", "busy", "calm", "busy"]
    assert_solid(items[1]["pixel_values"], (-1, -1, 1))

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    save_image(pairs / "a.png", RED)
    (pairs / "a.txt").write_text("red\n")
    save_image(pairs / "b.png", BLUE)  # no b.txt
    with pytest.raises(DataError, match="caption file b.txt: file not found"):
        ImageTextDataset.from_folder(pairs)
    assert [item["text"] for item in ImageTextDataset.from_folder(pairs, size=16, allow_missing=True)] == ["red", None]

    rows = [{"image": str(folder / "a.png"), "text": ""}, {"image": None, "text": "no image"}]
    with pytest.raises(DataError, match="row 0: missing image in column 'image'"):
        ImageTextDataset.from_hf(rows[1:])
    items = list(ImageTextDataset.from_hf(rows, size=16, allow_missing=True))
    assert [item["text"] for item in items] == [None, "no image"] and items[1]["pixel_values"] is None


def test_random_flip_is_per_index_and_deterministic(tmp_path: Path) -> None:
    half = np.zeros((16, 16, 3), dtype=np.uint8)
    half[:, :8] = RED
    half[:, 8:] = BLUE
    Image.fromarray(half).save(tmp_path / "half.png")
    write_metadata(tmp_path, [{"file_name": "half.png", "text": f"copy {i}"} for i in range(24)])

    def flipped(**options) -> list[bool]:
        dataset = ImageTextDataset.from_folder(tmp_path, size=16, **options)
        # Unflipped, the left column is red (red channel = 1); flipped, it is blue.
        return [bool(dataset[i]["pixel_values"][0, 0, 0] < 0) for i in range(len(dataset))]

    pattern = flipped(random_flip=True, seed=1)
    assert 0 < sum(pattern) < len(pattern)
    assert flipped(random_flip=True, seed=1) == pattern
    assert flipped(random_flip=True, seed=2) != pattern
    assert not any(flipped(random_flip=False, seed=1))


def test_random_crop_moves_within_the_image(tmp_path: Path) -> None:
    gradient = np.zeros((16, 64, 3), dtype=np.uint8)
    gradient[:, :, 0] = np.arange(64)[None, :] * 4
    Image.fromarray(gradient).save(tmp_path / "wide.png")
    write_metadata(tmp_path, [{"file_name": "wide.png", "text": "wide"}] * 8)
    cropped = ImageTextDataset.from_folder(tmp_path, size=16, random_crop=True)
    lefts = {round(float(cropped[i]["pixel_values"][0, 0, 0]), 3) for i in range(8)}
    centred = ImageTextDataset.from_folder(tmp_path, size=16)
    assert len(lefts) > 1
    assert {round(float(centred[i]["pixel_values"][0, 0, 0]), 3) for i in range(8)} == {round(24 * 4 / 127.5 - 1, 3)}


# Each case adds one bad entry next to two good ones and returns the substrings the error
# must contain (the file name, and the metadata.jsonl line where there is one).
def _good_metadata_rows(folder: Path) -> list[dict]:
    save_image(folder / "good1.png")
    save_image(folder / "good2.png", GREEN)
    return [{"file_name": "good1.png", "text": "one"}, {"file_name": "good2.png", "text": "two"}]


def _meta_case(bad_row):
    def build(folder: Path) -> None:
        rows = _good_metadata_rows(folder)
        rows.append(bad_row(folder) if callable(bad_row) else bad_row)
        write_metadata(folder, rows)

    return build


def _corrupt(folder: Path) -> dict:
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return {"file_name": "corrupt.png", "text": "broken"}


def _truncated(folder: Path) -> dict:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    (folder / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return {"file_name": "truncated.png", "text": "cut short"}


def _image_row(name: str, **row):
    def bad_row(folder: Path) -> dict:
        save_image(folder / name)
        return {"file_name": name, **row}

    return bad_row


def _outside(folder: Path) -> Path:
    return save_image(folder.parent / "outside.png")


def _parent_escape(folder: Path) -> dict:
    _outside(folder)
    return {"file_name": "../outside.png", "text": "x"}


def _absolute(folder: Path) -> dict:
    return {"file_name": str(_outside(folder)), "text": "x"}


def _symlink(folder: Path) -> dict:
    (folder / "link.png").symlink_to(_outside(folder))
    return {"file_name": "link.png", "text": "points outside"}


def _corrupt_pair(folder: Path) -> None:
    (folder / "bad.jpg").write_bytes(b"junk")
    (folder / "bad.txt").write_text("x")


def _pairs_case(extra):
    def build(folder: Path) -> None:
        write_pair(folder, "good1", "one")
        write_pair(folder, "good2", "two", GREEN)
        extra(folder)

    return build


BAD_INPUTS = {
    "corrupt image": (_meta_case(_corrupt), ["corrupt.png"]),
    "truncated image": (_meta_case(_truncated), ["truncated.png"]),
    "missing image file": (_meta_case({"file_name": "ghost.png", "text": "boo"}), ["ghost.png", "line 3"]),
    "missing text key": (_meta_case(_image_row("notext.png")), ["notext.png", "line 3"]),
    "empty text": (_meta_case(_image_row("blank.png", text="  ")), ["blank.png", "line 3"]),
    "parent escape": (_meta_case(_parent_escape), ["../outside.png", "line 3"]),
    "absolute path": (_meta_case(_absolute), ["outside.png", "must be relative", "line 3"]),
    "symlink escape": (_meta_case(_symlink), ["link.png", "line 3"]),
    "malformed json": (_meta_case('{"file_name": "x.png", "text": '), ["metadata.jsonl", "line 3"]),
    "missing file_name": (_meta_case({"text": "no file"}), ["metadata.jsonl", "line 3"]),
    "NUL in file_name": (_meta_case({"file_name": "a\u0000b.png", "text": "x"}), ["metadata.jsonl", "line 3", "null"]),
    "file_name too long": (_meta_case({"file_name": "x" * 300 + ".png", "text": "x"}), ["line 3", "too long"]),
    "nested too deeply": (_meta_case("[" * 100_000 + "]" * 100_000), ["metadata.jsonl", "line 3", "nested"]),
    "lone surrogate caption": (_meta_case(_image_row("odd.png", text="caf\udcff")), ["odd.png", "line 3", "surrogate"]),
    "pair without txt": (_pairs_case(lambda f: save_image(f / "lonely.png")), ["lonely.png", "lonely.txt"]),
    "pair with empty txt": (_pairs_case(lambda f: write_pair(f, "mute", "\n  \n")), ["mute.png", "mute.txt"]),
    "corrupt pair image": (_pairs_case(_corrupt_pair), ["bad.jpg"]),
    "captioned file of another format": (
        _pairs_case(lambda f: (f / "scan.heic").write_bytes(b"x") and (f / "scan.txt").write_text("a scan")),
        ["scan.heic", "not an image format"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_naming_the_file(tmp_path: Path, case: str) -> None:
    build, fragments = BAD_INPUTS[case]
    folder = tmp_path / "data"
    folder.mkdir()
    build(folder)
    with pytest.raises(DataError) as raised:
        ImageTextDataset.from_folder(folder, size=16)
    for fragment in fragments:
        assert fragment in str(raised.value)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_skipped_with_one_warning(tmp_path: Path, case: str) -> None:
    build, fragments = BAD_INPUTS[case]
    folder = tmp_path / "data"
    folder.mkdir()
    build(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageTextDataset.from_folder(folder, size=16, on_error="skip")
    assert len(caught) == 1 and "skipped 1 of 3 entries" in str(caught[0].message)
    assert fragments[0] in str(caught[0].message)
    assert len(dataset.skipped) == 1 and fragments[0] in " ".join(dataset.skipped[0])
    assert sorted(dataset[i]["text"] for i in range(len(dataset))) == ["one", "two"]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        ImageTextDataset.from_folder(tmp_path / "nowhere")
    save_image(tmp_path / "file.png")
    with pytest.raises(DataError, match="file.png.*is a file"):
        ImageTextDataset.from_folder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError, match="no images found"):
            ImageTextDataset.from_folder(empty, on_error=on_error)
    with pytest.raises(ValueError, match="on_error"):
        ImageTextDataset.from_folder(tmp_path, on_error="ignore")


def test_only_bad_entries_raise_even_when_skipping(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"junk")
    (tmp_path / "bad.txt").write_text("caption")
    save_image(tmp_path / "uncaptioned.png")
    with pytest.raises(DataError, match="all 2 are bad.*bad.png"):
        ImageTextDataset.from_folder(tmp_path, on_error="skip")


def test_image_broken_after_construction_is_named(tmp_path: Path) -> None:
    write_pair(tmp_path, "later", "fine for now")
    dataset = ImageTextDataset.from_folder(tmp_path, size=16)
    (tmp_path / "later.png").write_bytes(b"overwritten")
    with pytest.raises(DataError, match="later.png"):
        dataset[0]


@pytest.mark.slow
def test_dataloader_with_workers(metadata_folder: Path) -> None:
    dataset = ImageTextDataset.from_folder(metadata_folder, size=16)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_examples)
    batches = list(loader)
    assert [b["pixel_values"].shape for b in batches] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    assert batches[0]["text"] == ["a red square", "green"]
    assert torch.equal(batches[0]["score"], torch.tensor([0.5, 2.0]))
    assert batches[0]["source"] == ["web", None]

    (metadata_folder / "gray.png").write_bytes(b"corrupted after construction")
    iterator = iter(loader)
    with pytest.raises(DataError, match="gray.png"):
        list(iterator)
    # The re-raised error is in a reference cycle that holds the iterator. Collect the cycle
    # while we still hold the iterator, so that `del` (not the garbage collector, whose
    # shutdown of the workers waits 5 s for each) is what shuts its workers down.
    gc.collect()
    del iterator


def test_16_bit_grayscale_keeps_its_values(tmp_path):
    import numpy as np
    from PIL import Image

    from mmgen.data.transforms import pil_to_tensor, to_rgb

    ramp = np.tile(np.linspace(0, 65535, 16, dtype=np.uint16), (16, 1))
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    image = Image.open(path)
    assert image.mode.startswith("I")
    tensor = pil_to_tensor(to_rgb(image))
    assert tensor.min() == pytest.approx(-1) and tensor.max() == pytest.approx(1)  # not clipped to white
    assert tensor[0, 0, 8] == pytest.approx((ramp[0, 8] / 65535) * 2 - 1, abs=0.01)


def test_a_hub_dataset_that_cannot_be_loaded_is_named(monkeypatch):
    from types import SimpleNamespace

    from mmgen.data import sources

    def load_dataset(name, split):
        raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")

    monkeypatch.setattr(sources, "_datasets", lambda: SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError, match="hf:someone/nothing: datasets.load_dataset could not load it .FileNotFoundError"):
        sources.open_dataset("hf:someone/nothing")


def test_a_saved_dataset_dict_names_its_splits_and_one_split_loads(tmp_path):
    datasets = pytest.importorskip("datasets")
    from mmgen.data.sources import open_dataset

    def split(color, caption):
        return datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8), color)], "text": [caption]})

    datasets.DatasetDict({"train": split(RED, "red"), "test": split(BLUE, "blue")}).save_to_disk(tmp_path / "saved")
    with pytest.raises(DataError, match=r"holds a DatasetDict with splits test, train: pass one split's folder, e.g. .*saved/test"):
        open_dataset(str(tmp_path / "saved"), size=8)
    assert open_dataset(str(tmp_path / "saved" / "train"), size=8)[0]["text"] == "red"


def test_a_png_colour_key_is_flattened_onto_white(tmp_path: Path) -> None:
    """An RGB PNG whose tRNS chunk marks one colour transparent: those pixels turn white."""
    image = Image.new("RGB", (16, 16), BLUE)
    image.paste(RED, (0, 0, 16, 8))
    image.save(tmp_path / "keyed.png", transparency=RED)
    (tmp_path / "keyed.txt").write_text("a blue half")
    pixels = ImageTextDataset.from_folder(tmp_path, size=16)[0]["pixel_values"]
    assert_solid(pixels[:, :8], (1.0, 1.0, 1.0))
    assert_solid(pixels[:, 8:], (-1.0, -1.0, 1.0))


@pytest.mark.parametrize("ext", [".gif", ".tif", ".tiff"])
def test_gif_and_tiff_pairs_are_read(tmp_path: Path, ext: str) -> None:
    write_pair(tmp_path, "one", "a green picture", GREEN, ext=ext)
    dataset = ImageTextDataset.from_folder(tmp_path, size=16)
    assert len(dataset) == 1 and dataset[0]["text"] == "a green picture"
    assert_solid(dataset[0]["pixel_values"], (-1.0, 1.0, -1.0))


def test_a_dataset_object_is_named_by_its_type_in_one_line(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from mmgen.data import open_images

    hf = datasets.Dataset.from_dict({"image": [None, None], "text": ["red", "green"]})
    with pytest.raises(DataError, match="^the Dataset given: no entry has an image$"):
        open_images(hf)


def test_a_caption_too_long_for_its_tile_ends_in_an_ellipsis() -> None:
    from mmgen.data.transforms import _wrap

    assert _wrap("(no caption)", 33) == ["(no caption)"]
    assert _wrap("one two three", 9) == ["one two", "three"]
    assert _wrap("one two three four five six", 9) == ["one two", "three..."]  # was cut without a sign
