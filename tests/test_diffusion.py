import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from PIL import Image
from torch.nn import functional as F

from mmgen.checkpoints import CHECKPOINTS_DIR, SHAPES_DVAE, SHAPES_JUDGE
from mmgen.cli import main
from mmgen.diffusion import TextToImagePipeline
from mmgen.diffusion.autoencoder import AutoencoderObjective, build_autoencoder
from mmgen.diffusion.latents import encode_dataset, latent_scaling_factor
from mmgen.diffusion.objective import LatentDiffusionObjective, build_unet
from mmgen.diffusion.training import train_autoencoder, train_ldm
from mmgen.data import ShapesDataset
from mmgen.errors import CheckpointError, ConfigError
from mmgen.eval.evaluate import evaluate_text_to_image
from mmgen.text import CachedTextEncoder, TextEncoder
from mmgen.training import TrainingConfig

TINY_AUTOENCODER = dict(block_out_channels=(8, 16), latent_channels=4)  # 16 px -> 8 x 8 x 4
TINY_UNET = dict(block_out_channels=(32, 64), attention_head_dim=8)


def _config(folder, **overrides) -> TrainingConfig:
    settings = dict(
        output_dir=str(folder), max_steps=4, batch_size=8, learning_rate=1e-3, checkpoint_every=2, report_to="none"
    )
    settings.update(overrides)
    return TrainingConfig(**settings)


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoencoder")
    result = train_autoencoder(_config(folder, max_steps=2), data="shapes:val", image_size=16, **TINY_AUTOENCODER)
    return result.last_checkpoint / "model"


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory, autoencoder):
    """A tiny LDM trained for a few steps; its last checkpoint's pipeline folder."""
    folder = tmp_path_factory.mktemp("ldm")
    result = train_ldm(
        _config(folder, validate_every=4), autoencoder, data="shapes:val", image_size=16,
        text_encoder="minilm", max_length=16, **TINY_UNET,
    )
    return result.last_checkpoint / "model"


@pytest.fixture(autouse=True)
def private_text_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path_factory.getbasetemp() / "mmgen-cache"))


def test_autoencoder_training_lowers_the_loss(tmp_path):
    result = train_autoencoder(
        _config(tmp_path, max_steps=30, learning_rate=3e-3, checkpoint_every=30, validate_every=30),
        data="shapes:val", image_size=16, **TINY_AUTOENCODER,
    )
    assert np.mean(result.losses[-5:]) < 0.6 * np.mean(result.losses[:5])
    vae = AutoencoderKL.from_pretrained(result.last_checkpoint / "model")
    assert vae.config.latent_channels == 4 and vae.config.sample_size == 16
    assert Image.open(tmp_path / "samples" / "step-0000030.png").width > 16 * 8  # originals over reconstructions


def test_autoencoder_objective_uses_the_chosen_reconstruction_loss():
    vae = build_autoencoder(**TINY_AUTOENCODER, image_size=16)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    for name, loss_fn in (("mse", F.mse_loss), ("l1", F.l1_loss)):
        torch.manual_seed(0)
        out = AutoencoderObjective(vae, kl_weight=0.0, reconstruction_loss=name)({"pixel_values": images})
        torch.manual_seed(0)
        expected = loss_fn(vae.decode(vae.encode(images).latent_dist.sample()).sample, images)
        assert torch.allclose(out["loss"], expected) and torch.allclose(out[name], expected)
    with pytest.raises(ValueError, match="huber"):
        AutoencoderObjective(vae, reconstruction_loss="huber")


