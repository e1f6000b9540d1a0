"""LLM policies and mean-field models in the environment, on the tiny config-built model;
and one end-to-end run of the real default model (SmolLM2)."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pytest

from agents.backends.base import BackendError, Completion, GenerationParams, Prompt
from agents.mean_field import ChainOfSummarization, LLMMeanField
from agents.policies import SPEECHES, HouseholdSpeech, LLMPolicy, RumourSpeech, llm_policy
from agents.prompts import ACTION_CHARS, clean_action
from mfllm_cli.main import main
from mfllm_env import PopulationEnv, synthetic_scenario
from mfllm_env.games.macro import MacroEnv
from mfllm_env.mean_field import PopularReactions, RecentReactions
from mfllm_env.registry import FAMILIES, UnknownNameError
from mfllm_env.scenario import Author, Reaction, Scenario
from mfllm_env.simulation import play_episodes, simulate
from mfllm_env.spaces import AnnotatedText
from tests.conftest import ReturnsBackend

FAST = GenerationParams(max_new_tokens=6, temperature=1.0)


class CountingBackend:
    """The tiny backend, recording the size of every ``generate`` call."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        self.calls.append(len(prompts))
        return self.inner.generate(prompts, params)

    def score(self, prompts, continuations):
        return self.inner.score(prompts, continuations)


class FlakyBackend(CountingBackend):
    """Fails every other prompt the way the HTTP backend reports a failed request (an
    error completion), and returns an empty text for every third: bad output on demand."""

    def generate(self, prompts, params):
        completions = super().generate(prompts, params)
        return [
            Completion("", 0, 0, error="HTTP 500")
            if i % 2
            else Completion("", c.prompt_tokens, 0)
            if i % 3 == 0
            else c
            for i, c in enumerate(completions)
        ]


def _env(seed=0, n=48, mean_field=None, warmup=16):
    return PopulationEnv(
        synthetic_scenario(seed=seed, n_reactions=n), warmup=warmup, mean_field=mean_field
    )


def test_policy_acts_for_all_agents_in_one_call(tiny_backend):
    backend = CountingBackend(tiny_backend)
    env = _env()
    observations, _ = env.reset(seed=0)
    policy = LLMPolicy(backend, params=FAST)
    policy.reset(0)
    actions = policy.act({agent: observations[agent] for agent in env.agents})
    assert backend.calls == [16]
    assert set(actions) == set(env.agents)
    assert all(isinstance(a, AnnotatedText) for a in actions.values())
    assert all(a.info["prompt_tokens"] > 0 for a in actions.values())
    *_, infos = env.step(actions)
    acted = [info for info in infos.values() if "sim_label" in info]
    assert len(acted) == 16
    assert all(info["policy"]["completion_tokens"] <= 6 for info in acted)
    assert policy.usage["actions"] == 16 and policy.usage["calls"] == 1


