import json
import warnings

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from scipy import linalg

from mmgen.checkpoints import SHAPES_JUDGE
from mmgen.cli import main
from mmgen.data.shapes import ATTRIBUTES, ShapesDataset, ShapesSample, format_caption, parse_caption, render
from mmgen.data.transforms import pil_to_tensor
from mmgen.errors import CheckpointError
from mmgen.eval.evaluate import evaluate_text_to_image, load_for_task
from mmgen.eval.judge import (
    ATTRIBUTE_NAMES,
    ShapesJudge,
    judge_accuracy,
    load_judge,
    real_images,
    train_judge,
)
from mmgen.eval.metrics import caption_accuracy, coherence, diversity, feature_fid, frechet_distance, reconstruction_metrics
from mmgen.eval.prompts import freeform_prompts
from mmgen.text import TextEncoder, train_caption_tokenizer
from mmgen.training import TrainingConfig


@pytest.fixture(scope="module")
def judge():
    return load_judge(SHAPES_JUDGE)


# -- Fréchet distance ---------------------------------------------------------------------


def test_frechet_distance_matches_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(5)
    # diagonal covariances: the 1-D formula summed over dimensions
    mu1, var1, mu2, var2 = np.array([0.0, 1, 2]), np.array([1.0, 4, 9]), np.array([1.0, 1, 0]), np.array([4.0, 4, 1])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    # full, non-commuting covariances: the symmetric form tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    root = linalg.sqrtm(s1).real
    expected = np.trace(s1 + s2 - 2 * linalg.sqrtm(root @ s2 @ root).real)
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s1) == pytest.approx(0, abs=1e-6)


def test_feature_fid_grows_with_the_shift_between_sets():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 8, generator=generator), torch.randn(4000, 8, generator=generator)
    same = feature_fid(a, b)
    assert same < 0.05
    assert feature_fid(a, a + 1.0) == pytest.approx(8, abs=1e-6)  # same covariance, |shift|^2 = 8
    assert feature_fid(a, b * 2) > 8 * 0.9  # per dimension (1 - 2)^2 = 1


def test_fid_with_fewer_samples_than_dimensions_is_real_and_finite():
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        a, b = torch.randn(8, 256, generator=generator), torch.randn(8, 256, generator=generator) + 0.5
        value = feature_fid(a, b)
        assert np.isfinite(value) and value > 0


def test_diversity_is_zero_for_collapsed_samples():
    assert diversity(torch.ones(5, 3)) == 0
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert diversity(points) == pytest.approx(5.0)


def test_psnr_is_the_mean_of_per_image_values():
    clean = torch.zeros(2, 3, 8, 8)
    noisy = clean.clone()
    noisy[0] += 0.2  # 0.1 in [0, 1]: 20 dB
    noisy[1] += 0.02  # 0.01: 40 dB
    assert reconstruction_metrics(clean, noisy)["psnr"] == pytest.approx(30.0, abs=1e-3)


def test_reconstruction_metrics():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    perfect = reconstruction_metrics(images, images)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["psnr"] > 60
    shifted = reconstruction_metrics(images, images + 0.1)  # 0.05 in [0, 1]: MSE 0.0025 -> 26.02 dB
    assert shifted["psnr"] == pytest.approx(10 * np.log10(1 / 0.0025), abs=0.01)
    assert shifted["ssim"] < 1


def test_caption_accuracy_parses_captions_back():
    dataset = ShapesDataset("test", n=50)
    samples = [dataset.sample(i) for i in range(50)]
    attributes = {name: [getattr(s, name) for s in samples] for name in ATTRIBUTE_NAMES}
    assert caption_accuracy([s.caption for s in samples], attributes)["all"] == 1.0
    garbled = caption_accuracy(["a thing somewhere"] * 50, attributes)
    assert all(value == 0 for value in garbled.values())


# -- the judge on stub generators -----------------------------------------------------------


def _prompted_attributes(prompt: str) -> dict[str, str]:
    """What a prompt asks for: a free-form prompt's listed attributes (the first value where
    it leaves one open), else those its Shapes caption says (held-out words included)."""
    prompts, columns = freeform_prompts()
    if prompt in prompts:
        row = prompts.index(prompt)
        return {name: columns[name][row] or ATTRIBUTES[name][0] for name in columns}
    return parse_caption(prompt)


def _render_prompts(prompts: list[str], generator: torch.Generator) -> torch.Tensor:
    """A perfect text-to-image model: draws exactly what the prompt says."""
    return torch.stack([pil_to_tensor(render(ShapesSample(caption=p, **_prompted_attributes(p)), 64)) for p in prompts])