def test_latents_are_cached_once_and_scaled_from_data(tmp_path, autoencoder):
    vae = AutoencoderKL.from_pretrained(autoencoder)
    dataset = ShapesDataset("val", n=16, size=16)
    latents = encode_dataset(vae, dataset, tmp_path, flips=True)
    assert latents["mean"].shape == (16, 2, 4, 8, 8)
    # the second view is the mirrored image's latent
    mirrored = vae.encode(dataset[3]["pixel_values"].flip(-1)[None]).latent_dist.mean
    torch.testing.assert_close(latents["mean"][3, 1], mirrored[0], atol=1e-5, rtol=1e-4)
    files = list(tmp_path.glob("latents-*.safetensors"))
    assert len(files) == 1
    again = encode_dataset(vae, dataset, tmp_path, flips=True)  # read back, not recomputed
    assert torch.equal(again["mean"], latents["mean"]) and len(list(tmp_path.glob("latents-*"))) == 1
    factor = latent_scaling_factor(latents)
    sample = latents["mean"] + latents["std"] * torch.randn(latents["mean"].shape, generator=torch.Generator().manual_seed(0))
    assert (sample * factor).std().item() == pytest.approx(1.0, abs=1e-4)


def _objective(caption_dropout: float) -> LatentDiffusionObjective:
    torch.manual_seed(0)
    encoder = TextEncoder.minilm(max_length=16)
    return LatentDiffusionObjective(
        build_unet(cross_attention_dim=384, **TINY_UNET), DDPMScheduler(), CachedTextEncoder(encoder), 1.0, caption_dropout
    )


def test_unet_group_norms_fit_narrow_widths_and_bad_loss_settings_are_named():
    assert build_unet(cross_attention_dim=8, block_out_channels=(16, 48)).config.norm_num_groups == 16
    assert build_unet(cross_attention_dim=8, **TINY_UNET).config.norm_num_groups == 32
    unet = build_unet(cross_attention_dim=8, block_out_channels=(16, 32))
    with pytest.raises(ConfigError, match="snr_gamma must be above 0"):
        LatentDiffusionObjective(unet, DDPMScheduler(), None, 1.0, snr_gamma=-1.0)
    with pytest.raises(ConfigError, match=r"caption_dropout must lie in \[0, 1\], got 1.5"):
        LatentDiffusionObjective(unet, DDPMScheduler(), None, 1.0, caption_dropout=1.5)


def test_caption_dropout_replaces_captions_with_the_empty_prompt():
    latents = {"latent_mean": torch.randn(4, 4, 8, 8), "latent_std": torch.full((4, 4, 8, 8), 0.1)}
    red, blue = ["a large red circle in the top left"] * 4, ["a small blue star at the bottom"] * 4

    def loss(objective, texts):
        torch.manual_seed(1)
        return objective({**latents, "text": texts})["loss"].item()

    kept, dropped = _objective(0.0), _objective(1.0)
    assert loss(kept, red) != loss(kept, blue)  # captions condition the UNet
    assert loss(dropped, red) == loss(dropped, blue)  # all replaced by the unconditional prompt


def test_ldm_training_lowers_the_loss(tmp_path, autoencoder):
    result = train_ldm(
        _config(tmp_path, max_steps=40, checkpoint_every=40), autoencoder, data="shapes:val", image_size=16,
        text_encoder="minilm", max_length=16, **TINY_UNET,
    )
    assert np.mean(result.losses[-10:]) < 0.8 * np.mean(result.losses[:10])


def test_every_checkpoint_is_a_pipeline_with_a_measured_scaling_factor(pipeline_folder):
    checkpoints = pipeline_folder.parent.parent
    for step in (2, 4):
        folder = checkpoints / f"checkpoint-{step:07d}" / "model"
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == "StableDiffusionPipeline"
        assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
        assert index["safety_checker"] == [None, None]
    scaling = json.loads((pipeline_folder / "vae" / "config.json").read_text())["scaling_factor"]
    assert scaling != pytest.approx(0.18215) and scaling > 0
    assert (pipeline_folder.parents[2] / "samples" / "step-0000004.png").is_file()


