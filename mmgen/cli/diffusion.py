"""The latent-diffusion family's training commands: `mmgen train autoencoder` and `mmgen
train ldm`."""

from __future__ import annotations

import argparse

from mmgen.cli.common import (
    add_command, add_text_encoder_arguments, add_training_arguments, add_validation_prompts_argument, int_list,
    new_model_options, report_training, training_config_from_args, validation_prompts_from_args,
)


def _train_autoencoder(args: argparse.Namespace) -> None:
    from mmgen.diffusion.training import train_autoencoder

    result = train_autoencoder(
        training_config_from_args(args), data=args.data, image_size=args.image_size,
        block_out_channels=args.block_out_channels, latent_channels=args.latent_channels,
        kl_weight=args.kl_weight, reconstruction_loss=args.reconstruction_loss, random_flip=args.random_flip,
        pretrained=args.pretrained,
    )
    report_training(result, "autoencoder")


def _train_ldm(args: argparse.Namespace) -> None:
    from mmgen.diffusion.training import train_ldm

    result = train_ldm(
        training_config_from_args(args), autoencoder=args.autoencoder, data=args.data, image_size=args.image_size,
        text_encoder=args.text_encoder, max_length=args.max_length, text_hidden_size=args.text_hidden_size,
        text_layers=args.text_layers, block_out_channels=args.block_out_channels,
        layers_per_block=args.layers_per_block, attention_head_dim=args.attention_head_dim,
        prediction_type=args.prediction_type, snr_gamma=args.snr_gamma, caption_dropout=args.caption_dropout,
        random_flip=args.random_flip, caption_variants=args.caption_variants,
        gradient_checkpointing=args.gradient_checkpointing, xformers=args.xformers,
        prompts=validation_prompts_from_args(args.validation_prompts), pretrained=args.pretrained,
        lora_rank=args.lora_rank, train_text_encoder=args.train_text_encoder, preservation_data=args.preservation_data,
    )
    report_training(result, "LoRA adapters" if args.lora_rank else "pipeline")


def add_train_commands(recipes, data_help: str) -> None:
    autoencoder = add_command(
        recipes, "autoencoder", _train_autoencoder,
        "latent diffusion, stage 1: a diffusers AutoencoderKL, from scratch",
    )
    autoencoder.add_argument("--data", default="shapes", help=data_help)
    autoencoder.add_argument(
        "--image-size", type=int, default=None, help="image side in pixels (default: 64, or the --pretrained autoencoder's)"
    )
    autoencoder.add_argument(
        "--block-out-channels", type=int_list, default=(32, 64, 128, 128),
        help="encoder widths; the image shrinks 2x per block after the first",
    )
    autoencoder.add_argument("--latent-channels", type=int, default=4, help="channels of the latent")
    autoencoder.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the KL term (per element)")
    autoencoder.add_argument(
        "--reconstruction-loss", choices=("mse", "l1"), default="mse",
        help="pixel loss; L1's sign gradients drowned hue on mostly-background images",
    )
    autoencoder.add_argument("--random-flip", action="store_true", help="mirror training images at random")
    autoencoder.add_argument(
        "--pretrained", default=None, metavar="PATH",
        help="fine-tune this AutoencoderKL (or a pipeline's vae/, e.g. checkpoints/shapes-ldm) instead of a new one",
    )
    new_model_options(autoencoder, "--block-out-channels", "--latent-channels")
    add_training_arguments(autoencoder)

    ldm = add_command(
        recipes, "ldm", _train_ldm,
        "latent diffusion, stage 2: a text-conditioned UNet on cached latents; every checkpoint is a pipeline",
    )
    ldm.add_argument(
        "--autoencoder", default=None, help="trained AutoencoderKL folder (a checkpoint's model/, or a pipeline: its vae/)"
    )
    ldm.add_argument(
        "--pretrained", default=None, metavar="PIPELINE",
        help="fine-tune this pipeline (Stable Diffusion layout, e.g. checkpoints/shapes-ldm): its UNet trains on its own "
        "autoencoder and frozen text encoder, instead of a new UNet over --autoencoder",
    )
    ldm.add_argument(
        "--lora-rank", type=int, default=None, metavar="R",
        help="with --pretrained: train only rank-R LoRA adapters on the UNet's attention (peft); checkpoints hold "
        "pytorch_lora_weights.safetensors for mmgen sample --lora or diffusers' load_lora_weights",
    )
    ldm.add_argument(
        "--preservation-data", default=None, metavar="SOURCE",
        help="with --lora-rank: images and captions of what the pipeline already draws (e.g. its training data), "
        "trained beside --data with the base's own predictions as targets, so that the adapters leave them alone "
        "(read with the same --image-column/--text-column)",
    )
    ldm.add_argument(
        "--train-text-encoder", action="store_true",
        help="train the text encoder with the UNet (a pretrained one, MiniLM or --pretrained's, is otherwise frozen and "
        "its states cached); each step then runs it forward and backward",
    )
    ldm.add_argument("--data", default="shapes", help=data_help)
    ldm.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: the autoencoder's)")
    add_text_encoder_arguments(ldm)
    ldm.add_argument("--block-out-channels", type=int_list, default=(64, 128), help="UNet widths per resolution")
    ldm.add_argument("--layers-per-block", type=int, default=1, help="UNet resnet layers per block")
    ldm.add_argument("--attention-head-dim", type=int, default=8, help="UNet attention head width")
    ldm.add_argument(
        "--prediction-type", default=None, choices=("epsilon", "v_prediction"),
        help="UNet target (default: epsilon; with --pretrained, the pipeline's)",
    )
    ldm.add_argument("--snr-gamma", type=float, default=None, help="min-SNR loss weighting gamma (e.g. 5)")
    ldm.add_argument("--caption-dropout", type=float, default=0.1, help="probability of the empty prompt (for guidance)")
    ldm.add_argument("--random-flip", action="store_true", help="cache mirrored latents too and pick one at random")
    ldm.add_argument("--gradient-checkpointing", action="store_true", help="recompute UNet activations (less memory)")
    ldm.add_argument(
        "--xformers", action="store_true",
        help="xformers memory-efficient attention (CUDA + the xformers extra); default: PyTorch SDPA",
    )
    new_model_options(ldm, "--text-encoder", "--max-length", "--text-hidden-size", "--text-layers", "--block-out-channels", "--layers-per-block", "--attention-head-dim")
    add_validation_prompts_argument(ldm)
    add_training_arguments(ldm)
