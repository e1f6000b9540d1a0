"""Run a llama.cpp OpenAI-compatible server (``llama_cpp.server``) as a child process.

Used by the HTTP backend's tests and by the speed benchmark to get a real server for a
GGUF file without any set-up::

    with LlamaServer(gguf_path()) as server:
        backend = OpenAIBackend(server.base_url, tokenizer=model_dir())

The command line is ``python -m llama_cpp.server --model GGUF --host 127.0.0.1 --port PORT
--n_ctx 2048 --n_threads N --n_threads_batch N --logits_all true``. ``logits_all`` (the
server's default, stated so a changed default cannot silently break scoring): without it
llama-cpp-python refuses ``logprobs``, which scoring (``echo`` + ``logprobs``) needs.
``n_threads_batch`` is set too, since prompt evaluation uses it, not ``n_threads``.

Things worth knowing about this server (llama-cpp-python 0.3):

- it serves one request at a time; concurrent requests queue, so client concurrency
  only hides network latency;
- echoed log-probabilities cost about 0.1 s per token of Python on a small CPU (it sorts
  the whole vocabulary for every token, whatever ``logprobs`` asks for), far more than
  evaluating the model: scoring is much slower than generating the same number of tokens;
- echoed log-probabilities are aligned only when the prompt starts with the model's
  beginning-of-sequence token: llama-cpp-python drops that token from the echo and reads
  the log-probability of token ``i`` from the logits at ``i - 1`` only in that case;
  otherwise each token is scored by the logits that follow it (garbage, about -10 nats a
  token, checked). SmolLM2's chat template starts with ``<|im_start|>``, which is its
  BOS token, so chat prompts score correctly (the tests compare with transformers); a
  model whose rendered prompt starts otherwise cannot be scored through this server;
- llama.cpp's threads spin while waiting for each other: with more threads than free
  cores (other jobs, the client itself) it slows down several-fold; pass a smaller
  ``n_threads`` on a shared machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Self

import httpx

from agents.backends.base import BackendError

_INSTALL_HINT = "pip install 'llama-cpp-python[server]' (or: pip install 'mfllm-env[server]')"
_STDERR_TAIL = 2000  # characters of the server's output quoted when it fails


def _free_port() -> int:
    """A port that was free a moment ago (the OS picks it; tiny race, fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """An OpenAI-compatible server run as a child process on 127.0.0.1; the common part of
    :class:`LlamaServer` and :class:`~agents.backends.vllm_server.VLLMServer`.

    Entering the context starts the server on a free port (or ``port``) and waits until
    ``GET /v1/models`` answers (at most ``startup_timeout`` seconds); leaving it sends
    SIGTERM to the server's process group (the server and any workers it started), then
    SIGKILL after ``grace`` seconds. :attr:`base_url` is the API root to give
    :class:`~agents.backends.http.OpenAIBackend`. A subclass says what to run
    (:meth:`_command`), with which environment (:meth:`_environment`), and what to check
    first (:meth:`_check`).
    """

    kind = "server"
    """What the server is, in messages (``the llama.cpp server exited ...``)."""

    def __init__(self, *, port: int | None, startup_timeout: float, grace: float) -> None:
        self.port = port
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.base_url = ""
        self.command: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _check(self) -> None:
        """Raise :class:`BackendError` if the server cannot start (checked before it runs)."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        """The server's environment; ``None``: this process's."""
        return None

    def start(self) -> Self:
        """Start the server and wait until it answers; returns ``self``."""
        if self._process is not None:
            raise BackendError(f"the {self.kind} server at {self.base_url} is already running")
        self._check()
        port = self.port or _free_port()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.command = self._command(port)
        # Output goes to a file, not a pipe: nobody reads a pipe while the server runs,
        # and a full pipe would block the server mid-request.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self._process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._environment(),
            start_new_session=True,  # its own process group, so stop() reaches its workers
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        url = f"{self.base_url}/models"
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise BackendError(
                        f"the {self.kind} server exited with code {code} before answering "
                        f"(command: {' '.join(self.command)}); its output ends with:\n"
                        f"{self.output_tail()}"
                    )
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"the {self.kind} server did not answer GET {url} within "
                        f"{self.startup_timeout:g} s; its output ends with:\n{self.output_tail()}"
                    )
                time.sleep(0.25)

    def output_tail(self, chars: int = _STDERR_TAIL) -> str:
        """The last ``chars`` characters the server wrote (stdout and stderr together)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - 4 * chars))
        return self._log.read().decode("utf-8", errors="replace")[-chars:]

    def stop(self) -> None:
        """Terminate the server's process group (SIGKILL after ``grace`` seconds).
        Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(self.grace)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # Workers that outlive the server (it crashed, or ignored SIGTERM) go too.
            _signal_group(process, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group ``process`` leads (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


class LlamaServer(ServerProcess):
    """A ``llama_cpp.server`` subprocess serving one GGUF model on 127.0.0.1 (see
    :class:`ServerProcess` for starting, waiting and stopping).

    Args:
        model: the GGUF file.
        port: the port; default: a free one.
        n_ctx: the context length in tokens.
        n_threads: CPU threads for generation and prompt evaluation; default: all cores
            (see the module's note on shared machines).
        startup_timeout: seconds to wait for the server to answer.
        grace: seconds between SIGTERM and SIGKILL on exit.
        extra_args: more command-line arguments for ``llama_cpp.server``.

    Raises:
        BackendError: ``llama_cpp`` is not installed, the model file is missing, the
            process exits before answering (its output's tail is in the message), or it
            does not answer in time.
    """

    kind = "llama.cpp"

    def __init__(
        self,
        model: str | Path,
        *,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout: float = 120.0,
        grace: float = 5.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout, grace=grace)
        self.model = Path(model)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.extra_args = tuple(extra_args)

    def _check(self) -> None:
        if not self.model.is_file():
            raise BackendError(f"GGUF model file not found: {self.model}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise BackendError(
                f"llama_cpp is not installed; to run a local server: {_INSTALL_HINT}"
            )

    def _command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--logits_all", "true",
            *self.extra_args,
        ]  # fmt: skip

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LlamaServer({str(self.model)!r}, base_url={self.base_url!r}, {state})"
