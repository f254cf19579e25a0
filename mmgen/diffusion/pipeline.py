"""Sampling: mmgen's text-to-image pipeline is a diffusers Stable Diffusion pipeline.

It adds schedulers by name, mmgen's error messages and a default checkpoint; the folder
it saves is a plain `StableDiffusionPipeline` folder (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/; no safety checker), so
`diffusers.StableDiffusionPipeline.from_pretrained(path)` loads it and, for a fixed seed,
draws the same images.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

from transformers import logging as transformers_logging

from mmgen.checkpoints import LORA_WEIGHTS, SHAPES_LDM, loading, pipeline_class_name
from mmgen.errors import CheckpointError, ConfigError
from mmgen.sampling import check_count, check_generator, prompt_list
from mmgen.text.encoder import prompt_problems, quiet_libraries

# Importing diffusers' pipelines makes transformers warn that torchvision is missing
# (for image processors mmgen never uses); keep that out of users' terminals.
_verbosity = transformers_logging.get_verbosity()
transformers_logging.set_verbosity_error()
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UniPCMultistepScheduler,
)

transformers_logging.set_verbosity(_verbosity)

SCHEDULERS = {
    "dpm++": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "pndm": PNDMScheduler,
    "unipc": UniPCMultistepScheduler,
}


class TextToImagePipeline(StableDiffusionPipeline):
    """`pipe(prompts, num_inference_steps=20, guidance_scale=..., generator=...)` returns
    PIL images in `.images`, as every diffusers pipeline does."""

    # Used when a call gives none: diffusers' 7.5 suits Stable Diffusion, not models this
    # small (checkpoints/shapes-ldm was measured at 3).
    default_guidance_scale = 3.0

    def __call__(self, prompt: str | list[str] | None = None, *args, guidance_scale: float | None = None, **kwargs):
        if prompt is not None:  # else prompt_embeds, which diffusers checks
            prompts = prompt_list(prompt)
            for problem in prompt_problems(self.tokenizer, self.tokenizer.model_max_length, prompts):
                warnings.warn(problem, stacklevel=2)
        check_generator(kwargs.get("generator"))
        for count in ("num_images_per_prompt", "num_inference_steps"):
            if count in kwargs:
                check_count(count, kwargs[count])
        if guidance_scale is None:
            guidance_scale = self.default_guidance_scale
        return super().__call__(prompt, *args, guidance_scale=guidance_scale, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | Path = SHAPES_LDM, scheduler: str | None = None, **kwargs):
        class_name = pipeline_class_name(path, "text-to-image pipeline")
        if class_name not in (StableDiffusionPipeline.__name__, cls.__name__):
            raise CheckpointError(f"{path}: a {class_name} checkpoint, not a text-to-image pipeline")
        kwargs.setdefault("safety_checker", None)
        kwargs.setdefault("requires_safety_checker", False)
        kwargs.setdefault("use_safetensors", True)
        with quiet_libraries(), loading(path):
            pipe = super().from_pretrained(path, **kwargs)
        if scheduler:
            pipe.use_scheduler(scheduler)
        return pipe

    def load_lora(self, path: str | Path, weight: float = 1.0) -> None:
        """Apply the LoRA adapters in folder `path` (`pytorch_lora_weights.safetensors`, as
        `mmgen train ldm --lora-rank` and diffusers' LoRA scripts write it), scaled by
        `weight` (diffusers' adapter weight: 0 leaves the base model, below 1 keeps more of it)."""
        if not math.isfinite(weight):
            raise ConfigError(f"--lora-weight must be a finite number, got {weight}")
        path = Path(path)
        weights = path / LORA_WEIGHTS if path.is_dir() else path
        if not weights.is_file():
            raise CheckpointError(f"{path}: no LoRA weights there (no {LORA_WEIGHTS})")
        try:
            with quiet_libraries(errors=False), loading(path):  # diffusers logs a mismatch per tensor
                self.load_lora_weights(weights.parent, weight_name=weights.name)
        except RuntimeError as error:  # adapters shaped for another UNet
            mismatch = re.search(r"size mismatch for (\S+): copying a param with shape torch.Size\((\[.*?\])\) from "
                                 r"checkpoint, the shape in current model is torch.Size\((\[.*?\])\)", str(error))
            detail = (f"{mismatch[1]}: {mismatch[2]} in the adapters, {mismatch[3]} in the UNet" if mismatch
                      else str(error).strip().splitlines()[0])
            raise CheckpointError(f"{path}: LoRA weights for another pipeline's UNet ({detail[:200]})") from error
        adapters = self.get_list_adapters().get("unet", [])
        if not adapters:
            raise CheckpointError(f"{path}: none of its LoRA weights fit this pipeline's UNet (trained on another pipeline?)")
        if weight != 1.0:
            self.set_adapters(adapters[-1:], adapter_weights=[weight])

    def use_scheduler(self, name: str) -> None:
        """Sample with another diffusers scheduler, by name (see SCHEDULERS); the trained
        noise schedule carries over."""
        if name not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
        self.scheduler = SCHEDULERS[name].from_config(self.scheduler.config)

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        with quiet_libraries():  # transformers' "Writing model shards" bar at every checkpoint
            super().save_pretrained(save_directory, **kwargs)
        # Saved under the diffusers class name, so that DiffusionPipeline.from_pretrained
        # and StableDiffusionPipeline.from_pretrained both know the folder.
        index = Path(save_directory) / "model_index.json"
        config = json.loads(index.read_text())
        config["_class_name"] = StableDiffusionPipeline.__name__
        index.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def encode_prompt(self, *args, **kwargs):
        with quiet_libraries():  # diffusers' truncation note names CLIP whatever the encoder; __call__ said it
            return super().encode_prompt(*args, **kwargs)
