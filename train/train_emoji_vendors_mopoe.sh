#!/usr/bin/env bash
# A MoPoE VAE over real emoji drawn by two vendors: Google's and Twitter's 64 px glyphs of
# one emoji, its Unicode name (read by the frozen MiniLM) and its category
# (train/emoji_vendors_modalities.json); it draws the other vendor's glyph, the name and
# the category from one vendor's glyph. Builds the data from the npm packages first if it
# is missing, trains a category classifier on both vendors' glyphs, and measures
# coherence (the category the classifier reads in drawn glyphs) on the held-out names.
#   bash train/train_emoji_vendors_mopoe.sh [RUN_DIR] [EPOCHS]
# The packages: npm pack emoji-datasource-google emoji-datasource-twitter, then
# GOOGLE=emoji-datasource-google-*.tgz TWITTER=emoji-datasource-twitter-*.tgz.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-$HOME/mmgen-runs/emoji-vendors}
EPOCHS=${2:-20}
MMGEN=${MMGEN:-.venv/bin/mmgen}
DATA=${DATA:-$HOME/mmgen-runs/data/emoji2}

[ -f "$DATA/heldout/metadata.jsonl" ] || "$MMGEN" data emoji --package "$GOOGLE" "$TWITTER" --out "$DATA"

# 10 epochs of batch 64 over both vendors' glyphs (2 x 3,624 - the missing ones): 1,130 steps.
"$MMGEN" train classifier --data "$DATA/train" --label category --image-columns file_name image_twitter \
    --validation-data "$DATA/heldout" --output-dir "$RUN/classifier" --epochs 10 --batch-size 64 \
    --learning-rate 2e-3 --lr-scheduler cosine --checkpoint-every 100000 --seed 0 --report-to none --resume latest
CLASSIFIER=$(ls -d "$RUN"/classifier/checkpoints/checkpoint-* | tail -1)/model

"$MMGEN" train mvae --output-dir "$RUN/mopoe" --data "$DATA/train" --modalities train/emoji_vendors_modalities.json \
    --aggregation mopoe --latent-dim 64 --text-encoder minilm --max-length 32 \
    --epochs "$EPOCHS" --batch-size 64 --learning-rate 1e-3 --lr-scheduler constant_with_warmup --lr-warmup-steps 100 \
    --ema-decay 0.999 --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest
MODEL=$(ls -d "$RUN"/mopoe/checkpoints/checkpoint-* | tail -1)/model

for SPLIT in heldout train; do
    "$MMGEN" eval --task impute --model "$MODEL" --data "$DATA/$SPLIT" --label category \
        --classifier google="$CLASSIFIER" twitter="$CLASSIFIER" --n 162 --batch-size 54 --out "$RUN/eval-$SPLIT.json"
done
