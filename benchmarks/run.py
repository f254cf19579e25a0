"""Run mmgen's benchmarks side by side on this machine and record the results.

    python benchmarks/run.py                  # all benchmarks, 5 repeats
    python benchmarks/run.py --only judge-train --repeats 10
    python benchmarks/run.py --only mopoe-train --device cuda --multivae-python PYTHON

Writes benchmarks/results/<benchmark set>.json and, for CPU runs, rewrites the table in
benchmarks/README.md between its BEGIN/END markers (that table is this machine's). Each
model issue adds its rows to BENCHMARKS below.

`--keep-freed-memory` keeps freed memory for reuse as mmgen's training loop does on CPUs
(`keep_freed_memory`), and runs other libraries' races under the same setting through
glibc's environment variables; without it, both run with glibc's malloc defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from torch.nn import functional as F

from harness import count_flops, machine, matmul_peak_flops, sampling_row, training_row
from mmgen.data import ShapesDataset, collate_examples, open_dataset
from mmgen.eval.judge import JudgeObjective, ShapesJudge
from mmgen.training.cpu_memory import KEPT_BYTES, keep_freed_memory

HERE = Path(__file__).parent


# glibc's malloc reads these at start: the same setting as keep_freed_memory's, for other libraries' races.
KEPT_MEMORY_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(KEPT_BYTES), "MALLOC_TRIM_THRESHOLD_": str(KEPT_BYTES)}


def run_race(command: list[str], keep_memory: bool) -> str:
    """Run another library's race script (in its own environment), with freed memory kept
    as mmgen's side has it or not: its standard output, or an error that shows what it
    printed when it failed."""
    environment = {**os.environ, **(KEPT_MEMORY_ENVIRONMENT if keep_memory else {})}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    if finished.returncode:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{finished.stderr[-3000:]}")
    return finished.stdout


def judge_train(peak: float, args: argparse.Namespace) -> dict:
    batch_size = 64
    dataset = ShapesDataset("train", n=batch_size)
    batch = collate_examples([dataset[i] for i in range(batch_size)])
    objective = JudgeObjective(ShapesJudge())
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)

    def step() -> None:
        objective(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    row = training_row("judge-train (64 px, Shapes judge)", step, batch_size, peak, args.repeats)
    row["parameters"] = sum(p.numel() for p in objective.parameters())
    return row


def _small_unet() -> UNet2DConditionModel:
    """About 3M parameters on 8 x 8 x 4 latents, cross-attending to 384-d text states."""
    return UNet2DConditionModel(
        sample_size=8, block_out_channels=(64, 128), layers_per_block=1, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=384, attention_head_dim=8,
    )


def unet_train(peak: float, args: argparse.Namespace) -> dict:
    batch_size, tokens = 64, 16
    unet = _small_unet()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    latents, text = torch.randn(batch_size, 4, 8, 8), torch.randn(batch_size, tokens, 384)
    timesteps = torch.randint(0, 1000, (batch_size,))

    def step() -> None:
        F.mse_loss(unet(latents, timesteps, text).sample, latents).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    row = training_row("unet-train (3M UNet, 8x8x4 latents, epsilon loss)", step, batch_size, peak, args.repeats)
    row["parameters"] = sum(p.numel() for p in unet.parameters())
    return row


def unet_sample(peak: float, args: argparse.Namespace) -> dict:
    batch_size, tokens, steps = 16, 16, 20
    unet = _small_unet().eval()
    scheduler = DPMSolverMultistepScheduler()
    text = torch.randn(2 * batch_size, tokens, 384)  # conditional + unconditional (guidance)

    @torch.no_grad()
    def sample() -> None:
        scheduler.set_timesteps(steps)
        latents = torch.randn(batch_size, 4, 8, 8)
        for t in scheduler.timesteps:
            noise = unet(torch.cat([latents] * 2), t, text).sample
            conditional, unconditional = noise.chunk(2)
            latents = scheduler.step(unconditional + 3.0 * (conditional - unconditional), t, latents).prev_sample

    return sampling_row(
        "unet-sample (3M UNet, 20 DPM-Solver++ steps, guidance, no VAE decode)", sample, batch_size, args.repeats,
        steps=steps,
    )


def _prompt_encoder(kind: str):
    """The shipped checkpoints' prompt encoder (`minilm`: MiniLM, 77 tokens) or the one they
    had before (`clip`: a 2-layer, 128-d CLIP text model over a 24-token caption BPE)."""
    from mmgen.text import TextEncoder
    from mmgen.text.tokenizer import train_caption_tokenizer

    if kind == "minilm":
        return TextEncoder.minilm(max_length=77)
    tokenizer = train_caption_tokenizer(ShapesDataset("train", n=2000).captions(), max_length=24)
    return TextEncoder.clip(tokenizer, hidden_size=128, num_layers=2, trainable=False)  # as sampling uses it


def _shapes_ldm_parts(batch_size: int, encoder_kind: str = "minilm"):
    """The shipped LDM's shapes of parts (untrained weights: speed does not depend on them)."""
    from mmgen.diffusion.autoencoder import build_autoencoder
    from mmgen.diffusion.objective import LatentDiffusionObjective, build_unet
    from mmgen.text import CachedTextEncoder

    vae = build_autoencoder((16, 32, 64, 64)).requires_grad_(False).eval()
    encoder = _prompt_encoder(encoder_kind)
    dataset = ShapesDataset("train", n=batch_size)
    batch = collate_examples([dataset[i] for i in range(batch_size)])
    cache = CachedTextEncoder(encoder, cache_root=HERE / "results" / "text-cache")
    cache.precompute(["", *batch["text"]], progress=False)
    objective = LatentDiffusionObjective(
        build_unet(cross_attention_dim=encoder.hidden_size, sample_size=8), DDPMScheduler(), cache, scaling_factor=1.0
    )
    return vae, encoder, batch, objective


