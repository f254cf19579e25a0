"""`mmgen eval`: measure a checkpoint on Shapes with the judge.

A checkpoint folder names its class (`_class_name` in `model_index.json` for pipelines,
in `config.json` for single models); `load_for_task` turns a known class into the plain
callable that the task's metrics take. Model families add their classes to `LOADERS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.nn import functional as F

from mmgen.checkpoints import checkpoint_class, load_pretrained
from mmgen.data.seeding import derive_seed
from mmgen.data.shapes import OFFSET_JITTER, RADIUS_JITTER, ShapesDataset, ShapesSample, parse_caption, render
from mmgen.data.transforms import pil_to_tensor, tensor_to_pil
from mmgen.errors import CheckpointError, ConfigError
from mmgen.eval.prompts import FIXED_PHRASINGS, PROMPT_SPLITS, freeform_prompts
from mmgen.eval.judge import ATTRIBUTE_NAMES, ShapesJudge, judge_accuracy, load_judge, real_images
from mmgen.eval.metrics import (
    GenerateFn,
    ImputeFn,
    ReconstructFn,
    coherence,
    diversity,
    text_coherence,
    feature_fid,
    generate_images,
    judge_features,
    reconstruction_metrics,
)

DIVERSITY_PROMPT = "a large red circle in the center"
DIVERSITY_SAMPLES = 16


def inference_device() -> torch.device:
    """Where checkpoints run to sample, impute or reconstruct: the GPU if there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_text_to_image_pipeline(
    path: str | Path, scheduler: str | None = None, lora: str | Path | None = None, lora_weight: float = 1.0
):
    """The text-to-image pipeline saved at `path`, on the `inference_device`: the
    discrete-VAE baseline's, or latent diffusion's (a StableDiffusionPipeline folder;
    `scheduler` picks its sampler, `lora` a folder of LoRA adapters to apply at `lora_weight`)."""
    path = Path(path)
    if lora is None and lora_weight != 1.0:
        raise ConfigError(f"lora_weight {lora_weight} scales LoRA adapters, and none were given")
    device = inference_device()
    if (path / "model_index.json").is_file() and checkpoint_class(path) == "DiscreteVAEPipeline":
        if lora is not None:
            raise ConfigError(f"--lora adapts latent diffusion pipelines; {path} is a discrete-VAE pipeline")
        from mmgen.dvae import DiscreteVAEPipeline

        return DiscreteVAEPipeline.from_pretrained(path).to(device)
    from mmgen.diffusion import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(path, scheduler=scheduler)
    if lora is not None:
        pipe.load_lora(lora, weight=lora_weight)
    return pipe.to(device)


SAMPLING_STEPS = 20  # of diffusion pipelines, unless --steps says otherwise


def default_guidance_scale(pipe) -> float:
    """The guidance scale a pipeline uses when given none: the one the discrete-VAE
    pipeline saves, or TextToImagePipeline's."""
    return pipe.config.get("guidance_scale", getattr(pipe, "default_guidance_scale", None))


def _text_to_image_generate(
    path: Path, steps: int | None, guidance_scale: float | None, scheduler: str, lora: str | Path | None = None,
    lora_weight: float = 1.0,
) -> GenerateFn:
    """A text-to-image pipeline folder (latent diffusion or the discrete-VAE baseline),
    with `lora` adapters applied at `lora_weight` if given; no `steps`: 20; no `guidance_scale`: the
    pipeline's default. The callable's `settings` are those the pipeline used (the
    discrete-VAE baseline draws tokens in one pass: no steps or scheduler)."""
    pipe = load_text_to_image_pipeline(path, scheduler=scheduler, lora=lora, lora_weight=lora_weight)
    pipe.set_progress_bar_config(disable=True)
    guidance_scale = default_guidance_scale(pipe) if guidance_scale is None else guidance_scale
    steps = SAMPLING_STEPS if steps is None else steps

    def generate(prompts: list[str], generator: torch.Generator) -> torch.Tensor:
        images = pipe(
            prompts, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator, output_type="pt"
        ).images
        return images * 2 - 1

    if type(pipe).__name__ == "DiscreteVAEPipeline":
        generate.settings = {"guidance_scale": guidance_scale}
    else:
        generate.settings = {"steps": steps, "guidance_scale": guidance_scale, "scheduler": scheduler}
    return generate


def _autoencoder_reconstruct(path: Path, steps: int, guidance_scale: float, scheduler: str) -> ReconstructFn:
    """A diffusers AutoencoderKL folder: encode to the latent mean, decode."""
    from diffusers import AutoencoderKL

    vae = load_pretrained(AutoencoderKL, path).to(inference_device()).eval()

    @torch.no_grad()
    def reconstruct(images: torch.Tensor) -> torch.Tensor:
        return vae.decode(vae.encode(images.to(vae.device)).latent_dist.mode()).sample.cpu()

    reconstruct.image_size = vae.config.sample_size
    return reconstruct


