"""How fast do the LLM backends generate, and how much of that does a simulation keep?

Everything runs SmolLM2-135M-Instruct (the offline default model) on the CPU, on real
simulation prompts: :meth:`agents.policies.LLMPolicy.prompt` (``context="mean_field"``)
applied to the observations of one step of a synthetic scenario, after a first step that
gave the :class:`~mfllm_env.mean_field.HistogramMeanField` something to say. Sampling is
``temperature=0.7`` under a fixed seed. Five sections, each printed as it finishes:

1. **Batched vs one at a time.** For 16 and 32 agents per step: one
   ``backend.generate(all prompts)`` call vs ``backend.generate([p])`` for each prompt in
   turn, same parameters. Generated tokens/s of both and the speed-up (wall time one at a
   time / wall time batched, and the tokens/s ratio). Target: >= 4x at 16 and at 32.
2. **Simulation-loop overhead.** One synthetic episode played by
   :func:`mfllm_env.simulation.play_episodes` with ``LLMPolicy(context="mean_field")``,
   once with the histogram mean field and once with :class:`agents.mean_field.LLMMeanField`.
   The backend is wrapped so that every ``generate`` call of the run (its prompts and
   parameters, seed included) is recorded; the recorded calls are then replayed as bare
   ``backend.generate`` calls -- the same prompts at the same batch sizes, so the same
   completions. Reported: loop tokens/s / raw tokens/s (policy and summary tokens
   together). Target with the histogram: >= 0.85; with the LLM mean field: no target.
3. **A vector of episodes.** Episodes per hour for 8 short synthetic episodes with the
   LLM mean field, played with ``parallel=1`` and with ``parallel=8`` (8 episodes' policy
   prompts, and their 8 summaries, go in one batched call per round), and the ratio.
4. **llama.cpp over HTTP vs transformers.** ``llama_cpp.server`` on the same model's GGUF
   file (Q4_1), reached with :class:`agents.backends.http.OpenAIBackend` (prompts rendered
   client-side), vs the transformers backend batched, on the same 16 prompts. Skipped, with
   the reason, when ``llama_cpp`` is not installed or with ``--skip-http``.
5. **The machine's limit.** The best fp32 matmul rate torch reaches (2048x2048, best of
   10) at the threads used, SmolLM2's FLOPs per token (2 x the parameters a token goes
   through; the tied embedding counts once, as the LM head's matmul -- the embedding
   lookup costs nothing), the compute-bound tokens/s that follows, and every measured rate
   above as a fraction of it: generated tokens only, and generated + prompt tokens the
   backend had to run (a shared prompt prefix once where the backend computes it once:
   transformers batched, and llama.cpp, which reuses the previous request's prefix cache).

Sizes are the constants ``FULL`` (and ``QUICK``, ``--quick``, a smoke test of about 2
minutes) below: the simulation's defaults, 48 new tokens per policy completion and 96 per
summary; section 2 plays 48 reactions at 16 agents per step (warm-up 16), section 3 plays
episodes of 32 reactions (one warm-up step, one free step). The full run took 20 minutes
on 2 cores with 32 and 48 tokens; expect about half as much again with the defaults
(section 3 is about half of it). Prompts are about 170 tokens, summary prompts about
1,000, so prompt evaluation is a large part of every figure. ``--sections 1,5`` runs
only the chosen sections.

Torch threads come from ``--threads`` (default: torch's default); llama.cpp gets the same
number. On a shared machine the wall clock also counts other processes' turns: the CPU time
of this process (all its threads) is reported beside it.

    python benchmarks/llm_speed.py [--json] [--quick] [--threads N] [--skip-http]

With ``--json`` the progress goes to stderr and one JSON object with every figure to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from agents.backends import Backend, Completion, GenerationParams, Prompt, Score, load_backend
from agents.backends.default_model import gguf_path, model_dir
from agents.backends.transformers_backend import (
    CACHE_ARGUMENT,
    DRAFT_BUDGET,
    RowSampler,
    TransformersBackend,
    prefix_groups,
)
from agents.mean_field import SUMMARY_PARAMS, LLMMeanField
from agents.policies import LLMPolicy
from mfllm_env.mean_field import HistogramMeanField, MeanFieldModel
from mfllm_env.population_env import PopulationEnv
from mfllm_env.simulation import play_episodes
from mfllm_env.synthetic import synthetic_scenario


@dataclass(frozen=True)
class Settings:
    """The sizes of one run."""

    batch_sizes: tuple[int, ...]  # section 1: agents per step compared
    max_new_tokens: int  # policy completions (sections 1-4)
    summary_tokens: int  # LLMMeanField summaries (sections 2-3)
    loop_reactions: int  # section 2: the episode
    loop_agents: int
    loop_warmup: int
    vector_episodes: int  # section 3
    vector_parallel: int
    vector_reactions: int
    vector_agents: int
    vector_warmup: int
    http_prompts: int  # section 4
    matmul_size: int  # section 5
    matmul_repeats: int
    lever_reactions: int  # section 6: the demo's episode cut to this many reactions
    lever_repeats: int


FULL = Settings(
    batch_sizes=(16, 32),
    # The simulation's own defaults (``mfllm simulate --max-new-tokens``/``--summary-tokens``).
    max_new_tokens=GenerationParams().max_new_tokens,
    summary_tokens=SUMMARY_PARAMS.max_new_tokens,
    loop_reactions=48,
    loop_agents=16,
    loop_warmup=16,
    vector_episodes=8,
    vector_parallel=8,
    vector_reactions=32,
    vector_agents=16,
    vector_warmup=16,
    http_prompts=16,
    matmul_size=2048,
    matmul_repeats=10,
    lever_reactions=98,
    lever_repeats=2,
)
QUICK = Settings(
    batch_sizes=(2, 4),
    max_new_tokens=4,
    summary_tokens=4,
    loop_reactions=8,
    loop_agents=4,
    loop_warmup=4,
    vector_episodes=2,
    vector_parallel=2,
    vector_reactions=8,
    vector_agents=4,
    vector_warmup=4,
    http_prompts=4,
    matmul_size=512,
    matmul_repeats=3,
    lever_reactions=12,
    lever_repeats=1,
)
TEMPERATURE = 0.7
SEED = 0
BATCHED_TARGET = 4.0
LOOP_TARGET = 0.85


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Run:
    """Generated and prompt tokens of some ``generate`` work and the time it took.

    ``prompt_tokens`` sums every prompt's tokens; ``prompt_tokens_run`` counts what the
    backend had to compute (a shared prefix once where it is computed once)."""

    seconds: float
    cpu_seconds: float
    prompts: int
    generated: int
    prompt_tokens: int
    prompt_tokens_run: int
    errors: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.generated / self.seconds

    @property
    def processed_per_s(self) -> float:
        return (self.generated + self.prompt_tokens_run) / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "tokens_per_s": self.tokens_per_s,
            "processed_tokens_per_s": self.processed_per_s,
        }


def distinct_prompt_tokens(backend: TransformersBackend, prompts: Sequence[Prompt]) -> int:
    """Prompt tokens when each group's shared prefix is counted once (the grouping the
    transformers backend uses, :func:`prefix_groups`)."""
    encoded = backend.encode_prompts(prompts)
    groups = prefix_groups(encoded)
    if groups is None:
        return sum(len(ids) for ids in encoded)
    return sum(length + sum(len(encoded[r]) - length for r in rows) for length, rows in groups)


def timed_generate(
    backend: Backend,
    prompts: Sequence[Prompt],
    params: GenerationParams,
    *,
    one_at_a_time: bool = False,
    distinct: int | None = None,
) -> Run:
    """Time ``generate`` on all prompts in one call, or one prompt per call.
    ``distinct``: the prompt tokens the backend runs (default: every prompt token)."""
    wall, cpu = time.perf_counter(), time.process_time()
    if one_at_a_time:
        completions = [c for p in prompts for c in backend.generate([p], params)]
    else:
        completions = backend.generate(prompts, params)
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    prompt_tokens = sum(c.prompt_tokens for c in completions)
    return Run(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        prompts=len(prompts),
        generated=sum(c.completion_tokens for c in completions),
        prompt_tokens=prompt_tokens,
        prompt_tokens_run=prompt_tokens if distinct is None else distinct,
        errors=sum(c.error is not None for c in completions),
    )


@dataclass
class Call:
    """One recorded ``generate`` call."""

    prompts: list[Prompt]
    params: GenerationParams
    seconds: float
    generated: int


class RecordingBackend:
    """A backend that passes every call on and records each ``generate`` call."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[Call] = []

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        started = time.perf_counter()
        completions = self.inner.generate(prompts, params)
        seconds = time.perf_counter() - started
        generated = sum(c.completion_tokens for c in completions)
        self.calls.append(Call(list(prompts), params, seconds, generated))
        return completions

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        return self.inner.score(prompts, continuations)