def ldm_train_cached_vs_per_step(peak: float, args: argparse.Namespace) -> list[dict]:
    """One UNet step from cached latents and caption states (mmgen) against the same step
    that first runs the frozen VAE and text encoder (diffusers' text-to-image example)."""
    batch_size = 64
    vae, encoder, batch, objective = _shapes_ldm_parts(batch_size)
    optimizer = torch.optim.AdamW(objective.unet.parameters(), lr=1e-4)
    with torch.no_grad():
        posterior = vae.encode(batch["pixel_values"]).latent_dist
    cached = {"latent_mean": posterior.mean, "latent_std": posterior.std, "text": batch["text"]}

    def cached_step() -> None:
        objective(cached)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def per_step() -> None:
        with torch.no_grad():
            latents = vae.encode(batch["pixel_values"]).latent_dist
            encoder(batch["text"])  # what the example computes; its result feeds the UNet
        objective({"latent_mean": latents.mean, "latent_std": latents.std, "text": batch["text"]})["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows = [
        training_row("ldm-train cached (UNet only; shipped-LDM shapes, MiniLM)", cached_step, batch_size, peak, args.repeats),
        training_row("ldm-train per step (VAE + text encoder + UNet)", per_step, batch_size, peak, args.repeats),
    ]
    rows[0]["speedup_vs_per_step"] = rows[0]["images_per_s"]["median"] / rows[1]["images_per_s"]["median"]
    return rows