def test_episodes_stepped_together_share_one_call_per_round(tiny_backend):
    """Three episodes of 48, 32 and 64 reactions: each round makes one policy call and
    one mean-field call serving every running episode."""
    backend = CountingBackend(tiny_backend)
    sizes = [48, 32, 64]
    episodes = [
        (_env(seed=s, n=n, mean_field=LLMMeanField(backend, params=FAST)), s)
        for s, n in enumerate(sizes)
    ]
    policy = LLMPolicy(backend, params=FAST)
    results = list(play_episodes(episodes, policy, parallel=3))
    assert sorted(r.index for r in results) == [0, 1, 2]
    # Rounds: 4 (the longest episode has 64 / 16 steps); active agents per round:
    policy_batches = [48, 48, 32, 16]
    assert backend.calls == [b for size in policy_batches for b in (size, size // 16)]
    for result in results:
        metrics = result.metrics
        steps = sizes[result.index] // 16
        assert metrics["mean_field_calls"] == steps
        assert metrics["completion_tokens"] > 0 and metrics["prompt_tokens"] > 0


def test_parallel_one_result_does_not_depend_on_neighbours(tiny_backend):
    """With parallel=1 an episode depends only on its seed: alone or after another
    episode, the same labels come out."""
    policy = LLMPolicy(tiny_backend, params=FAST)
    (alone,) = play_episodes([(_env(seed=5), 5)], policy)
    after = list(play_episodes([(_env(seed=4), 4), (_env(seed=5), 5)], policy))
    assert np.array_equal(after[1].env.sim_label_ids, alone.env.sim_label_ids)


def test_same_seed_same_trajectory(tiny_backend, tmp_path):
    runs = []
    for name in ("a", "b"):
        simulate(
            [synthetic_scenario(seed=s, n_reactions=48) for s in range(2)],
            lambda s: PopulationEnv(
                s, warmup=16, mean_field=LLMMeanField(tiny_backend, params=FAST)
            ),
            LLMPolicy(tiny_backend, params=FAST),
            tmp_path / name,
            seed=3,
            parallel=2,
            progress=False,
        )
        runs.append((tmp_path / name / "trajectory.jsonl").read_text())
    assert runs[0] == runs[1]
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["tokens"]["completion_tokens"] > 0
    assert metrics["metrics"]["mean_field_calls"]["mean"] == 3


def test_nll_of_the_real_reactions_is_scored(tiny_backend):
    policy = LLMPolicy(tiny_backend, params=FAST, score_references=True)
    (result,) = play_episodes([(_env(), 0)], policy)
    metrics = result.metrics
    assert np.isfinite(metrics["nll_per_token"]) and metrics["nll_per_token"] > 0
    assert metrics["nll_per_reaction"] > metrics["nll_per_token"]


def test_an_llm_run_prints_no_warnings(tiny_backend):
    """transformers warns (a FutureWarning, and a once-per-process log line) when a model
    gets its key/value cache under a deprecated name: a run with shared prompt prefixes (a
    cache passed to generate), an LLM mean field and scoring shows neither."""
    transformers_logger = logging.getLogger("transformers")
    logging.Logger.warning_once.cache_clear()  # transformers' once-only log lines
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    transformers_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            policy = LLMPolicy(tiny_backend, params=FAST, score_references=True)
            env = _env(mean_field=LLMMeanField(tiny_backend, params=FAST))
            (result,) = play_episodes([(env, 0)], policy)
    finally:
        transformers_logger.removeHandler(handler)
    assert result.metrics["nll_per_token"] > 0
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in records] == []


def test_bad_backend_output_is_counted_not_fatal(tiny_backend):
    backend = FlakyBackend(tiny_backend)
    model = LLMMeanField(backend, params=FAST)
    env = _env(mean_field=model)
    (result,) = play_episodes([(env, 0)], LLMPolicy(backend, params=FAST))
    metrics = result.metrics
    # 16 agents a step: the 8 odd rows fail; rows 0, 6, 12 come back empty.
    assert metrics["backend_errors"] == 3 * 8
    assert metrics["empty_actions"] >= 3 * 3
    assert metrics["fallbacks"] >= 3 * 8 + 3 * 3
    # The mean field's one-row calls are row 0: empty every time, counted, never raised.
    assert model.usage["failures"] == 3 and model.last_failure == "empty summary"


def test_mean_field_text_comes_from_the_model_and_shares_from_labels(tiny_backend):
    model = LLMMeanField(tiny_backend, params=FAST, with_statistics=True)
    env = _env(mean_field=model)
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, "I do not believe it."))
    shares = env.mean_field.shares
    labels = env.world_label_ids[:16]
    assert np.allclose(shares, np.bincount(labels, minlength=env.scheme.size) / 16)
    assert env.mean_field.text.endswith(env.mean_field.text.split("\n")[-1])
    assert "16 reactions so far" in env.mean_field.text  # the appended statistics


