"""A backend that talks to an OpenAI-compatible HTTP server (vLLM, llama.cpp server, TGI).

Two ways of sending a prompt:

- with a ``tokenizer`` (a path, hub id or transformers tokenizer), the chat prompt is
  rendered here with the model's chat template and sent as plain text to ``/completions``,
  so the server sees exactly the text the local transformers backend would feed the model.
  Scoring needs this: teacher-forced log-probabilities come from ``/completions`` with
  ``echo``, which only takes text, and the continuation must be located in that text.
- without one, :meth:`OpenAIBackend.generate` sends the messages to ``/chat/completions``
  and the server applies its own template; :meth:`OpenAIBackend.score` is then refused.

Requests run concurrently on a thread pool of ``max_concurrency`` workers sharing one
``httpx.Client`` (thread-safe, one connection pool). Connection errors, timeouts, HTTP 429
and 5xx are retried with exponential backoff; other 4xx answers are the caller's error and
are not. A generation request that still fails comes back as a :class:`Completion` with
``error`` set (see :mod:`agents.backends.base`); a scoring request that fails raises
:class:`BackendError`, since a missing score cannot be told apart from a real one.

The API key is read from an environment variable and only ever put in the
``Authorization`` header. A server may echo it (whole or cut short) in an answer, an
error body or a model id: everything this backend returns or raises -- completion texts,
``Completion.error``, exception messages, ``name`` and ``repr`` -- has the key, and every
piece of it of :data:`SECRET_PIECE` or more characters, replaced by ``***`` (counted in
``stats["redacted"]``), so nothing a run writes can carry it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from agents.backends.base import (
    BackendError,
    Completion,
    GenerationParams,
    Prompt,
    Score,
    check_params,
    check_prompts,
    finite_number,
)
from agents.backends.chat import render_chat
from mfllm_env.checks import check_count

T = TypeVar("T")

# Longest piece of a server's answer quoted in an error message: enough to see the
# server's own error text, short enough to keep a Completion's ``error`` readable.
_BODY_SNIPPET = 200

SECRET_PIECE = 8
"""Shortest piece of the API key that is scrubbed wherever it appears (the whole key is
scrubbed whatever its length): a cut-short echo of the key must not leak its prefix."""

_MAX_TOKEN_COUNT = 2**31 - 1
"""Token counts a server reports above this are nonsense (and overflow int64 sums)."""


class SecretScrubber:
    """Replaces ``secret``, and every substring of it of :data:`SECRET_PIECE` or more
    characters, by ``***`` in a text; counts the texts it changed.

    A text position is covered when the ``SECRET_PIECE`` characters starting there occur
    in the secret; each maximal run of covered characters becomes one ``***`` (a run can
    join two pieces of the secret: more is scrubbed, never less). Linear in the text.
    """

    def __init__(self, secret: str | None) -> None:
        self.secret = secret or None
        self.changed = 0
        self._lock = threading.Lock()
        n = SECRET_PIECE
        self._pieces = (
            {secret[i : i + n] for i in range(len(secret) - n + 1)} if secret else set()
        )

    def __call__(self, text: str) -> str:
        if self.secret is None:
            return text
        scrubbed = text.replace(self.secret, "***")
        n, pieces = SECRET_PIECE, self._pieces
        covered_until = -1
        spans: list[list[int]] = []
        for i in range(len(scrubbed) - n + 1):
            if scrubbed[i : i + n] in pieces:
                if spans and i <= covered_until:
                    spans[-1][1] = i + n
                else:
                    spans.append([i, i + n])
                covered_until = i + n
        for start, stop in reversed(spans):
            scrubbed = scrubbed[:start] + "***" + scrubbed[stop:]
        if scrubbed != text:
            with self._lock:
                self.changed += 1
        return scrubbed

    def cut(self, text: str, limit: int) -> str:
        """The first ``limit`` characters of ``text``, scrubbed before the cut (a cut
        through the key would leave a piece too short to be recognised) and only over
        the window that can reach into them (a long body costs no more than a short one)."""
        window = text[: limit + len(self.secret or "")]
        return self(window)[:limit]


def _token_count(usage: Any, key: str) -> int:
    """``usage[key]`` as a token count (0 when absent); ``ValueError`` naming the field
    when the server sent something else (a string, a negative, ``Infinity``, 1e20)."""
    value = usage.get(key) if isinstance(usage, dict) else None
    if value is None:
        return 0
    if not (finite_number(value) and value == int(value)) or not (
        0 <= value <= _MAX_TOKEN_COUNT
    ):
        raise ValueError(f"usage.{key} is {value!r}, not a token count")
    return int(value)


class _RequestFailed(Exception):
    """One request failed for good (after its retries); the message is safe to show.
    ``status`` is the last HTTP status, ``None`` when no answer came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenAIBackend:
    """:class:`~agents.backends.base.Backend` over an OpenAI-compatible HTTP API.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name sent with every request; default: the first id listed by
            ``GET {base_url}/models``.
        tokenizer: ``None``, a path or hub id, or a transformers tokenizer. When given,
            prompts are rendered client-side with its chat template and sent to
            ``/completions``; required for :meth:`score`.
        max_concurrency: most requests in flight at once.
        timeout: seconds per request (connect, read and write each).
        retries: extra attempts after the first for retryable failures.
        backoff: the wait before retry ``n`` (0-based) is ``backoff * 2**n`` seconds.
        api_key_env: name of the environment variable holding the API key; when it is
            set, the key is sent as ``Authorization: Bearer <key>``.

    Raises:
        BackendError: the server does not answer ``GET /models`` (one attempt, no
            retries: a server that is not up should fail fast), or lists no model when
            ``model`` is not given.

    Rendering client-side sends the template's text as is; servers that add a
    beginning-of-sequence token to every ``/completions`` prompt would double it for
    templates that already start with one (not SmolLM2's, whose ``add_bos_token`` is off).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        tokenizer: Any = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        api_key_env: str | None = "OPENAI_API_KEY",
    ) -> None:
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        if not (model is None or (isinstance(model, str) and model)):
            raise ValueError(f"model must be None or a model name, got {model!r}")
        if not (api_key_env is None or isinstance(api_key_env, str)):
            raise TypeError(f"api_key_env must be None or a str, got {api_key_env!r}")
        check_count("max_concurrency", max_concurrency, 1)
        check_count("retries", retries, 0)
        # NaN or a negative backoff failed every retried request as an 'unexpected answer'
        for name, value, lowest in (("timeout", timeout, "> 0"), ("backoff", backoff, ">= 0")):
            if not finite_number(value) or value < 0 or (value == 0 and name == "timeout"):
                raise ValueError(f"{name} must be a finite number {lowest}, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._stats = {"requests": 0, "retries": 0, "failures": 0}
        self._stats_lock = threading.Lock()

        # The key lives only in the client's headers and in the scrubber.
        key = os.environ.get(api_key_env) if api_key_env else None
        if key and not (key.isascii() and key.isprintable() and not any(c.isspace() for c in key)):
            raise BackendError(
                f"the API key in ${api_key_env} has characters an HTTP header cannot carry "
                "(only printable ASCII without spaces); check how it was set"
            )
        self._scrub = SecretScrubber(key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
        )
        self._pool: ThreadPoolExecutor | None = None
        try:
            self.model = model if model is not None else self._first_model()
            if model is not None:
                self._first_model()  # still check that the server answers
            self.tokenizer = _load_tokenizer(tokenizer)
        except BaseException:
            self._client.close()
            raise
        self.name = self._scrub(f"http:{self.model}@{self.base_url}")
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="openai-backend"
        )

    # -- the Backend protocol --------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        """One completion per prompt, in order, requested concurrently.

        Request ``i`` is sampled with seed ``params.seed + i``, so identical prompts in one
        batch get different samples while the batch as a whole stays reproducible (on
        servers that honour ``seed``). A request that fails after its retries gives
        ``Completion(text="", prompt_tokens=0, completion_tokens=0, error=...)``; this
        method never raises for a single request.
        """
        check_prompts(prompts)
        check_params(params)
        stop = list(params.stop)
        if self.tokenizer is not None:
            # The raw-text endpoint knows nothing of chat turns: make sure generation ends
            # at the end-of-turn marker even if the server's end-of-sequence token differs.
            eot = getattr(self.tokenizer, "eos_token", None)
            if isinstance(eot, str) and eot and eot not in stop:
                stop.append(eot)
        common: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if stop:
            common["stop"] = stop

        def one(i: int) -> Completion:
            body = dict(common, seed=params.seed + i)
            if self.tokenizer is not None:
                body["prompt"] = self._render(prompts[i])
                path = "/completions"
            else:
                body["messages"] = [dict(m) for m in prompts[i]]
                path = "/chat/completions"
            try:
                data = self._post(path, body)
                choice = data["choices"][0]
                text = choice["text"] if path == "/completions" else choice["message"]["content"]
                if not isinstance(text, str | None):
                    raise TypeError(f"the completion is {type(text).__name__}, not text")
                usage = data.get("usage")
                return Completion(
                    text=self._scrub(text or ""),
                    prompt_tokens=_token_count(usage, "prompt_tokens"),
                    completion_tokens=_token_count(usage, "completion_tokens"),
                )
            except _RequestFailed as exc:
                return Completion(text="", prompt_tokens=0, completion_tokens=0, error=str(exc))
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                self._count("failures")
                return Completion(
                    text="",
                    prompt_tokens=0,
                    completion_tokens=0,
                    error=self._scrub(f"unexpected answer from {self.base_url}{path}: {exc!r}"),
                )

        return self._map(one, range(len(prompts)))

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        """Log-probabilities of each continuation's tokens as the answer to its prompt.

        Sends ``rendered_prompt + continuation`` to ``/completions`` with ``echo``,
        ``logprobs`` and ``max_tokens=1``: the answer lists the log-probability of every
        prompt token, then of the generated token(s) (``usage.completion_tokens``). The
        continuation's tokens are the ``n`` entries just before the generated ones, where
        ``n`` is counted here with the tokenizer (tokens of the whole text minus tokens of
        the rendered prompt). Counting from the end, rather than selecting by
        ``text_offset >= len(rendered_prompt)``, is deliberate: llama-cpp-python computes
        offsets on text detokenized *without* special tokens (so ``<|im_start|>`` counts
        zero characters and every offset falls short of the sent text) and leaves the
        beginning-of-sequence token out of the echoed lists. Chat templates end the prompt
        with a newline, which pre-tokenization keeps apart from the next word, so the
        tokens of the whole text are the prompt's tokens followed by the continuation's.
        (llama-cpp-python's echoed log-probabilities are only right for prompts that
        start with the BOS token: see :mod:`agents.backends.llama_server`.)

        Raises:
            BackendError: no tokenizer was given, the server does not return prompt
                log-probabilities, or a request failed after its retries.
        """
        check_prompts(prompts, continuations)
        if self.tokenizer is None:
            raise BackendError(
                "scoring chat prompts over HTTP needs the model's tokenizer to render the "
                "prompt exactly (pass tokenizer= to OpenAIBackend)"
            )

        def one(i: int) -> Score:
            if not continuations[i]:
                return Score(())
            rendered = self._render(prompts[i])
            full = rendered + continuations[i]
            body = {
                "model": self.model,
                "prompt": full,
                "echo": True,
                "logprobs": 1,
                "max_tokens": 1,
                "temperature": 0,
            }
            try:
                data = self._post("/completions", body)
            except _RequestFailed as exc:
                hint = ""
                if exc.status is not None and 400 <= exc.status < 500:
                    hint = " (does this server accept echo=true with logprobs on /completions?)"
                raise BackendError(self._scrub(f"scoring failed: {exc}{hint}")) from None
            n_tokens = self._count_tokens(full) - self._count_tokens(rendered)
            return Score(self._continuation_logprobs(data, n_tokens))

        return self._map(one, range(len(prompts)))

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker threads and close the connections. Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Deliberately lists only harmless settings: never the headers or the key.
        return self._scrub(
            f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
            f"tokenizer={'yes' if self.tokenizer is not None else 'no'}, "
            f"max_concurrency={self.max_concurrency}, timeout={self.timeout}, "
            f"retries={self.retries})"
        )

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent, retries, requests that failed for good, and texts (answers,
        errors) from which a piece of the API key was scrubbed."""
        with self._stats_lock:
            return {**self._stats, "redacted": self._scrub.changed}

    # -- internals -------------------------------------------------------------------

    def _first_model(self) -> str:
        """Check the server answers ``GET /models``; return the first model id."""
        url = f"{self.base_url}/models"
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise BackendError(
                self._scrub(
                    f"no OpenAI-compatible server answers at {url}: {type(exc).__name__}: {exc}"
                )
            ) from None
        if response.status_code != 200:
            raise BackendError(
                f"GET {url} answered HTTP {response.status_code}: {self._snippet(response)}"
            )
        try:
            return self._scrub(str(response.json()["data"][0]["id"]))
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(
                f"GET {url} lists no model (answer: {self._snippet(response)}); "
                "pass model= explicitly"
            ) from None

    def _render(self, prompt: Prompt) -> str:
        return render_chat(self.tokenizer, prompt)

    def _map(self, fn: Callable[[int], T], indices: range) -> list[T]:
        if self._pool is None:
            raise BackendError(f"{self.name} is closed")
        if len(indices) <= 1:  # no need to hand a single request to a worker thread
            return [fn(i) for i in indices]
        return list(self._pool.map(fn, indices))

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def _snippet(self, response: httpx.Response) -> str:
        """The start of an answer's body for an error message, scrubbed before it is cut
        (a cut through the key would leave a piece the whole key no longer matches)."""
        return self._scrub.cut(response.text, _BODY_SNIPPET)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; the parsed JSON answer, or :class:`_RequestFailed`."""
        url = f"{self.base_url}{path}"
        problem = ""
        status: int | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self._count("requests")
            status = None
            try:
                response = self._client.post(url, json=body)
            except httpx.TimeoutException:
                problem = f"timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.HTTPError as exc:  # too many redirects, an undecodable body, ...
                problem = f"{type(exc).__name__}: {exc}"
                break
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    problem = f"invalid JSON: {self._snippet(response)!r}"
                    break  # a server answering garbage will not get better
            problem = f"HTTP {status}: {self._snippet(response)}"
            if status != 429 and status < 500:
                break  # the request itself is wrong: retrying cannot help
        self._count("failures")
        raise _RequestFailed(
            self._scrub(f"POST {url} failed after {attempt + 1} attempt(s): {problem}"), status
        )

    def _count_tokens(self, text: str) -> int:
        assert self.tokenizer is not None
        # The text already holds the template's special tokens: add none of our own.
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _continuation_logprobs(self, data: dict[str, Any], n_tokens: int) -> tuple[float, ...]:
        """The ``n_tokens`` echoed log-probabilities just before the generated tokens."""
        no_prompt_logprobs = BackendError(
            f"the server at {self.base_url} does not return prompt log-probabilities "
            "(completions with echo=true and logprobs); scoring needs them"
        )
        try:
            logprobs = data["choices"][0].get("logprobs")
            # Generated tokens follow the echoed prompt: one (max_tokens=1), or none when
            # the server stopped at once on end-of-sequence and says so in ``usage``.
            usage = data.get("usage")
            reported = isinstance(usage, dict) and usage.get("completion_tokens") is not None
            generated = _token_count(usage, "completion_tokens") if reported else 1
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise no_prompt_logprobs from None
        values = (logprobs or {}).get("token_logprobs") or []
        end = len(values) - generated
        picked = values[end - n_tokens : end] if n_tokens > 0 else []
        # Fewer entries than the continuation has tokens: the prompt was not echoed
        # (only the generated token came back). None: no log-probability for that token.
        if n_tokens < 1 or end - n_tokens < 0 or any(lp is None for lp in picked):
            raise no_prompt_logprobs
        bad = next((lp for lp in picked if not finite_number(lp)), None)
        if bad is not None:
            raise BackendError(
                self._scrub(
                    f"the server at {self.base_url} returned the log-probability {bad!r}; "
                    "scoring needs finite numbers"
                )
            )
        return tuple(float(lp) for lp in picked)


def _load_tokenizer(tokenizer: Any) -> Any:
    """``None``, a transformers tokenizer (returned as is), or a path / hub id to load."""
    if tokenizer is None or not isinstance(tokenizer, str | Path):
        return tokenizer
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise BackendError(
            "loading a tokenizer by name needs transformers: pip install 'mfllm-env[llm]'"
        ) from None
    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except OSError as error:  # a missing folder reads as a malformed hub id
        raise ValueError(
            f"cannot load a tokenizer from {str(tokenizer)!r} (a model folder or hub id): {error}"
        ) from None