def ldm_sample_schedulers(peak: float, args: argparse.Namespace) -> list[dict]:
    """TextToImagePipeline images/s: 20 DPM-Solver++ steps against StableDiffusionPipeline's
    defaults (the PNDM scheduler, 50 steps), both with guidance and VAE decoding; and the
    shipped prompt encoder (MiniLM, 77 tokens) against the previous one (small CLIP, 24)."""
    from mmgen.diffusion import TextToImagePipeline

    batch_size = 16
    rows = []
    for encoder_kind, label, schedules in (
        ("minilm", "MiniLM, 77 tokens", (("dpm++", 20), ("pndm", 50))),
        ("clip", "previous small CLIP, 24 tokens", (("dpm++", 20),)),
    ):
        vae, encoder, batch, objective = _shapes_ldm_parts(batch_size, encoder_kind)
        pipe = TextToImagePipeline(
            vae=vae, text_encoder=encoder.model, tokenizer=encoder.tokenizer, unet=objective.unet.eval(),
            scheduler=DDPMScheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        for scheduler, steps in schedules:
            pipe.use_scheduler(scheduler)
            rows.append(sampling_row(
                f"ldm-sample {scheduler}, {steps} steps, {label} (guidance 3, with VAE decode)",
                lambda: pipe(batch["text"], num_inference_steps=steps, guidance_scale=3.0, output_type="pt"),
                batch_size, args.repeats, steps=steps, scheduler=scheduler, text_encoder=encoder_kind,
            ))
    return rows


def dvae_train_vs_dalle_pytorch(peak: float, args: argparse.Namespace) -> list[dict]:
    """mmgen's DiscreteVAE against dalle-pytorch's, same configuration and procedure
    (benchmarks/dvae_race.py); dalle-pytorch's row needs --dalle-pytorch-python."""
    from dvae_race import BATCH_SIZE, CONFIG, HELD_OUT, KL_WEIGHT_PER_ELEMENT, race
    from mmgen.dvae import DiscreteVAE
    from mmgen.dvae.objective import DiscreteVAEObjective

    dataset = ShapesDataset("train", n=8192 + HELD_OUT, size=CONFIG["image_size"])
    images = torch.stack([dataset[i]["pixel_values"] for i in range(len(dataset))])
    torch.manual_seed(0)
    vae = DiscreteVAE(
        image_size=CONFIG["image_size"], num_tokens=CONFIG["num_tokens"], codebook_dim=CONFIG["codebook_dim"],
        hidden_channels=CONFIG["hidden"], num_layers=CONFIG["num_layers"], num_resnet_blocks=CONFIG["num_resnet_blocks"],
    )
    objective = DiscreteVAEObjective(vae, kl_weight=KL_WEIGHT_PER_ELEMENT, kl_ramp_steps=0)

    def step(batch: torch.Tensor, temperature: float) -> torch.Tensor:
        objective.temperature = temperature
        return objective({"pixel_values": batch})["loss"]

    flops = count_flops(lambda: step(images[:BATCH_SIZE], 1.0).backward())
    vae.zero_grad(set_to_none=True)
    rows = [{"benchmark": "dvae-train mmgen (64 px, 512 codes, 3 layers, hidden 64)", "kind": "train",
             **race(list(vae.parameters()), step, lambda x: vae.decode_tokens(vae.tokenize(x)), images, args.dvae_steps)}]
    if args.dalle_pytorch_python:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "images.npy"
            np.save(path, images.numpy(), allow_pickle=False)
            command = [args.dalle_pytorch_python, str(HERE / "dvae_race.py"), "--images", str(path),
                       "--steps", str(args.dvae_steps), "--threads", str(torch.get_num_threads())]
            output = run_race(command, keep_memory=args.keep_freed_memory)
        rows.append({"benchmark": "dvae-train dalle-pytorch 1.6.6 (same configuration)", "kind": "train",
                     **json.loads(output.strip().splitlines()[-1])})
        rows[0]["speedup_vs_dalle_pytorch"] = rows[0]["images_per_s"]["median"] / rows[1]["images_per_s"]["median"]
    for row in rows:  # same architecture, so the same FLOPs per step
        row["flops_per_step"] = flops
        row["flop_utilisation"] = flops * row["steps_per_s"]["median"] / peak
        row["quality"] = f"token PSNR {row['token_psnr_db']:.1f} dB after {row['steps']} steps"
    return rows


# mmgen's Shapes recipe for MoPoE (README): log-likelihood weights against the image's
# 12,288 pixels, and the KL weight.
MOPOE_LIKELIHOOD_WEIGHTS, MOPOE_BETA = {"text": 20.0, "attributes": 50.0}, 1.0


def _mopoe_coherence(predictions: dict[str, np.ndarray], attributes: dict[str, list[str]], judge, model) -> dict:
    """Judge accuracy of images from text alone and from attributes alone, and the accuracy
    of attributes and of captions (parsed back) from the image alone."""
    from mmgen.eval.judge import attribute_accuracy, judge_accuracy
    from mmgen.eval.metrics import caption_accuracy

    classes = model.codecs["attributes"].classes
    predicted = {
        name: [labels[i] for i in predictions["attributes_from_image"][:, column]]
        for column, (name, labels) in enumerate(classes.items())
    }
    return {
        "text->image": judge_accuracy(judge, torch.from_numpy(predictions["image_from_text"]).clamp(-1, 1), attributes),
        "attributes->image": judge_accuracy(
            judge, torch.from_numpy(predictions["image_from_attributes"]).clamp(-1, 1), attributes
        ),
        "image->attributes": attribute_accuracy(predicted, attributes),
        "image->text": caption_accuracy(
            model.tokenizer.batch_decode(predictions["text_from_image"], skip_special_tokens=True), attributes
        ),
    }


def mopoe_train_vs_multivae(peak: float, args: argparse.Namespace) -> list[dict]:
    """mmgen's MoPoE against multivae's, same networks, likelihoods and procedure
    (benchmarks/mopoe_race.py), with both models' coherence on the same held-out samples
    read by the Shapes judge; multivae's row needs --multivae-python."""
    from mopoe_race import BATCH_SIZE, CONFIG, HELD_OUT, race
    from mmgen.eval.judge import ATTRIBUTE_NAMES, load_judge
    from mmgen.multimodal import MultimodalELBO
    from mmgen.multimodal.training import build_model

    dataset = open_dataset("shapes", size=64, seed=0)
    torch.manual_seed(0)
    model = build_model(dataset, aggregation="mopoe", likelihood_weights=MOPOE_LIKELIHOOD_WEIGHTS, **CONFIG)
    model.to(args.device)
    objective = MultimodalELBO(model, beta=MOPOE_BETA)
    count = args.mopoe_samples + HELD_OUT
    batch = collate_examples([dataset[i] for i in range(count)])
    data = {name: model.codecs[name].batch_tensors(batch, count)[0] for name in model.names}
    truth = {name: batch[name][-HELD_OUT:] for name in ATTRIBUTE_NAMES}
    classes = [len(labels) for labels in model.codecs["attributes"].classes.values()]

    def predict(held_out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # One draw of the posterior (mean=False) and no pseudo-Gibbs rounds: what multivae does.
        single = {"output_type": "pt", "gibbs_steps": 0}
        from_image = model.impute({"image": held_out["image"]}, ["attributes", "text"], **single)
        return {
            "image_from_text": model.impute({"text": held_out["text"]}, ["image"], **single)["image"],
            "image_from_attributes": model.impute({"attributes": held_out["attributes"]}, ["image"], **single)["image"],
            "attributes_from_image": torch.stack([logits.argmax(1) for logits in from_image["attributes"].split(classes, 1)], 1),
            "text_from_image": from_image["text"].argmax(1),
        }

    first = {name: values[:BATCH_SIZE].to(args.device) for name, values in data.items()}
    flops = count_flops(lambda: objective(first)["loss"].backward())
    model.zero_grad(set_to_none=True)
    if args.mopoe_compile:
        objective.compile(mode=args.mopoe_compile)  # as mmgen's loop does with --compile
    summary, predictions = race(list(model.parameters()), lambda b: objective(b)["loss"], predict, data, args.mopoe_epochs)
    summary["compile_mode"] = args.mopoe_compile
    summary["parameters_per_modality"] = {name: sum(p.numel() for p in codec.parameters()) for name, codec in model.codecs.items()}
    weights = ", ".join(f"{name} {weight:g}" for name, weight in MOPOE_LIKELIHOOD_WEIGHTS.items())
    compiled = f", torch.compile {args.mopoe_compile}" if args.mopoe_compile else ""
    rows = [{"benchmark": f"mopoe-train mmgen (64 px, latent 32, {weights}{compiled})", "kind": "train", **summary}]
    outputs = [predictions]
    if args.multivae_python:
        with tempfile.TemporaryDirectory() as folder:
            paths = {name: Path(folder) / f"{name}.npy" for name in data}
            for name, path in paths.items():
                np.save(path, data[name].numpy(), allow_pickle=False)
            out = Path(folder) / "predictions.npz"
            command = [
                args.multivae_python, str(HERE / "mopoe_race.py"), "--images", str(paths["image"]), "--text", str(paths["text"]),
                "--attributes", str(paths["attributes"]), "--vocab-size", str(model.codecs["text"].vocab_size),
                "--attribute-classes", ",".join(map(str, classes)), "--likelihood-weights", json.dumps(model.weights),
                "--beta", str(objective.beta), "--epochs", str(args.mopoe_epochs), "--threads", str(torch.get_num_threads()),
                "--device", args.device, *(["--compile", args.mopoe_compile] if args.mopoe_compile else []), "--out", str(out),
            ]
            output = run_race(command, keep_memory=args.keep_freed_memory)
            with np.load(out, allow_pickle=False) as saved:
                outputs.append(dict(saved))
        other = json.loads(output.strip().splitlines()[-1])
        if other["parameters_per_modality"] != summary["parameters_per_modality"]:
            raise RuntimeError(
                f"the networks differ: mmgen {summary['parameters_per_modality']}, multivae {other['parameters_per_modality']}"
            )
        rows.append({"benchmark": f"mopoe-train multivae {other.pop('multivae')} (same networks and likelihoods{compiled})",
                     "kind": "train", **other})
        rows[0]["speedup_vs_multivae"] = rows[0]["images_per_s"]["median"] / rows[1]["images_per_s"]["median"]
    judge = load_judge()
    for row, predicted in zip(rows, outputs):  # same networks, so the same FLOPs per step
        row["flops_per_step"] = flops
        row["flop_utilisation"] = flops * row["steps_per_s"]["median"] / peak
        row["coherence"] = _mopoe_coherence(predicted, truth, judge, model)
        scores = ", ".join(f"{name} {100 * score['all']:.0f}%" for name, score in row["coherence"].items())
        row["quality"] = (
            f"{row['seconds_per_epoch']:.1f} s/epoch, {row['parameters']:,} parameters; all-four coherence on "
            f"{HELD_OUT} held-out samples after {row['epochs']} epochs: {scores}"
        )
    return rows


def dvae_sample(peak: float, args: argparse.Namespace) -> list[dict]:
    """DiscreteVAEPipeline images/s with the shipped baseline's shapes (untrained weights:
    speed does not depend on them): one new position per step from the key-value cache
    against re-running the whole sequence each step, with the shipped prompt encoder
    (MiniLM, 77 tokens) and the previous one (small CLIP, 24)."""
    from mmgen.dvae import DiscreteVAE, DiscreteVAEPipeline, DiscreteVAEPrior

    batch_size = 16
    prompts = list(ShapesDataset("test", n=batch_size).captions())
    rows = []
    for encoder_kind, label, caching in (
        ("minilm", "MiniLM, 77 tokens", (True, False)), ("clip", "previous small CLIP, 24 tokens", (True,))
    ):
        encoder = _prompt_encoder(encoder_kind)
        prior = DiscreteVAEPrior(
            num_image_tokens=512, image_seq_len=64, text_hidden_size=encoder.hidden_size, text_seq_len=encoder.max_length
        )
        pipe = DiscreteVAEPipeline(
            vae=DiscreteVAE().eval(), prior=prior.eval(), text_encoder=encoder.model, tokenizer=encoder.tokenizer
        )
        pipe.set_progress_bar_config(disable=True)
        for use_cache in caching:
            rows.append(sampling_row(
                f"dvae-sample {'KV cache' if use_cache else 'full re-run'}, {label} (64 tokens, guidance 3, with decode)",
                lambda: pipe(prompts, guidance_scale=3.0, output_type="pt", use_cache=use_cache),
                batch_size, args.repeats, use_cache=use_cache, text_encoder=encoder_kind,
            ))
    return rows


BENCHMARKS: dict[str, Callable[[float, argparse.Namespace], dict | list[dict]]] = {
    "judge-train": judge_train,
    "unet-train": unet_train,
    "unet-sample": unet_sample,
    "ldm-train": ldm_train_cached_vs_per_step,
    "ldm-sample": ldm_sample_schedulers,
    "dvae-train": dvae_train_vs_dalle_pytorch,
    "dvae-sample": dvae_sample,
    "mopoe-train": mopoe_train_vs_multivae,
}


def markdown_table(rows: list[dict], peak: float, memory_kept: bool) -> str:
    memory = "freed memory kept for reuse, as mmgen's loop keeps it" if memory_kept else "glibc's malloc defaults"
    lines = [
        f"Measured fp32 matmul peak: {peak / 1e9:.0f} GFLOP/s; {memory}.",
        "",
        "| benchmark | batch | images/s (median, low-high) | steps/s | GFLOP/step | FLOP utilisation | quality |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        images = row["images_per_s"]
        steps = f"{row['steps_per_s']['median']:.2f}" if "steps_per_s" in row else "-"
        flops = f"{row['flops_per_step'] / 1e9:.2f}" if "flops_per_step" in row else "-"
        utilisation = f"{100 * row['flop_utilisation']:.0f}%" if "flop_utilisation" in row else "-"
        lines.append(
            f"| {row['benchmark']} | {row['batch_size']} | {images['median']:.1f} ({images['low']:.1f}-{images['high']:.1f}) "
            f"| {steps} | {flops} | {utilisation} | {row.get('quality', '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="benchmarks to run (default: all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--name", help="results file name under benchmarks/results/ (default: the device's); a named run leaves README's table alone"
    )
    parser.add_argument("--device", default="cpu", help="where mopoe-train runs (cpu or cuda); the others run on the CPU")
    parser.add_argument("--dvae-steps", type=int, default=1000, help="training steps of each dvae-train model")
    parser.add_argument(
        "--dalle-pytorch-python", help="python of an environment with dalle-pytorch, for dvae-train's comparison row"
    )
    parser.add_argument("--mopoe-epochs", type=int, default=10, help="training epochs of each mopoe-train model")
    parser.add_argument("--mopoe-samples", type=int, default=8192, help="training samples of mopoe-train (plus 256 held out)")
    parser.add_argument("--multivae-python", help="python of an environment with multivae, for mopoe-train's comparison row")
    parser.add_argument("--mopoe-compile", help="torch.compile mode for both mopoe-train models' loss (default: eager)")
    parser.add_argument(
        "--keep-freed-memory", action="store_true",
        help="keep freed memory for reuse as mmgen's training loop does on CPUs, in every library's run (default: glibc's settings)",
    )
    args = parser.parse_args()
    if args.device != "cpu" and set(args.only or BENCHMARKS) != {"mopoe-train"}:
        parser.error("--device other than cpu takes --only mopoe-train")
    if args.keep_freed_memory:
        keep_freed_memory()
    torch.manual_seed(0)
    out = HERE / "results" / f"{args.name or args.device}.json"
    out.parent.mkdir(exist_ok=True)
    # --only re-measures some benchmarks and keeps the other rows of an earlier run.
    earlier = json.loads(out.read_text())["rows"] if args.only and out.is_file() else []
    peak = matmul_peak_flops(device=args.device)
    measured: dict[str, list[dict]] = {}
    for name in args.only or BENCHMARKS:
        result = BENCHMARKS[name](peak, args)
        measured[name] = [{**row, "group": name} for row in (result if isinstance(result, list) else [result])]
    rows = []
    for name in BENCHMARKS:
        rows += measured.get(name) or [row for row in earlier if row.get("group") == name]
    results = {"machine": machine(), "matmul_peak_flops": peak, "freed_memory_kept": args.keep_freed_memory, "rows": rows}
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_table(rows, peak, args.keep_freed_memory)
    print(table)
    if args.device != "cpu" or args.name:
        print(f"wrote {out}")
        return
    readme = HERE / "README.md"
    text = readme.read_text()
    text = re.sub(r"(<!-- BEGIN RESULTS -->\n).*?(\n<!-- END RESULTS -->)", lambda m: m.group(1) + table + m.group(2), text, flags=re.S)
    readme.write_text(text)
    print(f"wrote {out} and updated {readme}")


if __name__ == "__main__":
    main()