def _noise(prompts: list[str], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(len(prompts), 3, 64, 64, generator=generator) * 2 - 1


def test_shipped_judge_reads_real_images(judge):
    for split in ("test", "compositional"):
        images, attributes = real_images(split, 300)
        assert judge_accuracy(judge, images, attributes)["all"] >= 0.99


def test_adherence_of_a_perfect_generator_is_the_judge_accuracy_and_noise_is_chance(judge):
    results, images, prompts = evaluate_text_to_image(_render_prompts, judge, n=200)
    for split in ("test", "compositional", "heldout-phrasing", "freeform", "freeform-unseen-phrasings"):
        assert results[f"adherence/{split}"]["all"] >= 0.98
    assert results["fid"] < 5 * results["fid_real_floor"] + 1
    assert results["diversity"] == pytest.approx(0, abs=1e-3)  # one prompt, one rendering: collapsed
    assert len(images) == len(prompts) == 16

    noisy, _, _ = evaluate_text_to_image(_noise, judge, n=200)
    for split in ("test", "compositional"):
        assert noisy[f"adherence/{split}"]["all"] < 0.05
        for name in ATTRIBUTE_NAMES:
            assert noisy[f"adherence/{split}"][name] < 0.65  # at most a fixed guess; chance is 1/2 to 1/9
    assert noisy["adherence/freeform-unseen-phrasings"]["all"] < 0.25
    assert noisy["fid"] > 10 * results["fid"]
    assert noisy["diversity"] > 0


def _oracle_imputer(judge):
    """Reads the attributes from whatever is observed, renders / writes / lists the rest."""

    def impute(observed, targets, generator):
        if "attributes" in observed:
            attributes = observed["attributes"]
        elif "text" in observed:
            parsed = [parse_caption(t) for t in observed["text"]]
            attributes = {name: [p[name] for p in parsed] for name in ATTRIBUTE_NAMES}
        else:
            attributes = judge.predict(observed["image"])
        rows = [dict(zip(ATTRIBUTE_NAMES, values)) for values in zip(*(attributes[n] for n in ATTRIBUTE_NAMES))]
        outputs = {
            "attributes": attributes,
            "text": [format_caption("a {size} {color} {shape} {where}", **row) for row in rows],
            "image": torch.stack([pil_to_tensor(render(ShapesSample(caption="", **row), 64)) for row in rows]),
        }
        return {target: outputs[target] for target in targets}

    return impute


def _random_imputer(observed, targets, generator):
    n = len(next(iter(observed.values())))
    pick = lambda name: [ATTRIBUTES[name][i] for i in torch.randint(len(ATTRIBUTES[name]), (n,), generator=generator)]
    attributes = {name: pick(name) for name in ATTRIBUTE_NAMES}
    rows = [dict(zip(ATTRIBUTE_NAMES, values)) for values in zip(*(attributes[n] for n in ATTRIBUTE_NAMES))]
    outputs = {
        "attributes": attributes,
        "text": [format_caption("{size} {color} {shape}, {place}", **row) for row in rows],
        "image": _noise([""] * n, generator),
    }
    return {target: outputs[target] for target in targets}


def test_coherence_of_an_oracle_and_of_a_random_imputer(judge):
    images, attributes = real_images("test", 120)
    captions = [ShapesDataset("test", n=120).sample(i).caption for i in range(120)]
    oracle = coherence(_oracle_imputer(judge), judge, images, captions, attributes, batch_size=50)
    assert set(oracle["subsets"]) == {
        "image->text", "image->attributes", "text->image", "text->attributes", "attributes->image", "attributes->text",
        "image+text->attributes", "image+attributes->text", "text+attributes->image",
    }
    assert oracle["by_subset_size"][1] >= 0.98 and oracle["by_subset_size"][2] >= 0.98
    random = coherence(_random_imputer, judge, images, captions, attributes, batch_size=50)
    assert random["by_subset_size"][1] < 0.05 and random["by_subset_size"][2] < 0.05


# -- the judge model and its training --------------------------------------------------------


def test_judge_saves_and_reloads_to_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = ShapesJudge(channels=(8, 8, 16, 16), feature_dim=16).eval()
    images, _ = real_images("val", 4, size=32)
    model.save_pretrained(tmp_path)
    reloaded = load_judge(tmp_path)
    expected, actual = model(images), reloaded(images)
    for name in ATTRIBUTE_NAMES:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0)


def test_judge_training_lowers_the_loss(tmp_path):
    config = TrainingConfig(
        output_dir=str(tmp_path), max_steps=100, batch_size=32, learning_rate=5e-3, checkpoint_every=100,
        validate_every=100, report_to="none",
    )
    result = train_judge(config, data="shapes", image_size=16, channels=(8, 16, 16, 16), feature_dim=32, validation_size=64)
    assert np.mean(result.losses[-10:]) < 0.7 * np.mean(result.losses[:10])
    assert (result.last_checkpoint / "model" / "config.json").is_file()
    logged = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 100 and logged[0]["position"] > 0.3  # well above chance (1/9)


