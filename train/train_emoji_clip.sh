#!/usr/bin/env bash
# Reproduces checkpoints/emoji-clip: a contrastive image-text model of real emoji, Google's
# and Twitter's 64 px glyphs each paired with the emoji's Unicode name read by the frozen
# MiniLM, then measures retrieval among 100 captions on the held-out names and on training
# emoji. Builds the data from the npm packages first if it is missing.
#   bash train/train_emoji_clip.sh [RUN_DIR] [STEPS]
# The packages: npm pack emoji-datasource-google emoji-datasource-twitter, then
# GOOGLE=emoji-datasource-google-*.tgz TWITTER=emoji-datasource-twitter-*.tgz.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/ship_checkpoint.sh
RUN=${1:-$HOME/mmgen-runs/emoji-clip}
STEPS=${2:-1500}
MMGEN=${MMGEN:-.venv/bin/mmgen}
DATA=${DATA:-$HOME/mmgen-runs/data/emoji2}

[ -f "$DATA/heldout/metadata.jsonl" ] || "$MMGEN" data emoji --package "$GOOGLE" "$TWITTER" --out "$DATA"

"$MMGEN" train clip --output-dir "$RUN" --data "$DATA/train" --image-columns file_name image_twitter \
    --validation-data "$DATA/heldout" --max-steps "$STEPS" --batch-size 256 --learning-rate 1e-3 --weight-decay 0.1 \
    --lr-scheduler cosine --lr-warmup-steps 100 --ema-decay none --checkpoint-every 250 --validate-every 250 \
    --seed 0 --resume latest

MODEL="$RUN/checkpoints/checkpoint-$(printf %07d "$STEPS")/model"
ship_checkpoint "$MODEL" emoji-clip
for SPLIT in heldout train; do
    "$MMGEN" eval --task retrieval --model checkpoints/emoji-clip --data "$DATA/$SPLIT" --n 1000 --out "$RUN/eval-$SPLIT.json"
done