def test_chain_of_summarization_calls_the_llm_every_k_steps(tiny_backend):
    backend = CountingBackend(tiny_backend)
    model = ChainOfSummarization(backend, every=2, frames=3, params=FAST)
    env = _env(n=96, mean_field=model)
    env.reset(seed=0)
    texts = []
    while env.agents:
        env.step(dict.fromkeys(env.agents, "Is this true?"))
        texts.append(env.mean_field.text)
    assert backend.calls == [1, 1, 1]  # steps 2, 4, 6 of 6
    assert model.usage["calls"] == 3
    assert "reactions so far" in texts[0] and texts[1] != texts[0]


def _author(name, followers=None):
    profile = {"name": name} if followers is None else {"name": name, "followers": followers}
    return Author(name, profile)


def _scenario(followers):
    reactions = tuple(
        Reaction(f"r{i}", _author(f"u{i}", f), f"post {i}", float(i), "src")
        for i, f in enumerate(followers)
    )
    source = Reaction("src", _author("src", 10), "Event", -1.0)
    return Scenario("toy", source, reactions, language="en")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: ChainOfSummarization(b, every=float("nan")), "every must be an integer >= 1"),
        (lambda b: ChainOfSummarization(b, frames=0), "frames must be an integer >= 1"),
        (lambda b: LLMPolicy(b, max_action_chars=2.5), "max_action_chars must be an integer"),
    ],
)
def test_llm_components_refuse_odd_numbers(tiny_backend, make, message):
    with pytest.raises(ValueError, match=message):
        make(tiny_backend)


def test_recent_and_popular_contexts():
    followers = [5, None, 500, 50, 500, 1]
    recent = PopulationEnv(
        _scenario(followers), agents_per_step=3, warmup=6, mean_field=RecentReactions(k=2)
    )
    popular = PopulationEnv(
        _scenario(followers), agents_per_step=3, warmup=6, mean_field=PopularReactions(k=3)
    )
    for env in (recent, popular):
        env.reset(seed=0)
        while env.agents:
            env.step(dict.fromkeys(env.agents, "ignored in warm-up"))
    assert recent.mean_field.text == "- u4: post 4\n- u5: post 5"
    # Most-followed first; the tie at 500 goes to the newer post; no count ranks last.
    assert popular.mean_field.text == "- u4: post 4\n- u2: post 2\n- u3: post 3"
    assert np.allclose(recent.mean_field.shares, popular.mean_field.shares)
    with pytest.raises(ValueError, match="k must be"):
        RecentReactions(k=0)


def test_popular_context_ranks_follower_counts_it_cannot_trust_last():
    """Infinity, NaN, a negative, text or a bool as a follower count (what a broken data
    file can hold) ranks as no count, mid-episode, instead of raising OverflowError."""
    followers = [float("inf"), 7, float("nan"), -3, "many", True, 10**30, 1e20]
    env = PopulationEnv(
        _scenario(followers), agents_per_step=4, warmup=8, mean_field=PopularReactions(k=4)
    )
    env.reset(seed=0)
    while env.agents:
        env.step(dict.fromkeys(env.agents, "ignored in warm-up"))
    assert env.mean_field.text == "- u6: post 6\n- u7: post 7\n- u1: post 1\n- u5: post 5"
    for argument in ({"k": float("nan")}, {"k": 2.5}, {"max_chars": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(argument))} must be an integer"):
            PopularReactions(**argument)