def replay(backend: Backend, calls: Sequence[Call]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and generated tokens of the recorded calls made again as
    bare ``generate`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    generated = 0
    for call in calls:
        generated += sum(c.completion_tokens for c in backend.generate(call.prompts, call.params))
    return time.perf_counter() - wall, time.process_time() - cpu, generated


# -- prompts and episodes ----------------------------------------------------------------


def policy_params(s: Settings) -> GenerationParams:
    return GenerationParams(max_new_tokens=s.max_new_tokens, temperature=TEMPERATURE, seed=SEED)


def summary_params(s: Settings) -> GenerationParams:
    return GenerationParams(max_new_tokens=s.summary_tokens, temperature=TEMPERATURE, seed=SEED)


def simulation_prompts(backend: Backend, n: int) -> list[Prompt]:
    """The policy prompts of ``n`` agents in the second step of a synthetic episode (the
    first step, played with the real reactions, fills the histogram mean field's text)."""
    scenario = synthetic_scenario(seed=SEED, n_reactions=3 * n)
    env = PopulationEnv(scenario, agents_per_step=n, warmup=n, mean_field=HistogramMeanField())
    env.reset(seed=SEED)
    observations, *_ = env.step(env.reference_texts())
    policy = LLMPolicy(backend, context="mean_field")
    return [policy.prompt(observations[agent]) for agent in env.agents]


def make_env(
    seed: int, reactions: int, agents: int, warmup: int, mean_field: MeanFieldModel
) -> PopulationEnv:
    scenario = synthetic_scenario(seed=seed, n_reactions=reactions)
    return PopulationEnv(scenario, agents_per_step=agents, warmup=warmup, mean_field=mean_field)


# -- the sections --------------------------------------------------------------------------


class Report:
    """Prints each section as it finishes (to stderr with ``--json``) and keeps the figures."""

    def __init__(self, as_json: bool) -> None:
        self.out: TextIO = sys.stderr if as_json else sys.stdout
        self.figures: dict[str, Any] = {}

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def run_label(run: Run) -> str:
    return (
        f"{run.generated:>5d} tok in {run.seconds:>7.2f} s (CPU {run.cpu_seconds:>7.2f} s): "
        f"{run.tokens_per_s:>7.1f} tok/s"
    )


def section_batched(
    report: Report, backend: TransformersBackend, prompts: list[Prompt], s: Settings
) -> dict[int, dict[str, Run]]:
    report.line("1. Batched vs one at a time (transformers, policy prompts)")
    params = policy_params(s)
    runs: dict[int, dict[str, Run]] = {}
    rows = []
    for n in s.batch_sizes:
        chunk = prompts[:n]
        batched = timed_generate(
            backend, chunk, params, distinct=distinct_prompt_tokens(backend, chunk)
        )
        single = timed_generate(backend, chunk, params, one_at_a_time=True)
        runs[n] = {"batched": batched, "one_at_a_time": single}
        wall_ratio = single.seconds / batched.seconds
        rate_ratio = batched.tokens_per_s / single.tokens_per_s
        report.line(f"  {n:>3d} agents  batched      : {run_label(batched)}")
        report.line(f"  {n:>3d} agents  one at a time: {run_label(single)}")
        verdict = "meets" if min(wall_ratio, rate_ratio) >= BATCHED_TARGET else "misses"
        report.line(
            f"  {n:>3d} agents  speed-up: {wall_ratio:.2f}x wall time, {rate_ratio:.2f}x tokens/s"
            f" ({verdict} the {BATCHED_TARGET:g}x target)"
        )
        rows.append(
            {
                "agents": n,
                "batched": batched.as_dict(),
                "one_at_a_time": single.as_dict(),
                "wall_time_ratio": wall_ratio,
                "tokens_per_s_ratio": rate_ratio,
                "meets_target": min(wall_ratio, rate_ratio) >= BATCHED_TARGET,
            }
        )
    report.figures["batched_vs_one_at_a_time"] = {
        "max_new_tokens": s.max_new_tokens,
        "target": BATCHED_TARGET,
        "rows": rows,
    }
    report.line()
    return runs


def loop_vs_raw(
    backend: Backend, mean_field: Callable[[Backend], MeanFieldModel], s: Settings
) -> dict[str, Any]:
    """One episode through ``play_episodes``, then its recorded calls replayed bare."""
    recorder = RecordingBackend(backend)
    env = make_env(SEED, s.loop_reactions, s.loop_agents, s.loop_warmup, mean_field(recorder))
    policy = LLMPolicy(recorder, context="mean_field", params=policy_params(s))
    wall, cpu = time.perf_counter(), time.process_time()
    (result,) = play_episodes([(env, SEED)], policy)
    loop_seconds, loop_cpu = time.perf_counter() - wall, time.process_time() - cpu
    metrics = result.metrics
    policy_tokens = int(metrics.get("completion_tokens", 0))
    summary_tokens = int(metrics.get("mean_field_completion_tokens", 0))
    loop_tokens = policy_tokens + summary_tokens
    raw_seconds, raw_cpu, raw_tokens = replay(backend, recorder.calls)
    loop_rate, raw_rate = loop_tokens / loop_seconds, raw_tokens / raw_seconds
    return {
        "reactions": s.loop_reactions,
        "agents_per_step": s.loop_agents,
        "warmup": s.loop_warmup,
        "generate_calls": len(recorder.calls),
        "loop_seconds": loop_seconds,
        "loop_cpu_seconds": loop_cpu,
        "loop_seconds_in_generate": sum(c.seconds for c in recorder.calls),
        "loop_policy_tokens": policy_tokens,
        "loop_summary_tokens": summary_tokens,
        "loop_tokens": loop_tokens,
        "loop_tokens_per_s": loop_rate,
        "raw_seconds": raw_seconds,
        "raw_cpu_seconds": raw_cpu,
        "raw_tokens": raw_tokens,
        "raw_tokens_per_s": raw_rate,
        "ratio": loop_rate / raw_rate,
        "cpu_ratio": (loop_tokens / loop_cpu) / (raw_tokens / raw_cpu),
    }


def section_loop(report: Report, backend: Backend, s: Settings) -> None:
    report.line("2. Simulation loop vs raw batched generate (same calls replayed)")
    variants: dict[str, Callable[[Backend], MeanFieldModel]] = {
        "histogram": lambda _backend: HistogramMeanField(),
        "llm_mean_field": lambda b: LLMMeanField(b, params=summary_params(s)),
    }
    figures: dict[str, Any] = {"target_histogram": LOOP_TARGET}
    for name, mean_field in variants.items():
        r = loop_vs_raw(backend, mean_field, s)
        figures[name] = r
        outside = r["loop_seconds"] - r["loop_seconds_in_generate"]
        tokens = f"{r['loop_policy_tokens']} policy"
        if name != "histogram":
            tokens += f" + {r['loop_summary_tokens']} summary"
        target = ""
        if name == "histogram":
            verdict = "meets" if r["ratio"] >= LOOP_TARGET else "misses"
            target = f" ({verdict} the {LOOP_TARGET:g} target)"
        report.line(
            f"  {name:15s} loop: {tokens} tok, {r['generate_calls']} calls, "
            f"{r['loop_seconds']:.2f} s ({outside:.2f} s outside generate): "
            f"{r['loop_tokens_per_s']:.1f} tok/s"
        )
        report.line(
            f"  {name:15s} raw : {r['raw_tokens']} tok in {r['raw_seconds']:.2f} s: "
            f"{r['raw_tokens_per_s']:.1f} tok/s"
        )
        report.line(
            f"  {name:15s} loop/raw: {r['ratio']:.3f} (wall), {r['cpu_ratio']:.3f} (CPU time)"
            f"{target}"
        )
    report.figures["simulation_loop"] = figures
    report.line()


def section_vector(report: Report, backend: Backend, s: Settings) -> None:
    n = s.vector_episodes
    report.line(
        f"3. A vector of {n} episodes ({s.vector_reactions} reactions, warm-up "
        f"{s.vector_warmup}, {s.vector_agents} agents per step, LLM mean field)"
    )
    figures: dict[str, Any] = {
        "episodes": n,
        "reactions": s.vector_reactions,
        "warmup": s.vector_warmup,
        "agents_per_step": s.vector_agents,
    }
    rows = []
    for parallel in (1, s.vector_parallel):
        envs = [
            make_env(
                e,
                s.vector_reactions,
                s.vector_agents,
                s.vector_warmup,
                LLMMeanField(backend, params=summary_params(s)),
            )
            for e in range(n)
        ]
        policy = LLMPolicy(backend, context="mean_field", params=policy_params(s))
        wall, cpu = time.perf_counter(), time.process_time()
        episodes = [(env, e) for e, env in enumerate(envs)]
        results = list(play_episodes(episodes, policy, parallel=parallel))
        seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
        tokens = sum(
            int(r.metrics.get("completion_tokens", 0))
            + int(r.metrics.get("mean_field_completion_tokens", 0))
            for r in results
        )
        row = {
            "parallel": parallel,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "episodes_per_hour": 3600.0 * len(results) / seconds,
            "generated_tokens": tokens,
            "tokens_per_s": tokens / seconds,
        }
        rows.append(row)
        report.line(
            f"  parallel={parallel}: {seconds:.2f} s (CPU {cpu_seconds:.2f} s), "
            f"{row['episodes_per_hour']:.1f} episodes/hour, {tokens} tok, "
            f"{row['tokens_per_s']:.1f} tok/s"
        )
    ratio = rows[1]["episodes_per_hour"] / rows[0]["episodes_per_hour"]
    report.line(f"  episodes/hour, parallel={s.vector_parallel} / parallel=1: {ratio:.2f}x")
    figures.update(rows=rows, ratio=ratio)
    report.figures["vector_of_episodes"] = figures
    report.line()


def section_http(
    report: Report,
    backend: TransformersBackend,
    prompts: list[Prompt],
    s: Settings,
    threads: int,
    skip: bool,
) -> dict[str, Run]:
    report.line(f"4. llama.cpp over HTTP vs transformers ({len(prompts)} policy prompts)")
    reason = ""
    if skip:
        reason = "--skip-http, or section 4 not in --sections"
    elif importlib.util.find_spec("llama_cpp") is None:
        reason = "llama_cpp is not installed (pip install 'llama-cpp-python[server]')"
    if reason:
        report.line(f"  skipped: {reason}")
        report.figures["http_vs_transformers"] = {"skipped": reason}
        report.line()
        return {}
    from agents.backends.base import BackendError
    from agents.backends.http import OpenAIBackend
    from agents.backends.llama_server import LlamaServer

    params = policy_params(s)
    distinct = distinct_prompt_tokens(backend, prompts)
    try:
        with (
            LlamaServer(gguf_path(), n_threads=threads) as server,
            OpenAIBackend(server.base_url, tokenizer=model_dir()) as http,
        ):
            http.generate(prompts[:1], dataclasses.replace(params, max_new_tokens=2))
            # The server reuses the previous request's prefix cache: shared prefix once.
            served = timed_generate(http, prompts, params, distinct=distinct)
    except BackendError as error:
        reason = f"the llama.cpp server failed: {error}"
        report.line(f"  skipped: {reason}")
        report.figures["http_vs_transformers"] = {"skipped": reason}
        report.line()
        return {}
    local = timed_generate(backend, prompts, params, distinct=distinct)
    report.line(f"  llama.cpp HTTP (Q4_1, {threads} threads): {run_label(served)}")
    report.line("  (CPU: this process only; the server's own CPU time is not counted)")
    report.line(f"  transformers batched (fp32)        : {run_label(local)}")
    report.line(
        f"  llama.cpp / transformers tokens/s  : {served.tokens_per_s / local.tokens_per_s:.2f}x"
    )
    if served.errors:
        report.line(f"  ({served.errors} HTTP requests failed)")
    report.figures["http_vs_transformers"] = {
        "prompts": len(prompts),
        "llama_cpp_threads": threads,
        "llama_cpp_http": served.as_dict(),
        "transformers_batched": local.as_dict(),
        "tokens_per_s_ratio": served.tokens_per_s / local.tokens_per_s,
    }
    report.line()
    return {"llama.cpp HTTP": served, "transformers batched (same time)": local}


def matmul_flops(size: int, repeats: int) -> float:
    """Best fp32 FLOP/s of a ``size`` x ``size`` matmul over ``repeats`` runs."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def model_flops(backend: TransformersBackend) -> dict[str, Any]:
    """FLOPs per token: 2 x the parameters a token's forward pass multiplies by."""
    model = backend.model
    unique = sum(p.numel() for p in model.parameters())  # a tied weight counts once
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embedding
    head_params = 0 if head is None else head.weight.numel()
    # The embedding lookup is free; the LM head's matmul runs for every token.
    matmul_params = unique - embedding.numel() + (head_params if tied else 0)
    return {
        "parameters": unique,
        "embedding_parameters": embedding.numel(),
        "tied_embedding": tied,
        "matmul_parameters": matmul_params,
        "flops_per_token": 2 * matmul_params,
    }


def section_limit(
    report: Report, backend: TransformersBackend, runs: dict[str, Run], s: Settings
) -> None:
    report.line("5. The machine's limit")
    rate = matmul_flops(s.matmul_size, s.matmul_repeats)
    flops = model_flops(backend)
    limit = rate / flops["flops_per_token"]
    tied = (
        "the tied embedding counted once, as the LM head's matmul (the lookup is free)"
        if flops["tied_embedding"]
        else "embedding lookup excluded, LM head included"
    )
    report.line(
        f"  fp32 matmul {s.matmul_size}x{s.matmul_size}, {torch.get_num_threads()} threads, "
        f"best of {s.matmul_repeats}: {rate / 1e9:.1f} GFLOP/s"
    )
    report.line(
        f"  SmolLM2: {flops['parameters'] / 1e6:.1f}M parameters; {tied}: "
        f"{flops['flops_per_token'] / 1e9:.3f} GFLOP per token (attention over the context "
        "not counted)"
    )
    report.line(f"  compute-bound limit: {limit:.0f} tokens/s")
    report.line(f"  {'measured':42s} {'tok/s':>7s} {'of limit':>9s} {'+prompt':>9s}")
    fractions = {}
    for name, run in runs.items():
        gen, proc = run.tokens_per_s / limit, run.processed_per_s / limit
        fractions[name] = {
            "tokens_per_s": run.tokens_per_s,
            "processed_tokens_per_s": run.processed_per_s,
            "fraction_generated": gen,
            "fraction_processed": proc,
        }
        report.line(f"  {name:42s} {run.tokens_per_s:>7.1f} {gen:>9.1%} {proc:>9.1%}")
    report.line(
        "  (+prompt: generated + prompt tokens the backend ran, shared prefixes once where "
        "they are computed once; llama.cpp runs Q4_1 weights, so its fraction is indicative)"
    )
    report.figures["machine_limit"] = {
        "threads": torch.get_num_threads(),
        "matmul_size": s.matmul_size,
        "matmul_flops_per_s": rate,
        **flops,
        "compute_bound_tokens_per_s": limit,
        "measured": fractions,
    }
    report.line()


class GenerateBackend(TransformersBackend):
    """The decode path before the package's own loop, kept as section 6's reference:
    transformers' ``model.generate`` with the same per-row sampler (as a logits processor
    that returns a one-hot score row), fp32, no drafts; finished rows stay in the batch
    until every row is done, and the first-line hint is not read."""

    def _decode(self, encoded, input_ids, attention, cache, cached, params, seeds):
        options: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": False,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self._end_ids),
        }
        if params.temperature > 0:
            sampler = RowSampler(params.temperature, params.top_p, seeds=seeds)
            options["logits_processor"] = LogitsProcessorList([OneHotSampler(sampler)])
        if params.stop:
            options.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if cache is not None:
            options[CACHE_ARGUMENT] = cache
        output = self.model.generate(input_ids=input_ids, attention_mask=attention, **options)
        rows = output[:, input_ids.shape[1] :].tolist()
        return [
            row[: next((j for j, t in enumerate(row) if t in self._end_ids), len(row))]
            for row in rows
        ]


class OneHotSampler(LogitsProcessor):
    """:class:`RowSampler` as a logits processor: the sampled token gets score 0, every
    other token -inf, so greedy generation picks it."""

    def __init__(self, sampler: RowSampler) -> None:
        self.sampler = sampler

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        picks = self.sampler.pick(scores, list(range(scores.shape[0])))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, picks[:, None], 0.0)


class FirstLineIgnored:
    """A backend wrapper that drops the policy's first-line hint (section 6's lever off)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        return self.inner.generate(prompts, dataclasses.replace(params, until_first_line=False))

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        return self.inner.score(prompts, continuations)


UNLIMITED = 1 << 30
"""A draft budget no pass reaches (every row drafts ``draft_tokens``)."""


@dataclass(frozen=True)
class Lever:
    """One configuration of section 6."""

    name: str
    backend: str  # "generate" (the reference), "fp32", "bf16" or "bf16-fused"
    first_line: bool
    draft_tokens: int
    threads: int
    draft_budget: int = DRAFT_BUDGET  # draft tokens per pass, shared by its rows


def play_demo_episode(backend: Backend, s: Settings) -> dict[str, Any]:
    """``mfllm simulate --policy mf --mean-field llm`` on the demo's event (synthetic seed
    0) with the simulation's defaults, cut to ``s.lever_reactions`` reactions."""
    scenario = synthetic_scenario(seed=0, n_reactions=s.lever_reactions)
    env = PopulationEnv(
        scenario,
        agents_per_step=16,
        warmup=min(50, s.lever_reactions // 2),
        mean_field=LLMMeanField(backend, params=summary_params(s), seed=0),
    )
    policy = LLMPolicy(backend, context="mean_field", params=policy_params(s))
    wall, cpu = time.perf_counter(), time.process_time()
    (result,) = play_episodes([(env, 0)], policy)
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    metrics = result.metrics
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "actions": s.lever_reactions,
        "actions_per_s": s.lever_reactions / seconds,
        "policy_tokens": int(metrics.get("completion_tokens", 0)),
        "summary_tokens": int(metrics.get("mean_field_completion_tokens", 0)),
        "summaries": int(metrics.get("mean_field_calls", 0)),
        "micro_f1": float(metrics["micro_f1"]),
    }


def section_levers(report: Report, threads: int, s: Settings) -> None:
    """Each lever of the simulation's speed added in turn, all in this one run."""
    report.line(
        f"6. The simulation's levers: the demo's episode cut to {s.lever_reactions} reactions "
        f"(agents act in every step), actions/s, median of {s.lever_repeats} alternating runs"
    )
    model = model_dir()
    backends: dict[str, Backend] = {
        "generate": GenerateBackend(
            model, generation_dtype="float32", draft_tokens=0, fused_decoding=False
        ),
        "fp32": TransformersBackend(model, generation_dtype="float32", fused_decoding=False),
        "bf16": TransformersBackend(model, generation_dtype="bfloat16", fused_decoding=False),
        "bf16-fused": TransformersBackend(model, generation_dtype="bfloat16"),
    }
    levers = [
        Lever("before: transformers generate, fp32", "generate", False, 0, threads),
        Lever("own decode loop, fp32", "fp32", False, 0, threads),
        Lever("+ bf16 weights", "bf16", False, 0, threads),
        Lever("+ rows end at their first line", "bf16", True, 0, threads),
        Lever("+ drafts from the context, 8 a row", "bf16", True, 8, threads, UNLIMITED),
        Lever(f"+ {DRAFT_BUDGET} draft tokens a pass", "bf16", True, 8, threads),
        Lever("+ hand-written decoding passes (the default)", "bf16-fused", True, 8, threads),
    ]
    if threads > 1:
        levers.append(Lever("the default on 1 thread", "bf16-fused", True, 8, 1))
    if s.lever_reactions < 16:  # --quick: no time for the others
        levers = [levers[0], levers[6]]
    runs: dict[str, list[dict[str, Any]]] = {lever.name: [] for lever in levers}
    for repeat in range(s.lever_repeats):
        for lever in levers if repeat % 2 == 0 else reversed(levers):
            backend = backends[lever.backend]
            if isinstance(backend, TransformersBackend):
                backend.draft_tokens = lever.draft_tokens
                backend.draft_budget = lever.draft_budget
            torch.set_num_threads(lever.threads)
            played = play_demo_episode(
                backend if lever.first_line else FirstLineIgnored(backend), s
            )
            runs[lever.name].append(played)
            report.line(
                f"  run {repeat + 1} {lever.name:46s} {played['seconds']:7.1f} s "
                f"{played['actions_per_s']:6.2f} actions/s"
            )
    torch.set_num_threads(threads)

    def median(rows: list[dict[str, Any]], key: str) -> float:
        values = sorted(row[key] for row in rows)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    before = median(runs[levers[0].name], "actions_per_s")
    rows = []
    report.line(
        f"  {'configuration':46s} {'actions/s':>9s} {'x before':>9s} {'policy tok':>11s} "
        f"{'summary tok':>12s}"
    )
    for lever in levers:
        rate = median(runs[lever.name], "actions_per_s")
        played = runs[lever.name][0]
        rows.append(
            {
                **dataclasses.asdict(lever),
                "actions_per_s": rate,
                "ratio_to_before": rate / before,
                "runs": runs[lever.name],
            }
        )
        report.line(
            f"  {lever.name:46s} {rate:9.2f} {rate / before:8.2f}x {played['policy_tokens']:>11d} "
            f"{played['summary_tokens']:>12d}"
        )
    report.line(
        "  (bf16 and drafts change the sampled text: token counts and micro-F1 differ between "
        "rows; they are one episode's, not a fidelity comparison)"
    )
    report.figures["levers"] = {
        "reactions": s.lever_reactions,
        "repeats": s.lever_repeats,
        "threads": threads,
        "rows": rows,
    }
    report.line()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="torch (and llama.cpp) threads")
    parser.add_argument("--skip-http", action="store_true", help="skip the llama.cpp section")
    parser.add_argument(
        "--sections",
        default="1,2,3,4,5,6",
        help="comma-separated sections to run (default: all; 5 uses what 1 and 4 measured)",
    )
    args = parser.parse_args()
    try:
        sections = {int(part) for part in args.sections.split(",")}
    except ValueError:
        parser.error(f"--sections takes numbers 1-6 separated by commas, got {args.sections!r}")
    if not sections <= {1, 2, 3, 4, 5, 6}:
        parser.error(f"--sections takes numbers 1-6, got {args.sections!r}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    s = QUICK if args.quick else FULL
    report = Report(args.json)
    started = time.perf_counter()
    # Sections 1-5 measure plain fp32 decoding (no drafts); section 6 adds the levers.
    backend = load_backend(
        "smollm2", threads=args.threads, generation_dtype="float32", draft_tokens=0
    )
    assert isinstance(backend, TransformersBackend)
    threads = torch.get_num_threads()
    report.line(
        f"LLM speed: {backend.name}, fp32 transformers (sections 1-5), {threads} torch threads"
        f"{' (--quick sizes)' if args.quick else ''}; {s.max_new_tokens} new tokens per "
        f"policy completion, {s.summary_tokens} per summary, temperature {TEMPERATURE:g}"
    )
    report.line()
    report.figures["settings"] = {
        **dataclasses.asdict(s),
        "quick": args.quick,
        "threads": threads,
        "temperature": TEMPERATURE,
        "seed": SEED,
        "model": backend.name,
    }
    prompts = simulation_prompts(backend, max(max(s.batch_sizes), s.http_prompts))
    backend.generate(prompts[:1], dataclasses.replace(policy_params(s), max_new_tokens=2))

    batched = section_batched(report, backend, prompts, s) if 1 in sections else {}
    if 2 in sections:
        section_loop(report, backend, s)
    if 3 in sections:
        section_vector(report, backend, s)
    skip_http = args.skip_http or 4 not in sections
    http = section_http(report, backend, prompts[: s.http_prompts], s, threads, skip_http)
    runs: dict[str, Run] = {}
    for n, pair in batched.items():
        runs[f"transformers batched, {n} agents"] = pair["batched"]
        runs[f"transformers one at a time, {n} agents"] = pair["one_at_a_time"]
    runs.update({f"{name}, {s.http_prompts} agents": run for name, run in http.items()})
    if 5 in sections:
        section_limit(report, backend, runs, s)
    if 6 in sections:
        section_levers(report, threads, s)

    report.figures["total_seconds"] = time.perf_counter() - started
    report.line(f"total: {report.figures['total_seconds']:.0f} s")
    if args.json:
        json.dump(report.figures, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