def _dvae_reconstruct(path: Path, steps: int, guidance_scale: float, scheduler: str) -> ReconstructFn:
    """A discrete VAE folder: the most likely tokens, decoded."""
    from mmgen.dvae import DiscreteVAE

    vae = load_pretrained(DiscreteVAE, path).to(inference_device()).eval()

    @torch.no_grad()
    def reconstruct(images: torch.Tensor) -> torch.Tensor:
        return vae.decode_tokens(vae.tokenize(images.to(vae.device))).cpu()

    reconstruct.image_size = vae.config.image_size
    return reconstruct


def _multimodal_impute(path: Path, steps: int | None, guidance_scale: float, scheduler: str) -> ImputeFn:
    """A multimodal VAE as the coherence metric calls an imputer: attributes as columns
    {name: [label, ...]}, images as tensors in [-1, 1]; `steps` rounds of pseudo-Gibbs
    refinement (None: the model's default), named in the callable's `settings`."""
    from mmgen.multimodal import MultimodalVAE

    model = MultimodalVAE.from_pretrained(path).to(inference_device())
    classes = model.config.modalities.get("attributes", {}).get("classes", {})
    if not {"image", "text"} <= set(model.names) or set(classes) != set(ATTRIBUTE_NAMES):
        raise CheckpointError(
            f"{path}: coherence is measured on Shapes, so the model needs the modalities image, text and attributes "
            f"({', '.join(ATTRIBUTE_NAMES)}); this one has {', '.join(model.names)}"
            + (f" (attributes {', '.join(classes)})" if classes else "")
        )
    size = model.config.modalities["image"]["size"]
    steps = model.default_gibbs_steps if steps is None else steps

    def impute(observed: dict[str, Any], targets: list[str], generator: torch.Generator) -> dict[str, Any]:
        inputs = {**observed.get("attributes", {}), **{k: v for k, v in observed.items() if k != "attributes"}}
        if "image" in inputs and inputs["image"].shape[-1] != size:  # the judge's real images are 64 px
            inputs["image"] = F.interpolate(inputs["image"], size=(size, size), mode="area")
        decoded = model.impute(inputs, targets, generator=generator, output_type="pt", gibbs_steps=steps)
        outputs: dict[str, Any] = {}
        for name, value in decoded.items():
            if name == "image":
                outputs[name] = value.clamp(-1, 1).cpu()
            elif name == "attributes":
                rows = model.codecs[name].from_decoded(value)
                outputs[name] = {attribute: [row[attribute] for row in rows] for attribute in rows[0]}
            else:
                outputs[name] = model.codecs[name].from_decoded(value)
        return outputs

    impute.settings = {"steps": steps}
    return impute


# class name -> {task: factory(path, steps, guidance_scale, scheduler) -> the task's callable}
LOADERS: dict[str, dict[str, Callable[[Path, int, float, str], Callable]]] = {
    "StableDiffusionPipeline": {"text-to-image": _text_to_image_generate},
    "AutoencoderKL": {"reconstruct": _autoencoder_reconstruct},
    "DiscreteVAEPipeline": {"text-to-image": _text_to_image_generate},
    "DiscreteVAE": {"reconstruct": _dvae_reconstruct},
    "MultimodalVAE": {"impute": _multimodal_impute},
}


def load_for_task(
    path: str | Path, task: str, steps: int | None = None, guidance_scale: float = 3.0, scheduler: str = "dpm++",
    lora: str | Path | None = None, lora_weight: float = 1.0,
) -> Callable:
    class_name = checkpoint_class(path)
    if class_name == ShapesJudge.__name__:
        raise CheckpointError(f"{path} is the Shapes judge, which measures models; pass a generative model")
    tasks = LOADERS.get(class_name)
    if tasks is None:
        raise CheckpointError(f"{path}: mmgen cannot evaluate a {class_name} (known: {', '.join(sorted(LOADERS))})")
    if task not in tasks:
        # A pipeline's first stage (vae/) is what reconstructs.
        hint = f"; its first stage, {Path(path) / 'vae'}, does" if task == "reconstruct" and (Path(path) / "vae").is_dir() else ""
        raise CheckpointError(f"{path}: a {class_name} supports --task {' or '.join(tasks)}, not {task}{hint}")
    if lora is None:
        return tasks[task](Path(path), steps, guidance_scale, scheduler)
    if task != "text-to-image":
        raise ConfigError(f"--lora adapts text-to-image pipelines, not a {class_name} for --task {task}")
    return tasks[task](Path(path), steps, guidance_scale, scheduler, lora=lora, lora_weight=lora_weight)


