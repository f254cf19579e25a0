# One-command setup on a fresh clone: `make demo` (images from a prompt) and `make test` (test suite).
# Torch is installed first, from TORCH_SPEC (+ PIP_TORCH_ARGS), so nothing else pulls another build:
#   make test          # torch==2.13.0: the local CPU wheel on mmgen's dev/CI machines
#   make test PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"      # CPU-only elsewhere
#   make demo TORCH_SPEC="torch==2.5.1" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	# Pin whatever torch build was just installed, so no dependency replaces it.
	$(BIN)/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet --constraint $(VENV)/constraints.txt -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/mmgen sample "a large red circle in the top left" "a small blue star in the middle" \
		-n 4 --steps 20 --seed 0 --out outputs/sample.png

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) outputs
