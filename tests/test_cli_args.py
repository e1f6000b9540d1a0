"""Every option of the ``mfllm`` command is checked before any work: a bad value ends in
``mfllm CMD: error: argument --NAME: ...`` and exit code 2, contradictory options in one
error line naming them, the user's path problems in one line naming the path.

The fuzz tests run :func:`mfllm_cli.main.main` in-process with each command's work
replaced by its up-front checks alone (``validate``), so no simulation or training runs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import math
import os
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfllm_cli import (
    arg_types,
    bench_cmd,
    label_eval_cmd,
    macro_cmd,
    planner_cmd,
    scenarios_cmd,
    simulate_cmd,
    train_cmd,
)
from mfllm_cli import main as main_module
from mfllm_cli.main import build_parser, main, user_error_message
from mfllm_env.labels import SDQC, UnknownLabelError

MAX_COUNT = 2**31 - 1  # the environments' limit of every count
SEED_MAX = 2**32 - 1
INF = math.inf


@dataclass(frozen=True)
class Integer:
    """An integer option valid in ``low .. high``."""

    low: int
    high: int = MAX_COUNT

    def expected(self, text: str) -> int | None:
        stripped = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", stripped) or len(stripped.lstrip("+-0")) > 40:
            return None  # not ASCII decimal digits, or far beyond any bound
        value = int(stripped)
        return value if self.low <= value <= self.high else None


@dataclass(frozen=True)
class Number:
    """A float option valid between ``low`` and ``high`` (an open end left out), finite."""

    low: float
    high: float = INF
    low_open: bool = False
    high_open: bool = False

    def expected(self, text: str) -> float | None:
        if not text.strip().isascii():
            return None
        try:
            value = float(text)
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        above_low = value > self.low if self.low_open else value >= self.low
        below_high = value < self.high if self.high_open else value <= self.high
        return value if above_low and below_high else None


@dataclass(frozen=True)
class DistinctList:
    """A comma-separated list of distinct ``item`` values."""

    item: Integer

    def expected(self, text: str) -> list[int] | None:
        values = [self.item.expected(part) for part in text.split(",")]
        if None in values or len(set(values)) != len(values):
            return None
        return values


COUNT = Integer(1)
TOKENS = Integer(1, 32_768)  # one generation's tokens: beyond any model's context here
LORA_RANK = Integer(1, 1024)  # beyond it an adapter outgrows the layers it adapts
THREADS = Integer(1, os.cpu_count() or 1)
NON_NEGATIVE = Integer(0)
SEED = Integer(0, SEED_MAX)
POSITIVE = Number(0, low_open=True)
NON_NEGATIVE_NUMBER = Number(0)
PROBABILITY = Number(0, 1)

# Every command's required arguments, chosen so that no option check but the fuzzed
# option's own can fail (e.g. a warm-up of 0: no --max-reactions contradicts it).
BASE = {
    "scenarios": ["scenarios", "jsonl", "data.jsonl"],
    "label-eval": ["label-eval", "jsonl", "data.jsonl"],
    "simulate": ["simulate", "--policy", "random", "--warmup", "0", "--out", "run"],
    "bench": [
        *("bench", "--scenarios", "synthetic:0", "--policies", "random", "--seeds", "0"),
        *("--warmup", "0", "--out", "run"),
    ],
    "train sft": [
        *("train", "sft", "--scenarios", "synthetic:0-3", "--context", "mean_field"),
        *("--out", "run"),
    ],
    "train ib-tune": ["train", "ib-tune", "--scenarios", "synthetic:0-3", "--out", "run"],
    "train planner": ["train", "planner", "--scenarios", "synthetic:0", "--out", "run"],
    "planner-eval": ["planner-eval", "--scenarios", "synthetic:0", "--out", "run"],
    "macro-train": ["macro-train", "--out", "run"],
    "macro-eval": ["macro-eval", "--out", "run"],
}
EPISODE_OPTIONS = {
    "--parallel": COUNT,
    "--k": COUNT,
    "--max-new-tokens": TOKENS,
    "--summary-tokens": TOKENS,
    "--temperature": NON_NEGATIVE_NUMBER,
    "--cos-every": COUNT,
    "--threads": THREADS,
    "--draft-tokens": NON_NEGATIVE,
    "--warmup": NON_NEGATIVE,
    "--agents-per-step": COUNT,
    "--max-reactions": COUNT,
    "--limit": COUNT,
}
TRAINING_OPTIONS = {
    "--dev-fraction": Number(0, 1, low_open=True, high_open=True),
    "--dev-examples": NON_NEGATIVE,
    "--max-steps": COUNT,
    "--save-steps": COUNT,
    "--max-reactions": COUNT,
    "--agents-per-step": COUNT,
    "--lora-r": LORA_RANK,
    "--lora-alpha": COUNT,
    "--seed": SEED,
    "--threads": THREADS,
    "--batch-size": COUNT,
    "--learning-rate": POSITIVE,
    "--lora-dropout": Number(0, 0.99),
}
PLANNER_ENV_OPTIONS = {
    "--limit": COUNT,
    "--every": COUNT,
    "--budget": NON_NEGATIVE,
    "--cost": NON_NEGATIVE_NUMBER,
    "--horizon": COUNT,
    "--warmup": NON_NEGATIVE,
    "--agents-per-step": COUNT,
    "--max-new-tokens": TOKENS,
    "--summary-tokens": TOKENS,
    "--threads": THREADS,
}
DATA_OPTIONS = {"--max-reactions": COUNT, "--limit": COUNT}
# The valid values of every numeric option of every command, written out from what each
# option means (not read from the parser), so a wrong or missing check is caught.
NUMERIC_OPTIONS = {
    "scenarios": DATA_OPTIONS,
    "label-eval": DATA_OPTIONS,
    "simulate": {**EPISODE_OPTIONS, "--seed": SEED},
    "bench": {
        **EPISODE_OPTIONS,
        "--seeds": DistinctList(SEED),
        "--forecast": Number(0, 100, low_open=True, high_open=True),
        "--horizons": DistinctList(COUNT),
        "--bootstrap": Integer(1, 1_000_000),
        "--min-reactions": COUNT,
        "--samples-per-agent": COUNT,
    },
    "train sft": {**TRAINING_OPTIONS, "--k": COUNT, "--sampling-prob": PROBABILITY},
    "train ib-tune": {
        **TRAINING_OPTIONS,
        "--policy-steps": COUNT,
        "--rounds": COUNT,
        "--beta": NON_NEGATIVE_NUMBER,
        "--relevance-weight": NON_NEGATIVE_NUMBER,
        "--generations": Integer(2),
        "--max-targets": COUNT,
        "--summary-tokens": TOKENS,
        "--policy-learning-rate": POSITIVE,
    },
    "train planner": {
        **PLANNER_ENV_OPTIONS,
        "--seed": SEED,
        "--max-steps": COUNT,
        "--save-steps": COUNT,
        "--learning-rate": POSITIVE,
        "--episodes-per-step": COUNT,
        "--entropy-weight": NON_NEGATIVE_NUMBER,
        "--rollout-steps": Integer(2),
        "--generations": Integer(2),
        "--states-per-step": COUNT,
        "--message-tokens": TOKENS,
        "--temperature": POSITIVE,
        "--lora-r": LORA_RANK,
        "--lora-alpha": COUNT,
    },
    "planner-eval": {
        **PLANNER_ENV_OPTIONS,
        "--seeds": DistinctList(SEED),
        "--threshold": PROBABILITY,
    },
    "macro-train": {
        "--households": Integer(10, 100_000),
        "--horizon": COUNT,
        "--warmup-iterations": NON_NEGATIVE,
        "--rounds": NON_NEGATIVE,
        "--leader-iterations": NON_NEGATIVE,
        "--follower-iterations": NON_NEGATIVE,
        "--episodes-per-iteration": COUNT,
        "--gamma": PROBABILITY,
        "--household-learning-rate": POSITIVE,
        "--leader-learning-rate": POSITIVE,
        "--seed": SEED,
        "--threads": THREADS,
    },
    "macro-eval": {
        "--households": Integer(10, 100_000),
        "--years": COUNT,
        "--seeds": DistinctList(SEED),
        "--llm-households": Integer(10, 1000),
        "--llm-years": COUNT,
        "--llm-seeds": DistinctList(SEED),
        "--threads": THREADS,
    },
}
CASES = [
    (command, option, rule)
    for command, options in NUMERIC_OPTIONS.items()
    for option, rule in options.items()
]


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """``(command, parser)`` for every leaf command (``train sft``, ``simulate``, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = f"{prefix} {name}".strip()
                children = list(_subparsers(sub, command))
                yield from children or [(command, sub)]


def test_the_table_covers_every_typed_option_of_every_command():
    """A new numeric option must be added to NUMERIC_OPTIONS (and so be fuzzed)."""
    typed = {
        (command, action.option_strings[-1])
        for command, sub in _subparsers(build_parser())
        for action in sub._actions
        if action.option_strings
        and action.type is not None
        and action.type.__name__
        not in (
            "Path",
            "given_path",
            "adapter_folder",
            "target_shares",
            "split_option",
            "trained_run",
        )
    }
    table = {(command, option) for command, option, _ in CASES}
    assert typed == table


class SeenArguments(list):
    """The namespaces the checks saw (shown short in a failing case's report)."""

    def __repr__(self) -> str:
        return f"<{len(self)} parsed namespaces>"


@pytest.fixture(scope="class")
def checks_only():
    """``main`` with each command's work replaced by its up-front checks; what the
    checks saw is kept in the returned list (the parsed namespaces)."""
    seen = SeenArguments()

    def only(validate):
        def run(args: argparse.Namespace) -> int:
            if validate is not None:
                validate(args)
            seen.append(args)
            return 0

        return run

    with pytest.MonkeyPatch.context() as patch:
        for module, name, validate in [
            (scenarios_cmd, "run", None),
            (label_eval_cmd, "run", None),
            (simulate_cmd, "run", simulate_cmd.validate),
            (bench_cmd, "run", bench_cmd.resolve),
            (train_cmd, "run_sft", train_cmd.validate_sft),
            (train_cmd, "run_ib_tune", train_cmd.validate_training),
            (planner_cmd, "run_train", planner_cmd.validate),
            (planner_cmd, "run_eval", planner_cmd.validate),
            (macro_cmd, "run_train", None),
            (macro_cmd, "run_eval", None),
        ]:
            patch.setattr(module, name, only(validate))
        parser = build_parser()  # registered with the replacements; built once: fast
        patch.setattr(main_module, "build_parser", lambda: parser)
        yield seen


NUMBER_TEXTS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-3, 2**33).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-2, 200).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "-nan",
            "inf",
            "-inf",
            "+inf",
            "Infinity",
            "1e400",
            "-1e400",
            "-0",
            "-0.0",
            "+0",
            "0",
            "1",
            "2",
            "3",
            "0.5",
            "1.0",
            "99.9",
            "100",
            " 7 ",
            "007",
            "1e3",
            "1e-3",
            "0x10",
            "1_000",
            "1,2",
            "1,,2",
            "0,1,2",
            "abc",
            "--",
            "-",
            "١٢",
            "1024",
            "1025",
            "32768",
            "32769",
            "1000000",
            "1000001",
            "１２",
            "²",
            "4294967295",
            "4294967296",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "9" * 5000,
        ]
    ),
    st.text(max_size=6),
)
LIST_TEXTS = st.one_of(
    st.lists(st.integers(-2, 6), max_size=4).map(lambda xs: ",".join(map(str, xs))),
    st.lists(st.integers(0, 2**33), min_size=1, max_size=3).map(lambda xs: ",".join(map(str, xs))),
    st.lists(NUMBER_TEXTS, min_size=1, max_size=3).map(",".join),
)