def _at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to the judge's resolution (models may generate at another size)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _real_renderings(prompts: list[str], size: int, stream: str) -> torch.Tensor:
    """Real Shapes images of `prompts`: each prompt's attributes, rendered with fresh size
    and position jitter drawn from (`stream`, index)."""
    images = []
    for index, prompt in enumerate(prompts):
        jitter = random.Random(derive_seed(stream, index))
        sample = ShapesSample(
            caption=prompt, radius_jitter=jitter.uniform(*RADIUS_JITTER),
            offset_x=jitter.uniform(-OFFSET_JITTER, OFFSET_JITTER), offset_y=jitter.uniform(-OFFSET_JITTER, OFFSET_JITTER),
            **parse_caption(prompt),
        )
        images.append(pil_to_tensor(render(sample, size)))
    return torch.stack(images)


def _split_prompts(split: str, n: int) -> tuple[list[str], dict[str, list[str | None]]]:
    if split == "freeform":
        return freeform_prompts(n)
    dataset = ShapesDataset(split, n=n)
    samples = [dataset.sample(i) for i in range(n)]
    return [s.caption for s in samples], {name: [getattr(s, name) for s in samples] for name in ATTRIBUTE_NAMES}


def evaluate_text_to_image(
    generate: GenerateFn, judge: ShapesJudge, n: int, seed: int = 0, batch_size: int = 32, image_size: int = 64,
    splits: Sequence[str] = PROMPT_SPLITS,
) -> tuple[dict[str, Any], list[Image.Image], list[str]]:
    """Adherence on the prompts of `splits` (of PROMPT_SPLITS; with `freeform`, also on the
    free-form prompts without the phrasings that training augmentation took up); with
    `test`, FID against real `test` images on judge features (with the real-vs-real floor:
    the same prompts drawn again) and diversity for one prompt."""
    unknown = [split for split in splits if split not in PROMPT_SPLITS]
    if unknown or not splits:
        raise ConfigError(f"splits must be some of {', '.join(PROMPT_SPLITS)}, got {', '.join(splits) or 'none'}")
    results: dict[str, Any] = {}
    generated: dict[str, torch.Tensor] = {}
    prompts: dict[str, list[str]] = {}
    attributes: dict[str, dict[str, list[str | None]]] = {}
    for split in [split for split in PROMPT_SPLITS if split in splits]:  # in their usual order
        prompts[split], attributes[split] = _split_prompts(split, n)
        generated[split] = _at_size(generate_images(generate, prompts[split], seed, batch_size), image_size)
        results[f"adherence/{split}"] = judge_accuracy(judge, generated[split], attributes[split])
        results[f"prompts/{split}"] = len(prompts[split])
    if "freeform" in splits:
        # The free-form prompts whose phrasings training augmentation has not taken up (see FIXED_PHRASINGS).
        unseen = [i for i, prompt in enumerate(prompts["freeform"]) if not FIXED_PHRASINGS.search(prompt)]
        results["adherence/freeform-unseen-phrasings"] = judge_accuracy(
            judge, generated["freeform"][unseen],
            {name: [values[i] for i in unseen] for name, values in attributes["freeform"].items()},
        )
        results["prompts/freeform-unseen-phrasings"] = len(unseen)
    if "test" not in splits:
        first = next(iter(generated))
        return results, tensor_to_pil(generated[first][:16]), prompts[first][:16]
    real_test, _ = real_images("test", n, image_size)
    real_features = judge_features(judge, real_test)
    results["fid"] = feature_fid(judge_features(judge, generated["test"]), real_features)
    # The floor: the same prompts drawn again as real images (fresh jitter), so that both
    # sides share the test attribute mix as the generated set does; `val` images would
    # add the sampling difference of two attribute mixes, which dominates at small n.
    redrawn = _real_renderings(prompts["test"], image_size, "fid-floor")
    results["fid_real_floor"] = feature_fid(judge_features(judge, redrawn), real_features)
    same_prompt = generate_images(generate, [DIVERSITY_PROMPT] * DIVERSITY_SAMPLES, seed, batch_size)
    results["diversity"] = diversity(judge_features(judge, _at_size(same_prompt, image_size)))
    real_same_prompt = _real_renderings([DIVERSITY_PROMPT] * DIVERSITY_SAMPLES, image_size, "diversity")
    results["diversity_real_same_prompt"] = diversity(judge_features(judge, real_same_prompt))
    return results, tensor_to_pil(generated["test"][:16]), prompts["test"][:16]


