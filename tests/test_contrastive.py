"""Contrastive image-text models (mmgen train clip, retrieval) and measuring any model on the
user's own data (mmgen eval --data)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmgen.cli import main
from mmgen.contrastive import ImageTextRetrieval, r_precision, recall_at_k, train_contrastive
from mmgen.contrastive.retrieval import candidate_sets
from mmgen.contrastive.training import ContrastiveObjective, random_shift
from mmgen.data.shapes import export_shapes
from mmgen.training import TrainingConfig


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMGEN_CACHE", str(tmp_path_factory.mktemp("mmgen-cache")))
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """96 captioned 32 px Shapes images as an image folder."""
    return export_shapes(tmp_path_factory.mktemp("data") / "shapes", split="val", n=96, size=32, progress=False)


@pytest.fixture(scope="module")
def clip_run(folder, tmp_path_factory, text_cache):
    output = tmp_path_factory.mktemp("clip")
    config = TrainingConfig(
        output_dir=str(output), max_steps=100, batch_size=32, learning_rate=3e-3, ema_decay=None,
        checkpoint_every=100, validate_every=100, report_to="none",
    )
    result = train_contrastive(config, str(folder), widths=(8, 16), embed_dim=32, validation_data=str(folder))
    return result, output


def test_contrastive_loss_falls_and_retrieval_on_training_data_beats_chance(clip_run):
    result, output = clip_run
    losses = torch.tensor(result.losses)
    chance = math.log(32)  # the loss of uniform scores over a batch of 32
    assert losses[-10:].mean() < 0.8 * chance < losses[:5].mean()
    recall = json.loads((output / "validation.jsonl").read_text().splitlines()[-1])["train"]
    chance_at_5 = 5 / 96
    assert recall["image_to_text/R@5"] > 4 * chance_at_5 and recall["text_to_image/R@5"] > 4 * chance_at_5


def test_a_saved_contrastive_model_ranks_as_before_and_does_not_copy_minilm(clip_run, folder):
    result, _ = clip_run
    saved = result.last_checkpoint / "model"
    assert not (saved / "text_encoder").exists()  # MiniLM ships with mmgen: named, not stored
    retrieval = ImageTextRetrieval.from_pretrained(saved)
    captions = ["a large red circle in the center", "a small blue star in the top left"]
    before = retrieval.embed_texts(captions)
    retrieval.save_pretrained(saved.parent / "again")
    after = ImageTextRetrieval.from_pretrained(saved.parent / "again").embed_texts(captions)
    assert torch.allclose(before, after) and torch.allclose(before.norm(dim=1), torch.ones(2))


def test_retrieval_takes_one_image_or_text_and_uint8_tensors(clip_run):
    from PIL import Image

    from mmgen.data.transforms import pil_to_tensor
    from mmgen.errors import DataError

    result, _ = clip_run
    retrieval = ImageTextRetrieval.from_pretrained(result.last_checkpoint / "model")
    image = Image.new("RGB", (retrieval.image_size,) * 2, (200, 30, 30))
    captions = ["a large red circle in the center", "a small blue star in the top left"]
    ranked = retrieval.rank_texts(image, captions[0])  # one image, one text
    assert len(ranked) == 1 and [text for text, _ in ranked[0]] == [captions[0]]  # the caption, not its letters
    as_float = pil_to_tensor(image)[None]
    as_uint8 = ((as_float + 1) * 127.5).round().to(torch.uint8)
    torch.testing.assert_close(retrieval.embed_images(as_uint8), retrieval.embed_images(as_float), atol=1e-5, rtol=0)
    # one image or a list of them as numpy arrays (uint8, or floats in [0, 1]) or tensors [C, H, W]
    array = np.asarray(image)
    for same in (array, [array / 255.0], [as_uint8[0]], array[None]):
        torch.testing.assert_close(retrieval.embed_images(same), retrieval.embed_images(as_uint8), atol=1e-5, rtol=0)
    for bad, message in (([], "no images given"), (["a.png"], "got a list holding str"), (as_float[0], "got shape"),
                         (as_float * 127.5 + 127.5, r"float image tensors are in \[-1, 1\], got values in")):
        with pytest.raises(DataError, match=message):
            retrieval.embed_images(bad)
    with pytest.raises(DataError, match="no texts given"):
        retrieval.rank_texts(image, [])


def test_r_precision_ranks_among_further_candidate_captions():
    images = torch.eye(4)[:2]  # two images, each exactly its own caption's direction
    texts = torch.eye(4)
    texts[2] = torch.tensor([0.9, 0.0, 0.0, 0.1])  # a further caption close to image 0
    assert r_precision(images, texts[:2], ["a", "b"]) == 1.0
    assert r_precision(images, texts, ["a", "b", "c", "d"]) == 1.0  # 0.9 < 1: still first
    texts[2] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # a tie counts against the true match
    assert r_precision(images, texts, ["a", "b", "c", "d"]) == 0.5
    assert r_precision(images, texts, ["a", "b", "a", "d"]) == 1.0  # unless it is the same caption
    with pytest.raises(ValueError, match="a column per caption"):
        r_precision(torch.eye(4), texts[:2], ["a", "b"])


def test_candidate_captions_are_distinct_wrong_answers():
    captions = ["a", "b", "a", "a", "c", "b", "d"]
    for i, chosen in enumerate(candidate_sets(captions, candidates=10, seed=0)):
        assert chosen[0] == i and len(chosen) == 4  # itself, then one item of each other caption
        assert sorted(captions[j] for j in chosen[1:]) == sorted(set(captions) - {captions[i]})


def test_other_captions_fill_the_candidates_from_the_rest_of_the_data():
    from mmgen.eval.on_data import CANDIDATES, other_captions

    class Captions(list):
        def item_captions(self, index):
            return [self[index]]

    data = Captions([f"caption {i % 150}" for i in range(300)])
    added = other_captions(data, [0, 1, 2], ["caption 0", "caption 1", "caption 2"], seed=0)
    assert len(added) == CANDIDATES - 3 and len(set(added)) == len(added)
    assert not {"caption 0", "caption 1", "caption 2"} & set(added)
    assert added == other_captions(data, [0, 1, 2], ["caption 0", "caption 1", "caption 2"], seed=0)
    assert other_captions(data, list(range(100)), [data[i] for i in range(100)], seed=0) == []  # enough already
    assert len(other_captions(Captions(["x", "y", "z"]), [0], ["x"], seed=0)) == 2  # the data runs out


def test_recall_counts_ranks_and_ignores_duplicate_captions():
    embeds = torch.eye(4)
    assert recall_at_k(embeds, embeds, ["a", "b", "c", "d"], ks=(1,))["image_to_text/R@1"] == 1.0
    # Image 0 matches caption 1 better than its own, but caption 1 is the same text: not a miss.
    images = torch.tensor([[1.0, 1.0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    assert recall_at_k(images, embeds, ["a", "a", "c", "d"], ks=(1,))["image_to_text/R@1"] == 1.0
    assert recall_at_k(images, embeds, ["a", "b", "c", "d"], ks=(1,))["image_to_text/R@1"] == 0.75
    assert recall_at_k(embeds, embeds.flip(0), ["a", "b", "c", "d"], ks=(1,))["image_to_text/R@1"] == 0.0


class _FixedLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.logit_scale = nn.Parameter(torch.tensor(0.0))

    def forward(self, images, pooled):
        return self.logits


def test_two_images_of_one_item_in_a_batch_are_not_each_others_negatives():
    # Images 0 and 1 are one item's two glyphs; each scores the other's caption copy highest.
    logits = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    objective = ContrastiveObjective(_FixedLogits(logits), ["x", "y"], torch.zeros(2, 4))
    batch = {"pixel_values": torch.zeros(3, 3, 8, 8), "text": ["x", "x", "y"], "item": torch.tensor([0, 0, 1])}
    assert objective(batch)["accuracy"] == 1.0
    batch["item"], batch["text"] = torch.tensor([0, 1, 2]), ["x", "y", "z"]
    objective = ContrastiveObjective(_FixedLogits(logits), ["x", "y", "z"], torch.zeros(3, 4))
    assert objective(batch)["accuracy"] == pytest.approx(1 / 3)


def test_random_shift_moves_images_without_changing_their_size():
    images = torch.zeros(64, 1, 8, 8)
    images[:, :, 4, 4] = 1
    shifted = random_shift(images, 2)
    assert shifted.shape == images.shape
    positions = {tuple((image[0] == 1).nonzero()[0].tolist()) for image in shifted}
    assert len(positions) > 5 and all(2 <= y <= 6 and 2 <= x <= 6 for y, x in positions)


def _eval(tmp_path, name, *arguments):
    out = tmp_path / f"{name}.json"
    assert main(["eval", "--out", str(out), *arguments]) == 0
    return json.loads(out.read_text())["results"]


def test_eval_on_own_data_gives_reconstruct_text_to_image_impute_and_retrieval(tmp_path, folder, clip_run, capsys):
    from mmgen.diffusion.training import train_autoencoder, train_ldm

    result, _ = clip_run
    clip = str(result.last_checkpoint / "model")
    data = str(folder)
    common = dict(batch_size=8, learning_rate=1e-3, report_to="none")
    autoencoder = train_autoencoder(
        TrainingConfig(output_dir=str(tmp_path / "ae"), max_steps=2, checkpoint_every=2, **common), data=data,
        image_size=32, block_out_channels=(8, 16), latent_channels=4,
    ).last_checkpoint / "model"
    pipeline = train_ldm(
        TrainingConfig(output_dir=str(tmp_path / "ldm"), max_steps=2, checkpoint_every=2, **common), autoencoder,
        data=data, text_encoder="minilm", max_length=32, block_out_channels=(32, 64), attention_head_dim=8,
    ).last_checkpoint / "model"
    assert main(["train", "mvae", "--data", data, "--latent-dim", "8", "--max-steps", "2", "--batch-size", "8",
                 "--output-dir", str(tmp_path / "mvae"), "--report-to", "none"]) == 0
    mvae = tmp_path / "mvae" / "checkpoints" / "checkpoint-0000002" / "model"

    reconstruct = _eval(tmp_path, "reconstruct", "--task", "reconstruct", "--model", str(autoencoder), "--data", data,
                        "--n", "16", "--clip", clip)
    assert reconstruct["images"] == 16 and reconstruct["psnr"] > 0 and reconstruct["fid"] >= 0
    generated = _eval(tmp_path, "t2i", "--task", "text-to-image", "--model", str(pipeline), "--data", data,
                      "--n", "24", "--steps", "2", "--clip", clip)
    distinct = len({json.loads(line)["text"] for line in (folder / "metadata.jsonl").read_text().splitlines()})
    # 24 prompts, each ranked among the data's other captions, not only the other 23 prompts
    assert generated["prompts"] == 24 and generated["candidates"] == min(100, distinct) > 24
    assert generated["r_precision_real"] > 3 / 24  # the judge reads the real images
    assert {"r_precision", "clip_score", "clip_score_real", "fid", "fid_real_floor"} <= set(generated)
    imputed = _eval(tmp_path, "impute", "--task", "impute", "--model", str(mvae), "--data", data, "--n", "24",
                    "--clip", clip)
    assert imputed["text/captions"] == 24 and "text->image/r_precision" in imputed
    assert imputed["text->image/r_precision_real"] > 3 / 24
    retrieval = _eval(tmp_path, "retrieval", "--task", "retrieval", "--model", clip, "--data", data, "--n", "96")
    assert retrieval["image_to_text/R@5"] > 4 * 5 / 96
    # A few queries still meet the data's other items as candidates, as text-to-image's prompts do.
    few = _eval(tmp_path, "few", "--task", "retrieval", "--model", clip, "--data", data, "--n", "5")
    rows = (folder / "metadata.jsonl").read_text().splitlines()
    assert few["items"] == 5 and few["candidates"] == min(100, len(rows)) > 5
    uncaptioned = tmp_path / "uncaptioned"
    uncaptioned.mkdir()
    for row in map(json.loads, rows[:4]):
        (uncaptioned / row["file_name"]).write_bytes((folder / row["file_name"]).read_bytes())
    (uncaptioned / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": json.loads(row)["file_name"], "text": None}) + "\n" for row in rows[:4]))
    capsys.readouterr()
    for task, model in (("retrieval", ["--model", clip]), ("text-to-image", ["--model", str(pipeline), "--clip", clip])):
        assert main(["eval", "--task", task, *model, "--data", str(uncaptioned), "--out", str(tmp_path / "none.json")]) == 2
        assert "no entry has both an image and a caption" in capsys.readouterr().err
    assert (tmp_path / "t2i.png").is_file() and (tmp_path / "impute.png").is_file()

    assert main(["eval", "--task", "text-to-image", "--model", str(pipeline), "--data", data, "--out",
                 str(tmp_path / "x.json")]) == 2
    assert "give --clip PATH" in capsys.readouterr().err


def test_retrieve_finds_images_for_a_text_and_captions_for_an_image(tmp_path, folder, clip_run, capsys):
    result, _ = clip_run
    clip = str(result.last_checkpoint / "model")
    out = tmp_path / "found.png"
    assert main(["retrieve", "--model", clip, "--data", str(folder), "--text", "a red circle", "-k", "3",
                 "--out", str(out)]) == 0
    # "  0.123  FILE: caption" per image found
    found = [line.strip().split("  ", 1)[1].rsplit(": ", 1)[0] for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ")]
    assert out.is_file() and len(found) == 3 and all(Path(file).parent == folder and Path(file).is_file() for file in found)
    image = next(folder.glob("*.png"))
    assert main(["retrieve", "--model", clip, "--data", str(folder), "--image", str(image), "-k", "2"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]) == 2
    assert main(["retrieve", "--model", clip, "--data", str(folder)]) == 2
    assert "give either --text" in capsys.readouterr().err
    run = result.last_checkpoint.parent.parent  # the run folder, where its checkpoints are
    assert main(["retrieve", "--model", str(run), "--data", str(folder), "--text", "a red circle"]) == 2
    assert f"did you mean {result.last_checkpoint / 'model'}?" in capsys.readouterr().err


def test_items_without_a_caption_are_left_out_of_the_pairs(tmp_path, folder):
    from mmgen.contrastive.training import ImageTextPairs
    from mmgen.data import open_dataset

    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()][:12]
    for row in rows[::3]:
        row["text"] = None
    partial = tmp_path / "partial"
    partial.mkdir()
    for row in rows:
        (partial / row["file_name"]).write_bytes((folder / row["file_name"]).read_bytes())
    (partial / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs = ImageTextPairs(open_dataset(str(partial), size=32, allow_missing=True), ["pixel_values"])
    assert len(pairs) == 8 and all(pairs[i]["text"] for i in range(len(pairs)))
