#!/usr/bin/env bash
# Reproduces checkpoints/shapes-mopoe: a MoPoE VAE over 64 x 64 Shapes images, their
# captions (augmented: 48 phrasings per attribute combination, read by the frozen MiniLM)
# and their four attributes (each hidden with probability 0.25 in training), on the shared
# loop; copies it into the repo and measures its coherence. Re-running resumes from the
# last checkpoint.
#   bash train/train_shapes_mopoe.sh [RUN_DIR] [STEPS] [AGGREGATION] [MISSING_FRACTION]
# Anything but the shipped recipe (12,000 steps, mopoe, nothing missing, HIDE=0.25, no
# PRIVATE, SCALE=0.1) trains and measures that model in its own folder of RUN_DIR and
# copies nothing: another AGGREGATION (poe: MVAE, moe: MMVAE), a MISSING_FRACTION above 0,
# HIDE=P in the environment (attributes hidden with probability P; the README's
# comparisons use 0), PRIVATE=image=8 (private latents, MMVAE+) or SCALE=S (the image
# likelihood's scale).
set -euo pipefail
cd "$(dirname "$0")/.."
source train/ship_checkpoint.sh
RUN=${1:-$HOME/mmgen-runs/shapes-mopoe}
STEPS=${2:-12000}
AGGREGATION=${3:-mopoe}
MISSING=${4:-0}
HIDE=${HIDE:-0.25}
PRIVATE=${PRIVATE:-}
SCALE=${SCALE:-0.1}
MMGEN=${MMGEN:-.venv/bin/mmgen}
NAME=$AGGREGATION$([ "$MISSING" = 0 ] || echo "-missing$MISSING")$([ "$HIDE" = 0 ] || echo "-hide$HIDE")$([ -z "$PRIVATE" ] || echo "-private")$([ "$SCALE" = 0.1 ] || echo "-scale$SCALE")

# A constant learning rate after warmup: nothing before step N depends on --max-steps.
"$MMGEN" train mvae --output-dir "$RUN/$NAME" --data shapes --aggregation "$AGGREGATION" \
    --missing-fraction "$MISSING" --attribute-hide-probability "$HIDE" --image-likelihood gaussian --image-scale "$SCALE" \
    --likelihood-weights text=20,attributes=50 --latent-dim 32 ${PRIVATE:+--private-dims "$PRIVATE"} \
    --text-encoder minilm --max-length 32 --caption-variants 48 \
    --max-steps "$STEPS" --batch-size 64 --learning-rate 1e-3 --lr-scheduler constant_with_warmup \
    --lr-warmup-steps 200 --ema-decay 0.999 --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest

MODEL="$RUN/$NAME/checkpoints/checkpoint-$(printf %07d "$STEPS")/model"
if [ "$NAME" = mopoe-hide0.25 ] && [ "$STEPS" = 12000 ]; then
    ship_checkpoint "$MODEL" shapes-mopoe
    MODEL=checkpoints/shapes-mopoe
fi
"$MMGEN" eval --task impute --model "$MODEL" --n 1000 --out "$RUN/eval-$NAME-$STEPS.json"
