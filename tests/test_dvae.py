import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen.data import ShapesDataset
from mmgen.dvae import DiscreteVAE, DiscreteVAEPrior
from mmgen.dvae.objective import DiscreteVAEObjective, codebook_usage, cosine_anneal, linear_ramp
from mmgen.training import Trainer, TrainingConfig

TINY_DVAE = dict(image_size=16, num_tokens=32, codebook_dim=16, hidden_channels=16, num_layers=2)


def test_temperature_follows_a_half_cosine_from_start_to_end():
    assert cosine_anneal(0, 100, 1.0, 1 / 16) == pytest.approx(1.0)
    assert cosine_anneal(50, 100, 1.0, 1 / 16) == pytest.approx((1.0 + 1 / 16) / 2)
    assert cosine_anneal(100, 100, 1.0, 1 / 16) == pytest.approx(1 / 16)
    assert cosine_anneal(10_000, 100, 1.0, 1 / 16) == pytest.approx(1 / 16)  # stays at the end
    values = [cosine_anneal(step, 100, 1.0, 1 / 16) for step in range(101)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_kl_weight_ramps_linearly_then_holds():
    assert [linear_ramp(step, 10, 6.6) for step in (0, 5, 10, 20)] == pytest.approx([0.0, 3.3, 6.6, 6.6])
    assert linear_ramp(0, 0, 6.6) == 6.6  # no ramp


def test_kl_weight_holds_through_the_anneal_then_decays_to_its_end():
    objective = DiscreteVAEObjective(
        DiscreteVAE(**TINY_DVAE), temperature_steps=10, kl_weight=1.0, kl_weight_end=0.01, kl_decay_steps=10
    )
    weights = []
    for step in (0, 5, 10, 15, 20, 100):
        objective.set_step(step)
        weights.append(objective.current_kl_weight)
    assert weights == pytest.approx([1.0, 1.0, 1.0, 0.505, 0.01, 0.01])
    objective.set_step(20)
    assert objective.temperature == pytest.approx(1 / 16)


def test_tokens_round_trip_through_the_codebook():
    vae = DiscreteVAE(**TINY_DVAE).eval()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    tokens = vae.tokenize(images)
    assert tokens.shape == (3, 4 * 4) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 32
    # Decoding tokens equals decoding their hard one-hot codes.
    one_hot = torch.nn.functional.one_hot(tokens.view(3, 4, 4), 32).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(vae.decode_tokens(tokens), vae.decode_codes(one_hot))
    assert vae.decode_tokens(tokens).shape == (3, 3, 16, 16)


def test_low_temperature_codes_approach_the_argmax():
    torch.manual_seed(1)  # weights and images: not whatever state earlier tests left (near-ties flip at 1e-4)
    vae = DiscreteVAE(**TINY_DVAE).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    hard = vae(images, temperature=1.0, straight_through=True).reconstruction
    torch.manual_seed(0)
    soft_cold = vae(images, temperature=1e-4).reconstruction
    torch.testing.assert_close(soft_cold, hard, atol=1e-4, rtol=1e-4)  # same Gumbel noise, same argmax
    torch.manual_seed(0)
    soft_warm = vae(images, temperature=1.0).reconstruction
    assert not torch.allclose(soft_warm, hard, atol=1e-3)


def test_kl_to_uniform_is_zero_for_uniform_logits_and_log_k_for_one_hot():
    vae = DiscreteVAE(**TINY_DVAE)
    objective = DiscreteVAEObjective(vae, kl_weight=1.0, kl_ramp_steps=0)
    batch = {"pixel_values": torch.zeros(2, 3, 16, 16)}
    with torch.no_grad():
        for module in vae.encoder[-1:]:
            module.weight.zero_()
            module.bias.zero_()
        assert objective(batch)["kl"].item() == pytest.approx(0.0, abs=1e-6)
        vae.encoder[-1].bias[5] = 1e4  # every token certain of code 5
        tokens_per_element = 16 / (3 * 16 * 16)
        assert objective(batch)["kl"].item() == pytest.approx(math.log(32) * tokens_per_element, rel=1e-4)


def test_codebook_usage_counts_codes():
    logits = torch.full((1, 8, 2, 2), -10.0)
    for position, code in enumerate((0, 1, 2, 3)):
        logits[0, code, position // 2, position % 2] = 10.0
    perplexity, used = codebook_usage(logits)
    assert used.item() == 4 and perplexity.item() == pytest.approx(4.0)
    perplexity, used = codebook_usage(torch.zeros(1, 8, 2, 2).index_fill_(1, torch.tensor([3]), 1.0))
    assert used.item() == 1 and perplexity.item() == pytest.approx(1.0)


def test_the_loop_drives_the_schedules_and_the_losses_fall(tmp_path):
    torch.manual_seed(0)
    objective = DiscreteVAEObjective(
        DiscreteVAE(**TINY_DVAE), temperature_steps=40, kl_weight=0.01, kl_ramp_steps=20
    )
    config = TrainingConfig(
        output_dir=str(tmp_path), max_steps=40, batch_size=16, learning_rate=3e-3,
        checkpoint_every=40, report_to="none",
    )
    result = Trainer(config, objective, ShapesDataset("val", n=256, size=16)).train()
    assert objective.temperature == pytest.approx(cosine_anneal(39, 40, 1.0, 1 / 16))
    assert objective.current_kl_weight == pytest.approx(0.01)
    assert sum(result.losses[-5:]) < 0.5 * sum(result.losses[:5])


def test_save_and_load_give_the_same_tokens_and_images(tmp_path):
    vae = DiscreteVAE(**TINY_DVAE).eval()
    vae.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DiscreteVAE.from_pretrained(tmp_path).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    tokens = vae.tokenize(images)
    assert torch.equal(loaded.tokenize(images), tokens)
    torch.testing.assert_close(loaded.decode_tokens(tokens), vae.decode_tokens(tokens), atol=0, rtol=0)


def test_image_size_must_divide_into_the_token_grid():
    with pytest.raises(ValueError, match="divisible"):
        DiscreteVAE(image_size=20, num_layers=3)


TINY_PRIOR = dict(num_image_tokens=32, image_seq_len=16, text_hidden_size=8, text_seq_len=4, hidden_size=32,
                  num_layers=2, num_heads=2)


def _prior() -> DiscreteVAEPrior:
    torch.manual_seed(0)
    return DiscreteVAEPrior(**TINY_PRIOR).eval()


def test_prior_logits_depend_only_on_earlier_tokens():
    prior = _prior()
    text = torch.randn(2, 4, 8)
    tokens = torch.randint(0, 32, (2, 16))
    logits = prior(text, tokens)
    assert logits.shape == (2, 16, 32)
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 32
    other = prior(text, changed)
    torch.testing.assert_close(other[:, :6], logits[:, :6])  # position i predicts token i from tokens < i
    assert not torch.allclose(other[:, 6:], logits[:, 6:])
    assert not torch.allclose(prior(torch.randn(2, 4, 8), tokens), logits)  # the caption matters


@pytest.mark.parametrize("options", [
    {}, {"guidance_scale": 3.0}, {"temperature": 0.7, "top_k": 5}, {"top_p": 0.8, "guidance_scale": 2.0},
])
def test_kv_cache_sampling_equals_full_rerun(options):
    prior = _prior()
    text, empty = torch.randn(3, 4, 8), torch.randn(1, 4, 8)
    cached = prior.generate(text, empty, generator=torch.Generator().manual_seed(0), use_cache=True, **options)
    rerun = prior.generate(text, empty, generator=torch.Generator().manual_seed(0), use_cache=False, **options)
    assert cached.shape == (3, 16) and torch.equal(cached, rerun)


def test_guidance_and_top_k_change_samples():
    prior = _prior()
    with torch.no_grad():
        prior.head.weight.mul_(100)  # freshly initialised logits are nearly flat
    text, empty = torch.randn(4, 4, 8), torch.randn(1, 4, 8)

    def sample(**options):
        return prior.generate(text, empty, generator=torch.Generator().manual_seed(0), **options)

    plain = sample()
    assert torch.equal(sample(), plain)  # seeded
    assert not torch.equal(sample(guidance_scale=4.0), plain)
    greedy = sample(top_k=1)
    assert torch.equal(greedy, sample(top_k=1, temperature=0.5))  # top-1 ignores the draw


def test_prior_saves_and_loads_to_the_same_samples(tmp_path):
    prior = _prior()
    prior.save_pretrained(tmp_path)
    loaded = DiscreteVAEPrior.from_pretrained(tmp_path).eval()
    text = torch.randn(2, 4, 8)
    assert torch.equal(
        loaded.generate(text, generator=torch.Generator().manual_seed(1)),
        prior.generate(text, generator=torch.Generator().manual_seed(1)),
    )


def test_prior_names_the_text_encoder_mismatch():
    with pytest.raises(ValueError, match="text encoder it was trained with"):
        _prior()(torch.randn(1, 6, 8), torch.zeros(1, 16, dtype=torch.long))


def test_prior_learns_tokens_from_captions():
    torch.manual_seed(0)
    prior = DiscreteVAEPrior(**TINY_PRIOR)
    text = torch.randn(8, 4, 8)
    tokens = torch.randint(0, 32, (8, 16))
    optimizer = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(prior(text, tokens).transpose(1, 2), tokens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > math.log(32) - 0.5 and losses[-1] < 0.5 * losses[0]
    prior.eval()
    assert (prior.generate(text, top_k=1) == tokens).float().mean() > 0.9


def test_cli_trains_a_dvae_that_reloads(tmp_path, capsys):
    from mmgen.cli import main

    out = tmp_path / "run"
    assert main([
        "train", "dvae", "--data", "shapes:val", "--image-size", "16", "--num-tokens", "32", "--codebook-dim", "16",
        "--hidden-channels", "16", "--num-layers", "2", "--max-steps", "2", "--batch-size", "4",
        "--checkpoint-every", "2", "--validate-every", "2", "--output-dir", str(out), "--report-to", "none",
    ]) == 0
    assert "discrete VAE saved" in capsys.readouterr().out
    vae = DiscreteVAE.from_pretrained(out / "checkpoints" / "checkpoint-0000002" / "model")
    assert vae.config.num_tokens == 32 and vae.token_grid == 4
    assert (out / "samples" / "step-0000002.png").is_file()


@pytest.mark.slow
def test_a_recipe_launched_on_two_cpu_processes_trains_as_one_run(tmp_path):
    """The recipe asks for its process state before the Trainer's Accelerator exists: that
    state must already be the launch's two processes, not two separate 1-process runs
    racing for one output folder. Messages are said once."""
    import subprocess
    import sys

    out = tmp_path / "run"
    completed = subprocess.run([
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "mmgen", "train", "dvae", "--data", "shapes:val",
        "--image-size", "16", "--num-tokens", "32", "--codebook-dim", "16", "--hidden-channels", "16", "--num-layers", "2",
        "--max-steps", "2", "--batch-size", "4", "--checkpoint-every", "2",
        "--validate-every", "2", "--output-dir", str(out), "--report-to", "none",
    ], capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # CPU processes
    assert completed.returncode == 0, completed.stderr[-3000:]
    state = json.loads((out / "checkpoints" / "checkpoint-0000002" / "trainer_state.json").read_text())
    assert state["data_order"]["num_processes"] == 2
    # Said once, by the first process: the result and the warning that the anneal is cut short.
    assert completed.stdout.count("discrete VAE saved") == 1
    assert completed.stderr.count("fewer than the 4000-step temperature anneal") == 1


@pytest.fixture(scope="module")
def dvae_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dvae")
    objective_config = TrainingConfig(
        output_dir=str(folder), max_steps=2, batch_size=8, checkpoint_every=2, report_to="none"
    )
    from mmgen.dvae.training import train_dvae

    result = train_dvae(objective_config, data="shapes:val", image_size=16, num_tokens=32, codebook_dim=16,
                        hidden_channels=16, num_layers=2)
    return result.last_checkpoint / "model"


def _train_prior(dvae_folder: Path, run: Path, text_encoder: str) -> None:
    from mmgen.cli import main

    assert main([
        "train", "dvae-prior", "--dvae", str(dvae_folder), "--data", "shapes:val", "--image-size", "16",
        "--text-encoder", text_encoder, "--max-length", "24", "--text-hidden-size", "32", "--text-layers", "1",
        "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--max-steps", "4", "--batch-size", "8",
        "--checkpoint-every", "2", "--validate-every", "4", "--output-dir", str(run), "--report-to", "none",
    ]) == 0


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory, dvae_folder):
    """A prior trained from the CLI with a new (trainable) CLIP text encoder."""
    folder = tmp_path_factory.mktemp("prior")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMGEN_CACHE", str(folder / "cache"))
        _train_prior(dvae_folder, folder / "run", "clip")
    return folder / "run"


def test_prior_checkpoints_are_pipelines_that_sample_from_the_cli(tmp_path, prior_run, capsys):
    from PIL import Image

    from mmgen.cli import main
    from mmgen.dvae import DiscreteVAEPipeline

    run = prior_run
    for step in (2, 4):
        folder = run / "checkpoints" / f"checkpoint-{step:07d}" / "model"
        assert DiscreteVAEPipeline.from_pretrained(folder).prior.config.image_seq_len == 16
    pipeline = run / "checkpoints" / "checkpoint-0000004" / "model"
    assert (run / "samples" / "step-0000004.png").is_file()

    out = tmp_path / "grid.png"
    capsys.readouterr()
    assert main(["sample", "a red star", "a blue circle", "-n", "3", "--model", str(pipeline), "--out", str(out)]) == 0
    assert "2 prompt(s) x 3 images" in capsys.readouterr().out
    assert Image.open(out).size == (3 * 16 + 4 * 2, 2 * 16 + 3 * 2)
    again = tmp_path / "again.png"
    main(["sample", "a red star", "a blue circle", "-n", "3", "--model", str(pipeline), "--out", str(again)])
    assert Image.open(again).tobytes() == Image.open(out).tobytes()  # seeded
    guided, steered = tmp_path / "guided.png", tmp_path / "steered.png"
    for path, negative in ((guided, []), (steered, ["--negative-prompt", "a green square"])):
        main(["sample", "a red star", "-n", "3", "--model", str(pipeline), "--guidance-scale", "3", "--out", str(path),
              *negative])
    assert Image.open(steered).tobytes() != Image.open(guided).tobytes()
    greedy = tmp_path / "greedy.png"
    main(["sample", "a red star", "-n", "2", "--top-k", "1", "--model", str(pipeline), "--out", str(greedy)])
    tiles = np.asarray(Image.open(greedy))
    assert np.array_equal(tiles[2:18, 2:18], tiles[2:18, 20:36])  # top-1: both samples identical
    capsys.readouterr()
    assert main(["sample", "a red star", "--steps", "3", "--scheduler", "ddim", "--model", str(pipeline), "--out",
                 str(tmp_path / "ignored.png")]) == 2
    assert "--steps, --scheduler: only for diffusion models" in capsys.readouterr().err

    report = tmp_path / "eval.json"
    assert main(["eval", "--task", "text-to-image", "--model", str(pipeline), "--n", "2", "--out", str(report)]) == 0
    settings = {k: v for k, v in json.loads(report.read_text()).items() if k not in ("model", "results")}
    assert settings == {"task": "text-to-image", "n": 2, "seed": 0, "guidance_scale": 1.5}  # no steps or scheduler


def test_bad_call_arguments_are_named_before_sampling(prior_run):
    from mmgen.dvae import DiscreteVAEPipeline
    from mmgen.errors import ConfigError

    pipe = DiscreteVAEPipeline.from_pretrained(prior_run / "checkpoints" / "checkpoint-0000004" / "model")
    for options, message in (
        ({"prompt": 5}, "prompt must be a string or a list of strings, got int"),
        ({"prompt": "a red star", "num_images_per_prompt": 0}, "num_images_per_prompt must be a whole number"),
        ({"prompt": "a red star", "generator": 0}, "generator must be a torch.Generator"),
        ({"prompt": "a red star", "temperature": 0}, "temperature must be a number above 0"),
        ({"prompt": "a red star", "top_k": 0}, "top_k must be None or a whole number of at least 1"),
        ({"prompt": "a red star", "top_p": 1.5}, r"top_p must be None or a number in \(0, 1\]"),
        ({"prompt": "a red star", "height": 20}, "height 20: this pipeline draws 16 x 16 images only"),
        ({"prompt": ["a", "b"], "negative_prompt": ["c", "d", "e"]}, "negative_prompt has 3 prompts for 2 prompts"),
    ):
        with pytest.raises(ConfigError, match=message):
            pipe(**options)


def test_the_pipeline_is_called_as_diffusers_pipelines_are(prior_run):
    from mmgen.dvae import DiscreteVAEPipeline

    pipe = DiscreteVAEPipeline.from_pretrained(prior_run / "checkpoints" / "checkpoint-0000004" / "model")
    size = pipe.vae.config.image_size

    def draw(**options):
        return pipe(["a red star", "a blue moon"], generator=torch.Generator().manual_seed(0), **options)

    as_tensors = draw(output_type="pt").images
    (as_arrays,) = draw(output_type="np", return_dict=False, height=size, width=size)
    assert as_arrays.shape == (2, size, size, 3) and as_arrays.dtype == np.float32
    np.testing.assert_allclose(as_arrays, as_tensors.permute(0, 2, 3, 1).numpy())
    empty_negative = draw(output_type="pt", guidance_scale=3.0, negative_prompt="").images
    assert torch.equal(empty_negative, draw(output_type="pt", guidance_scale=3.0).images)
    assert not torch.equal(empty_negative, draw(output_type="pt", guidance_scale=3.0, negative_prompt="a red star").images)


def test_prior_shares_a_frozen_text_encoder_from_another_pipeline(tmp_path, dvae_folder, prior_run, monkeypatch):
    """`--text-encoder PIPELINE` reads that pipeline's encoder, frozen (through its cache),
    and the new pipeline ships the very same weights."""
    from mmgen.dvae import DiscreteVAEPipeline

    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    source = prior_run / "checkpoints" / "checkpoint-0000004" / "model"
    _train_prior(dvae_folder, tmp_path / "shared", str(source))
    shared = DiscreteVAEPipeline.from_pretrained(tmp_path / "shared" / "checkpoints" / "checkpoint-0000004" / "model")
    original = DiscreteVAEPipeline.from_pretrained(source)
    for name, weight in original.text_encoder.state_dict().items():
        assert torch.equal(shared.text_encoder.state_dict()[name], weight), name
    assert shared.tokenizer("a red star")["input_ids"] == original.tokenizer("a red star")["input_ids"]


def test_dvae_pipeline_refuses_other_checkpoints(dvae_folder):
    from mmgen.dvae import DiscreteVAEPipeline
    from mmgen.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no model_index.json"):
        DiscreteVAEPipeline.from_pretrained(dvae_folder)


def test_the_prior_names_a_wrong_checkpoint_and_a_wrong_image_size(tmp_path, dvae_folder, capsys):
    from mmgen.checkpoints import SHAPES_LDM
    from mmgen.cli import main

    common = ["--data", "shapes:val", "--output-dir", str(tmp_path), "--report-to", "none"]
    assert main(["train", "dvae-prior", "--dvae", str(SHAPES_LDM / "vae"), *common]) == 2
    assert "shapes-ldm/vae: a checkpoint of AutoencoderKL, not of DiscreteVAE" in capsys.readouterr().err
    assert main(["train", "dvae-prior", "--dvae", str(dvae_folder), "--image-size", "64", *common]) == 2
    assert "--image-size 64: the prior's token grid is the discrete VAE's, of 16 px images" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_shipped_baseline_samples_on_the_gpu_with_a_cpu_generator():
    from mmgen.checkpoints import SHAPES_DVAE
    from mmgen.eval.evaluate import load_text_to_image_pipeline

    pipe = load_text_to_image_pipeline(SHAPES_DVAE)
    assert pipe.device.type == "cuda"
    images = pipe(["a red star", "a blue circle"], generator=torch.Generator().manual_seed(0)).images
    assert [image.size for image in images] == [(64, 64)] * 2


def test_shipped_baseline_draws_what_the_prompts_say_with_the_ldm_text_encoder():
    from mmgen.checkpoints import SHAPES_DVAE, SHAPES_LDM
    from mmgen.dvae import DiscreteVAEPipeline
    from mmgen.eval.judge import judge_accuracy, load_judge
    from mmgen.text.encoder import TextEncoder

    pipe = DiscreteVAEPipeline.from_pretrained(SHAPES_DVAE)
    shared = TextEncoder.from_pretrained(str(SHAPES_LDM))
    for name, weight in shared.model.state_dict().items():  # the very same encoder weights
        assert torch.equal(pipe.text_encoder.state_dict()[name], weight), name
    samples = [ShapesDataset("test", n=16).sample(i) for i in range(16)]
    assert pipe.config.guidance_scale == 1.5  # saved with the pipeline, the calls' default
    images = pipe([s.caption for s in samples], generator=torch.Generator().manual_seed(0), output_type="pt").images
    attributes = {name: [getattr(s, name) for s in samples] for name in ("shape", "color", "size", "position")}
    assert judge_accuracy(load_judge(), images * 2 - 1, attributes)["all"] >= 0.75


def test_validation_does_not_freeze_a_trained_text_encoder_and_resume_is_exact(tmp_path, dvae_folder, monkeypatch):
    """Sampling a validation grid wraps the prior's CLIP encoder, which trains with it: it must
    stay trainable, so that a run resumed after a validation trains as the straight one did."""
    from safetensors.torch import load_file

    from mmgen.dvae.training import train_dvae_prior

    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))

    def run(folder: Path, steps: int, resume: str | None = None):
        config = TrainingConfig(output_dir=str(folder), max_steps=steps, batch_size=8, checkpoint_every=2,
                                validate_every=2, report_to="none", resume=resume, learning_rate=1e-3)
        return train_dvae_prior(config, dvae=dvae_folder, data="shapes:val", text_encoder="clip", max_length=24,
                                text_hidden_size=32, text_layers=1, hidden_size=32, num_layers=1, num_heads=2)

    run(tmp_path / "straight", 6)
    run(tmp_path / "resumed", 2)
    run(tmp_path / "resumed", 6, resume="latest")
    for name in ("model.safetensors", "ema.safetensors"):
        straight = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-0000006" / name)
        resumed = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-0000006" / name)
        for key in straight:
            assert torch.equal(straight[key], resumed[key]), (name, key)
    last = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-0000006" / "model.safetensors")
    encoder = {k: v for k, v in last.items() if "text_encoder" in k}
    first = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-0000002" / "model.safetensors")
    assert encoder and any(not torch.equal(first[k], v) for k, v in encoder.items())  # it went on learning


def _largest_change(before: dict, after: dict) -> float:
    return max(float((after[name] - value).abs().max()) for name, value in before.items() if value.is_floating_point())


def test_fine_tuning_starts_from_the_saved_models_at_the_annealed_temperature(
    tmp_path, dvae_folder, prior_run
):
    from mmgen.dvae import DiscreteVAEPipeline
    from mmgen.dvae.training import train_dvae, train_dvae_prior

    def config(name):
        return TrainingConfig(output_dir=str(tmp_path / name), max_steps=1, batch_size=8, learning_rate=1e-5,
                              report_to="none")

    with pytest.warns(UserWarning, match="fewer than the 4000-step temperature anneal"):  # heated again, as asked
        train_dvae(config("reheated"), data="shapes:val", pretrained=dvae_folder, temperature_start=1.0)
    temperatures = []
    record = DiscreteVAEObjective.forward

    def recording(objective, batch):
        temperatures.append(objective.temperature)
        return record(objective, batch)

    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always")
        patch.setattr(DiscreteVAEObjective, "forward", recording)
        result = train_dvae(config("dvae"), data="shapes:val", pretrained=dvae_folder)
    assert not [w for w in caught if "temperature anneal" in str(w.message)]
    assert temperatures == [pytest.approx(1 / 16)]  # it stays at the annealed temperature
    tuned = DiscreteVAE.from_pretrained(result.last_checkpoint / "model").state_dict()
    assert _largest_change(DiscreteVAE.from_pretrained(dvae_folder).state_dict(), tuned) < 1e-3

    pipeline = prior_run / "checkpoints" / "checkpoint-0000004" / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
        result = train_dvae_prior(config("prior"), pretrained=pipeline, data="shapes:val")
    base = DiscreteVAEPipeline.from_pretrained(pipeline).prior.state_dict()
    assert _largest_change(base, DiscreteVAEPipeline.from_pretrained(result.last_checkpoint / "model").prior.state_dict()) < 1e-3
