"""Contrastive image-text models (CLIP-style): retrieval on the user's data, and the judge of
text-to-image models and imputations on any data."""

from mmgen.contrastive.model import ContrastiveImageText
from mmgen.contrastive.retrieval import ImageTextRetrieval, r_precision, recall_at_k
from mmgen.contrastive.training import train_contrastive

__all__ = ["ContrastiveImageText", "ImageTextRetrieval", "r_precision", "recall_at_k", "train_contrastive"]
