"""Checks of a pipeline call's arguments that every family's pipeline shares, so that a
bad one is a line naming it rather than an error deep in diffusers, transformers or torch."""

from __future__ import annotations

from typing import Any

import torch

from mmgen.errors import ConfigError
from mmgen.text.encoder import check_texts


def prompt_list(prompt: Any) -> list[str]:
    """One prompt or a list of them, as a list; checked to be text."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)):
        raise ConfigError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
    if not prompts:
        raise ConfigError("no prompts given")
    check_texts(list(prompts))
    return list(prompts)


def check_count(name: str, value: Any) -> None:
    """A count such as num_images_per_prompt or num_inference_steps: a whole number of at
    least 1 (0 steps would return the starting noise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")


def check_generator(generator: Any) -> None:
    """None, a torch.Generator, or a list of them (one per image), as diffusers takes."""
    for each in generator if isinstance(generator, list) else [generator]:
        if each is not None and not isinstance(each, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
                              f"got {type(each).__name__} {each!r:.40}")