def _main(argv: list[str]) -> tuple[int, str]:
    """``main(argv)``'s exit code and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _base(command: str, option: str) -> list[str]:
    """``BASE[command]``, less the warm-up where the option replaces it."""
    base = BASE[command]
    if option == "--forecast":
        at = base.index("--warmup")
        return base[:at] + base[at + 2 :]
    return base


def _check(checks_only, command, option, rule, text):
    before = len(checks_only)
    code, err = _main([*_base(command, option), f"{option}={text}"])
    expected = rule.expected(text)
    if expected is None:
        assert code == 2, f"{command} {option}={text!r} was accepted"
        prog = "mfllm" if text == "--" else f"mfllm {command}"  # see main
        assert f"{prog}: error: argument {option}: " in err
    else:
        assert code == 0, f"{command} {option}={text!r} was refused: {err}"
        attribute = option[2:].replace("-", "_")
        assert getattr(checks_only[before], attribute) == expected


LIST_CASES = [case for case in CASES if isinstance(case[2], DistinctList)]


class TestFuzz:
    """Generated option values against :data:`NUMERIC_OPTIONS`, through ``main``."""

    @pytest.mark.parametrize(("command", "option", "rule"), CASES)
    @settings(max_examples=30)
    @given(text=NUMBER_TEXTS)
    def test_numeric_option_is_parsed_or_refused_by_name(
        self, checks_only, command, option, rule, text
    ):
        _check(checks_only, command, option, rule, text)

    @pytest.mark.parametrize(("command", "option", "rule"), LIST_CASES)
    @settings(max_examples=80)
    @given(text=LIST_TEXTS)
    def test_list_option_is_parsed_or_refused_by_name(
        self, checks_only, command, option, rule, text
    ):
        _check(checks_only, command, option, rule, text)

    @pytest.mark.parametrize("command", ["train sft", "train ib-tune"])
    def test_dev_fraction_defaults_only_without_dev_scenarios(self, checks_only, command):
        assert _main(BASE[command]) == (0, "")
        assert checks_only[-1].dev_fraction == train_cmd.DEV_FRACTION == 0.2
        assert _main([*BASE[command], "--dev-scenarios", "synthetic:4"]) == (0, "")
        assert checks_only[-1].dev_fraction is None

    @pytest.mark.parametrize("command", ["train planner", "planner-eval"])
    @settings(max_examples=60)
    @given(
        shares=st.lists(
            st.tuples(
                st.sampled_from(["support", "deny", "query", "", " x "]),
                NUMBER_TEXTS.filter(lambda v: "," not in v and "=" not in v),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def test_target_shares_are_parsed_or_refused_by_name(self, checks_only, command, shares):
        before = len(checks_only)
        code, err = _main([*BASE[command], "--target=" + ",".join(f"{n}={v}" for n, v in shares)])
        names = [name.strip() for name, _ in shares]
        values = [NON_NEGATIVE_NUMBER.expected(value) for _, value in shares]
        if all(names) and len(set(names)) == len(names) and None not in values:
            assert code == 0, err
            assert checks_only[before].target == dict(zip(names, values, strict=True))
        else:
            assert code == 2 and f"mfllm {command}: error: argument --target: " in err


# -- the cases, one by one -----------------------------------------------------


def _error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["planner-eval", "--scenarios", "synthetic:0", "--seeds", "1,1"],
            "mfllm planner-eval: error: argument --seeds: lists 1 more than once in '1,1'",
        ),
        (
            ["planner-eval", "--scenarios", "synthetic:0", "--threshold", "nan"],
            "argument --threshold: must be a finite number, got 'nan'",
        ),
        (
            ["simulate", "--seed", "-1"],
            "mfllm simulate: error: argument --seed: must be an integer >= 0 and <= 4294967295",
        ),
        (["simulate", "--seed", str(2**32)], "argument --seed: must be an integer >= 0"),
        (["train", "sft", "--scenarios", "s", "--seed", str(2**63)], "argument --seed:"),
        (["simulate", "--warmup", str(2**31)], "--warmup: must be an integer >= 0 and <= 2147"),
        (["simulate", "--temperature", "inf"], "argument --temperature: must be a finite"),
        (["simulate", "--agents-per-step", "0"], "argument --agents-per-step: must be an"),
        (["simulate", "--limit", "0"], "argument --limit: must be an integer >= 1 and <= 2147"),
        (["bench", "--forecast", "100"], "argument --forecast: must be a number > 0 and < 100"),
        (["bench", "--horizons", "8,0"], "argument --horizons: item 2 of '8,0' must be an"),
        (["train", "sft", "--scenarios", "s", "--learning-rate", "1e400"], "--learning-rate:"),
        (["train", "sft", "--scenarios", "s", "--sampling-prob", "1.5"], "--sampling-prob:"),
        (["train", "ib-tune", "--scenarios", "s", "--generations", "1"], "integer >= 2"),
        (["train", "planner", "--scenarios", "s", "--temperature", "0"], "must be a number > 0"),
        (["train", "planner", "--scenarios", "s", "--target", "support=1,support=2"], "twice"),
        (["train", "planner", "--scenarios", "s", "--target", "support=-1"], "'support' must"),
        (["simulate", "--threads", str(THREADS.high + 1)], "argument --threads: must be at most"),
        (
            ["bench", "--bootstrap", "1000001"],
            "argument --bootstrap: must be an integer >= 1 and <= 1000000, got '1000001'",
        ),
        (
            ["train", "sft", "--scenarios", "s", "--lora-r", "1025"],
            "argument --lora-r: must be an integer >= 1 and <= 1024, got '1025'",
        ),
        (
            ["train", "planner", "--scenarios", "s", "--lora-r", str(2**31 - 1)],
            "argument --lora-r: must be an integer >= 1 and <= 1024",
        ),
        (
            ["simulate", "--max-new-tokens", "32769"],
            "argument --max-new-tokens: must be an integer >= 1 and <= 32768, got '32769'",
        ),
        (["planner-eval", "--max-new-tokens", "100000"], "argument --max-new-tokens: must be"),
        (["train", "ib-tune", "--scenarios", "s", "--summary-tokens", "40000"], "<= 32768"),
        (["train", "planner", "--scenarios", "s", "--message-tokens", "40000"], "<= 32768"),
        (
            ["simulate", "--policy", "sft", "--adapter", "nowhere"],
            "argument --adapter: 'nowhere' is not a PEFT adapter folder",
        ),
        (["bench", "--sft-adapter", "."], "argument --sft-adapter: '.' is not a PEFT adapter"),
    ],
)
def test_bad_values_are_refused_by_argparse_naming_the_option(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 2
    assert message in _error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("method", ["sft", "ib-tune", "planner"])
def test_a_training_error_names_the_whole_command(tmp_path, capsys, method):
    argv = ["train", method, "--scenarios", "nowhere:x", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"mfllm train {method}: error: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--policy", "random", "--out"],
        ["bench", "--preset", "ci", "--out"],
        ["planner-eval", "--scenarios", "synthetic:0-1", "--out"],
        ["train", "planner", "--scenarios", "synthetic:0-1", "--out"],
        ["train", "sft", "--scenarios", "synthetic:0-1", "--out"],
        ["scenarios", "jsonl"],
        ["label-eval", "rumoureval"],
    ],
)
@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(
    tmp_path, monkeypatch, capsys, argv, empty
):
    monkeypatch.chdir(tmp_path)  # an empty folder: a run would start writing into it
    assert main([*argv, empty]) == 2
    assert f"expected a path, got {empty!r}" in _error(capsys)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["simulate", "--policy", "random", "--warmup", "60", "--max-reactions", "50"],
            "--warmup 60 leaves nothing to simulate in episodes cut to --max-reactions 50",
        ),
        (
            ["bench", "--preset", "ci", "--warmup", "48"],
            "--warmup 48 leaves nothing to simulate in episodes cut to --max-reactions 48",
        ),
        (["bench", "--preset", "ci", "--forecast", "50", "--warmup", "5"], "drop --warmup"),
        (["simulate", "--policy", "random", "--fit", "synthetic:1"], "--fit is for the classi"),
        (["simulate", "--policy", "herding", "--mean-field", "llm"], "--mean-field llm needs"),
        (["simulate", "--policy", "random", "--nll"], "--nll needs an LLM policy"),
        (["simulate", "--policy", "sft"], "pass --adapter"),
        (["simulate", "--policy", "recent", "--mean-field", "llm"], "drop --mean-field"),
        (
            ["simulate", "--policy", "state", "--mean-field-adapter", "ADAPTER"],
            "--mean-field-adapter needs an LLM mean field",
        ),
        (
            ["simulate", "--policy", "mf", "--nll", "--model", "http://localhost:1/v1"],
            "--nll over HTTP needs --tokenizer",
        ),
        (
            ["train", "sft", "--scenarios", "synthetic:0-3", "--sampling-prob", "0.5"],
            "--sampling-prob and --mean-field-adapter need --context mean_field",
        ),
        *(
            (
                [
                    *("train", method, "--scenarios", "synthetic:0-3", "--dev-fraction", "0.3"),
                    *("--dev-scenarios", "synthetic:4"),
                ],
                "--dev-fraction holds out a share of the training events for dev and "
                "--dev-scenarios gives the dev events: give one of them, not both",
            )
            for method in ("sft", "ib-tune")
        ),
        (
            ["train", "planner", "--scenarios", "synthetic:0", "--population-adapter", "ADAPTER"],
            "--population-adapter needs --population mf",
        ),
        (
            ["planner-eval", "--scenarios", "synthetic:0", "--mean-field-adapter", "ADAPTER"],
            "--mean-field-adapter needs --population mf",
        ),
    ],
)
def test_contradictory_options_are_refused_before_any_work(tmp_path, capsys, argv, message):
    """The real commands (not the checks alone): they stop before reading a scenario or
    creating --out. ADAPTER stands for an adapter folder."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    argv = [str(adapter) if arg == "ADAPTER" else arg for arg in argv]
    out = tmp_path / "run"
    assert main([*argv, "--no-progress", "--out", str(out)]) == 2
    last = _error(capsys)
    command = " ".join(argv[:2]) if argv[0] == "train" else argv[0]  # train METHOD
    assert last.startswith(f"mfllm {command}: error: ") and message in last
    assert not out.exists()


