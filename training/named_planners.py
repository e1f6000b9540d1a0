"""The planners of ``mfllm planner-eval``, by name: the baselines of
:data:`mfllm_env.planner.BASELINE_PLANNERS` (``none``, ``scripted``, ``threshold``,
``random``), ``reinforce=PLANNER.json`` (a :class:`training.planner.LinearMenuPlanner`,
played greedily), ``ppo=PLANNER.zip`` (a :class:`training.planner_sb3.SB3Planner`, its
likeliest option) and ``llm`` / ``llm=ADAPTER`` (an :class:`agents.planners.LLMPlanner`
writing messages, on the untuned model or an adapter). :class:`NamedPlanners` is the
:class:`mfllm_env.planner_results.PlannerSource` of :func:`evaluate_planners
<mfllm_env.planner_results.evaluate_planners>`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal

from mfllm_env.core.protocols import Policy
from mfllm_env.planner import BASELINE_PLANNERS, PlannerEnv

KINDS = (*BASELINE_PLANNERS, "reinforce", "ppo", "llm")
"""What a planner's name starts with (``KIND`` or ``KIND=PATH``)."""


def planner_names(text: str) -> list[str]:
    """The distinct planner names of the comma-separated ``text``, each checked before any
    episode: its kind, and the file or adapter folder it names (a damaged reinforce
    planner is refused here); ``ValueError`` naming what is wrong."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        kind, _, path = name.partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown planner {name!r}; see --help")
        if kind == "reinforce":
            if not Path(path).exists():
                raise ValueError(f"reinforce={path}: no such planner file")
            if not Path(path).is_file():
                raise ValueError(
                    f"reinforce={path}: not a file (give the planner.json of mfllm train planner)"
                )
            from training.planner import LinearMenuPlanner

            LinearMenuPlanner.load(Path(path))  # a damaged file: an error before any episode
        if kind == "ppo" and not (Path(path).is_file() and zipfile.is_zipfile(path)):
            raise ValueError(f"ppo={path}: not a zip file (give the planner.zip of a ppo run)")
        if kind == "llm" and path and not (Path(path) / "adapter_config.json").is_file():
            raise ValueError(
                f"llm={path}: {path!r} is not a PEFT adapter folder (no adapter_config.json "
                "in it)"
            )
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"--planners must name distinct planners, got {text!r}")
    return names


class NamedPlanners:
    """Planners by name (the module docstring), each built for the env it plays: a
    ``threshold`` planner at ``threshold``; LLM planners on ``model`` (loaded once per
    adapter, with ``threads`` torch threads); a ppo planner loaded once per env."""

    def __init__(self, model: str, *, threads: int | None = None, threshold: float = 0.3):
        self.model = model
        self.threads = threads
        self.threshold = threshold
        self._loaded: dict[tuple[Any, ...], Any] = {}

    def action_mode(self, name: str) -> Literal["menu", "text"]:
        return "text" if name.partition("=")[0] == "llm" else "menu"

    def planner(self, name: str, env: PlannerEnv) -> Policy:
        kind, _, path = name.partition("=")
        if kind in BASELINE_PLANNERS:
            if kind == "threshold":
                return BASELINE_PLANNERS[kind](env, threshold=self.threshold)
            return BASELINE_PLANNERS[kind](env)
        if kind == "reinforce":
            from training.planner import LinearMenuPlanner

            planner = LinearMenuPlanner.load(Path(path), greedy=True)  # its most likely option
            if planner.num_labels != env.scheme.size:
                raise ValueError(
                    f"reinforce={path}: the planner was trained on {planner.num_labels} labels, "
                    f"the population here has {env.scheme.size} {env.scheme.labels}"
                )
            return planner.for_options([option.name for option in env.menu])
        if kind == "ppo":
            from training.planner_sb3 import SB3Planner

            if ("ppo", path, id(env)) not in self._loaded:  # loaded once per env
                self._loaded["ppo", path, id(env)] = SB3Planner.load(Path(path), env)
            return self._loaded["ppo", path, id(env)]
        from agents.backends import load_backend
        from agents.planners import LLMPlanner

        key = (self.model, path)
        if key not in self._loaded:
            self._loaded[key] = load_backend(self.model, adapter=path or None, threads=self.threads)
        return LLMPlanner.for_env(self._loaded[key], env)