def test_cli_runs_an_llm_policy_from_a_model_folder(tmp_path, capsys):
    from tests.conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "run"
    argv = ["simulate", "--scenario", "synthetic:0-1", "--policy", "popular", "--model"]
    argv += [str(tmp_path / "model"), "--max-reactions", "48", "--warmup", "16"]
    argv += ["--max-new-tokens", "4", "--threads", "1", "--nll", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "generated tokens/s" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["episodes"] == 2
    assert metrics["metrics"]["nll_per_token"]["n"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["mean_field"] == "popular" and config["parallel"] == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "sft"], "pass --adapter"),
        (["--policy", "recent", "--mean-field", "llm"], "drop --mean-field"),
        (["--policy", "herding", "--mean-field", "cos"], "needs an LLM policy"),
        (["--policy", "mf", "--model", "nobody/nothing-here"], "cannot load model"),
        (["--policy", "mf", "--model", "http://127.0.0.1:9/v1"], "127.0.0.1:9"),
        (["--policy", "state", "--k", "0"], "argument --k: must be an integer >= 1"),
    ],
)
def test_cli_reports_bad_llm_options(tmp_path, capsys, extra, message):
    assert main(["simulate", *extra, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_smollm2_end_to_end(tmp_path):
    """The real default model, offline: a short synthetic episode with the MF policy and
    the LLM mean field, through the command line."""
    pytest.importorskip("transformers")
    from agents.backends.default_model import gguf_path

    gguf_path()  # the set-up installs it: fail loudly, never skip, if it is missing
    out = tmp_path / "run"
    argv = ["simulate", "--policy", "mf", "--mean-field", "llm", "--model", "smollm2"]
    argv += ["--max-reactions", "32", "--warmup", "16", "--max-new-tokens", "12"]
    argv += ["--summary-tokens", "24", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    steps = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert len(steps) == 2
    assert all(s["mean_field"] for s in steps)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["backend_errors"]["mean"] == 0
    assert metrics["metrics"]["mean_field_calls"]["mean"] == 2
    assert metrics["tokens"]["completion_tokens"] > 0


def _fine(prompts):
    return [Completion("I doubt it", 3, 2) for _ in prompts]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda prompts: None, "returned NoneType None from generate.. for 16 prompts"),
        (lambda p: [Completion("x", 1, 1)] * (len(p) + 1), "returned 17 items from generate.."),
        (lambda prompts: [{"text": "x"}] * len(prompts), "returned 16 items, among them dict"),
    ],
)
def test_a_backend_returning_no_completions_is_named(make, message):
    """They were TypeErrors and AttributeErrors inside the policy."""
    env = _env()
    observations, _ = env.reset(seed=0)
    with pytest.raises(BackendError, match=f"backend returns {message}"):
        LLMPolicy(ReturnsBackend(make)).act(observations)
    # The mean field counts it as a failed rewrite, as it does a crashing backend.
    env = _env(mean_field=LLMMeanField(ReturnsBackend(make)), warmup=0)
    observations, _ = env.reset(seed=0)
    env.step(LLMPolicy(ReturnsBackend(_fine)).act(observations))
    assert env.mean_field_model.usage["failures"] == 1
    assert "must return one Completion per prompt" in env.mean_field_model.last_failure


@pytest.mark.parametrize(
    "fields", [(None, 1, 1), ("x", float("nan"), 1), ("x", -1, 0), ("x", 1, 1, 500), ("x", True, 1)]
)
def test_completions_hold_a_text_and_token_counts(fields):
    with pytest.raises(TypeError, match="a Completion needs a str text, token counts"):
        Completion(*fields)


def test_summaries_drop_characters_no_file_can_hold():
    """A lone surrogate in an LLM summary (a server's JSON can carry one) reached the
    trajectory file and ended the run with a UnicodeEncodeError."""
    summary = "Most doubt \ud800it\x1b so\x00 far"
    backend = ReturnsBackend(lambda prompts: [Completion(summary, 3, 5)] * len(prompts))
    env = _env(mean_field=LLMMeanField(backend))
    observations, _ = env.reset(seed=0)
    env.step(LLMPolicy(ReturnsBackend(_fine)).act(observations))
    assert env.mean_field.text == "Most doubt it so far"
    env.mean_field.text.encode("utf-8")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LLMPolicy(None), "backend must be a Backend .name, generate.., score..., got"),
        (lambda: LLMPolicy(ReturnsBackend(_fine), params={"temperature": 1}), "params must be Gen"),
        (lambda: LLMMeanField(object()), "backend must be a Backend"),
        (lambda: ChainOfSummarization(ReturnsBackend(_fine), params=0.7), "params must be Gen"),
    ],
)
def test_llm_components_check_their_backend_and_params(build, message):
    with pytest.raises(TypeError, match=message):
        build()


# -- one policy, a speech per family --------------------------------------------------------


