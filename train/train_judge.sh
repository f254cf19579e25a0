#!/usr/bin/env bash
# Reproduces checkpoints/shapes-judge: trains the Shapes judge on the shared loop (about
# 4 minutes on 2 CPU cores), copies its final EMA weights into the repo and measures it.
#   bash train/train_judge.sh [RUN_DIR]     (re-running resumes from RUN_DIR's last checkpoint)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-$HOME/mmgen-runs/shapes-judge}
MMGEN=${MMGEN:-.venv/bin/mmgen}

"$MMGEN" train judge --output-dir "$RUN" --data shapes --image-size 64 \
    --max-steps 1500 --batch-size 64 --learning-rate 2e-3 --lr-scheduler cosine --lr-warmup-steps 100 \
    --ema-decay 0.999 --checkpoint-every 250 --validate-every 250 --seed 0 --resume latest
cp "$RUN"/checkpoints/checkpoint-0001500/model/* checkpoints/shapes-judge/
"$MMGEN" eval --task judge --model checkpoints/shapes-judge --n 2000 --out "$RUN/judge-eval.json"