# -- mmgen eval -----------------------------------------------------------------------------


def _tiny_stable_diffusion(folder):
    torch.manual_seed(0)
    tokenizer = train_caption_tokenizer(ShapesDataset("train", n=200).captions(), vocab_size=400, max_length=24)
    text_encoder = TextEncoder.clip(tokenizer, hidden_size=32, num_layers=1, num_heads=2).model
    unet = UNet2DConditionModel(
        sample_size=8, layers_per_block=1, block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32), norm_num_groups=8, latent_channels=4, sample_size=16,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return vae


def test_mmgen_eval_text_to_image_end_to_end(tmp_path, capsys):
    _tiny_stable_diffusion(tmp_path / "model")
    out = tmp_path / "results.json"
    arguments = ["eval", "--model", str(tmp_path / "model"), "--task", "text-to-image", "--n", "8", "--steps", "2"]
    assert main(arguments + ["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["task"] == "text-to-image" and report["n"] == 8
    assert (report["steps"], report["guidance_scale"], report["scheduler"]) == (2, 3.0, "dpm++")
    results = report["results"]
    for split in ("test", "compositional"):
        assert set(results[f"adherence/{split}"]) == {*ATTRIBUTE_NAMES, "all"}
        assert all(0 <= v <= 1 for v in results[f"adherence/{split}"].values())
    assert results["fid"] > 0 and results["fid_real_floor"] >= 0
    assert out.with_suffix(".png").is_file()
    assert "adherence/test/all" in capsys.readouterr().out
    # seeded: a second run gives the same numbers
    assert main(arguments + ["--out", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["results"] == results


def test_mmgen_eval_reconstruct_end_to_end(tmp_path):
    _tiny_stable_diffusion(tmp_path / "model")
    out = tmp_path / "results.json"
    assert main(["eval", "--model", str(tmp_path / "model" / "vae"), "--task", "reconstruct", "--n", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert not {"steps", "guidance_scale", "scheduler"} & set(report)  # nothing is sampled
    results = report["results"]
    assert np.isfinite(results["psnr"]) and -1 <= results["ssim"] <= 1
    assert set(results["judge_on_reconstructions"]) == {*ATTRIBUTE_NAMES, "all"}


def test_mmgen_eval_judge_with_few_images(tmp_path, capsys):
    out = tmp_path / "judge.json"
    assert main(["eval", "--model", str(SHAPES_JUDGE), "--task", "judge", "--n", "5", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"]["accuracy/test"]["all"] == 1.0
    assert main(["eval", "--model", str(SHAPES_JUDGE), "--task", "judge", "--n", "1"]) == 2
    assert "--n must be at least 2" in capsys.readouterr().err


def test_eval_names_a_wrong_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_for_task(tmp_path / "missing", "text-to-image")
    with pytest.raises(CheckpointError, match="is the Shapes judge"):
        load_for_task(SHAPES_JUDGE, "text-to-image")
    _tiny_stable_diffusion(tmp_path / "model")
    with pytest.raises(CheckpointError, match="supports --task text-to-image, not reconstruct"):
        load_for_task(tmp_path / "model", "reconstruct")
    with pytest.raises(CheckpointError, match="not a Shapes judge"):
        load_judge(tmp_path / "model" / "vae")


def test_label_columns_of_whole_numbers_read_as_the_classifiers_labels():
    from mmgen.data import collate_examples
    from mmgen.data.collate import as_label

    def label_texts(values):  # as coherence reads a batch's label column
        return [str(as_label(value)) for value in values]

    assert label_texts(collate_examples([{"digit": 3}, {"digit": 7}])["digit"]) == ["3", "7"]
    assert label_texts(["calm", None]) == ["calm", "None"]


def test_fid_from_fewer_images_than_feature_dimensions_is_said_to_be_noise():
    from mmgen.eval.metrics import feature_fid

    generator = torch.Generator().manual_seed(0)
    with pytest.warns(UserWarning, match="FID from 10 images of 32-dimensional features is mostly noise"):
        feature_fid(torch.randn(10, 32, generator=generator), torch.randn(12, 32, generator=generator))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feature_fid(torch.randn(100, 8, generator=generator), torch.randn(100, 8, generator=generator))


def test_eval_of_a_pipeline_for_reconstruction_points_to_its_first_stage(tmp_path, capsys):
    from mmgen.checkpoints import SHAPES_LDM

    assert main(["eval", "--task", "reconstruct", "--model", str(SHAPES_LDM), "--out", str(tmp_path / "r.json")]) == 2
    assert f"not reconstruct; its first stage, {SHAPES_LDM / 'vae'}, does" in capsys.readouterr().err