class ParamsBackend(ReturnsBackend):
    """Answers every prompt with ``text`` and keeps the parameters of its last call."""

    def __init__(self, text: str) -> None:
        super().__init__(lambda prompts: [Completion(text, 3, 2) for _ in prompts])

    def generate(self, prompts, params):
        self.params = params
        return super().generate(prompts, params)


def test_every_family_of_the_registry_has_a_speech_and_its_policy_is_built_by_name():
    assert set(SPEECHES) == set(FAMILIES)
    reply = "Reply: I will work 30 hours\na week and save a fifth."
    rumour = llm_policy("rumour", ParamsBackend(reply), speech={"context": "none"})
    households = llm_policy("macro", ParamsBackend(reply))
    assert isinstance(rumour.speech, RumourSpeech) and rumour.speech.context == "none"
    assert isinstance(households.speech, HouseholdSpeech)
    assert households.params == GenerationParams(max_new_tokens=40, temperature=0.7)
    rumour.reset(1)
    households.reset(1)
    person, _ = _env().reset(seed=0)
    household, _ = MacroEnv(10, action_mode="text").reset(seed=0)
    said = (
        rumour.act({"a": next(iter(person.values()))})["a"],
        households.act({"h": next(iter(household.values()))})["h"],
    )
    # A rumour action is the first line without its label; a household's reply stays whole.
    assert said == ("I will work 30 hours", "Reply: I will work 30 hours a week and save a fifth.")
    assert rumour.backend.params.until_first_line and not households.backend.params.until_first_line
    assert rumour.backend.params.seed == households.backend.params.seed  # same seed, same draw
    assert households.usage["actions"] == 1 and households.usage["calls"] == 1
    with pytest.raises(UnknownNameError, match="known: rumour, macro"):
        llm_policy("weather", ParamsBackend(reply))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: LLMPolicy(b, HouseholdSpeech(), context="none"), "context: RumourSpeech opt"),
        (lambda b: LLMPolicy(b, object()), "speech must have prompt, clean, default_params"),
        (lambda b: LLMPolicy(b, share_labels=("a", "")), "share_labels must be label names"),
        (lambda b: LLMPolicy(b, context="everything"), "context must be one of"),
    ],
)
def test_llm_policy_refuses_a_speech_it_cannot_use(build, message):
    with pytest.raises(ValueError, match=message):
        build(ParamsBackend("fine"))


def test_the_speech_decides_whether_only_the_first_line_is_read():
    """Parameters asking for the first line alone do not cut a household's reply."""
    first_line = GenerationParams(max_new_tokens=8, until_first_line=True)
    households = LLMPolicy(
        ParamsBackend("work 30 hours\nsave a fifth"), HouseholdSpeech(), params=first_line
    )
    household, _ = MacroEnv(10, action_mode="text").reset(seed=0)
    said = households.act({"h": next(iter(household.values()))})["h"]
    assert str(said) == "work 30 hours save a fifth"
    assert households.backend.params.until_first_line is False
    rumour = LLMPolicy(ParamsBackend("fine"), params=GenerationParams(max_new_tokens=8))
    person, _ = _env().reset(seed=0)
    rumour.act({"a": next(iter(person.values()))})
    assert rumour.backend.params.until_first_line is True


def test_a_speech_is_given_as_an_object_or_as_its_options():
    backend = ParamsBackend("fine")
    speech = RumourSpeech(context="recent")
    assert llm_policy("rumour", backend, speech=speech).speech is speech
    households = HouseholdSpeech()
    assert llm_policy("macro", backend, speech=households).speech is households
    with pytest.raises(ValueError, match="got the class HouseholdSpeech: pass HouseholdSpeech"):
        LLMPolicy(backend, HouseholdSpeech)
    with pytest.raises(
        ValueError,
        match="macro family must be a HouseholdSpeech or a mapping "
        "of its options, got RumourSpeech",
    ):
        llm_policy("macro", backend, speech=speech)
    with pytest.raises(ValueError, match="got the class HouseholdSpeech"):
        llm_policy("macro", backend, speech=HouseholdSpeech)
    with pytest.raises(ValueError, match=r"must be a RumourSpeech .*, got str"):
        llm_policy("rumour", backend, speech="recent")


