"""Entry point of the ``mfllm`` console script.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.

Every option is checked as it is parsed (:mod:`mfllm_cli.arg_types`), and each command
refuses contradictory options before any work; the user's mistakes -- bad options, bad
data, paths that cannot be read or written, an unreachable server -- end in one line,
``mfllm COMMAND: error: ...``, and exit code 2. Ctrl-C ends in one line, ``mfllm COMMAND:
interrupted``, and exit code 130. Any other exception is a bug: it keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from agents.backends.base import BackendError

COMMAND_MODULES = (
    "mfllm_cli.scenarios_cmd",
    "mfllm_cli.label_eval_cmd",
    "mfllm_cli.simulate_cmd",
    "mfllm_cli.train_cmd",
    "mfllm_cli.bench_cmd",
    "mfllm_cli.planner_cmd",
    "mfllm_cli.macro_cmd",
)
# What an OSError with one of these numbers says is about the user's paths or disk, not
# about the program: permission denied, not a folder, a file in the way, a name too long,
# no space left, ...
USER_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EFBIG,
    }
)


INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)
TERMINATED = 143  # the shell's code for a command stopped by SIGTERM (128 + SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's time limit) as an exception, so that a run
    stops the way it does on Ctrl-C: what is written stays, and ``--resume`` continues."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfllm",
        description="Mean-field LLM simulation of population reactions to events.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def user_error_message(error: BaseException) -> str | None:
    """What to tell the user about ``error`` if it is their mistake (a ``ValueError``,
    such as a bad option or bad data; a path problem; a backend failure), else ``None``."""
    if isinstance(error, (ValueError, BackendError)):
        return str(error)
    if isinstance(error, OSError):
        if error.errno is None:  # raised on purpose with a message (a missing data file)
            return str(error)
        if error.errno in USER_PATH_ERRNOS:
            paths = [p for p in (error.filename, error.filename2) if p is not None]
            where = " -> ".join(str(p) for p in paths)
            return f"{error.strerror}: {where}" if where else str(error.strerror)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names; returns the exit code (2 for the user's mistakes,
    with one ``mfllm COMMAND: error: ...`` line on stderr; 130 for Ctrl-C, 143 for SIGTERM)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        for arg in argv:
            # Python 3.11's argparse drops the value "--" (as in --seed=--) unchecked.
            option, equals, value = arg.partition("=")
            if option.startswith("--") and equals and value == "--":
                parser.error(f"argument {option}: expected one argument, got '--'")
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's own exit: --help, or a bad option (code 2)
        return int(exit_.code or 0)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main_thread else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: what is written stays
        resume = "; the same command with --resume continues it" if "resume" in args else ""
        how = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"mfllm {args.command}: {how}{resume}", file=sys.stderr)
        return TERMINATED if isinstance(stop, Terminated) else INTERRUPTED
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        print(f"mfllm {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
