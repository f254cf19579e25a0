# Sourced by the train scripts (from the repository root): ship_checkpoint MODEL NAME replaces
# checkpoints/NAME, all but its README, with the trained model folder MODEL; a missing or
# empty MODEL stops the script before anything shipped is deleted.
ship_checkpoint() {
    local model=$1 name=$2
    if [ ! -d "$model" ] || [ -z "$(ls -A "$model")" ]; then
        echo "no trained model at $model: checkpoints/$name left as it is" >&2
        exit 1
    fi
    find "checkpoints/$name" -mindepth 1 ! -name README.md -delete 2>/dev/null || true
    mkdir -p "checkpoints/$name" && cp -r "$model"/. "checkpoints/$name/"
}
