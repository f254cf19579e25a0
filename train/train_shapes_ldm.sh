#!/usr/bin/env bash
# Reproduces checkpoints/shapes-ldm: latent diffusion on 64 x 64 Shapes, all stages, on the
# shared loop, then copies the pipeline into the repo and measures it. Re-running resumes
# each stage from its last checkpoint.
#   bash train/train_shapes_ldm.sh [RUN_DIR] [LDM_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
source train/ship_checkpoint.sh
RUN=${1:-$HOME/mmgen-runs/shapes-ldm}
LDM_STEPS=${2:-16000}
MMGEN=${MMGEN:-.venv/bin/mmgen}

# Stage 1: AutoencoderKL, 64 x 64 x 3 -> 8 x 8 x 4.
"$MMGEN" train autoencoder --output-dir "$RUN/autoencoder" --data shapes --image-size 64 \
    --block-out-channels 16,32,64,64 --latent-channels 4 --kl-weight 1e-6 --reconstruction-loss mse \
    --max-steps 2500 --batch-size 32 --learning-rate 1e-3 --lr-scheduler cosine --lr-warmup-steps 100 \
    --ema-decay 0.999 --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest

# Stage 2: a text-conditioned UNet reading the frozen MiniLM (77 tokens, states cached),
# on augmented captions: 48 phrasings per attribute combination (`--caption-variants`).
"$MMGEN" train ldm --output-dir "$RUN/ldm" --data shapes --image-size 64 \
    --autoencoder "$RUN/autoencoder/checkpoints/checkpoint-0002500/model" \
    --text-encoder minilm --max-length 77 --caption-variants 48 \
    --block-out-channels 64,128 --layers-per-block 1 --attention-head-dim 8 --caption-dropout 0.1 \
    --max-steps "$LDM_STEPS" --batch-size 64 --learning-rate 3e-4 --lr-scheduler constant_with_warmup \
    --lr-warmup-steps 500 --ema-decay 0.999 --checkpoint-every 1000 --validate-every 1000 --seed 0 --resume latest

# Stage 3: the stage-2 pipeline fine-tuned on the grown caption grammar (stressed positions,
# an edge's other axis spelled out, dot/ball/box/block, 15% typos: mmgen/data/shapes_text.py).
# The shipped UNet was trained with the grammar of commit cfbfd70, stage 2 with that of 0227250.
"$MMGEN" train ldm --output-dir "$RUN/ldm-phrasing" \
    --pretrained "$RUN/ldm/checkpoints/checkpoint-$(printf %07d "$LDM_STEPS")/model" --data shapes \
    --caption-variants 16 --max-steps 4782 --batch-size 64 --learning-rate 2e-4 --lr-scheduler constant_with_warmup \
    --lr-warmup-steps 200 --ema-decay 0.999 --checkpoint-every 500 --seed 1 --resume latest

PIPELINE="$RUN/ldm-phrasing/checkpoints/checkpoint-0004782/model"
ship_checkpoint "$PIPELINE" shapes-ldm
"$MMGEN" eval --task reconstruct --model checkpoints/shapes-ldm/vae --n 1000 --out "$RUN/eval-vae.json"
"$MMGEN" eval --task text-to-image --model checkpoints/shapes-ldm --n 1000 --steps 20 --scheduler dpm++ \
    --out "$RUN/eval-dpm++-20.json"