def test_bench_presets_hold_values_their_options_accept():
    """A preset fills options the parser did not see: each value must be one the option's
    own check returns."""
    for preset in bench_cmd.PRESETS.values():
        for name, value in preset.items():
            if name in ("seeds", "horizons"):
                text = ",".join(map(str, value))
                rule = NUMERIC_OPTIONS["bench"][f"--{name}"]
                assert rule.expected(text) == value


# -- errors that reach main ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/d/x"), "Permission denied: /d/x"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/x"), "Not a directory: f/x"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "d"), "Is a directory: d"),
        (FileExistsError(errno.EEXIST, "File exists", "a", None, "b"), "File exists: a -> b"),
        (OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300), "File name too long: aaa"),
        (OSError(errno.ENOSPC, "No space left on device", "o"), "No space left on device: o"),
        (FileNotFoundError("jsonl:x: no such file or folder: x"), "jsonl:x: no such file or fo"),
        (ValueError("--warmup 9 is too long"), "--warmup 9 is too long"),
        (UnknownLabelError("'x' is not a label"), "'x' is not a label"),
    ],
)
def test_user_errors_become_one_line_with_exit_code_2(monkeypatch, capsys, error, message):
    def fail(args):
        raise error

    monkeypatch.setattr(simulate_cmd, "run", fail)
    assert main(["simulate", "--out", "run"]) == 2
    assert capsys.readouterr().err.startswith(f"mfllm simulate: error: {message}")


