"""The discrete-VAE baseline's training commands: `mmgen train dvae` and `mmgen train
dvae-prior`."""

from __future__ import annotations

import argparse

from mmgen.cli.common import (
    add_command, add_text_encoder_arguments, add_training_arguments, add_validation_prompts_argument,
    new_model_options, report_training, training_config_from_args, validation_prompts_from_args,
)


def _train_dvae(args: argparse.Namespace) -> None:
    from mmgen.dvae.training import train_dvae

    result = train_dvae(
        training_config_from_args(args), data=args.data, image_size=args.image_size, num_tokens=args.num_tokens,
        codebook_dim=args.codebook_dim, hidden_channels=args.hidden_channels, num_layers=args.num_layers,
        num_resnet_blocks=args.num_resnet_blocks, temperature_start=args.temperature_start,
        temperature_end=args.temperature_end, temperature_steps=args.temperature_steps, kl_weight=args.kl_weight,
        kl_ramp_steps=args.kl_ramp_steps, kl_weight_end=args.kl_weight_end, kl_decay_steps=args.kl_decay_steps,
        straight_through=args.straight_through, random_flip=args.random_flip, pretrained=args.pretrained,
    )
    report_training(result, "discrete VAE")


def _train_dvae_prior(args: argparse.Namespace) -> None:
    from mmgen.dvae.training import train_dvae_prior

    result = train_dvae_prior(
        training_config_from_args(args), dvae=args.dvae, data=args.data, image_size=args.image_size,
        text_encoder=args.text_encoder, max_length=args.max_length, text_hidden_size=args.text_hidden_size,
        text_layers=args.text_layers, hidden_size=args.hidden_size, num_layers=args.num_layers,
        num_heads=args.num_heads, dropout=args.dropout, caption_dropout=args.caption_dropout,
        random_flip=args.random_flip, caption_variants=args.caption_variants,
        prompts=validation_prompts_from_args(args.validation_prompts), pretrained=args.pretrained,
    )
    report_training(result, "pipeline")


def add_train_commands(recipes, data_help: str) -> None:
    dvae = add_command(
        recipes, "dvae", _train_dvae,
        "discrete-VAE baseline, stage 1: a Gumbel-softmax discrete VAE (images <-> tokens)",
    )
    dvae.add_argument("--data", default="shapes", help=data_help)
    dvae.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    dvae.add_argument("--num-tokens", type=int, default=512, help="codebook size")
    dvae.add_argument("--codebook-dim", type=int, default=256, help="width of a code's embedding")
    dvae.add_argument("--hidden-channels", type=int, default=64, help="conv width")
    dvae.add_argument("--num-layers", type=int, default=3, help="downsamplings: the token grid is image-size / 2^N")
    dvae.add_argument("--num-resnet-blocks", type=int, default=1, help="residual blocks at the token resolution")
    dvae.add_argument(
        "--temperature-start", type=float, default=None,
        help="Gumbel-softmax temperature at step 0 (default: 1; with --pretrained, --temperature-end: no second anneal)",
    )
    dvae.add_argument("--temperature-end", type=float, default=1 / 16, help="temperature after the anneal")
    dvae.add_argument("--temperature-steps", type=int, default=4000, help="steps of the cosine anneal")
    dvae.add_argument("--kl-weight", type=float, default=1.0, help="weight of KL to the uniform prior (per element)")
    dvae.add_argument(
        "--kl-ramp-steps", type=int, default=0, help="steps over which the KL weight rises from 0 (0: full from the start)"
    )
    dvae.add_argument(
        "--kl-weight-end", type=float, default=None,
        help="after the temperature anneal, lower the KL weight to this along a cosine (default: keep it)",
    )
    dvae.add_argument("--kl-decay-steps", type=int, default=2000, help="steps of that decay")
    dvae.add_argument("--straight-through", action="store_true", help="decode hard codes, gradients through soft")
    dvae.add_argument("--random-flip", action="store_true", help="mirror training images at random")
    dvae.add_argument(
        "--pretrained", default=None, metavar="PATH",
        help="fine-tune this discrete VAE (or a discrete-VAE pipeline's vae/) instead of a new one",
    )
    new_model_options(
        dvae, "--image-size", "--num-tokens", "--codebook-dim", "--hidden-channels", "--num-layers", "--num-resnet-blocks"
    )
    add_training_arguments(dvae)

    prior = add_command(
        recipes, "dvae-prior", _train_dvae_prior,
        "discrete-VAE baseline, stage 2: a transformer over cached image tokens; every checkpoint is a pipeline",
    )
    prior.add_argument("--dvae", default=None, help="trained discrete VAE folder (a checkpoint's model/)")
    prior.add_argument(
        "--pretrained", default=None, metavar="PIPELINE",
        help="fine-tune this discrete-VAE pipeline's prior (with its discrete VAE and frozen text encoder) instead of "
        "a new prior over --dvae",
    )
    prior.add_argument("--data", default="shapes", help=data_help)
    prior.add_argument("--image-size", type=int, default=None, help="image side in pixels (default and only choice: the dVAE's)")
    add_text_encoder_arguments(prior)
    prior.add_argument("--hidden-size", type=int, default=256, help="transformer width")
    prior.add_argument("--num-layers", type=int, default=4, help="transformer layers")
    prior.add_argument("--num-heads", type=int, default=4, help="attention heads")
    prior.add_argument("--dropout", type=float, default=0.0, help="transformer dropout")
    prior.add_argument("--caption-dropout", type=float, default=0.1, help="probability of the empty prompt (for guidance)")
    prior.add_argument("--random-flip", action="store_true", help="cache mirrored tokens too and pick one at random")
    new_model_options(prior, "--text-encoder", "--max-length", "--text-hidden-size", "--text-layers", "--hidden-size", "--num-layers", "--num-heads", "--dropout")
    add_validation_prompts_argument(prior)
    add_training_arguments(prior)
