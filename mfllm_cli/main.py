"""Entry point of the ``mfllm`` console script.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agents.backends.base import BackendError

COMMAND_MODULES = (
    "mfllm_cli.scenarios_cmd",
    "mfllm_cli.label_eval_cmd",
    "mfllm_cli.simulate_cmd",
    "mfllm_cli.train_cmd",
    "mfllm_cli.bench_cmd",
    "mfllm_cli.planner_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfllm",
        description="Mean-field LLM simulation of population reactions to events.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError, BackendError) as error:
        # Bad input from the user (or an unreachable server): say what is wrong, no traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"mfllm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
