#!/usr/bin/env bash
# Reproduces checkpoints/emoji-ldm: latent diffusion on real emoji (Google's 64 px glyphs,
# captioned with their names; data from `mmgen data emoji`), judged by checkpoints/emoji-clip
# on held-out and training names. Re-running resumes each stage from its last checkpoint;
# LDM_STEPS, MORE_STEPS and LAST_STEPS can grow between runs (the learning rate is constant
# after warmup, so a longer run passes through the same steps), ANNEAL_STEPS cannot (its
# rate decays over the whole stage: delete ldm-annealed to change it); once a later stage has
# run, delete its folders (ldm-continued*, ldm-annealed) first, or it resumes from the
# earlier stage's old end.
#   bash train/train_emoji_ldm.sh [RUN_DIR] [LDM_STEPS] [MORE_STEPS] [LAST_STEPS] [ANNEAL_STEPS]
# The packages: npm pack emoji-datasource-google emoji-datasource-twitter, then
# GOOGLE=emoji-datasource-google-*.tgz TWITTER=emoji-datasource-twitter-*.tgz.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/ship_checkpoint.sh
RUN=${1:-$HOME/mmgen-runs/emoji-ldm}
LDM_STEPS=${2:-10000}
MORE_STEPS=${3:-5000}
LAST_STEPS=${4:-4000}
ANNEAL_STEPS=${5:-2000}
MMGEN=${MMGEN:-.venv/bin/mmgen}
DATA=${DATA:-$HOME/mmgen-runs/data/emoji2}

VALIDATION=("red heart" "green heart" "blue heart" "purple heart" "yellow heart" "grinning face" "france flag" "dog face")

[ -f "$DATA/heldout/metadata.jsonl" ] || "$MMGEN" data emoji --package "$GOOGLE" "$TWITTER" --out "$DATA"

# Stage 1: AutoencoderKL, 64 x 64 x 3 -> 16 x 16 x 4 (emoji hold text, faces and flags:
# 8 x 8 latents smear them).
"$MMGEN" train autoencoder --output-dir "$RUN/autoencoder" --data "$DATA/train" --image-size 64 \
    --block-out-channels 32,64,128 --latent-channels 4 --kl-weight 1e-6 --reconstruction-loss mse \
    --max-steps 2000 --batch-size 32 --learning-rate 1e-3 --lr-scheduler cosine --lr-warmup-steps 100 \
    --ema-decay 0.999 --checkpoint-every 500 --keep-last none --validate-every 500 --seed 0 --resume latest
# The shipped pipeline's autoencoder is the step-1,000 checkpoint of this 2,000-step cosine
# run (held-out PSNR 29.3 dB there already; the CPU went to the UNet instead).
AUTOENCODER="$RUN/autoencoder/checkpoints/checkpoint-0001000/model"
"$MMGEN" eval --task reconstruct --model "$AUTOENCODER" --data "$DATA/heldout" --n 1000 --out "$RUN/eval-autoencoder-heldout.json"

# Stage 2: the UNet on the frozen MiniLM's states of the names and 4 restyled copies of each
# (case, punctuation, lead-ins: prompts as people type them).
"$MMGEN" train ldm --output-dir "$RUN/ldm" --data "$DATA/train" --autoencoder "$AUTOENCODER" \
    --text-encoder minilm --max-length 77 --caption-variants 4 \
    --block-out-channels 64,128,256 --layers-per-block 1 --attention-head-dim 8 --caption-dropout 0.1 \
    --max-steps "$LDM_STEPS" --batch-size 32 --learning-rate 3e-4 --lr-scheduler constant_with_warmup \
    --lr-warmup-steps 500 --ema-decay 0.999 --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest \
    --validation-prompts "${VALIDATION[@]}"

PIPELINE="$RUN/ldm/checkpoints/checkpoint-$(printf %07d "$LDM_STEPS")/model"

# Stages 3 to 5 (the shipped weights: 10,000 + 5,000 + 4,000 + 2,000 steps): the same objective
# continued from the last pipeline, each with a fresh optimizer and seed; the learning rate is
# constant after warmup, and in the last stage decays to zero (a cosine), which settles what the
# constant rate left wavering (purple hearts between purple and pink). continue_training FOLDER
# STEPS SEED [SCHEDULE] trains STEPS more steps from $PIPELINE, then points $PIPELINE at their
# last checkpoint.
continue_training() {
    "$MMGEN" train ldm --output-dir "$RUN/$1" --pretrained "$PIPELINE" --data "$DATA/train" \
        --max-length 77 --caption-variants 4 --caption-dropout 0.1 \
        --max-steps "$2" --batch-size 32 --learning-rate 3e-4 --lr-scheduler "${4:-constant_with_warmup}" \
        --lr-warmup-steps 100 --ema-decay 0.999 --checkpoint-every 500 --validate-every 1000 --seed "$3" \
        --resume latest --validation-prompts "${VALIDATION[@]}"
    PIPELINE="$RUN/$1/checkpoints/checkpoint-$(printf %07d "$2")/model"
}
continue_training ldm-continued "$MORE_STEPS" 1
continue_training ldm-continued-2 "$LAST_STEPS" 2
continue_training ldm-annealed "$ANNEAL_STEPS" 3 cosine
ship_checkpoint "$PIPELINE" emoji-ldm
for SPLIT in heldout train; do
    "$MMGEN" eval --task text-to-image --model checkpoints/emoji-ldm --data "$DATA/$SPLIT" --clip checkpoints/emoji-clip \
        --n 300 --steps 20 --guidance-scale 3 --out "$RUN/eval-$SPLIT-guidance-3.json"
done
"$MMGEN" sample "red heart" "green heart" "blue heart" "purple heart" "yellow heart" "grinning face" "france flag" \
    "dog face" "thinking face" "fox face" "norway flag" "switzerland flag" "ghost" "maple leaf" "ice cream" \
    "large red square" --model checkpoints/emoji-ldm -n 4 --seed 0 --steps 20 --scheduler dpm++ --out checkpoints/emoji-ldm/grid.png
"$MMGEN" sample "red heart" "green heart" "blue heart" "purple heart" "yellow heart" --model checkpoints/emoji-ldm \
    -n 16 --seed 100 --steps 20 --out checkpoints/emoji-ldm/hearts.png
.venv/bin/python train/count_colours.py checkpoints/emoji-ldm -n 32
.venv/bin/python train/count_colours.py checkpoints/emoji-ldm -n 32 --noun balloon
.venv/bin/python train/heart_names.py checkpoints/emoji-ldm --data "$DATA/train"