def evaluate_reconstruction(
    reconstruct: ReconstructFn, judge: ShapesJudge, n: int, batch_size: int = 32, image_size: int = 64
) -> tuple[dict[str, Any], list[Image.Image], list[str]]:
    """PSNR/SSIM of reconstructions of real `test` images, the judge's accuracy on them,
    and their FID against the originals."""
    images, attributes = real_images("test", n, image_size)
    with torch.no_grad():
        output = torch.cat([reconstruct(images[i : i + batch_size]).float() for i in range(0, n, batch_size)])
    output = _at_size(output, image_size)
    results: dict[str, Any] = reconstruction_metrics(images, output)
    results["judge_on_reconstructions"] = judge_accuracy(judge, output, attributes)
    results["fid"] = feature_fid(judge_features(judge, output), judge_features(judge, images))
    pairs = [image for pair in zip(tensor_to_pil(images[:8]), tensor_to_pil(output[:8])) for image in pair]
    return results, pairs, [label for _ in range(8) for label in ("original", "reconstruction")]


def evaluate_imputation(
    impute: ImputeFn, judge: ShapesJudge, n: int, seed: int = 0, batch_size: int = 128, image_size: int = 64
) -> tuple[dict[str, Any], list[Image.Image], list[str]]:
    """Coherence on `test` and `compositional` for every subset of observed modalities, and
    from captions alone on `heldout-phrasing` and `freeform` (text -> image, attributes)."""
    results: dict[str, Any] = {}
    for split in ("test", "compositional"):
        images, attributes = real_images(split, n, image_size)
        captions, _ = _split_prompts(split, n)
        results[f"coherence/{split}"] = coherence(impute, judge, images, captions, attributes, seed, batch_size)
    for split in ("heldout-phrasing", "freeform"):
        captions, attributes = _split_prompts(split, n)
        results[f"coherence/{split}"] = text_coherence(impute, judge, captions, attributes, seed, batch_size)
    captions, _ = _split_prompts("test", n)
    captions = captions[:16]
    generator = torch.Generator().manual_seed(seed)
    imputed = impute({"text": captions}, ["image"], generator)["image"]
    return results, tensor_to_pil(_at_size(imputed, image_size)), captions


def evaluate_judge(judge: ShapesJudge, n: int, image_size: int = 64) -> tuple[dict[str, Any], list[Image.Image], list[str]]:
    """The judge's own accuracy on real `test` and `compositional` images."""
    results: dict[str, Any] = {}
    for split in ("test", "compositional"):
        images, attributes = real_images(split, n, image_size)
        results[f"accuracy/{split}"] = judge_accuracy(judge, images, attributes)
    shown = images[:16]
    predicted = judge.predict(shown)
    readings = [" ".join(predicted[name][i] for name in ("size", "color", "shape", "position")) for i in range(len(shown))]
    return results, tensor_to_pil(shown), readings


def run_task(
    task: str,
    model: str | Path,
    judge: str | Path,
    n: int,
    seed: int = 0,
    batch_size: int = 32,
    steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: str = "dpm++",
    lora: str | Path | None = None,
    lora_weight: float = 1.0,
    splits: Sequence[str] = PROMPT_SPLITS,
) -> tuple[dict[str, Any], dict[str, Any], list[Image.Image], list[str]]:
    """Evaluate checkpoint `model` (with `lora` adapters at `lora_weight`, if given) on
    `task`: (results, the sampling settings used, sample images, their captions). The
    settings are those that apply to the model: diffusion's steps (None given: 20),
    guidance scale (None: the pipeline's default) and scheduler; the discrete-VAE
    baseline's guidance scale; a multimodal VAE's pseudo-Gibbs rounds as steps (None: its
    default); none to reconstruct or judge. `splits`: the prompt splits text-to-image
    measures."""
    if n < 2:
        raise ConfigError(f"--n must be at least 2 (FID and diversity compare samples), got {n}")
    if task == "judge":
        results, images, captions = evaluate_judge(load_judge(model), n)
        return results, {}, images, captions
    scorer = load_judge(judge)
    run = load_for_task(
        model, task, steps=steps, guidance_scale=guidance_scale, scheduler=scheduler, lora=lora, lora_weight=lora_weight
    )
    if task == "text-to-image":
        measured = evaluate_text_to_image(run, scorer, n, seed, batch_size, splits=splits)
    elif task == "reconstruct":
        measured = evaluate_reconstruction(run, scorer, n, batch_size)
    else:
        measured = evaluate_imputation(run, scorer, n, seed, batch_size)
    results, images, captions = measured
    return results, getattr(run, "settings", {}), images, captions  # reconstructors have no settings


def format_table(results: dict[str, Any], prefix: str = "") -> list[str]:
    """Results as aligned `name  value` lines, nested keys joined with '/'."""
    lines = []
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += format_table(value, prefix=f"{name}/")
        else:
            lines.append(f"{name:<48} {value:.4f}" if isinstance(value, float) else f"{name:<48} {value}")
    return lines