def test_mmgen_and_diffusers_load_the_same_pipeline(pipeline_folder):
    prompts = ["a large red circle in the top left", "a small blue star"]

    def sample(pipe, scale=3.0):
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(0)
        guidance = {} if scale is None else {"guidance_scale": scale}
        return pipe(prompts, num_inference_steps=3, generator=generator, output_type="pt", **guidance).images

    from safetensors import safe_open

    with safe_open(pipeline_folder / "text_encoder" / "model.safetensors", framework="pt") as weights:
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()} == {"F16"}  # frozen MiniLM: half the size
    ours = TextToImagePipeline.from_pretrained(pipeline_folder)
    theirs = StableDiffusionPipeline.from_pretrained(pipeline_folder, safety_checker=None)  # computes in float32
    images = sample(ours)
    assert images.shape == (2, 3, 16, 16)
    torch.testing.assert_close(sample(theirs), images, rtol=0, atol=0)
    torch.testing.assert_close(sample(ours), images, rtol=0, atol=0)  # seeded: reproducible
    assert not torch.allclose(sample(ours, scale=7.0), images)  # guidance changes the output
    torch.testing.assert_close(sample(ours, scale=None), images, rtol=0, atol=0)  # 3 unless told (diffusers: 7.5)
    # and PIL images by default, as every diffusers pipeline
    pil = ours(prompts[:1], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert isinstance(pil[0], Image.Image) and pil[0].size == (16, 16)


def test_bad_call_arguments_are_named_before_sampling(pipeline_folder):
    from mmgen.errors import ConfigError

    pipe = TextToImagePipeline.from_pretrained(pipeline_folder)
    for options, message in (
        ({"prompt": 5}, "prompt must be a string or a list of strings, got int"),
        ({"prompt": "a red star", "num_images_per_prompt": 0}, "num_images_per_prompt must be a whole number"),
        ({"prompt": "a red star", "generator": 0}, "generator must be a torch.Generator"),
        ({"prompt": "a red star", "num_inference_steps": 0}, "num_inference_steps must be a whole number"),
    ):
        with pytest.raises(ConfigError, match=message):
            pipe(**options)


def test_the_pipeline_says_what_its_encoder_does_not_read(pipeline_folder, capfd):
    import warnings

    pipe = TextToImagePipeline.from_pretrained(pipeline_folder)
    pipe.set_progress_bar_config(disable=True)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(["🔴 a red star", "red " * 40], num_inference_steps=1, output_type="pt")
    said = [w for w in caught if " prompt(s) " in str(w.message)]
    assert [str(w.message).split(" prompt(s) ")[1][:20] for w in said] == ["longer than 16 token", "hold characters the "]
    assert {w.filename for w in said} == {__file__}  # the caller's line, not diffusers'
    assert "CLIP" not in capfd.readouterr().err  # diffusers' note names CLIP whatever the encoder is


def test_resume_continues_from_the_last_checkpoint(tmp_path, autoencoder):
    options = dict(data="shapes:val", image_size=16, text_encoder="minilm", max_length=16, **TINY_UNET)
    train_ldm(_config(tmp_path, max_steps=2), autoencoder, **options)
    result = train_ldm(_config(tmp_path, max_steps=4, resume="latest"), autoencoder, **options)
    assert result.step == 4 and len(result.losses) == 2  # only steps 3 and 4 ran
    assert len(list((tmp_path / "cache").glob("latents-*.safetensors"))) == 1  # latents reused


def test_trainable_clip_text_encoder_is_saved_with_the_pipeline(tmp_path, autoencoder):
    result = train_ldm(
        _config(tmp_path, max_steps=2), autoencoder, data="shapes:val", image_size=16, text_encoder="clip",
        max_length=24, text_hidden_size=32, text_layers=1, **TINY_UNET,
    )
    folder = result.last_checkpoint / "model"
    assert json.loads((folder / "text_encoder" / "config.json").read_text())["architectures"] == ["CLIPTextModel"]
    pipe = TextToImagePipeline.from_pretrained(folder)
    assert pipe(["a big red star"], num_inference_steps=2, output_type="pt").images.shape == (1, 3, 16, 16)


def test_cli_sample_writes_a_grid(tmp_path, pipeline_folder, capsys):
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a big blue star in the middle\n\na tiny red cross\n")
    out = tmp_path / "grid.png"
    arguments = ["sample", "--model", str(pipeline_folder), "a large green square", "--prompts-file", str(prompts_file),
                 "-n", "2", "--steps", "2", "--seed", "0", "--out", str(out)]
    assert main(arguments) == 0
    assert Image.open(out).size == (2 * 16 + 3 * 2, 3 * 16 + 4 * 2)  # 3 prompts x 2 images
    first = np.asarray(Image.open(out))
    assert main(arguments) == 0
    assert np.array_equal(np.asarray(Image.open(out)), first)  # same seed, same images
    assert "3 prompt(s) x 2 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["sample", ""], "empty prompt"),
        (["sample"], "no prompt given"),
        (["sample", "a red star", "--model", str(SHAPES_JUDGE)], "not a text-to-image pipeline"),
        (["sample", "a red star", "--model", "/no/such/folder"], "/no/such/folder: no such checkpoint folder"),
        (["sample", "a red star", "-n", "0"], "-n must be at least 1, got 0"),
        (["sample", "a red star", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["sample", "a red star", "--top-p", "2"], "--top-p must be in (0, 1], got 2.0"),
        (["sample", "a red star", "--out", "/"], "--out /: a folder; name an image file in it"),
        (["eval", "--task", "text-to-image", "--model", "m", "--out", "r.png"], "--out r.png: the report is JSON"),
        (["eval", "--task", "text-to-image", "--model", "m", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["eval", "--task", "text-to-image", "--model", "m", "--steps", "0"], "--steps must be at least 1 for --task text-to-image"),
        (["eval", "--task", "impute", "--model", "m", "--splits", "test"], "--splits chooses the Shapes prompt splits"),
        (["sample", "a red star", "--out", "grid"], "--out grid: no file extension; use .png or .jpg"),
        (["sample", "--prompts-file", "/no/prompts.txt"], "--prompts-file /no/prompts.txt: no such file"),
    ],
)
def test_cli_sample_and_eval_name_bad_input(arguments, message, capsys):
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_eval_measures_only_the_splits_asked_for(pipeline_folder, tmp_path):
    report = tmp_path / "report.json"
    assert main(["eval", "--task", "text-to-image", "--model", str(pipeline_folder), "--splits", "freeform",
                 "heldout-phrasing", "--n", "2", "--steps", "2", "--out", str(report)]) == 0
    report = json.loads(report.read_text())
    assert report["splits"] == ["freeform", "heldout-phrasing"]
    # no test split: no FID nor diversity, which are measured on it
    results = report["results"]
    assert set(results) == {
        "adherence/heldout-phrasing", "adherence/freeform", "adherence/freeform-unseen-phrasings",
        "prompts/heldout-phrasing", "prompts/freeform", "prompts/freeform-unseen-phrasings"}
    assert results["prompts/freeform"] == results["prompts/heldout-phrasing"] == 2  # the counts behind the shares
    assert 0 <= results["prompts/freeform-unseen-phrasings"] <= 2
    with pytest.raises(ConfigError, match="splits must be some of test, compositional"):
        evaluate_text_to_image(None, None, n=2, splits=["val"])


def test_cli_sample_refuses_token_sampling_options_for_diffusion(pipeline_folder, capsys):
    assert main(["sample", "a red star", "--model", str(pipeline_folder), "--top-k", "5"]) == 2
    assert "--top-k: only for discrete-VAE pipelines" in capsys.readouterr().err


def test_unknown_scheduler_is_named(pipeline_folder):
    with pytest.raises(ConfigError, match="unknown scheduler 'fast'"):
        TextToImagePipeline.from_pretrained(pipeline_folder, scheduler="fast")


def test_ldm_needs_a_trained_autoencoder(tmp_path):
    with pytest.raises(CheckpointError, match="no autoencoder there"):
        train_ldm(_config(tmp_path), tmp_path / "missing")
    with pytest.raises(CheckpointError, match="shapes-dvae/vae: a checkpoint of DiscreteVAE, not of AutoencoderKL"):
        train_ldm(_config(tmp_path), SHAPES_DVAE / "vae")


def test_gradient_checkpointing_trains_the_same_model(tmp_path, autoencoder, monkeypatch):
    import torch.utils.checkpoint

    recomputed = []
    checkpoint = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(*args, **kwargs):
        recomputed.append(True)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting_checkpoint)
    options = dict(data="shapes:val", image_size=16, text_encoder="minilm", max_length=16, **TINY_UNET)
    plain = train_ldm(_config(tmp_path / "plain", max_steps=2), autoencoder, **options)
    assert not recomputed
    checkpointed = train_ldm(_config(tmp_path / "ckpt", max_steps=2), autoencoder, gradient_checkpointing=True, **options)
    assert recomputed  # the UNet's blocks did run under torch.utils.checkpoint
    assert checkpointed.losses == pytest.approx(plain.losses, rel=1e-5)


