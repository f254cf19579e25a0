"""Tests for the built-in Shapes dataset: determinism, the rendering spec, captions,
the compositional hold-out, the torch Dataset and the image-folder export."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.data import shapes
from mmgen.data.shapes import (
    ATTRIBUTES,
    CAPTION_TEMPLATES,
    HELDOUT_SYNONYMS,
    HELDOUT_TEMPLATES,
    COLOR_RGB,
    COMPOSITIONAL_PAIRS,
    DEFAULT_SPLIT_SIZES,
    POSITIONS,
    SPLITS,
    SYNONYMS,
    ShapesDataset,
    ShapesSample,
    export_shapes,
    format_caption,
    make_sample,
    parse_caption,
    render,
    shapes_grid,
    training_caption,
)
from mmgen.data import shapes_text
from mmgen.data.transforms import pil_to_tensor
from mmgen.errors import ConfigError

HELD_IN_SPLITS = ("train", "val", "test")

# Area of each shape with circumscribed radius 1, from the spec's geometry.
UNIT_AREA = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "diamond": 2.0,
    "star": 5 * 0.45 * math.sin(math.radians(36)),  # ten triangles between tips and inner vertices
    "cross": 2 * (0.4 * 2 * math.sqrt(1 - 0.2**2)) - 0.4**2,  # two arms minus their overlap
}
# Bounding box (left, top, right, bottom) of each shape with radius 1 about its centre; y points down.
_ARM = math.sqrt(1 - 0.2**2)
UNIT_BOX = {
    "circle": (-1, -1, 1, 1),
    "square": (-math.sqrt(0.5), -math.sqrt(0.5), math.sqrt(0.5), math.sqrt(0.5)),
    "triangle": (-math.sqrt(3) / 2, -1, math.sqrt(3) / 2, 0.5),
    "diamond": (-1, -1, 1, 1),
    "star": (-math.cos(math.radians(18)), -1, math.cos(math.radians(18)), math.sin(math.radians(54))),
    "cross": (-_ARM, -_ARM, _ARM, _ARM),
}


def samples(split: str, count: int, seed: int = 0) -> list[ShapesSample]:
    return [make_sample(split, i, seed) for i in range(count)]


def coverage(image: Image.Image, color: str) -> np.ndarray:
    """Per pixel, the fraction covered by the object (read from the colour's strongest channel)."""
    rgb = COLOR_RGB[color]
    channel = int(np.argmax(rgb))
    return np.asarray(image, dtype=np.float64)[..., channel] / rgb[channel]


def centroid(cover: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : cover.shape[0], 0 : cover.shape[1]] + 0.5  # pixel centres
    return float((cover * xs).sum() / cover.sum()), float((cover * ys).sum() / cover.sum())


def test_constants_match_the_spec():
    # The order is the class id, so it is part of the data format.
    assert ATTRIBUTES == {
        "shape": ("circle", "square", "triangle", "diamond", "star", "cross"),
        "color": ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white"),
        "size": ("small", "large"),
        "position": (
            "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
        ),
    }  # fmt: skip
    assert COLOR_RGB == {
        "red": (230, 30, 30),
        "orange": (245, 135, 20),
        "yellow": (240, 220, 30),
        "green": (40, 190, 60),
        "cyan": (30, 205, 220),
        "blue": (40, 70, 230),
        "purple": (150, 50, 220),
        "white": (240, 240, 240),
    }
    assert COMPOSITIONAL_PAIRS == {
        ("green", "circle"), ("purple", "square"), ("cyan", "triangle"), ("orange", "diamond"),
        ("blue", "star"), ("yellow", "cross"), ("white", "circle"), ("red", "triangle"),
    }  # fmt: skip
    assert SPLITS == ("train", "val", "test", "compositional", "heldout-phrasing")


# --- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_same_seed_split_index_gives_same_sample(split):
    for index in (0, 7, 123):
        first, second = make_sample(split, index, seed=3), make_sample(split, index, seed=3)
        assert first == second
        assert render(first, 24).tobytes() == render(second, 24).tobytes()
        a, b = ShapesDataset(split, n=200, size=24, seed=3)[index], ShapesDataset(split, n=200, size=24, seed=3)[index]
        assert torch.equal(a["pixel_values"], b["pixel_values"])
        assert a["text"] == b["text"] == first.caption


def test_seeds_and_splits_draw_different_samples():
    reference = samples("train", 20)
    for other in (samples("train", 20, seed=1), samples("val", 20), samples("test", 20)):
        assert all(a != b for a, b in zip(reference, other))
    assert len({s.caption for s in reference}) > 15


def test_golden_train_samples():
    # Pinned so that any change to the generator (and so to the shipped data) is noticed.
    expected = [
        ("a large cyan circle in the upper left", ("circle", "cyan", "large", "top left")),
        ("in the top left is a large red circle", ("circle", "red", "large", "top left")),
        ("an image of a big red circle on the right side", ("circle", "red", "large", "right")),
    ]
    for index, (caption, attributes) in enumerate(expected):
        sample = make_sample("train", index, seed=0)
        assert sample.caption == caption
        assert tuple(sample.attributes().values()) == attributes


# --- rendering spec ---------------------------------------------------------------------


def test_background_is_black_away_from_the_object():
    size = 32
    for split in SPLITS:
        for sample in samples(split, 25):
            array = np.asarray(render(sample, size))
            cx, cy, r = sample.geometry(size)
            ys, xs = np.mgrid[0:size, 0:size] + 0.5
            outside = np.hypot(xs - cx, ys - cy) > r + 1
            assert not array[outside].any()
            # Spec-only check: canvas corners far from the named cell's centre are black.
            row, column = divmod(POSITIONS.index(sample.position), 3)
            for y, x in itertools.product((0, size - 1), repeat=2):
                if math.hypot(x + 0.5 - (2 * column + 1) * size / 6, y + 0.5 - (2 * row + 1) * size / 6) > 0.35 * size:
                    assert not array[y, x].any(), (sample, x, y)


def test_object_is_a_flat_fill_of_its_colour():
    for sample in samples("train", 40) + samples("compositional", 10):
        image = render(sample, 64)
        array = np.asarray(image, dtype=np.int64)
        cover = coverage(image, sample.color)
        assert tuple(array[np.unravel_index(np.argmax(cover), cover.shape)]) == COLOR_RGB[sample.color]
        # Every pixel is the colour scaled by its coverage: no outline, no other hue.
        expected = cover[..., None] * np.array(COLOR_RGB[sample.color])
        assert np.abs(array - expected).max() <= 1


def test_geometry_follows_the_grid_and_size_rules():
    size = 48
    for sample in samples("train", 200) + samples("compositional", 50):
        cx, cy, r = sample.geometry(size)
        low, high = (0.099, 0.121) if sample.size == "small" else (0.18, 0.22)
        assert low * size <= r <= high * size
        row, column = divmod(POSITIONS.index(sample.position), 3)
        for centre, cell in ((cx, column), (cy, row)):
            nominal = (2 * cell + 1) * size / 6
            assert abs(centre - nominal) <= 0.04 * size + 1e-9 or centre in (r, size - r)
            assert r - 1e-9 <= centre <= size - r + 1e-9
        # The rendered object sits where the geometry says, inside the named grid cell.
        x, y = centroid(coverage(render(sample, size), sample.color))
        assert abs(x - cx) < 0.5 and abs(y - cy) < 0.5
        assert column * size / 3 <= x <= (column + 1) * size / 3
        assert row * size / 3 <= y <= (row + 1) * size / 3


@pytest.mark.parametrize("shape", sorted(UNIT_AREA))
@pytest.mark.parametrize("jitter", [(1.0, 0.0, 0.0), (0.93, 0.013, -0.021)])
def test_shape_outline_matches_spec(shape, jitter):
    size = 64
    sample = ShapesSample(shape, "white", "large", "center", "", *jitter)
    image = render(sample, size)
    cx, cy, r = sample.geometry(size)
    cover = coverage(image, "white")
    # Area pins the proportions (star inner radius 0.45 r, cross arm width 0.4 r) ...
    assert cover.sum() == pytest.approx(UNIT_AREA[shape] * r * r, rel=0.03)
    # ... and the bounding box the orientation (triangle and star point up, square axis-aligned).
    ys, xs = np.nonzero(cover)
    left, top, right, bottom = UNIT_BOX[shape]
    assert xs.min() == pytest.approx(cx + left * r, abs=1)
    assert xs.max() + 1 == pytest.approx(cx + right * r, abs=1)
    assert ys.min() == pytest.approx(cy + top * r, abs=1)
    assert ys.max() + 1 == pytest.approx(cy + bottom * r, abs=1)


@pytest.mark.parametrize("position", ["top left", "top right", "bottom left", "bottom right"])
def test_objects_at_the_edge_are_clamped_not_clipped(position):
    size = 32
    # Pushed as far towards the corner as the jitter allows, at the largest radius.
    offset_x = 0.04 if "right" in position else -0.04
    offset_y = 0.04 if "bottom" in position else -0.04
    sample = ShapesSample("circle", "red", "large", position, "", 1.1, offset_x, offset_y)
    cx, cy, r = sample.geometry(size)
    assert r == pytest.approx(0.22 * size)
    assert cx in (r, size - r) and cy in (r, size - r)
    assert coverage(render(sample, size), "red").sum() == pytest.approx(math.pi * r * r, rel=0.03)


def test_large_objects_cover_more_than_small_ones():
    for sample in samples("train", 30):
        small = coverage(render(replace(sample, size="small"), 32), sample.color).sum()
        large = coverage(render(replace(sample, size="large"), 32), sample.color).sum()
        assert large > 2 * small > 0


def test_smallest_canvas_is_16_pixels():
    image = render(make_sample("train", 0), 16)
    assert image.mode == "RGB" and image.size == (16, 16)
    assert np.asarray(image).any()
    with pytest.raises(ValueError, match="16"):
        render(make_sample("train", 0), 15)
    with pytest.raises(ValueError, match="16"):
        ShapesDataset(size=15)


def test_sample_rejects_unknown_attribute_values():
    with pytest.raises(ValueError, match="hexagon"):
        ShapesSample("hexagon", "red", "small", "top", "")
    assert ShapesSample("star", "red", "small", "top", "").attributes() == {
        "shape": "star",
        "color": "red",
        "size": "small",
        "position": "top",
    }


# --- captions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def every_caption() -> list[tuple[str, dict[str, str]]]:
    """Every caption the generator can write: each template with each synonym of each value."""
    phrase_choices = [
        [(value, phrase) for value, phrases in SYNONYMS[name].items() for phrase in phrases] for name in ATTRIBUTES
    ]
    captions = []
    for template in CAPTION_TEMPLATES:
        for choice in itertools.product(*phrase_choices):
            phrases = {name: phrase for name, (_, phrase) in zip(ATTRIBUTES, choice)}
            attributes = {name: value for name, (value, _) in zip(ATTRIBUTES, choice)}
            captions.append((format_caption(template, **phrases), attributes))
    return captions


def test_every_template_and_synonym_determines_the_attributes(every_caption):
    assert len(every_caption) == len(CAPTION_TEMPLATES) * 6 * 8 * 5 * 22
    for caption, attributes in every_caption:
        assert parse_caption(caption) == attributes, caption


def test_caption_vocabulary_and_grammar(every_caption):
    assert len(CAPTION_TEMPLATES) >= 6
    assert set(SYNONYMS["size"]["large"]) >= {"large", "big"}
    assert set(SYNONYMS["size"]["small"]) >= {"small", "little", "tiny"}
    assert set(SYNONYMS["position"]["center"]) >= {"center", "middle"}
    assert set(SYNONYMS["position"]["top left"]) >= {"top left", "upper left", "top-left"}
    assert set(SYNONYMS["position"]["top"]) >= {"top", "upper middle"}
    assert set(SYNONYMS["position"]["bottom"]) >= {"bottom", "lower middle"}
    texts = {caption for caption, _ in every_caption}
    for example in (
        "a large red circle in the top left",
        "big red circle, upper left",
        "there is a small blue star at the bottom of the image",
        "a tiny green cross in the middle",
        "a small orange star on the left",
        "at the top is a small orange triangle",
        "an orange diamond that is big, in the top right",
    ):
        assert example in texts, example
    assert not any(text.startswith("a orange") or " a orange" in text for text in texts)
    assert not any(" an " + word in text for text in texts for word in ("large", "big", "small", "red", "circle"))


@pytest.mark.parametrize("split", SPLITS)
def test_generated_captions_parse_back_to_their_attributes(split):
    for sample in samples(split, 300):
        assert parse_caption(sample.caption) == sample.attributes(), sample.caption


def test_templates_and_synonyms_are_all_used():
    drawn = samples("train", 2000)
    assert len({s.caption.split()[0] for s in drawn}) >= 5
    for name, table in SYNONYMS.items():
        for value, phrases in table.items():
            used = {p for p in phrases if any(getattr(s, name) == value and p in s.caption for s in drawn)}
            assert used == set(phrases), (name, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  A LARGE red-circle!!  In   the TOP-LEFT.", ("circle", "red", "large", "top left")),
        ("Upper Left: big RED circle", ("circle", "red", "large", "top left")),
        ("tiny cyan star, upper middle", ("star", "cyan", "small", "top")),
        ("a little white cross on the left side", ("cross", "white", "small", "left")),
        ("a small purple square at the bottom right of the image", ("square", "purple", "small", "bottom right")),
    ],
)
def test_parse_is_tolerant_and_takes_the_longest_phrase(text, expected):
    assert tuple(parse_caption(text).values()) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a large red circle", "no position"),
        ("a red circle in the top left", "no size"),
        ("big circle, center", "no color"),
        ("a large red thing in the middle", "no shape"),
        ("a large red circle at the top, on the left", "ambiguous position"),
        ("", "no shape"),
    ],
)
def test_parse_rejects_captions_that_do_not_name_all_four(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_caption(text)


# --- caption augmentation and held-out phrasing -------------------------------------------


def _phrase_in(phrase: str, text: str) -> bool:
    words = re.findall(r"[a-z]+", phrase.lower())
    return re.search(r"\b" + r"\W+".join(words) + r"\b", text.lower()) is not None


def _template_pattern(template: str) -> re.Pattern:
    """A held-out template as a regex over lower-cased captions: its slots match anything,
    its literal words must appear in order ("a" may have become "an")."""
    parts = re.split(r"\{\w+\}", template.lower())
    literal = [r"\W*".join(r"an?" if word == "a" else re.escape(word) for word in re.findall(r"[a-z']+", part))
               for part in parts]
    return re.compile(".*".join(literal))


@pytest.fixture(scope="module")
def training_captions() -> list[str]:
    """50,000 captions as training draws them: the augmented pools of the train split and
    fresh augmented captions (typos included), and the split's own captions."""
    dataset = ShapesDataset("train", caption_variants=48)
    captions = dataset.captions()
    rng = random.Random(0)
    captions += [training_caption(make_sample("train", i).attributes(), rng) for i in range(50_000 - len(captions) - 2000)]
    captions += [s.caption for s in samples("train", 2000)]
    assert len(captions) == 50_000
    return captions


def test_heldout_templates_and_synonyms_never_occur_in_training_captions(training_captions):
    assert len(HELDOUT_TEMPLATES) >= 8
    for name in ("color", "size", "position"):
        for value in ATTRIBUTES[name]:
            assert len(HELDOUT_SYNONYMS[name][value]) >= 2, (name, value)
    lowered = [caption.lower() for caption in training_captions]
    for name, table in HELDOUT_SYNONYMS.items():
        for value, phrases in table.items():
            for phrase in phrases:
                assert not any(_phrase_in(phrase, text) for text in lowered), phrase
    for template in HELDOUT_TEMPLATES:
        pattern = _template_pattern(template)
        assert not any(pattern.search(text) for text in lowered), template
    # The check can fail: the held-out split's own captions do match.
    heldout = [s.caption.lower() for s in samples("heldout-phrasing", 200)]
    assert all(any(_template_pattern(t).search(text) for t in HELDOUT_TEMPLATES) for text in heldout)
    assert sum(any(_phrase_in(p, text) for t in HELDOUT_SYNONYMS.values() for ps in t.values() for p in ps)
               for text in heldout) > 150


def test_heldout_phrasing_split_names_all_four_in_new_words():
    drawn = samples("heldout-phrasing", 500)
    assert {(s.color, s.shape) for s in drawn}.isdisjoint(COMPOSITIONAL_PAIRS)
    for sample in drawn:
        assert parse_caption(sample.caption) == sample.attributes(), sample.caption
    assert len({s.caption for s in drawn}) == len(drawn)
    assert sum(s.caption == make_sample("test", i).caption for i, s in enumerate(drawn)) == 0


def test_augmented_captions_parse_back_to_what_they_name():
    rng = random.Random(1)
    partial = 0
    for index in range(3000):
        attributes = make_sample("train", index).attributes()
        caption = training_caption(attributes, rng, typos=False)
        named = parse_caption(caption, partial=True)
        assert named and all(attributes[k] == v for k, v in named.items()), (caption, attributes)
        partial += len(named) < 4
    assert 0.15 < partial / 3000 < 0.35  # some captions leave attributes open
    plain = [training_caption(make_sample("train", i).attributes(), rng, typos=False).lower() for i in range(2000)]
    assert any(re.search(r"\bright (in|at|on) the (middle|center|top|bottom)", c) for c in plain)  # "right" as stress
    assert any(c.endswith(("halfway down", "centered horizontally")) for c in plain)  # the other axis spelled out
    styles = [training_caption(make_sample("train", i).attributes(), rng) for i in range(2000)]
    assert any(c.isupper() for c in styles) and any(c[0].isupper() and not c.isupper() for c in styles)
    assert any(c.endswith(".") for c in styles) and len({c.split()[0].lower() for c in styles}) > 20


def test_complete_augmented_captions_parse_back_to_all_four(monkeypatch):
    monkeypatch.setattr(shapes_text, "PARTIAL_PROBABILITY", 0.0)
    rng = random.Random(2)
    for index in range(5000):
        attributes = make_sample("train", index).attributes()
        caption = training_caption(attributes, rng, typos=False)
        assert parse_caption(caption) == attributes, caption


def test_caption_variants_are_fixed_per_attribute_combination():
    dataset = ShapesDataset("train", n=400, caption_variants=16)
    again = ShapesDataset("train", n=400, caption_variants=16)
    by_combination = {}
    for i in range(400):
        pool = dataset.item_captions(i)
        assert pool == again.item_captions(i) and 8 <= len(pool) <= 16
        by_combination.setdefault(tuple(dataset.item_metadata(i).values()), set()).add(pool)
    assert all(len(pools) == 1 for pools in by_combination.values())
    dataset.set_epoch(0)
    first = [dataset[i]["text"] for i in range(50)]
    dataset.set_epoch(1)
    assert first != [dataset[i]["text"] for i in range(50)]
    assert all(dataset[i]["text"] in dataset.item_captions(i) for i in range(50))
    assert ShapesDataset("train", n=10).item_captions(3) == (make_sample("train", 3).caption,)


def test_parse_partial_captions():
    assert parse_caption("a crimson circle", partial=True) == {"shape": "circle", "color": "red"}
    assert parse_caption("something in the northwest", partial=True) == {"position": "top left"}
    assert parse_caption("a red star right in the middle", partial=True)["position"] == "center"
    for side in ("a star on the right in the picture", "a star at right in the image", "small, yellow, square, right, on black",
                 "a little red star, right, at mid height"):
        assert parse_caption(side, partial=True)["position"] == "right", side
    with pytest.raises(ValueError, match="no attribute"):
        parse_caption("a nice picture", partial=True)
    with pytest.raises(ValueError, match="ambiguous color"):
        parse_caption("a red circle, blue", partial=True)


# --- compositional hold-out -------------------------------------------------------------


def test_held_out_pairs_never_occur_in_train_val_test():
    for split in HELD_IN_SPLITS:
        pairs = {(s.color, s.shape) for s in samples(split, 3000)}
        assert not pairs & COMPOSITIONAL_PAIRS
        assert len(pairs) == 6 * 8 - len(COMPOSITIONAL_PAIRS)  # every other pair does occur


def test_compositional_split_holds_exactly_the_held_out_pairs():
    drawn = samples("compositional", 500)
    assert {(s.color, s.shape) for s in drawn} == COMPOSITIONAL_PAIRS
    assert {s.size for s in drawn} == set(shapes.SIZES)
    assert {s.position for s in drawn} == set(POSITIONS)


def test_bad_settings_are_user_facing_errors():
    for call in (lambda: make_sample("training", 0), lambda: ShapesDataset("training")):
        with pytest.raises(ConfigError, match="train, val, test, compositional"):
            call()
    with pytest.raises(ConfigError):
        ShapesDataset(n=-1)
    assert issubclass(ConfigError, ValueError)


# --- dataset ----------------------------------------------------------------------------


def test_dataset_items():
    dataset = ShapesDataset("val", n=4, size=16)
    assert len(dataset) == 4
    item = dataset[2]
    assert set(item) == {"pixel_values", "text", "shape", "color", "size", "position"}
    pixels = item["pixel_values"]
    assert pixels.dtype == torch.float32 and pixels.shape == (3, 16, 16)
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert torch.equal(pixels, pil_to_tensor(dataset.image(2)))
    sample = dataset.sample(2)
    assert sample == make_sample("val", 2)
    assert item["text"] == sample.caption
    assert {name: item[name] for name in ATTRIBUTES} == sample.attributes()
    assert dataset[-1]["text"] == dataset[3]["text"]
    for index in (4, -5):
        with pytest.raises(IndexError):
            dataset[index]


def test_dataset_default_sizes_and_batching():
    assert DEFAULT_SPLIT_SIZES["train"] == 50_000
    assert DEFAULT_SPLIT_SIZES["val"] == DEFAULT_SPLIT_SIZES["test"] == 2_000
    for split in SPLITS:
        assert len(ShapesDataset(split)) == DEFAULT_SPLIT_SIZES[split]
    batch = next(iter(torch.utils.data.DataLoader(ShapesDataset(n=3, size=16), batch_size=3)))
    assert batch["pixel_values"].shape == (3, 3, 16, 16)
    assert batch["text"] == [make_sample("train", i).caption for i in range(3)]


def test_shapes_grid():
    grid = shapes_grid(n=4, size=16)
    assert grid.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)  # 2 x 2 tiles with 2 px padding
    assert np.array_equal(np.asarray(grid)[2:18, 2:18], np.asarray(render(make_sample("train", 0), 16)))


