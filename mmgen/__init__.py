"""mmgen: generative multimodal models on one data layer, one set of text encoders
and one Accelerate training loop."""

__version__ = "0.1.0"
