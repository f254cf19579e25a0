#!/usr/bin/env bash
# Reproduces checkpoints/shapes-dvae: the discrete-VAE baseline on 64 x 64 Shapes, both
# stages, on the shared loop, with the text encoder of checkpoints/shapes-ldm (frozen, the
# same weights), then copies the pipeline into the repo and measures it. Re-running resumes
# each stage from its last checkpoint.
#   bash train/train_shapes_dvae.sh [RUN_DIR] [PRIOR_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
source train/ship_checkpoint.sh
RUN=${1:-$HOME/mmgen-runs/shapes-dvae}
PRIOR_STEPS=${2:-4500}
MMGEN=${MMGEN:-.venv/bin/mmgen}

# Stage 1: discrete VAE, 64 x 64 x 3 -> 8 x 8 tokens of 512 codes.
"$MMGEN" train dvae --output-dir "$RUN/dvae" --data shapes --image-size 64 \
    --num-tokens 512 --codebook-dim 256 --hidden-channels 64 --num-layers 3 --num-resnet-blocks 1 \
    --kl-weight 1 --kl-ramp-steps 0 --kl-weight-end 0.01 --kl-decay-steps 2000 --temperature-steps 4000 \
    --max-steps 6000 --batch-size 32 --learning-rate 1e-3 --lr-scheduler cosine --lr-warmup-steps 200 \
    --ema-decay 0.999 --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest

# Stage 2: the transformer prior over cached image tokens, reading cached states of the
# latent-diffusion checkpoint's text encoder (MiniLM, 77 tokens) on augmented captions.
"$MMGEN" train dvae-prior --output-dir "$RUN/prior" --data shapes --image-size 64 \
    --dvae "$RUN/dvae/checkpoints/checkpoint-0006000/model" --text-encoder checkpoints/shapes-ldm \
    --max-length 77 --caption-variants 48 \
    --hidden-size 256 --num-layers 4 --num-heads 4 --caption-dropout 0.1 \
    --max-steps "$PRIOR_STEPS" --batch-size 64 --learning-rate 1e-3 --lr-scheduler constant_with_warmup \
    --lr-warmup-steps 200 --ema-decay 0.999 --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest

PIPELINE="$RUN/prior/checkpoints/checkpoint-$(printf %07d "$PRIOR_STEPS")/model"
ship_checkpoint "$PIPELINE" shapes-dvae
"$MMGEN" eval --task reconstruct --model checkpoints/shapes-dvae/vae --n 1000 --out "$RUN/eval-vae.json"
"$MMGEN" eval --task text-to-image --model checkpoints/shapes-dvae --n 1000 --out "$RUN/eval-text-to-image.json"
