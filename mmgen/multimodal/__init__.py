"""Multimodal VAEs (MVAE, MMVAE, MoPoE) over declared modalities, any of which may be
missing per sample, that impute what a sample lacks; and conditional VAEs."""

from pathlib import Path

from mmgen.checkpoints import checkpoint_class
from mmgen.errors import CheckpointError
from mmgen.multimodal.conditional_vae import ConditionalVAE
from mmgen.multimodal.multimodal_vae import MultimodalVAE
from mmgen.multimodal.objective import ConditionalELBO, MultimodalELBO
from mmgen.multimodal.training import train_multimodal_vae

__all__ = ["ConditionalELBO", "ConditionalVAE", "MultimodalELBO", "MultimodalVAE", "load_model", "train_multimodal_vae"]


def load_model(path: str | Path) -> MultimodalVAE | ConditionalVAE:
    """The multimodal or conditional VAE saved at `path`, whichever it is."""
    classes = {cls.__name__: cls for cls in (MultimodalVAE, ConditionalVAE)}
    class_name = checkpoint_class(path)
    if class_name not in classes:
        raise CheckpointError(f"{path}: a {class_name} checkpoint, not a multimodal or conditional VAE")
    return classes[class_name].from_pretrained(path)
