"""Training and evaluating intervention planners: REINFORCE on the menu, GRPO on a tiny
language model, the LLM planner, ``mfllm train planner`` and ``mfllm planner-eval``."""

from __future__ import annotations

import json
import re

import numpy as np
import pettingzoo
import pytest

import mfllm_env
from agents.backends.base import BackendError, GenerationParams
from agents.backends.transformers_backend import TransformersBackend
from agents.planners import LLMPlanner
from mfllm_cli.main import main
from mfllm_env.planner import PLANNER, NoIntervention, PlannerEnv, run_planner_episode
from tests.conftest import PROJECT_ROOT, ReturnsBackend, build_tiny_model_and_tokenizer
from training.planner import (
    GRPOPlannerConfig,
    LinearMenuPlanner,
    ReinforceConfig,
    cut_at_end,
    decision_points,
    decision_states,
    steering_return,
    train_grpo_planner,
    train_reinforce,
)

SCENARIOS = [mfllm_env.synthetic_scenario(seed=s, n_reactions=64) for s in range(4)]


def _make(i, **options):
    return PlannerEnv(SCENARIOS[i], every=2, **options)


def _mean_return(planner, seeds=range(10, 22)):
    returns = []
    for seed in seeds:
        env = _make(seed % len(SCENARIOS))
        returns.append(run_planner_episode(env, planner, seed)["return"])
    return float(np.mean(returns))


def test_reinforce_learns_to_beat_the_uniform_planner_and_resumes_exactly(tmp_path):
    config = ReinforceConfig(iterations=30, episodes_per_iteration=12, save_steps=10)
    summary = train_reinforce(_make, len(SCENARIOS), config, tmp_path / "a", progress=False)
    trained = LinearMenuPlanner.load(tmp_path / "a" / "planner.json", greedy=True)
    uniform = LinearMenuPlanner.for_spaces(
        _make(0).observation_space(PLANNER), _make(0).action_space(PLANNER), seed=0
    )
    # For this target the synthetic population punishes "calm" and rewards debunking: the
    # trained planner must do clearly better than picking options uniformly on held-out
    # seeds (measured with training seeds 0-3: -1.25 to -1.30 against -1.51).
    assert _mean_return(trained) > _mean_return(uniform) + 0.1
    assert summary["return last"] > summary["return first"]
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 31))

    # Interrupted after 20 iterations (checkpoint step-20), then resumed: same weights.
    short = ReinforceConfig(iterations=20, episodes_per_iteration=12, save_steps=10)
    train_reinforce(_make, len(SCENARIOS), short, tmp_path / "b", progress=False)
    (tmp_path / "b" / "planner.json").unlink()
    resumed = train_reinforce(
        _make, len(SCENARIOS), config, tmp_path / "b", resume=True, progress=False
    )
    assert resumed["resumed_from"] == 20
    first = json.loads((tmp_path / "a" / "planner.json").read_text())["weights"]
    second = json.loads((tmp_path / "b" / "planner.json").read_text())["weights"]
    np.testing.assert_allclose(first, second)


