"""The bench without the command line: :func:`agents.bench.run_bench` over a
:class:`mfllm_env.bench_pipeline.BenchConfig`, and the fit sets of :mod:`mfllm_env.specs`."""

from __future__ import annotations

import json

import pytest

from agents.bench import BenchPolicies, run_bench
from mfllm_cli.main import main
from mfllm_env.bench_pipeline import BenchConfig, bench
from mfllm_env.specs import fit_scenarios, iter_spec

SETTINGS = {
    "scenarios": "synthetic:0-1",
    "policies": ["random", "herding", "mf-classifier"],
    "seeds": [0, 1],
    "warmup": 16,
    "max_reactions": 48,
    "agents_per_step": 8,
    "horizons": [8, 16, 32],
    "progress": False,
}
FILES = ("episodes.jsonl", "leaderboard.md", "leaderboard.csv", "leaderboard.json")


def test_a_python_bench_writes_what_the_command_writes(tmp_path):
    table, note = run_bench(BenchConfig(out=tmp_path / "lib", **SETTINGS))
    assert main([
        "bench", "--scenarios", "synthetic:0-1", "--policies", "random,herding,mf-classifier",
        "--seeds", "0,1", "--warmup", "16", "--max-reactions", "48", "--agents-per-step", "8",
        "--horizons", "8,16,32", "--no-progress", "--out", str(tmp_path / "cli"),
    ]) == 0  # fmt: skip
    for name in FILES:
        assert (tmp_path / "lib" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    records = [json.loads(line) for line in (tmp_path / "lib" / "episodes.jsonl").open()]
    assert len(records) == 3 * 2 * 2
    assert {"random", "herding", "mf-classifier"} <= set(table) and note is None
    config = json.loads((tmp_path / "lib" / "config.json").read_text())
    assert config["argv"] == [] and config["warmup"] == 16 and config["fit"] is None


def test_a_resumed_python_bench_plays_nothing_twice(tmp_path):
    out = tmp_path / "bench"
    run_bench(BenchConfig(out=out, **{**SETTINGS, "policies": ["random"]}))
    first = (out / "episodes.jsonl").read_bytes()
    built = []

    class Counting:
        """Records which policies the resumed bench builds."""

        labeler = None

        def __init__(self, *_):
            pass

        def build(self, name, seed, language):
            built.append((name, seed))
            raise AssertionError("a finished bench has nothing to play")

        def settings(self, name):
            return {}

    bench(BenchConfig(out=out, resume=True, **{**SETTINGS, "policies": ["random"]}), Counting)
    assert built == [] and (out / "episodes.jsonl").read_bytes() == first


def test_a_resume_may_add_sft_with_its_adapter_but_not_change_it(tmp_path):
    out, adapter, other = tmp_path / "bench", tmp_path / "adapter", tmp_path / "other"
    run_bench(BenchConfig(out=out, **{**SETTINGS, "policies": ["random"]}))

    class SftPlaysRandom(BenchPolicies):
        """The bench's own policies, with ``sft`` played by ``random`` (no model here)."""

        def build(self, name, seed, language):
            return super().build("random" if name == "sft" else name, seed, language)

        def settings(self, name):
            return super().settings("random" if name == "sft" else name)

    with_sft = {**SETTINGS, "policies": ["random", "sft"], "sft_adapter": adapter}
    bench(BenchConfig(out=out, resume=True, **with_sft), SftPlaysRandom)
    records = [json.loads(line) for line in (out / "episodes.jsonl").open()]
    assert sorted({r["policy"] for r in records}) == ["random", "sft"]
    assert json.loads((out / "config.json").read_text())["sft_adapter"] == str(adapter)
    with pytest.raises(ValueError, match=r"sft_adapter: .* -> .*these may not change"):
        bench(
            BenchConfig(out=out, resume=True, **{**with_sft, "sft_adapter": other}),
            SftPlaysRandom,
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policies": ["random", "nope"]}, "policies must be distinct names"),
        ({"policies": ["random", "random"]}, "policies must be distinct names"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"policies": ["sft"]}, "policy sft needs sft_adapter"),
        ({"scenarios": "jsonl:x.jsonl"}, "the classifier policies need fit"),
    ],
)
def test_bench_config_refuses_what_cannot_run(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig(out=tmp_path, **{**SETTINGS, **change})


def test_fit_set_leaves_out_the_evaluated_scenarios():
    evaluated = list(iter_spec("synthetic:1000-1001"))
    kept, described = fit_scenarios("synthetic:1000-1001", evaluated)
    assert len(kept) == 18 and described.endswith(
        "less 2 scenario(s) sharing reactions with the evaluated ones"
    )
    assert {s.scenario_id for s in kept}.isdisjoint(s.scenario_id for s in evaluated)
    with pytest.raises(ValueError, match="need a fit spec for 'jsonl'"):
        fit_scenarios("jsonl:x.jsonl", evaluated)
    with pytest.raises(ValueError, match="nothing left to fit on"):
        fit_scenarios("synthetic:0", evaluated, fit="synthetic:1000-1001")


def test_a_bench_hands_every_policy_setting_to_its_policies(tmp_path):
    from dataclasses import fields

    from agents.bench import BenchPolicies
    from mfllm_env.bench_pipeline import PolicySettings
    from mfllm_env.labels import SDQC

    changed = {
        "fit": "synthetic:5-6", "agents_per_step": 4, "max_reactions": 40, "mean_field": "cos",
        "model": "a-model", "tokenizer": "a-tokenizer", "threads": 2,
        "generation_dtype": "float32", "draft_tokens": 0, "max_new_tokens": 9,
        "summary_tokens": 10, "temperature": 0.1, "k": 3, "cos_every": 2, "show_shares": True,
        "nll": True,
    }  # fmt: skip
    assert set(changed) == {f.name for f in fields(PolicySettings)}
    assert all(changed[name] != value for name, value in PolicySettings().policy_settings().items())
    config = BenchConfig(
        scenarios="synthetic:0", policies=["mf", "state"], seeds=[0], out=tmp_path, **changed
    )
    policies = BenchPolicies(config, SDQC, [])
    mf = policies.options("mf", 7)
    assert mf.policy_settings() == changed
    assert (mf.policy, mf.seed, mf.scenario) == ("mf", 7, "synthetic:0")
    state = policies.options("state", 0)
    assert state.policy_settings() == {**changed, "mean_field": None}  # the mf policy's only
