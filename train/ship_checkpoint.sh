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
    # diffusers records where a loaded component came from (_name_or_path): a path of this
    # machine's, not the shipped folder's. Rewritten as diffusers writes configs.
    find "checkpoints/$name" -name "*.json" -exec python3 -c '
import json, sys
for path in sys.argv[1:]:
    config = json.load(open(path, encoding="utf-8"))
    if isinstance(config, dict) and config.pop("_name_or_path", None) is not None:
        open(path, "w", encoding="utf-8").write(json.dumps(config, indent=2, sort_keys=True) + "\n")
' {} +
}