def test_xformers_says_why_it_is_unavailable(tmp_path, autoencoder, capsys):
    if torch.cuda.is_available():
        pytest.skip("this checks the message on machines without CUDA")
    arguments = ["train", "ldm", "--autoencoder", str(autoencoder), "--output-dir", str(tmp_path), "--xformers"]
    assert main(arguments) == 2
    assert "--xformers needs a CUDA GPU" in capsys.readouterr().err


def _user_data(tmp_path, form: str):
    """Sixteen Shapes images as one of the user-data forms; returns what `data=` takes."""
    from mmgen.data.shapes import export_shapes

    folder = export_shapes(tmp_path / "metadata", split="val", n=16, size=16, progress=False)
    if form == "metadata.jsonl":
        return str(folder)
    if form == "pathlib.Path":
        return Path(folder)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    if form == "caption pairs":
        pairs = tmp_path / "pairs"
        pairs.mkdir()
        for row in rows:
            Image.open(folder / row["file_name"]).save(pairs / row["file_name"])
            (pairs / row["file_name"]).with_suffix(".txt").write_text(row["text"] + "\n")
        return str(pairs)
    datasets = pytest.importorskip("datasets")
    hf = datasets.Dataset.from_dict({
        "image": [Image.open(folder / row["file_name"]) for row in rows], "text": [row["text"] for row in rows],
    })
    if form == "HF dataset object":
        return hf
    hf.save_to_disk(tmp_path / "hf")
    return str(tmp_path / "hf")


