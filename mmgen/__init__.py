"""mmgen: generative multimodal models on one data layer, one set of text encoders
and one Accelerate training loop."""

import importlib

__version__ = "0.1.0"

# Public names, imported on first use so that `import mmgen` (and the CLI) start fast.
_EXPORTS = {
    "ImageTextDataset": "mmgen.data",
    "ShapesDataset": "mmgen.data",
    "open_dataset": "mmgen.data",
    "parse_caption": "mmgen.data",
    "TextEncoder": "mmgen.text",
    "CachedTextEncoder": "mmgen.text",
    "Trainer": "mmgen.training",
    "TrainingConfig": "mmgen.training",
    "ShapesJudge": "mmgen.eval.judge",
    "TextToImagePipeline": "mmgen.diffusion",
    "DiscreteVAE": "mmgen.dvae",
    "DiscreteVAEPrior": "mmgen.dvae",
    "DiscreteVAEPipeline": "mmgen.dvae",
    "MultimodalVAE": "mmgen.multimodal",
    "ConditionalVAE": "mmgen.multimodal",
    "MultimodalELBO": "mmgen.multimodal",
    "ConditionalELBO": "mmgen.multimodal",
    "train_multimodal_vae": "mmgen.multimodal",
    "ImageClassifier": "mmgen.eval.classifier",
    "coherence_on_data": "mmgen.eval.coherence",
    "ContrastiveImageText": "mmgen.contrastive",
    "ImageTextRetrieval": "mmgen.contrastive",
    "train_contrastive": "mmgen.contrastive",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmgen' has no attribute {name!r}")
