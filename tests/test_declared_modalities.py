"""Multimodal VAEs over modalities the user declares: specs, several image columns of any
size, imputation semantics, coherence on one's own data, PolyMNIST."""

import gzip
import hashlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.data import open_dataset
from mmgen.errors import ConfigError, DataError
from mmgen.multimodal import MultimodalELBO, MultimodalVAE
from mmgen.multimodal.aggregation import product_of_experts


def _image(size: int, colour: tuple[int, int, int], mark: int) -> Image.Image:
    """A plain square with a white bar whose position says `mark`."""
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[:] = colour
    array[:, mark * size // 4 : (mark + 1) * size // 4] = 255
    return Image.fromarray(array)


@pytest.fixture
def three_image_folder(tmp_path: Path) -> Path:
    """A folder whose rows hold three images of 16, 20 and 28 px, a caption, a 2-vector and
    a label, all determined by one class 0..3."""
    folder = tmp_path / "data"
    for column in ("small", "mid", "large"):
        (folder / column).mkdir(parents=True)
    words = ["north", "east", "south", "west"]
    rows = []
    for i in range(32):
        k = i % 4
        _image(16, (200, 0, 0), k).save(folder / "small" / f"{i}.png")
        _image(20, (0, 200, 0), k).save(folder / "mid" / f"{i}.png")
        _image(28, (0, 0, 200), k).save(folder / "large" / f"{i}.png")
        rows.append({"file_name": f"small/{i}.png", "image_mid": f"mid/{i}.png", "image_large": f"large/{i}.png",
                     "text": f"a bar to the {words[k]}", "xy": [float(k), -float(k)], "label": str(k)})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


SPEC = {
    "small": {"kind": "image", "column": "file_name"},
    "mid": {"kind": "image", "column": "image_mid", "widths": [8, 16]},
    "large": {"kind": "image", "column": "image_large", "widths": [8, 16], "likelihood": "laplace", "scale": 0.5},
    "caption": {"kind": "text", "column": "text", "encoder": "learned", "hidden": 16},
    "xy": {"kind": "real", "column": "xy", "weight": 2.0},
}


def test_image_modalities_of_any_size_decode_at_that_size_and_take_any_image_form():
    for size in (16, 20, 28, 48, 97):
        model = MultimodalVAE({"picture": {"kind": "image", "size": size}}, latent_dim=4)
        codec = model.codecs["picture"]
        assert codec.decode(torch.zeros(2, 4)).shape == (2, 3, size, size)
    model = MultimodalVAE({"picture": {"kind": "image", "size": 20}, "grey": {"kind": "image", "size": 12, "channels": 1}},
                          latent_dim=4)
    picture = _image(40, (10, 200, 30), 1)
    as_uint8 = torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()
    from_pil = model.codecs["picture"].to_tensor(picture)
    # a PIL image, a uint8 tensor and a float tensor of another size all become the same 20 px tensor
    assert torch.allclose(model.codecs["picture"].to_tensor(as_uint8), from_pil)
    assert torch.allclose(model.codecs["picture"].to_tensor(as_uint8.float() / 127.5 - 1), from_pil, atol=1 / 127)
    assert model.codecs["grey"].to_tensor(picture).shape == (1, 12, 12)  # RGB given to a greyscale modality
    drawn = model.impute({"picture": [picture, as_uint8]}, targets=["grey"])["grey"]
    assert [image.size for image in drawn] == [(12, 12)] * 2 and drawn[0].mode == "L"
    with pytest.raises(ConfigError, match=r"'picture': 20 px images take 1 to 4 conv levels .* got 5 widths"):
        MultimodalVAE({"picture": {"kind": "image", "size": 20, "widths": [8] * 5}})


def test_two_modalities_reading_one_column_is_an_error():
    with pytest.raises(ConfigError, match="modalities 'back' and 'front' both read the column 'pixel_values'"):
        MultimodalVAE({"front": {"kind": "image", "size": 8, "column": "pixel_values"},
                       "back": {"kind": "image", "size": 8, "column": "pixel_values"}})
    with pytest.raises(ConfigError, match="modalities 'a' and 'b' both read the column 'a'"):
        MultimodalVAE({"a": {"kind": "real", "dim": 1}, "b": {"kind": "real", "dim": 1, "column": "a"}})
    # image modalities default to their own names, so a value for one never conditions another
    model = MultimodalVAE({"m0": {"kind": "image", "size": 8}, "m1": {"kind": "image", "size": 8}}, latent_dim=4)
    assert model.observe({"m0": torch.zeros(2, 3, 8, 8)}).present.tolist() == [[True, True], [False, False]]
    with pytest.raises(DataError, match="inputs name no modality of this model: 'pixel_values'"):
        model.impute({"pixel_values": torch.zeros(1, 3, 8, 8)}, targets=["m1"])


def test_given_product_draws_from_the_closed_form_product_of_exactly_the_given_experts():
    torch.manual_seed(0)
    spec = {name: {"kind": "real", "dim": 3} for name in ("a", "b", "c")}
    model = MultimodalVAE(spec, latent_dim=2, aggregation="mopoe").eval()
    inputs = {"a": torch.randn(5, 3), "b": torch.randn(5, 3)}
    with torch.no_grad():
        experts = {name: model.codecs[name].encode(values) for name, values in inputs.items()}
        mean, logvar = product_of_experts(torch.stack([experts[n][0] for n in inputs]),
                                          torch.stack([experts[n][1] for n in inputs]), torch.ones(2, 5, dtype=torch.bool))
        expected = model.codecs["c"].decode(mean)
    product = model.impute(inputs, targets=["c"], mean=True, gibbs_steps=0, output_type="pt", given="product")["c"]
    assert torch.allclose(product, expected, atol=1e-5)
    # Draws: their mean and spread are the product's (20,000 draws of one sample).
    latents, _ = model.refined_latents(model.observe({k: v[:1] for k, v in inputs.items()}), 20_000, 0,
                                       torch.Generator().manual_seed(1), product=True)
    assert torch.allclose(latents.mean(0), mean[0], atol=0.03)
    assert torch.allclose(latents.var(0), logvar[0].exp(), rtol=0.05)
    # The mixture (the default before) averages the subsets {a}, {b}, {a, b}: another latent.
    with torch.no_grad():
        mixture, _ = model.latents(model.observe(inputs), mean=True)
    assert not torch.allclose(mixture, mean, atol=1e-2)
    with pytest.raises(ConfigError, match="given must be 'product' or 'mixture'"):
        model.impute(inputs, targets=["c"], given="sum")
    moe = MultimodalVAE(spec, latent_dim=2, aggregation="moe")
    with pytest.raises(ConfigError, match="moe. is trained as a mixture only"):
        moe.impute(inputs, targets=["c"], given="product")


def test_a_declared_spec_trains_from_the_cli_and_every_modality_is_imputed_from_every_other(three_image_folder, tmp_path):
    from mmgen.cli import main
    from mmgen.multimodal import load_model

    spec_file = tmp_path / "spec.yaml"
    import yaml

    spec_file.write_text(yaml.safe_dump(SPEC))
    run = tmp_path / "run"
    assert main(["train", "mvae", "--data", str(three_image_folder), "--modalities", str(spec_file), "--latent-dim", "8",
                 "--epochs", "2", "--batch-size", "8", "--learning-rate", "3e-3", "--output-dir", str(run),
                 "--report-to", "none", "--validate-every", "8", "--checkpoint-every", "8"]) == 0
    written = json.loads((run / "modalities.json").read_text())
    assert {name: (s["kind"], s.get("column")) for name, s in written.items()} == {
        "small": ("image", "pixel_values"), "mid": ("image", "image_mid"), "large": ("image", "image_large"),
        "caption": ("text", "text"), "xy": ("real", "xy")}
    assert [written[name]["size"] for name in ("small", "mid", "large")] == [16, 20, 28]  # the data's sizes
    assert written["large"]["likelihood"] == "laplace" and written["xy"]["dim"] == 2
    assert written["caption"]["encoder"] == "learned"  # so that the file, given back as --modalities, is this model
    # drawn from the data's 4 distinct captions: a row per image modality, each tile 200 px wide with the image
    # at twice 28 px over two lines of its caption, 2 px gaps
    assert Image.open(run / "samples" / "step-0000008.png").size == (4 * 200 + 5 * 2, 3 * (2 * 28 + 26) + 4 * 2)
    model = load_model(run / "checkpoints" / "checkpoint-0000008" / "model")  # --epochs 2: 2 x 32 / 8 steps
    assert model.config.likelihood_weights == {"xy": 2.0}
    dataset = open_dataset(str(three_image_folder), allow_missing=True)
    dataset.set_image_sizes({"pixel_values": 16, "image_mid": 20, "image_large": 28})
    item = dataset[5]
    values = {"small": [item["pixel_values"]], "mid": [item["image_mid"]], "large": [item["image_large"]],
              "caption": [item["text"]], "xy": [item["xy"]]}
    for given in model.names:
        others = [name for name in model.names if name != given]
        drawn = model.impute({given: values[given]}, targets=others, n=2)
        assert [drawn[name][0].size for name in ("small", "mid", "large") if name in drawn] == [
            (size, size) for name, size in (("small", 16), ("mid", 20), ("large", 28)) if name in drawn]
        assert isinstance(drawn.get("caption", ["x"])[0], str) and len(drawn.get("xy", [[0, 0]])[0]) == 2
    # the CLI names image modalities: NAME=FILE
    out = tmp_path / "imputed.png"
    assert main(["impute", "--model", str(run / "checkpoints" / "checkpoint-0000008" / "model"),
                 "--image", f"large={three_image_folder / 'large' / '5.png'}", "-n", "3", "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * 22 + 2, 2 * 22 + 2)  # mid and small, a row each, shown at 20 px


def test_training_logs_each_modalitys_log_likelihood(three_image_folder):
    dataset = open_dataset(str(three_image_folder), allow_missing=True)
    from mmgen.multimodal.training import build_model

    model = build_model(dataset, modalities={k: v for k, v in SPEC.items() if k != "caption"}, latent_dim=4)
    dataset.set_image_sizes({"pixel_values": 16, "image_mid": 20, "image_large": 28})
    from mmgen.data.collate import collate_examples

    batch = collate_examples([dataset[i] for i in range(4)])
    batch["xy"] = [None, *batch["xy"][1:]]  # one sample lacks xy
    output = MultimodalELBO(model)(batch)
    assert {key for key in output if key.startswith("log_likelihood/")} == {
        "log_likelihood/small", "log_likelihood/mid", "log_likelihood/large", "log_likelihood/xy"}
    # each is its modality's own, over the samples that have it: xy's Gaussian of scale 1 in 2-D is <= -1.84
    assert output["log_likelihood/xy"] < -1.8 and output["log_likelihood/small"] < output["log_likelihood/xy"]


def test_real_columns_are_modelled_standardised_and_given_back_raw(three_image_folder, tmp_path):
    from mmgen.multimodal.training import build_model

    dataset = open_dataset(str(three_image_folder), allow_missing=True)
    model = build_model(dataset, modalities={"xy": SPEC["xy"]}, latent_dim=4)
    spec = model.config.modalities["xy"]
    # xy is (k, -k) for k = 0..3, each as often
    assert spec["mean"] == pytest.approx([1.5, -1.5]) and spec["std"] == pytest.approx([1.25 ** 0.5] * 2)
    codec = model.codecs["xy"]
    values, _ = codec.batch_tensors({"xy": [[3.0, -3.0]]}, 1)
    assert values[0].tolist() == pytest.approx([1.5 / 1.25 ** 0.5, -1.5 / 1.25 ** 0.5])
    assert torch.equal(codec.checked(torch.tensor([[3.0, -3.0]])), values)  # stacked tensors alike
    assert codec.from_decoded(values)[0] == pytest.approx([3.0, -3.0])
    model.save_pretrained(tmp_path / "model")
    reloaded = MultimodalVAE.from_pretrained(tmp_path / "model").codecs["xy"]
    assert (reloaded.mean, reloaded.std) == (codec.mean, codec.std)
    # Coherence gives impute the values as read (impute standardises them once).
    from types import SimpleNamespace

    from mmgen.eval.coherence import coherence_on_data

    model = build_model(dataset, modalities={"small": SPEC["small"], "xy": SPEC["xy"]}, latent_dim=4)
    dataset.set_image_sizes({"pixel_values": 16})
    given_xy = []
    impute = model.impute
    model.impute = lambda inputs, **options: (given_xy.extend(inputs.get("xy", [])), impute(inputs, **options))[1]
    always_zero = SimpleNamespace(config=SimpleNamespace(labels=["0"]), predict=lambda images: ["0"] * len(images))
    coherence_on_data(model, dataset, {"small": always_zero}, "label", n=32, batch_size=32)
    assert torch.tensor(given_xy).tolist() == [[0.0, 0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0]] * 8

    # Fewer than all: a sample drawn by the seed, not the first rows (data is often sorted).
    class Recording(torch.utils.data.Dataset):
        def __init__(self):
            self.read = []

        def __len__(self):
            return len(dataset)

        def __getitem__(self, index):
            self.read.append(index)
            return dataset[index]

    drawn = []
    for seed in (0, 1):
        recording = Recording()
        assert coherence_on_data(model, recording, {"small": always_zero}, "label", n=4, seed=seed)["items"] == 4
        drawn.append(recording.read)
    assert drawn[0] != drawn[1] and drawn[0] != [0, 1, 2, 3] and all(len(set(read)) == 4 for read in drawn)

    rows = [json.loads(line) for line in (three_image_folder / "metadata.jsonl").read_text().splitlines()]
    (three_image_folder / "metadata.jsonl").write_text("".join(
        json.dumps({**row, "year": 2026.1, "score": float(i) if i else float("nan")}) + "\n" for i, row in enumerate(rows)))
    grown = open_dataset(str(three_image_folder), allow_missing=True)
    specs = build_model(grown, modalities={"year": {"kind": "real"}, "score": {"kind": "real"}}).config.modalities
    assert specs["year"]["std"] == [1.0]  # constant: only shifted
    assert specs["score"]["mean"] == pytest.approx([16.0])  # of 1..31: the NaN does not count
    assert grown.item_metadata(0)["score"] is None  # a JSON NaN is a missing value, as a CSV's NA cell
    # a spec written back with its statistics unset gets the data's
    assert build_model(dataset, modalities={"xy": {**SPEC["xy"], "mean": None, "std": None}}).config.modalities["xy"][
        "mean"] == pytest.approx([1.5, -1.5])
    with pytest.raises(DataError, match="modality 'xy' takes numbers, got 'abc'"):
        codec.to_tensor("abc")
    with pytest.raises(DataError, match=r"modality 'xy' takes finite numbers, got \[1.0, inf\]"):
        codec.to_tensor([1.0, float("inf")])  # not NaNs in every imputed value, nor a diverged loss
    with pytest.raises(ConfigError, match="'x': give both mean and std"):
        MultimodalVAE({"x": {"kind": "real", "dim": 1, "mean": [0.0]}})
    with pytest.raises(ConfigError, match="'x': std must be positive"):
        MultimodalVAE({"x": {"kind": "real", "dim": 1, "mean": [0.0], "std": [0.0]}})


def test_specs_are_checked_against_the_data(three_image_folder, tmp_path):
    from mmgen.multimodal.training import build_model

    dataset = open_dataset(str(three_image_folder), allow_missing=True)
    with pytest.raises(DataError, match=r"modality 'side' reads the image column 'image_side', which the data lacks "
                                        r"\(its image columns: file_name, image_mid, image_large\)"):
        build_model(dataset, modalities={"side": {"kind": "image", "column": "image_side"}})
    with pytest.raises(ConfigError, match="modality 'x': kind must be one of"):
        build_model(dataset, modalities={"x": {"kind": "audio"}})
    bad = tmp_path / "spec.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="spec.json: not a readable json spec"):
        build_model(dataset, modalities=bad)
    with pytest.raises(DataError, match="modality 'labels' reads the column 'colour', which the data lacks"):
        build_model(dataset, modalities={"labels": {"kind": "categorical", "columns": ["colour"]}})
    labels = build_model(dataset, modalities={"labels": {"kind": "categorical", "columns": ["label"]}}, latent_dim=4)
    assert labels.config.modalities["labels"]["classes"] == {"label": ["0", "1", "2", "3"]}


def test_the_inferred_spec_has_every_image_column_and_no_caption_where_there_is_none(three_image_folder, tmp_path):
    from mmgen.cli import main

    rows = [json.loads(line) for line in (three_image_folder / "metadata.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        del row["text"]
        row["uid"] = f"item-{i}"  # an identifier, one label per item: no category to model
    (three_image_folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "inferred.json"
    with pytest.warns(UserWarning, match="'uid' holds 32 distinct labels in 32 items: an identifier"):
        assert main(["data", "modalities", str(three_image_folder), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {
        "image": {"kind": "image", "column": "file_name"}, "image_mid": {"kind": "image", "column": "image_mid"},
        "image_large": {"kind": "image", "column": "image_large"}, "xy": {"kind": "real", "column": "xy"},
        "attributes": {"kind": "categorical", "columns": ["label"]},
    }


def test_the_inferred_spec_names_the_column_flags_it_needs(three_image_folder, tmp_path, capsys):
    from mmgen.cli import main

    rows = [json.loads(line) for line in (three_image_folder / "metadata.jsonl").read_text().splitlines()]
    (three_image_folder / "metadata.jsonl").write_text("".join(
        json.dumps({"front view": row.pop("file_name"), "caption": row.pop("text"), **row}) + "\n" for row in rows))
    out = tmp_path / "inferred.json"
    assert main(["data", "modalities", str(three_image_folder), "--image-column", "front view", "--text-column",
                 "caption", "--on-error", "skip", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (f"wrote {out}: edit it, then train with --modalities {out} "
                                       "--image-column 'front view' --text-column caption\n")


def test_coherence_on_own_data_with_a_trained_classifier(three_image_folder, tmp_path, capsys):
    from mmgen.cli import main

    classifier = tmp_path / "classifier"
    assert main(["train", "classifier", "--data", str(three_image_folder), "--label", "label", "--image-columns",
                 "image_large", "--epochs", "15", "--batch-size", "8", "--learning-rate", "3e-3", "--output-dir",
                 str(classifier), "--report-to", "none", "--checkpoint-every", "60", "--validate-every", "60",
                 "--validation-data", str(three_image_folder)]) == 0
    assert json.loads((classifier / "validation.jsonl").read_text())["image_large"] == 1.0  # 4 bar positions: learnt
    model = tmp_path / "mvae"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"small": SPEC["small"], "large": SPEC["large"]}))
    assert main(["train", "mvae", "--data", str(three_image_folder), "--modalities", str(spec), "--latent-dim", "8",
                 "--max-steps", "4", "--batch-size", "8", "--output-dir", str(model), "--report-to", "none"]) == 0
    out = tmp_path / "coherence.json"
    assert main(["eval", "--task", "impute", "--model", str(model / "checkpoints" / "checkpoint-0000004" / "model"),
                 "--data", str(three_image_folder), "--classifier", f"large={classifier}/checkpoints/checkpoint-0000060/model",
                 "--label", "label", "--n", "16", "--batch-size", "8", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["items"] == 16 and results["classifier/large"] == 1.0
    assert set(results["coherence/subsets"]) == {"small->large"} and 0 <= results["coherence/k=1"] <= 1
    assert "coherence/joint" not in results  # one scored modality: nothing to agree with
    assert main(["eval", "--task", "impute", "--model", str(model / "checkpoints" / "checkpoint-0000004" / "model"),
                 "--data", str(three_image_folder), "--classifier", f"large={classifier}/checkpoints/checkpoint-0000060/model",
                 "--label", "xy", "--n", "16", "--batch-size", "8", "--out", str(tmp_path / "other.json")]) == 2
    assert "none of which the column 'xy' holds" in capsys.readouterr().err  # not scores of 0 to read as results
    mvae = model / "checkpoints" / "checkpoint-0000004" / "model"
    assert main(["eval", "--task", "impute", "--model", str(mvae), "--data", str(three_image_folder), "--classifier",
                 f"large={mvae}", "--label", "label", "--n", "16", "--out", str(tmp_path / "other.json")]) == 2
    assert f"{mvae}: a checkpoint of MultimodalVAE, not of ImageClassifier" in capsys.readouterr().err
    assert not (tmp_path / "other.json").exists()


def _fake_mnist(path: Path) -> Path:
    rng = np.random.default_rng(0)

    def part(n):
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)

    path.write_bytes(gzip.compress(pickle.dumps((part(40), part(10), part(20)))))
    return path


def test_polymnist_building_is_deterministic(tmp_path):
    from mmgen.cli import main
    from mmgen.data.polymnist import BACKGROUNDS

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(BACKGROUNDS):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(photos / name)
    mnist = _fake_mnist(tmp_path / "mnist.pkl.gz")
    digests = []
    for out in (tmp_path / "a", tmp_path / "b"):
        assert main(["data", "polymnist", "--out", str(out), "--mnist", str(mnist), "--backgrounds", str(photos),
                     "--train-size", "30"]) == 0
        digests.append({str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert digests[0] == digests[1]
    assert len([name for name in digests[0] if name.startswith("train/m3/")]) == 30
    assert len([name for name in digests[0] if name.startswith("test/m0/")]) == 20
    rows = [json.loads(line) for line in (tmp_path / "a" / "train" / "metadata.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"file_name", "m1", "m2", "m3", "m4", "digit"}
    dataset = open_dataset(str(tmp_path / "a" / "train"), allow_missing=True)
    assert dataset.image_columns == ["m1", "m2", "m3", "m4"] and dataset.native_image_size("m4") == 28
    spec = json.loads((tmp_path / "a" / "modalities.json").read_text())
    assert list(spec) == ["m0", "m1", "m2", "m3", "m4"] and spec["m0"]["column"] == "file_name"
    assert main(["data", "polymnist", "--out", str(tmp_path / "c"), "--mnist", str(tmp_path / "nothing.whl")]) == 2


def test_epochs_set_the_number_of_steps():
    from mmgen.training import TrainingConfig

    config = TrainingConfig(output_dir="x", epochs=3, batch_size=8, gradient_accumulation_steps=2)
    assert config.steps_for_epochs(100, num_processes=1) == 3 * 12 // 2
    assert TrainingConfig(output_dir="x", max_steps=7).steps_for_epochs(100, 1) == 7
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        TrainingConfig(output_dir="x", epochs=0)


def _emoji_package(root: Path, vendor: str, emoji: list[dict]) -> Path:
    (root / "package" / "img" / vendor / "64").mkdir(parents=True)
    for i, entry in enumerate(emoji):
        for drawn in [entry, *(entry.get("skin_variations") or {}).values()]:
            if drawn[f"has_img_{vendor}"]:
                _image(64, (i * 5 % 256, 100, 200), i % 4).save(root / "package" / "img" / vendor / "64" / drawn["image"])
    (root / "package" / "emoji.json").write_text(json.dumps(emoji))
    return root


def test_emoji_packages_become_a_two_vendor_image_folder(tmp_path):
    from mmgen.cli import main
    from mmgen.data.emoji import held_out

    emoji = [
        {"name": "GRINNING FACE", "short_name": "grinning", "image": "1f600.png", "category": "Smileys & Emotion",
         "subcategory": "face-smiling", "has_img_google": True, "has_img_twitter": True},
        {"name": "WAVING HAND SIGN", "short_name": "wave", "image": "1f44b.png", "category": "People & Body",
         "subcategory": "hand-fingers-open", "has_img_google": True, "has_img_twitter": False,
         "skin_variations": {"1F3FB": {"image": "1f44b-1f3fb.png", "has_img_google": True, "has_img_twitter": True}}},
    ] + [{"name": f"THING {i}", "short_name": f"thing{i}", "image": f"{i}.png", "category": "Objects",
          "subcategory": "misc", "has_img_google": True, "has_img_twitter": True} for i in range(40)]
    google = _emoji_package(tmp_path / "google", "google", emoji)
    twitter = _emoji_package(tmp_path / "twitter", "twitter", emoji)
    out = tmp_path / "emoji"
    assert main(["data", "emoji", "--package", str(google), str(twitter), "--out", str(out)]) == 0
    rows = {split: [json.loads(line) for line in (out / split / "metadata.jsonl").read_text().splitlines()]
            for split in ("train", "heldout")}
    every = rows["train"] + rows["heldout"]
    assert len(every) == 43  # 42 emoji and one skin tone
    by_text = {row["text"]: row for row in every}
    assert by_text["waving hand sign"]["image_twitter"] is None  # twitter draws none
    assert by_text["waving hand sign, light skin tone"]["image_twitter"] == "twitter/1f44b-1f3fb.png"
    assert by_text["grinning face"]["category"] == "Smileys & Emotion" and by_text["grinning face"]["short_name"] == "grinning"
    assert {row["text"] for row in rows["heldout"]} == {row["text"] for row in every if held_out(row["text"].split(",")[0])}
    dataset = open_dataset(str(out / "train"), allow_missing=True)
    assert dataset.image_columns == ["image_twitter"]
    assert main(["data", "emoji", "--package", str(tmp_path / "nothing.tgz"), "--out", str(out)]) == 2


def test_impute_takes_numpy_images_under_the_metadata_column_and_gives_numbers_back():
    torch.manual_seed(0)
    model = MultimodalVAE({"image": {"kind": "image", "size": 8, "widths": [8], "column": "pixel_values"},
                           "age": {"kind": "real", "dim": 1, "mean": [40.0], "std": [10.0]}}, latent_dim=2).eval()
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)

    def age(image, key="image"):
        return model.impute({key: image}, "age", mean=True, gibbs_steps=0)["age"]

    from_pil = age(Image.fromarray(rgb))
    assert len(from_pil) == 1 and isinstance(from_pil[0], float)  # a number, as the column held
    assert age(rgb) == age(rgb / 255.0) == age(rgb, key="file_name") == from_pil
    assert age(np.stack([rgb, rgb[::-1]]))[0] == from_pil[0] != age(np.stack([rgb, rgb[::-1]]))[1]
    assert age(rgb[..., 0]) == age(Image.fromarray(rgb[..., 0]))
    with pytest.raises(DataError, match="'image': numpy images are uint8 or floats in \\[0, 1\\], got int64"):
        age(rgb.astype(np.int64))
    with pytest.raises(DataError, match="'image': float numpy images are in \\[0, 1\\], got values in \\[0, 255\\]"):
        age(rgb.astype(np.float32))  # 0..255 as floats, once clipped to white


def test_a_categorical_modality_may_share_its_name_with_its_column():
    model = MultimodalVAE({"category": {"kind": "categorical", "classes": {"category": ["Flags", "Objects"]}},
                           "x": {"kind": "real", "dim": 1}}, latent_dim=2)
    from_column = model.observe({"category": ["Objects", None], "x": [1.0, 2.0]})
    from_dicts = model.observe({"category": [{"category": "Objects"}, None], "x": [1.0, 2.0]})
    assert from_column.values["category"].tolist() == from_dicts.values["category"].tolist() == [[2], [0]]
    assert from_column.present.tolist() == [[True, False], [True, True]]


def test_mvae_fine_tuning_starts_from_the_saved_model(three_image_folder, tmp_path, capsys):
    from mmgen.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"small": SPEC["small"], "large": SPEC["large"]}))
    common = ["--data", str(three_image_folder), "--batch-size", "8", "--report-to", "none"]
    assert main(["train", "mvae", "--modalities", str(spec), "--latent-dim", "8", "--max-steps", "2",
                 "--output-dir", str(tmp_path / "base"), *common]) == 0
    base = tmp_path / "base" / "checkpoints" / "checkpoint-0000002" / "model"
    assert main(["train", "mvae", "--pretrained", str(base), "--max-steps", "1", "--learning-rate", "1e-6",
                 "--output-dir", str(tmp_path / "tuned"), *common]) == 0
    before = MultimodalVAE.from_pretrained(base).state_dict()
    after = MultimodalVAE.from_pretrained(tmp_path / "tuned" / "checkpoints" / "checkpoint-0000001" / "model").state_dict()
    assert before.keys() == after.keys()
    assert max(float((after[name] - value).abs().max()) for name, value in before.items() if value.is_floating_point()) < 1e-4

    # Data without one of the model's modalities would teach it that the modality is always missing.
    spec.write_text(json.dumps({"small": SPEC["small"], "attributes": {"kind": "categorical", "columns": ["label"]}}))
    assert main(["train", "mvae", "--modalities", str(spec), "--latent-dim", "8", "--max-steps", "1",
                 "--output-dir", str(tmp_path / "labelled"), *common]) == 0
    unlabelled = Path(shutil.copytree(three_image_folder, tmp_path / "unlabelled"))
    rows = [json.loads(line) for line in (unlabelled / "metadata.jsonl").read_text().splitlines()]
    (unlabelled / "metadata.jsonl").write_text("".join(json.dumps({**row, "label": None}) + "\n" for row in rows))
    with pytest.warns(UserWarning, match=r"no value of the model's modality 'attributes' \(columns: label\) in 32 "
                      "items spread over it; fine-tuning teaches the model it is missing"):
        assert main(["train", "mvae", "--pretrained",
                     str(tmp_path / "labelled" / "checkpoints" / "checkpoint-0000001" / "model"), "--max-steps", "1",
                     "--output-dir", str(tmp_path / "tuned-unlabelled"), "--data", str(unlabelled), "--batch-size", "8",
                     "--report-to", "none"]) == 0

    # A label the model never saw: named with its item, before training.
    relabelled = Path(shutil.copytree(three_image_folder, tmp_path / "relabelled"))
    (relabelled / "metadata.jsonl").write_text("".join(
        json.dumps({**row, "label": "4" if i == 7 else row["label"]}) + "\n" for i, row in enumerate(rows)))
    capsys.readouterr()
    assert main(["train", "mvae", "--pretrained", str(tmp_path / "labelled" / "checkpoints" / "checkpoint-0000001" / "model"),
                 "--max-steps", "1", "--output-dir", str(tmp_path / "tuned-relabelled"), "--data", str(relabelled),
                 "--batch-size", "8", "--report-to", "none"]) == 2
    assert capsys.readouterr().err.startswith(
        f"mmgen: error: {relabelled.resolve() / 'small' / '7.png'}: label '4' is a label the model does not know (it knows 0, 1, 2, 3)")
    assert not (tmp_path / "tuned-relabelled" / "checkpoints").exists()

    # Real values in another unit (x in thousandths of the model's) would be read on the
    # model's scale; the same values shuffled are familiar and train without a word.
    spec.write_text(json.dumps({"small": SPEC["small"], "xy": SPEC["xy"]}))
    assert main(["train", "mvae", "--modalities", str(spec), "--latent-dim", "8", "--max-steps", "1",
                 "--output-dir", str(tmp_path / "measured"), *common]) == 0
    measured = str(tmp_path / "measured" / "checkpoints" / "checkpoint-0000001" / "model")
    for scale, warned in ((1.0, False), (1e-3, True)):
        rescaled = Path(shutil.copytree(three_image_folder, tmp_path / f"rescaled-{scale}"))
        rows = [json.loads(line) for line in (rescaled / "metadata.jsonl").read_text().splitlines()]
        (rescaled / "metadata.jsonl").write_text("".join(
            json.dumps({**row, "xy": [rows[-1 - i]["xy"][0] * scale, rows[-1 - i]["xy"][1]]}) + "\n"
            for i, row in enumerate(rows)))  # one dimension in another unit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["train", "mvae", "--pretrained", measured, "--max-steps", "1", "--data", str(rescaled),
                         "--output-dir", str(tmp_path / f"tuned-{scale}"), "--batch-size", "8", "--report-to", "none"]) == 0
        scale_warnings = [str(w.message) for w in caught if "another unit" in str(w.message)]
        assert len(scale_warnings) == warned and all("modality 'xy'" in message for message in scale_warnings)


def test_a_conditional_vae_names_an_item_without_its_condition_before_training(three_image_folder, tmp_path, capsys):
    from mmgen.cli import main

    rows = [json.loads(line) for line in (three_image_folder / "metadata.jsonl").read_text().splitlines()]
    rows = [{**row, "weight": float(i)} for i, row in enumerate(rows)]  # a number for every item
    (three_image_folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**{name: SPEC[name] for name in ("small", "mid", "xy")},
                                "weight": {"kind": "real", "column": "weight"}}))
    assert main(["train", "mvae", "--data", str(three_image_folder), "--modalities", str(spec), "--aggregation", "cvae",
                 "--target", "small", "--conditions", "weight", "mid", "--latent-dim", "4", "--max-steps", "1",
                 "--batch-size", "8", "--output-dir", str(tmp_path / "complete"), "--report-to", "none"]) == 0
    rows[5]["xy"] = None
    rows[9]["image_mid"] = None
    (three_image_folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for conditions, message in (("xy", "1 of 32 items lack 'xy'"), ("mid", "1 of 32 items lack 'mid'")):
        run = tmp_path / f"cvae-{conditions}"
        assert main(["train", "mvae", "--data", str(three_image_folder), "--modalities", str(spec), "--aggregation",
                     "cvae", "--target", "small", "--conditions", conditions, "--latent-dim", "4", "--max-steps", "1",
                     "--batch-size", "8", "--output-dir", str(run), "--report-to", "none"]) == 2
        err = capsys.readouterr().err
        first = three_image_folder.resolve() / "small" / ("5.png" if conditions == "xy" else "9.png")
        assert message in err and f"(the first: {first})" in err
        assert not run.exists() or not any(run.iterdir())  # stopped before anything was written


def test_an_unknown_label_among_many_is_named_in_a_short_line():
    model = MultimodalVAE({"name": {"kind": "categorical", "classes": {"name": [f"n{i}" for i in range(30)]}}}, latent_dim=2)
    with pytest.raises(DataError, match=r"^name 'zero' is not one of n0, n1, n2, .*, n11, \.\.\. \(30 labels\)$"):
        model.observe({"name": ["zero"]})


def test_data_check_tells_an_item_without_its_main_image_from_one_without_any(three_image_folder, capsys):
    from mmgen.cli import main

    rows = [json.loads(line) for line in (three_image_folder / "metadata.jsonl").read_text().splitlines()]
    rows[0]["file_name"] = None  # its other two images remain: the multimodal VAEs train on it, text-to-image not
    (three_image_folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["data", "check", str(three_image_folder), "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "no main image (file_name)  " in out and "31 usable examples, 0 skipped, 1 without" in out
    for row in rows:  # no captions, as PolyMNIST: data for the multimodal VAEs, said once
        del row["text"]
    (three_image_folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["data", "check", str(three_image_folder), "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "32 examples, none with a caption: data for the multimodal VAEs" in out and "usable" not in out