@pytest.mark.parametrize("form", ["metadata.jsonl", "pathlib.Path", "caption pairs", "saved HF dataset", "HF dataset object"])
def test_both_stages_train_on_user_data(tmp_path, form):
    data = _user_data(tmp_path, form)
    autoencoder = train_autoencoder(
        _config(tmp_path / "ae", max_steps=2, batch_size=4), data=data, image_size=16, **TINY_AUTOENCODER
    ).last_checkpoint / "model"
    result = train_ldm(
        _config(tmp_path / "ldm", max_steps=2, batch_size=4), autoencoder, data=data, image_size=16,
        text_encoder="clip", max_length=24, text_hidden_size=32, text_layers=1, **TINY_UNET,
    )
    assert result.step == 2 and np.isfinite(result.losses).all()
    pipe = TextToImagePipeline.from_pretrained(result.last_checkpoint / "model")
    pipe.set_progress_bar_config(disable=True)
    assert pipe(["a red star"], num_inference_steps=2, output_type="pt").images.shape == (1, 3, 16, 16)


def test_shipped_checkpoint_draws_what_the_prompts_say():
    from mmgen.eval.judge import judge_accuracy, load_judge

    samples = [ShapesDataset("test", n=16).sample(i) for i in range(16)]
    pipe = TextToImagePipeline.from_pretrained()  # checkpoints/shapes-ldm
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        [s.caption for s in samples], num_inference_steps=20, guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0), output_type="pt",
    ).images
    attributes = {name: [getattr(s, name) for s in samples] for name in ("shape", "color", "size", "position")}
    assert judge_accuracy(load_judge(), images * 2 - 1, attributes)["all"] >= 0.8