def test_user_code_plugs_in_through_the_pettingzoo_api():
    """The README's planner example, run as written: a user's cross-entropy method on the
    menu, through pettingzoo.make only; its plan beats random plans on held-out seeds."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"```python\n(# A planner of your own.*?)```", readme, re.S)
    assert block, "the README lost its planner example"
    namespace: dict = {}
    exec(compile(block.group(1), "README-planner-example", "exec"), namespace)
    assert namespace["learned_return"] > namespace["random_return"]


def test_llm_planner_plays_text_and_menu_episodes_reproducibly():
    model, tokenizer = build_tiny_model_and_tokenizer()
    backend = TransformersBackend(model, tokenizer=tokenizer, threads=1)
    params = GenerationParams(max_new_tokens=8, temperature=1.0)
    assert LLMPlanner.for_env(backend, _make(0)).params.max_new_tokens == 32  # the default
    for mode in ("text", "menu"):
        env = _make(0, action_mode=mode, budget=2)
        planner = LLMPlanner.for_env(backend, env, params=params)
        first = run_planner_episode(env, planner, seed=3)
        again = run_planner_episode(env, planner, seed=3)
        assert first["decision_log"] == again["decision_log"]
        assert planner.usage["decisions"] == 2 * env.num_decisions
        if mode == "menu":  # an untrained model rarely names an option: counted, then waits
            unparsed = planner.usage["unparsed"]
            assert 0 <= unparsed <= planner.usage["decisions"]
            assert first["interventions"] <= 2


def test_steering_return_shares_the_start_state_across_a_group():
    env = _make(1, action_mode="text")
    point = decision_points(lambda i: _make(i, action_mode="text"), 2, 1, seed=0)[0]
    point["scenario"] = 1
    silent = [steering_return(env, point, "") for _ in range(2)]
    debunk = steering_return(env, point, "This is false, it has been debunked.")
    assert silent[0] == silent[1]  # same start state, same population random numbers
    assert debunk != silent[0]


def test_grpo_planner_trains_lora_and_logs_rewards(tmp_path):
    model, tokenizer = build_tiny_model_and_tokenizer()
    config = GRPOPlannerConfig(max_steps=2, save_steps=1, message_tokens=6, states_per_step=1)
    summary = train_grpo_planner(
        lambda i: _make(i, action_mode="text"),
        2,
        config,
        tmp_path,
        model=model,
        tokenizer=tokenizer,
        progress=False,
    )
    assert summary["steps"] == 2
    assert summary["messages_sampled"] == 2 * config.num_generations
    assert (tmp_path / "planner" / "adapter" / "adapter_config.json").is_file()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    rewards = [row["rewards/steering_reward/mean"] for row in log if "reward" in row]
    assert len(rewards) == 2 and all(-10 < r < 0 for r in rewards)
    with pytest.raises(ValueError, match="text mode"):
        train_grpo_planner(_make, 2, config, tmp_path / "x", model=model, tokenizer=tokenizer)


def test_cli_trains_then_evaluates_with_resume(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "planner", "--scenarios", "synthetic:0-2", "--horizon", "48"]
    argv += ["--max-steps", "4", "--episodes-per-step", "4", "--no-progress", "--out", str(run)]
    assert main(argv) == 0
    assert {"config.json", "log.jsonl", "planner.json", "summary.json", "report.png"} <= {
        p.name for p in run.iterdir()
    }
    assert main(argv) == 2  # an existing run is not overwritten
    assert "already holds" in capsys.readouterr().err

    out = tmp_path / "eval"
    eval_argv = ["planner-eval", "--scenarios", "synthetic:50-51", "--horizon", "48"]
    eval_argv += ["--planners", f"none,threshold,reinforce={run / 'planner.json'}"]
    eval_argv += ["--seeds", "0,1", "--no-progress", "--out", str(out)]
    assert main(eval_argv) == 0
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 2
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"none", "threshold", f"reinforce={run / 'planner.json'}"}
    assert results["none"]["interventions"]["mean"] == 0
    assert (out / "shares.png").stat().st_size > 0

    # Interrupted mid-line: the broken episode is replayed, the others are not.
    (out / "episodes.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    assert main([*eval_argv, "--resume"]) == 0
    again = (out / "episodes.jsonl").read_text().splitlines()
    assert len(again) == len(lines)
    assert json.loads((out / "results.json").read_text()) == results
    assert main(eval_argv) == 2  # without --resume the folder is refused


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--planners", "none,oracle"], "unknown planner"),
        (["--planners", "reinforce=missing.json"], "no such planner file"),
        (["--planners", "reinforce=/dev/null"], "reinforce=/dev/null: not a file (give the"),
        (["--planners", "reinforce=/"], "reinforce=/: not a file (give the planner.json"),
        (["--seeds", "a,b"], "--seeds"),
        (["--target", "support:0.5"], "--target"),
        (["--target", "support=0.5,belief=0.5"], "unknown labels"),
        (["--every", "0"], "--every"),
    ],
)
def test_cli_reports_bad_planner_options(tmp_path, capsys, extra, message):
    argv = ["planner-eval", "--scenarios", "synthetic:0", "--horizon", "16", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "e"), *extra]) == 2
    assert message in capsys.readouterr().err


def _saved_planner(tmp_path, **changes):
    """A planner file of a zero-weight planner of the test env's spaces, with ``changes``
    (``None`` removes a key)."""
    env = _make(0)
    options = [option.name for option in env.menu]
    planner = LinearMenuPlanner.for_spaces(
        env.observation_space(PLANNER), env.action_space(PLANNER), options=options
    )
    data = {**planner.to_json(), **changes}
    path = tmp_path / "planner.json"
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weights": None}, "lacks weights"),
        ({"budget": None, "decisions": None}, "lacks budget, decisions"),
        ({"budget": -1}, "budget must be an integer >= 0 and <= 2147483647, got -1"),
        ({"decisions": 2.5}, "decisions must be an integer >= 0"),
        ({"weights": [[0.0, 1.0], [0.0]]}, "inhomogeneous"),
        ({"weights": [["a"] * 11] * 5}, "could not convert string to float"),
        ({"weights": [0.0] * 11}, "one row per option and 2K + 3 columns (K >= 1 labels)"),
        ({"weights": [[0.0] * 10] * 5}, "got shape (5, 10)"),
        ({"weights": [[float("nan")] * 11] * 5}, "weights must be finite"),
        ({"options": ["wait", "debunk", "debunk", "calm", "x"]}, "options must be 5 distinct"),
        ({"options": ["wait"]}, "options must be 5 distinct names, one per row"),
    ],
)
def test_a_damaged_planner_file_is_an_error_naming_it(tmp_path, changes, message):
    path = _saved_planner(tmp_path, **changes)
    with pytest.raises(ValueError) as error:
        LinearMenuPlanner.load(path)
    assert str(error.value).startswith(f"planner file {path}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{\n", "not JSON (Expecting property name"), ("[1, 2]", "holds a list, not an object"),
     ("\udcff", "not JSON")],
)
def test_a_planner_file_that_is_not_a_planner_object_is_an_error_naming_it(tmp_path, text, message):
    path = tmp_path / "planner.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=re.escape(f"planner file {path}: {message}")):
        LinearMenuPlanner.load(path)


def test_planner_eval_refuses_a_damaged_planner_before_any_episode(tmp_path, capsys):
    argv = ["planner-eval", "--scenarios", "synthetic:0", "--horizon", "16", "--no-progress"]
    argv += ["--out", str(tmp_path / "e")]
    bad = tmp_path / "bad.json"
    bad.write_text("{\n")
    assert main([*argv, "--planners", f"none,reinforce={bad}"]) == 2
    err = capsys.readouterr().err
    assert f"planner-eval: error: planner file {bad}: not JSON (Expecting" in err
    assert not (tmp_path / "e").exists()
    # A planner of other labels (K = 3 here, the population has 4).
    other = _saved_planner(tmp_path, weights=[[0.0] * 9] * 5)
    assert main([*argv, "--planners", f"reinforce={other}"]) == 2
    assert f"reinforce={other}: the planner was trained on 3 labels, the population here has 4" in (
        capsys.readouterr().err
    )
    # An LLM planner's adapter folder must hold an adapter.
    assert main([*argv, "--planners", f"llm={tmp_path}"]) == 2
    assert f"llm={tmp_path}: '{tmp_path}' is not a PEFT adapter folder" in capsys.readouterr().err


def test_planner_env_is_registered_with_its_own_id():
    env = pettingzoo.make("parallel", "mfllm/Planner-v0", scenario=SCENARIOS[0], every=4)
    record = run_planner_episode(env, NoIntervention(), seed=0)
    assert record["interventions"] == 0 and record["decisions"] == env.num_decisions


def test_training_report_plots_the_planners_reward(tmp_path):
    from training.report import plot_training_report

    log = tmp_path / "log.jsonl"
    log.write_text(
        "".join(json.dumps({"stage": "reinforce", "step": s, "reward": -s}) + "\n" for s in (1, 2))
    )
    assert plot_training_report(log, tmp_path / "report.png") == tmp_path / "report.png"
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_training_report_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """Interrupted while the report is written, the old report.png stays as it was (the
    new one goes to report.png.partial, renamed over it; an interrupted write removes it)."""
    from mfllm_env import runs
    from training.report import plot_training_report

    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"stage": "reinforce", "step": 1, "reward": 0.5}) + "\n")
    (tmp_path / "report.png").write_bytes(b"old report")

    def killed(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        plot_training_report(log, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes() == b"old report"
    assert not (tmp_path / "report.png.partial").exists()


def test_a_trained_menu_planner_plays_on_a_smaller_menu(tmp_path):
    config = ReinforceConfig(iterations=2, episodes_per_iteration=2, save_steps=1)
    train_reinforce(_make, 1, config, tmp_path, progress=False)
    planner = LinearMenuPlanner.load(tmp_path / "planner.json")
    assert planner.options == [option.name for option in _make(0).menu]
    smaller = planner.for_options(["wait", "calm", "debunk"])
    np.testing.assert_array_equal(smaller.weights, planner.weights[[0, 3, 1]])
    with pytest.raises(ValueError, match="not trained with"):
        planner.for_options(["wait", "shout"])
    # A resumed run asked for fewer iterations than its checkpoints have: refused.
    with pytest.raises(ValueError, match="past the"):
        train_reinforce(_make, 1, ReinforceConfig(iterations=1), tmp_path, resume=True)


def test_cli_evaluates_an_llm_planner_against_an_llm_population(tmp_path, tiny_model_dir):
    out = tmp_path / "eval"
    argv = ["planner-eval", "--scenarios", "synthetic:0", "--horizon", "16", "--every", "1"]
    argv += ["--population", "mf", "--model", str(tiny_model_dir), "--planners", "none,llm"]
    argv += ["--seeds", "0,1", "--max-new-tokens", "4", "--summary-tokens", "4"]
    assert main([*argv, "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["planner"] for r in rows} == {"none", "llm"}
    for row in rows:
        assert row["decisions"] == 2 and len(row["final_shares"]) == 4
        # Every message of the text planner went into the reaction stream.
        assert len(row["injected"]) == row["interventions"]
        assert row["interventions"] == sum(1 for d in row["decision_log"] if d["intervention"])


def test_decision_states_are_one_per_distinct_prompt():
    envs = [_make(i, action_mode="text") for i in range(2)]
    states = decision_states(envs, lambda obs, env: repr(_rows(obs)), count=12, seed=0)
    assert len(states) == 12
    # Decision 0 of an event is the same prompt under every seed: it appears once at most.
    firsts = [p for p in states.values() if p["decision"] == 0]
    assert len({p["scenario"] for p in firsts}) == len(firsts)
    # Each prompt replays to the observation it was rendered from.
    prompt, point = next(iter(states.items()))
    env = envs[point["scenario"]]
    observations, _ = env.reset(seed=point["seed"])
    for _ in range(point["decision"]):
        observations, *_ = env.step({PLANNER: ""})
    assert repr(_rows(observations[PLANNER])) == prompt


def _rows(observation):
    return (observation["step_shares"].tolist(), int(observation["steps_left"]))


def test_completions_are_cut_after_the_first_end_token():
    assert cut_at_end([5, 6, 2, 0, 0], {2, 3}) == [5, 6, 2]
    assert cut_at_end([5, 3, 2, 0], {2, 3}) == [5, 3]  # any of the model's end ids
    assert cut_at_end([5, 6, 7], {2}) == [5, 6, 7]  # cut by length: nothing to drop


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ReinforceConfig(learning_rate=float("inf")), "learning_rate must be a finite"),
        (lambda: ReinforceConfig(entropy_weight=float("nan")), "entropy_weight must be a finite"),
        (lambda: ReinforceConfig(iterations=1.5), "ReinforceConfig.iterations must be an integer"),
        (lambda: ReinforceConfig(seed=-1), "ReinforceConfig.seed must be an integer >= 0"),
        (lambda: GRPOPlannerConfig(temperature=float("nan")), "temperature must be a finite"),
        (lambda: GRPOPlannerConfig(num_generations=2.5), "num_generations must be an integer"),
        (lambda: GRPOPlannerConfig(logging_steps=0), "logging_steps must be an integer >= 1"),
    ],
)
def test_planner_configs_name_a_field_with_an_odd_value(build, message):
    """An infinite learning rate or a NaN entropy weight trained a planner of NaN weights;
    1.5 iterations or a negative seed failed inside range() or numpy."""
    with pytest.raises(ValueError, match=message):
        build()


def test_llm_planner_checks_its_backend_target_and_completions():
    """A completion list of dicts was an AttributeError, a short target made prompts that
    named fewer shares than labels, a None backend failed at the first decision."""
    env = _make(0)
    with pytest.raises(TypeError, match="backend must be a Backend"):
        LLMPlanner.for_env(None, env)
    with pytest.raises(ValueError, match="target must be one finite share per label"):
        LLMPlanner(ReturnsBackend(list), labels=env.scheme.labels, target=[0.5, float("nan")])
    dicts = ReturnsBackend(lambda prompts: [{"text": "wait"}] * len(prompts))
    planner = LLMPlanner.for_env(dicts, env)
    observations, _ = env.reset(seed=0)
    with pytest.raises(BackendError, match="returned 1 items, among them dict"):
        planner.act(observations)
