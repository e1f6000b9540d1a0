"""Language-model backends behind one protocol (:class:`~agents.backends.base.Backend`).

- :class:`~agents.backends.transformers_backend.TransformersBackend`: a local model;
- :class:`~agents.backends.http.OpenAIBackend`: an OpenAI-compatible server (vLLM,
  llama.cpp, TGI), the scale-out path;
- :func:`load_backend`: either one from a command-line style spec.

Heavy libraries (torch, transformers, httpx) are imported only when a backend is built.
"""

from __future__ import annotations

from pathlib import Path

from agents.backends.base import (
    Backend,
    BackendError,
    Completion,
    GenerationParams,
    Message,
    Prompt,
    Score,
)

__all__ = [
    "Backend",
    "BackendError",
    "Completion",
    "GenerationParams",
    "Message",
    "Prompt",
    "Score",
    "load_backend",
]


def load_backend(
    spec: str,
    *,
    adapter: str | Path | None = None,
    threads: int | None = None,
    tokenizer: str | None = None,
    generation_dtype: str = "auto",
    draft_tokens: int = 8,
) -> Backend:
    """A backend from ``spec``:

    - ``"smollm2"``: the offline default model (converted on first use, see
      :mod:`agents.backends.default_model`);
    - ``"http://HOST:PORT/v1"`` (or https): an OpenAI-compatible server; ``tokenizer``
      (``"smollm2"``, a folder or a hub id) renders chat prompts client-side, which
      scoring needs;
    - ``"vllm:MODEL"`` (MODEL: ``smollm2``, a folder or a hub id): the model run in-process
      by vLLM (:class:`~agents.backends.vllm_backend.VLLMBackend`; needs ``vllm``
      importable, see docs/vllm.md);
    - a local model folder, or a hub id (needs network access).

    ``adapter`` (a PEFT folder) and ``threads`` apply to local models only (``threads``
    to vLLM on CPU too); so do ``generation_dtype`` and ``draft_tokens`` (transformers
    models only: see :class:`~agents.backends.transformers_backend.TransformersBackend`).
    """
    from agents.backends import default_model

    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str (a model name, folder or URL), got {spec!r:.80}")
    if not spec.strip():  # Path('') is the current folder
        raise ValueError("spec is empty: give a model name, folder or URL")
    if spec.lower().startswith(("http://", "https://")):
        if adapter is not None:
            raise ValueError("--adapter applies to local models; load it into the server instead")
        from agents.backends.http import OpenAIBackend

        if tokenizer == default_model.NAME:
            tokenizer = str(default_model.model_dir())
        return OpenAIBackend(spec, tokenizer=tokenizer)
    if spec.lower().startswith("vllm:"):
        model = spec[len("vllm:") :]
        if not model.strip():
            raise ValueError("vllm: needs a model: vllm:smollm2, vllm:FOLDER or vllm:HUB_ID")
        if adapter is not None:
            raise ValueError("--adapter is not supported with vllm:; merge it into the model")
        from agents.backends.vllm_backend import VLLMBackend

        path = default_model.model_dir() if model == default_model.NAME else model
        return VLLMBackend(path, threads=threads, name=spec)
    from agents.backends.transformers_backend import TransformersBackend

    options = {
        "adapter": adapter,
        "threads": threads,
        "generation_dtype": generation_dtype,
        "draft_tokens": draft_tokens,
    }
    if spec == default_model.NAME:
        return TransformersBackend(default_model.model_dir(), name=spec, **options)
    return TransformersBackend(spec, **options)