def test_shipped_emoji_ldm_loads_in_diffusers_and_colours_hearts_as_named():
    pipe = StableDiffusionPipeline.from_pretrained(CHECKPOINTS_DIR / "emoji-ldm", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    pairs = 8  # each pair shares its noise: a model deaf to colour words draws the two alike
    images = pipe(
        ["blue heart", "red heart"] * pairs, num_inference_steps=20, guidance_scale=3.0,
        generator=[torch.Generator().manual_seed(i // 2) for i in range(2 * pairs)], output_type="pt",
    ).images
    blueness = (images[:, 2] - images[:, 0]).mean(dim=(1, 2))  # blue minus red channel, per image
    assert int((blueness[0::2] > blueness[1::2] + 0.3).sum()) >= 6


def test_autoencoder_fine_tuning_starts_from_the_pipelines_autoencoder(tmp_path, pipeline_folder):
    result = train_autoencoder(_config(tmp_path, max_steps=1, learning_rate=1e-5), data="shapes:val",
                               pretrained=pipeline_folder)
    base = AutoencoderKL.from_pretrained(pipeline_folder / "vae").state_dict()
    tuned = AutoencoderKL.from_pretrained(result.last_checkpoint / "model").state_dict()
    assert max(float((tuned[name] - value).abs().max()) for name, value in base.items()) < 1e-3


def test_pretrained_fine_tuning_starts_from_the_given_unet(tmp_path, pipeline_folder):
    from mmgen.diffusion.training import add_lora_adapters, pretrained_ldm_parts

    base = TextToImagePipeline.from_pretrained(pipeline_folder).unet
    _, _, unet, _ = pretrained_ldm_parts(pipeline_folder)
    latents, states = torch.randn(2, 4, 8, 8), torch.randn(2, 16, 384)
    with torch.no_grad():
        expected = base(latents, 10, states).sample
        assert torch.equal(unet(latents, 10, states).sample, expected)
        add_lora_adapters(unet, rank=4)  # zero-initialised up-projections: the adapted UNet is the base at step 0
        assert torch.equal(unet(latents, 10, states).sample, expected)
    assert all(not p.requires_grad for name, p in unet.named_parameters() if "lora" not in name)

    result = train_ldm(_config(tmp_path, max_steps=1, learning_rate=1e-4), pretrained=pipeline_folder, data="shapes:val")
    tuned = TextToImagePipeline.from_pretrained(result.last_checkpoint / "model").unet.state_dict()
    fresh = build_unet(cross_attention_dim=384, **TINY_UNET).state_dict()
    distance = {name: (tuned[name] - value).abs().max() for name, value in base.state_dict().items()}
    assert max(distance.values()) < 1e-2  # one small step away from the base, not a new init
    assert max((tuned[name] - fresh[name]).abs().max() for name in distance) > 0.1


def test_fine_tuning_can_train_the_pretrained_text_encoder(tmp_path, pipeline_folder):
    base = TextToImagePipeline.from_pretrained(pipeline_folder).text_encoder.state_dict()
    result = train_ldm(_config(tmp_path, max_steps=1, learning_rate=1e-4), pretrained=pipeline_folder,
                       data="shapes:val", train_text_encoder=True)
    folder = result.last_checkpoint / "model"
    tuned = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, use_safetensors=True).text_encoder
    distance = max(  # diffusers gives a BertModel an unused, random pooler: not compared
        (tuned.state_dict()[name] - value).abs().max() for name, value in base.items() if not name.startswith("pooler")
    )
    assert 0 < distance < 1e-2  # trained one step from the base's weights
    with pytest.raises(ConfigError, match="--train-text-encoder"):
        train_ldm(_config(tmp_path / "lora"), pretrained=pipeline_folder, lora_rank=4, train_text_encoder=True)


def test_a_lora_run_resumes_only_with_its_rank(tmp_path, pipeline_folder):
    options = dict(pretrained=pipeline_folder, data="shapes:val")
    train_ldm(_config(tmp_path, max_steps=2), lora_rank=4, **options)
    with pytest.raises(ConfigError) as error:
        train_ldm(_config(tmp_path, max_steps=4, resume="latest"), lora_rank=8, **options)
    assert "trained with LoRA adapters of rank 4 on the unet, this run with LoRA adapters of rank 8 on the unet;" in str(error.value)
    assert "\n" not in str(error.value)
    assert train_ldm(_config(tmp_path, max_steps=4, resume="latest"), lora_rank=4, **options).step == 4


def test_preserved_rows_train_the_adapters_towards_the_base_unets_own_predictions(pipeline_folder):
    from mmgen.diffusion.training import add_lora_adapters, pretrained_ldm_parts

    torch.manual_seed(0)
    _, encoder, unet, scheduler = pretrained_ldm_parts(pipeline_folder)
    add_lora_adapters(unet, rank=4)
    objective = LatentDiffusionObjective(unet, scheduler, encoder, scaling_factor=1.0, caption_dropout=0.0)
    batch = {"latent_mean": torch.randn(4, 4, 8, 8), "latent_std": torch.full((4, 4, 8, 8), 0.1),
             "text": ["a red star", "a blue circle", "a small green square", "a large yellow triangle"]}
    # Zero-initialised adapters draw what the base draws: nothing to learn on preserved rows.
    assert objective({**batch, "preserved": torch.ones(4, dtype=torch.bool)})["loss"].item() == 0.0
    assert objective({**batch, "preserved": torch.tensor([True, True, False, False])})["loss"].item() > 0.0

    probe = (torch.randn(4, 4, 8, 8), torch.tensor([100, 300, 600, 900]), encoder(batch["text"]).hidden_states)

    def distance_from_base() -> float:
        with torch.no_grad():
            return float((unet(*probe).sample - objective.base_prediction(*probe)).pow(2).mean())

    lora = [p for name, p in unet.named_parameters() if "lora_B" in name]
    with torch.no_grad():
        for p in lora:
            p.normal_(std=0.05)
    before = distance_from_base()
    optimizer = torch.optim.Adam(lora, lr=3e-3)
    for _ in range(25):
        optimizer.zero_grad()
        objective({**batch, "preserved": torch.ones(4, dtype=torch.bool)})["loss"].backward()
        optimizer.step()
    assert before > 0 and distance_from_base() < 0.3 * before
    assert all(p.requires_grad for p in lora)  # switched back on after each base prediction


def test_preservation_data_trains_beside_the_data_and_needs_lora(tmp_path, pipeline_folder, capsys):
    from mmgen.data.shapes import export_shapes

    data = export_shapes(tmp_path / "new", split="val", n=8, size=16, progress=False)
    kept = export_shapes(tmp_path / "kept", split="test", n=8, size=16, progress=False)
    run = tmp_path / "run"
    assert main(["train", "ldm", "--pretrained", str(pipeline_folder), "--lora-rank", "4", "--data", str(data),
                 "--preservation-data", str(kept), "--output-dir", str(run), "--max-steps", "2", "--batch-size", "16",
                 "--checkpoint-every", "2", "--report-to", "none"]) == 0
    assert (run / "checkpoints" / "checkpoint-0000002" / "model" / "pytorch_lora_weights.safetensors").is_file()
    assert len(list((run / "cache").glob("latents-*.safetensors"))) == 2  # each source encoded (and cached) once
    saved = json.loads((run / "checkpoints" / "checkpoint-0000002" / "trainer_state.json").read_text())
    assert saved["data_order"]["preserved_rows"] == 8 and saved["data_order"]["dataset_size"] == 16
    assert main(["train", "ldm", "--pretrained", str(pipeline_folder), "--data", str(data), "--preservation-data",
                 str(kept), "--output-dir", str(tmp_path / "full"), "--max-steps", "1"]) == 2
    assert "add --lora-rank" in capsys.readouterr().err


def test_lora_weights_load_in_diffusers_and_draw_what_mmgen_sample_draws(tmp_path, pipeline_folder, capsys):
    from mmgen.eval.evaluate import load_text_to_image_pipeline

    result = train_ldm(
        _config(tmp_path, max_steps=2, learning_rate=1e-2, validate_every=2), pretrained=pipeline_folder,
        data="shapes:val", lora_rank=4, prompts=["a red heart", "a blue star"],
    )
    lora = result.last_checkpoint / "model"
    assert [p.name for p in lora.iterdir()] == ["pytorch_lora_weights.safetensors"]
    assert (lora / "pytorch_lora_weights.safetensors").stat().st_size < 2_000_000

    def draw(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe(["a red star"], num_inference_steps=3, guidance_scale=3.0, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    diffusers_pipe = StableDiffusionPipeline.from_pretrained(pipeline_folder, safety_checker=None, use_safetensors=True)
    base = draw(diffusers_pipe)
    diffusers_pipe.load_lora_weights(lora)
    adapted = draw(diffusers_pipe)
    assert np.abs(adapted - base).max() > 1e-3
    assert np.array_equal(draw(load_text_to_image_pipeline(pipeline_folder, lora=lora)), adapted)
    assert np.allclose(draw(load_text_to_image_pipeline(pipeline_folder, lora=lora, lora_weight=0.0)), base, atol=1e-5)
    halfway = draw(load_text_to_image_pipeline(pipeline_folder, lora=lora, lora_weight=0.5))
    assert np.abs(halfway - base).max() > 1e-4 and np.abs(halfway - adapted).max() > 1e-4

    out = tmp_path / "lora.png"
    assert main(["sample", "a red star", "--model", str(pipeline_folder), "--lora", str(lora), "--steps", "3",
                 "-n", "1", "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out))[2:18, 2:18], (adapted[0] * 255).round().astype(np.uint8))
    assert main(["sample", "a red star", "--model", str(pipeline_folder), "--lora", str(lora), "--lora-weight", "0",
                 "--steps", "3", "-n", "1", "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out))[2:18, 2:18], (base[0] * 255).round().astype(np.uint8))
    assert main(["sample", "a red star", "--model", str(pipeline_folder), "--lora-weight", "0.5"]) == 2
    assert "give them with --lora PATH" in capsys.readouterr().err

    diversity = {}  # of 16 draws of one prompt, read by the Shapes judge
    for name, options in (
        ("base", []), ("weight 0", ["--lora", str(lora), "--lora-weight", "0"]), ("adapted", ["--lora", str(lora)])
    ):
        report = tmp_path / "report.json"
        assert main(["eval", "--task", "text-to-image", "--model", str(pipeline_folder), *options, "--n", "2",
                     "--steps", "3", "--out", str(report)]) == 0
        measured = json.loads(report.read_text())
        assert measured.get("lora_weight") == (0.0 if "0" in options else 1.0 if options else None)
        diversity[name] = measured["results"]["diversity"]
    assert diversity["weight 0"] == pytest.approx(diversity["base"], rel=1e-5)  # the adapters move it by about 6e-4
    assert diversity["adapted"] != pytest.approx(diversity["base"], rel=1e-4)
    assert main(["eval", "--task", "text-to-image", "--model", str(pipeline_folder), "--lora-weight", "0.5"]) == 2
    assert "give them with --lora PATH" in capsys.readouterr().err
    assert main(["sample", "a red star", "--model", str(pipeline_folder), "--lora", str(tmp_path)]) == 2
    assert "no LoRA weights there" in capsys.readouterr().err
    assert main(["sample", "a red star", "--lora", str(lora), "--out", str(out)]) == 2  # onto checkpoints/shapes-ldm
    error = capsys.readouterr().err
    assert "another pipeline" in error and len(error.strip().splitlines()) == 1


def test_validation_grids_carry_their_prompts(tmp_path, autoencoder):
    from mmgen.data.transforms import captioned_grid

    prompts = ["a red heart", "a small blue star at the top"]
    train_ldm(_config(tmp_path, max_steps=2, validate_every=2), autoencoder, data="shapes:val", image_size=16,
              text_encoder="minilm", max_length=16, prompts=prompts, **TINY_UNET)
    grid = Image.open(tmp_path / "samples" / "step-0000002.png")
    blank = captioned_grid([Image.new("RGB", (16, 16))] * 2, ["", ""], columns=2)
    assert grid.size == blank.size
    # The strip under each image holds its prompt: dark text pixels where the blank grid is white.
    strips = np.asarray(grid)[2 + 32 : 2 + 58], np.asarray(blank)[2 + 32 : 2 + 58]
    assert (strips[0] < 128).sum() > 100 and (strips[1] < 128).sum() == 0
    with pytest.raises(ConfigError, match="--lora-rank adapts a trained pipeline"):
        train_ldm(_config(tmp_path / "x"), autoencoder, data="shapes:val", lora_rank=4)