# -- several samples per agent --------------------------------------------------------------


class RecordingBackend(CountingBackend):
    """The tiny backend, keeping every completion text of its last ``generate`` call."""

    def generate(self, prompts, params):
        completions = super().generate(prompts, params)
        self.texts = [c.text for c in completions]
        return completions


def test_samples_per_agent_draw_k_completions_in_one_call(tiny_backend):
    """K samples per agent: one call of K x agents prompts, each agent's K texts labelled
    as the env labels them, their histogram its distribution, one of them its action; the
    first sample of each agent is the one the K = 1 policy draws."""
    env = _env()
    observations, _ = env.reset(seed=0)
    acting = {agent: observations[agent] for agent in env.agents}
    single, sampled = RecordingBackend(tiny_backend), RecordingBackend(tiny_backend)
    plain = LLMPolicy(single, params=FAST)
    policy = LLMPolicy(sampled, params=FAST).sampling(4, env.require_labeler("test"))
    plain.reset(7)
    policy.reset(7)
    plain.act(acting)
    actions = policy.act(acting)
    assert sampled.calls == [4 * 16] and plain.label_distributions == {}
    texts = sampled.texts
    # The first round of the call is the K = 1 call: the same draws.
    assert texts[:16] == single.texts
    fallback = env.scheme.fallback_id
    differing = 0
    for j, agent in enumerate(env.agents):
        samples = [clean_action(t, ACTION_CHARS) for t in texts[j::16]]
        differing += len(set(samples)) > 1
        assert str(actions[agent]) in samples
        ids = env.label_texts(samples)
        ids[ids < 0] = fallback
        expected = np.bincount(ids, minlength=env.scheme.size) / 4
        np.testing.assert_allclose(policy.label_distributions[agent], expected)
        (chosen,) = env.label_texts([str(actions[agent])]).tolist()
        assert policy.label_distributions[agent][fallback if chosen < 0 else chosen] > 0
        assert 0 < actions[agent].info["completion_tokens"] <= 4 * 6
    assert differing > 0  # identical prompts of one call draw different samples
    assert policy.usage["actions"] == 16 and policy.usage["calls"] == 1


class _RaggedLabeller:
    """Labels each text with a list of ids, one of them too long."""

    def __init__(self, scheme) -> None:
        self.scheme = scheme

    def label(self, texts):
        return [[0]] * (len(texts) - 1) + [[0, 1]]


def test_a_bad_labeller_of_the_samples_is_named():
    env = _env()
    observations, _ = env.reset(seed=0)
    policy = LLMPolicy(
        ParamsBackend("fine"), samples_per_agent=2, labeler=_RaggedLabeller(env.scheme)
    )
    with pytest.raises(
        ValueError, match=r"labeler _RaggedLabeller must return one id in \[-1, 4\)"
    ):
        policy.act({"a": next(iter(observations.values()))})


def test_one_sample_per_agent_is_the_plain_policy(tiny_backend):
    """K = 1 (sampling(1, ...)) plays the plain policy's episode, draw for draw, and
    reports no distributions; K > 1 needs a labeller."""
    plain = LLMPolicy(tiny_backend, params=FAST)
    one = LLMPolicy(tiny_backend, params=FAST).sampling(1, None)
    (a,) = play_episodes([(_env(seed=2), 2)], plain)
    (b,) = play_episodes([(_env(seed=2), 2)], one)
    assert np.array_equal(a.env.sim_label_ids, b.env.sim_label_ids)
    assert {k: v for k, v in a.metrics.items() if k != "seconds"} == {
        k: v for k, v in b.metrics.items() if k != "seconds"
    }
    assert one.label_distributions == {}
    for samples, labeler in ((2, None), (0, _env().require_labeler("test"))):
        with pytest.raises(ValueError, match="samples_per_agent"):
            LLMPolicy(tiny_backend, params=FAST, samples_per_agent=samples, labeler=labeler)