@pytest.mark.parametrize(
    "error",
    [KeyError("settings"), OSError(errno.EIO, "Input/output error", "x"), TypeError("bug")],
)
def test_other_errors_keep_their_traceback(monkeypatch, error):
    """A bare KeyError, an I/O error or a TypeError is a bug, not the user's mistake: it
    is not printed as if it were a message."""

    def fail(args):
        raise error

    monkeypatch.setattr(simulate_cmd, "run", fail)
    assert user_error_message(error) is None
    with pytest.raises(type(error)):
        main(["simulate", "--out", "run"])


def test_an_unknown_label_is_a_value_error_that_prints_as_its_message():
    with pytest.raises(ValueError) as caught:
        SDQC.index("belief")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("'belief' is not a label of scheme 'sdqc'; valid:")


def test_help_and_parse_errors_return_their_exit_code(capsys):
    assert main(["simulate", "--help"]) == 0
    assert "--seed" in capsys.readouterr().out
    assert main(["simulate"]) == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


# -- the type functions on their own ---------------------------------------------------


def test_type_functions_normalise_what_they_accept():
    assert arg_types.seed(" 42 ") == 42
    assert arg_types.positive_int("007") == 7
    assert math.copysign(1, arg_types.probability("-0")) == 1.0  # -0 is stored as 0
    assert arg_types.seed_list("3,1,2") == [3, 1, 2]
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be an integer >= 1 .*'1e3'"):
        arg_types.positive_int("1e3")
    with pytest.raises(argparse.ArgumentTypeError, match="<= 2147483647, got '99999"):
        arg_types.non_negative_int("9" * 5000)
    with pytest.raises(argparse.ArgumentTypeError, match="item 2 of '0,,1'"):
        arg_types.seed_list("0,,1")
