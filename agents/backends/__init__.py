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
) -> Backend:
    """A backend from ``spec``:

    - ``"smollm2"``: the offline default model (converted on first use, see
      :mod:`agents.backends.default_model`);
    - ``"http://HOST:PORT/v1"`` (or https): an OpenAI-compatible server; ``tokenizer``
      (``"smollm2"``, a folder or a hub id) renders chat prompts client-side, which
      scoring needs;
    - a local model folder, or a hub id (needs network access).

    ``adapter`` (a PEFT folder) and ``threads`` apply to local models only.
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
    from agents.backends.transformers_backend import TransformersBackend

    if spec == default_model.NAME:
        return TransformersBackend(
            default_model.model_dir(), adapter=adapter, threads=threads, name=spec
        )
    return TransformersBackend(spec, adapter=adapter, threads=threads)