# --- export -----------------------------------------------------------------------------


def test_export_writes_an_image_folder_that_reloads_identically(tmp_path):
    out = export_shapes(tmp_path / "shapes", split="val", n=5, size=16, progress=False)
    assert out == tmp_path / "shapes"
    names = [f"{i:06d}.png" for i in range(5)]
    assert sorted(p.name for p in out.iterdir()) == [*names, "metadata.jsonl"]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [row["file_name"] for row in rows] == names
    for i, row in enumerate(rows):
        sample = make_sample("val", i)
        assert row == {"file_name": names[i], "text": sample.caption, **sample.attributes()}
        with Image.open(out / row["file_name"]) as image:
            assert image.mode == "RGB"
            assert image.tobytes() == render(sample, 16).tobytes()


def test_interrupted_export_leaves_no_metadata(tmp_path, monkeypatch):
    export_shapes(tmp_path, n=3, size=16, progress=False)
    real_render, calls = shapes.render, []

    def failing_render(sample, size):
        calls.append(sample)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_render(sample, size)

    monkeypatch.setattr(shapes, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        export_shapes(tmp_path, seed=1, n=5, size=16, progress=False)
    # The earlier index would now describe overwritten images, so it must be gone too.
    assert not (tmp_path / "metadata.jsonl").exists()
    export_shapes(tmp_path, n=2, size=16, progress=False)  # an interrupted export is replaced too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.png", "000001.png", "metadata.jsonl"]


def test_export_replaces_only_an_earlier_export(tmp_path):
    own = tmp_path / "own"  # a user's data, with an image named as Shapes names them
    own.mkdir()
    (own / "metadata.jsonl").write_text('{"file_name": "000000.png", "text": "my cat"}\n')
    (own / "000000.png").write_bytes(b"my cat")
    exported = export_shapes(tmp_path / "shapes", n=3, size=16, progress=False)
    (exported / "notes.txt").write_text("mine")
    for folder in (own, exported):
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        with pytest.raises(ConfigError, match="holds other files than a Shapes export; give an empty or new folder"):
            export_shapes(folder, n=2, size=16, progress=False)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
