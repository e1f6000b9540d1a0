"""``mfllm scenarios SOURCE PATH``: load a data set and say what the loader finds.

Prints the number of episodes and reactions, the reactions per episode, the episodes per
split (where the data has splits), and per label dimension the number of labelled
reactions and the count of each label (source posts' labels counted apart). ``--json``
prints the same as one JSON object. Options the loader of SOURCE does not take (``--split``
for ``ced``, say) are refused with the list of valid ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from mfllm_cli.data_args import add_data_arguments, loader_options
from mfllm_env.labels import SCHEMES
from mfllm_env.loaders import iter_scenarios
from mfllm_env.scenario import Scenario

"""Loader options set by flags; each is passed only when its flag is given."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenarios`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "scenarios",
        help="load a data set of scenarios and summarise it",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_data_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, summarise, print; return the exit code."""
    summary = summarise(iter_scenarios(args.source, args.path, **loader_options(args)))
    summary = {"source": args.source, "path": str(args.path), **summary}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=None))
    else:
        print(format_summary(summary))
    return 0


def summarise(scenarios: Iterable[Scenario]) -> dict[str, Any]:
    """Counts over a stream of scenarios (holds one scenario at a time)."""
    sizes: list[int] = []
    splits: Counter[str] = Counter()
    labels: dict[str, Counter[str]] = {}
    source_labels: dict[str, Counter[str]] = {}
    for scenario in scenarios:
        sizes.append(len(scenario))
        split = scenario.metadata.get("split")
        if split is not None:
            splits[str(split)] += 1
        for reaction in scenario.reactions:
            for dimension, label in reaction.labels.items():
                labels.setdefault(dimension, Counter())[label] += 1
        for dimension, label in scenario.source.labels.items():
            source_labels.setdefault(dimension, Counter())[label] += 1
    return {
        "episodes": len(sizes),
        "reactions": sum(sizes),
        "reactions_per_episode": {
            "min": min(sizes, default=0),
            "median": statistics.median(sizes) if sizes else 0,
            "max": max(sizes, default=0),
        },
        "splits": dict(sorted(splits.items())),
        "labelled": {dim: sum(counts.values()) for dim, counts in sorted(labels.items())},
        "label_counts": {dim: _ordered(dim, counts) for dim, counts in sorted(labels.items())},
        "source_label_counts": {
            dim: _ordered(dim, counts) for dim, counts in sorted(source_labels.items())
        },
    }


def _ordered(dimension: str, counts: Counter[str]) -> dict[str, int]:
    """Label counts in the built-in scheme's order (others after, by name)."""
    scheme = SCHEMES.get(dimension)
    order = list(scheme.labels) if scheme else []
    order += sorted(set(counts) - set(order))
    return {label: counts[label] for label in order if label in counts}


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable report: a few lines and one table of labels per dimension."""
    per = summary["reactions_per_episode"]
    lines = [
        f"{summary['source']} {summary['path']}",
        f"episodes: {summary['episodes']:,}   reactions: {summary['reactions']:,} "
        f"(per episode: min {per['min']:,}, median {per['median']:,}, max {per['max']:,})",
    ]
    if summary["splits"]:
        lines.append(
            "episodes by split: "
            + ", ".join(f"{split} {n:,}" for split, n in summary["splits"].items())
        )
    dimensions = sorted(set(summary["label_counts"]) | set(summary["source_label_counts"]))
    if not dimensions:
        lines.append("no human labels")
        return "\n".join(lines)
    rows = [("dimension", "label", "reactions", "source posts")]
    for dim in dimensions:
        counts = summary["label_counts"].get(dim, {})
        sources = summary["source_label_counts"].get(dim, {})
        for label in list(counts) + [name for name in sources if name not in counts]:
            rows.append((dim, label, f"{counts.get(label, 0):,}", f"{sources.get(label, 0):,}"))
        rows.append((dim, "(labelled)", f"{sum(counts.values()):,}", f"{sum(sources.values()):,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
