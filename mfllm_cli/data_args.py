"""The data-set arguments that ``mfllm scenarios`` and ``mfllm label-eval`` share.

``SOURCE PATH`` and the loader options as flags; a flag is passed to the loader only when
it is given, so a loader refuses a flag it does not take, naming the ones it does.
"""

from __future__ import annotations

import argparse
from typing import Any

from mfllm_cli.arg_types import given_path, positive_int
from mfllm_env import loaders
from mfllm_env.loaders import LOADERS
from mfllm_env.loaders.rumoureval import parse_splits
from mfllm_env.specs import SPLITS

LOADER_OPTIONS = ("keys", "split", "episode", "platform", "pheme", "max_reactions", "limit")


def split_option(text: str) -> str:
    """``--split``: a split, or several joined by ``+`` (checked as the loader checks it)."""
    try:
        parse_splits(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``source``, ``path`` and the loader flags to ``parser``."""
    parser.add_argument("source", choices=sorted(LOADERS), help="data set format")
    parser.add_argument("path", type=given_path, help="data file or folder")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--key",
        dest="keys",
        action="append",
        metavar="FILE",
        help="rumoureval: a key file (repeatable; default: the *-key.json files in PATH)",
    )
    keys.add_argument(
        "--no-keys",
        dest="keys",
        action="store_const",
        const=[],
        help="rumoureval: read no key file (the posts carry no human stance labels)",
    )
    parser.add_argument(
        "--split",
        type=split_option,
        metavar="SPLIT",
        help=f"rumoureval: one split ({', '.join(SPLITS)}) or several joined by + (train+dev)",
    )
    parser.add_argument(
        "--episode",
        choices=("thread", "event"),
        help="rumoureval: one scenario per thread (default) or per event",
    )
    parser.add_argument(
        "--platform", choices=("twitter", "reddit", "all"), help="rumoureval: platform"
    )
    parser.add_argument("--pheme", metavar="FILE", help="rumoureval: PHEME annotations to join")
    parser.add_argument(
        "--max-reactions",
        type=positive_int,
        metavar="N",
        help="ced: keep the first N reactions per event",
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="load at most N episodes"
    )
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="stop at the first bad record (default) or skip bad records with one warning",
    )


FLAGS = {
    "keys": "--key/--no-keys",
    "split": "--split",
    "episode": "--episode",
    "platform": "--platform",
    "pheme": "--pheme",
    "max_reactions": "--max-reactions",
    "limit": "--limit",
    "on_error": "--on-error",
}
"""The flag of each loader option."""


def loader_options(args: argparse.Namespace) -> dict[str, Any]:
    """The loader keyword arguments of the flags the user gave; ``ValueError`` naming the
    flags the loader of ``args.source`` does not take, and those it does."""
    options = {
        name: getattr(args, name) for name in LOADER_OPTIONS if getattr(args, name) is not None
    }
    options["on_error"] = args.on_error
    valid = set(loaders.loader_options(args.source))
    refused = [FLAGS[name] for name in options if name not in valid]
    if refused:
        taken = [flag for name, flag in FLAGS.items() if name in valid]
        raise ValueError(
            f"{', '.join(refused)}: not for {args.source} data, which takes {', '.join(taken)}"
        )
    return options
