"""Run folders (:mod:`mfllm_env.runs`): nothing lost, ever.

Every command that writes a run folder refuses to mix runs, leaves nothing behind when a
check fails, resumes by any path, and -- interrupted at any of its writes, then resumed --
ends with the files of an uninterrupted run, to the byte."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfllm_cli.main import main
from mfllm_env import runs, synthetic_scenario, write_scenarios_jsonl
from mfllm_env.simulation import episode_seed

SIMULATE = ["simulate", "--scenario", "synthetic:0-2", "--policy", "random", "--warmup", "8"]
SIMULATE += ["--max-reactions", "24", "--agents-per-step", "8", "--parallel", "2", "--no-progress"]
BENCH = ["bench", "--preset", "ci", "--policies", "random,herding", "--seeds", "0"]
BENCH += ["--max-reactions", "24", "--horizons", "8", "--bootstrap", "50", "--no-progress"]
PLANNER_EVAL = ["planner-eval", "--scenarios", "synthetic:0-1", "--planners", "none,random"]
PLANNER_EVAL += ["--seeds", "0", "--horizon", "16", "--no-progress"]
TRAIN_PLANNER = ["train", "planner", "--scenarios", "synthetic:0-1", "--horizon", "16"]
TRAIN_PLANNER += ["--max-steps", "4", "--save-steps", "2", "--episodes-per-step", "2"]
TRAIN_PLANNER += ["--no-progress"]
# Wall-clock figures, and the folder's own path: the only files that may differ.
VARYING = {"config.json", "timing.json", "timing.jsonl", "summary.json", "report.png"}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in VARYING
    }


# -- refusing to mix runs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command"),
    [(SIMULATE, "simulate"), (BENCH, "bench"), (PLANNER_EVAL, "planner-eval")],
)
def test_an_existing_run_is_never_overwritten_silently(tmp_path, capsys, argv, command):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 0
    before = _files(out)
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"already holds an mfllm {command} run" in err
    assert "pass --resume to continue it, pass --overwrite to replace it" in err
    assert _files(out) == before
    # Another command's --resume names what is there.
    other = SIMULATE if command != "simulate" else BENCH
    assert main([*other, "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"it holds an mfllm {command} run, not an mfllm {other[0]} run" in err
    assert _files(out) == before
    # --overwrite clears the folder first: no file of the old run is left.
    (out / "stale.txt").write_text("from the old run")
    assert main([*argv, "--overwrite", "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists() and _files(out) == before


def test_simulate_refuses_a_bench_folder_and_keeps_its_records(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main([*BENCH, "--out", str(out)]) == 0
    records = (out / "episodes.jsonl").read_bytes()
    assert main([*SIMULATE, "--out", str(out)]) == 2
    assert "already holds an mfllm bench run" in capsys.readouterr().err
    assert (out / "episodes.jsonl").read_bytes() == records
    assert main([*BENCH, "--resume", "--out", str(out)]) == 0


def test_training_refuses_an_existing_run_and_resume_by_another_command(tmp_path, capsys):
    out = tmp_path / "train"
    assert main([*TRAIN_PLANNER, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*TRAIN_PLANNER, "--out", str(out)]) == 2
    assert "already holds an mfllm train planner run; pass --resume" in capsys.readouterr().err
    assert main([*SIMULATE, "--resume", "--out", str(out)]) == 2
    assert "it holds an mfllm train planner run" in capsys.readouterr().err
    assert main([*TRAIN_PLANNER, "--overwrite", "--out", str(out)]) == 0


def test_a_folder_that_is_no_run_folder_is_never_cleared(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for flag in ("--overwrite", "--resume"):
        assert main([*SIMULATE, flag, "--out", str(out)]) == 2
        assert "holds files but no config.json: it is not a run folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("x"), "is a file, not a folder"),
        (lambda p: p.parent.joinpath("file").write_text("x"), "is a file, not a folder"),
    ],
)
def test_an_out_that_cannot_be_a_folder_is_a_clear_error(tmp_path, capsys, make, message):
    out = tmp_path / "out"
    make(out)
    target = out if out.exists() else tmp_path / "file" / "run"
    assert main([*SIMULATE, "--out", str(target)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_out_that_is_not_writable_is_a_clear_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main([*SIMULATE, "--out", str(locked / "run")]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    assert main([*SIMULATE, "--resume", "--overwrite", "--out", str(tmp_path / "r")]) == 2
    assert "pick one" in capsys.readouterr().err


# -- a failed check leaves nothing behind ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [*SIMULATE, "--warmup", "40"],  # every episode inside the warm-up: found while running
        ["simulate", "--policy", "sft", "--no-progress"],  # no --adapter
        [*BENCH, "--policies", "state", "--model", "/no/such/model"],  # found while running
        [*PLANNER_EVAL, "--target", "support=x"],
        [*TRAIN_PLANNER, "--method", "grpo", "--model", "/no/such/model"],
    ],
)
def test_a_failed_check_leaves_no_folder(tmp_path, argv):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 2
    assert not out.exists()
    # The corrected command then runs in that place.
    assert main([*SIMULATE, "--out", str(out)]) == 0


def test_a_failure_in_an_existing_empty_folder_leaves_it_empty(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    assert main([*SIMULATE, "--warmup", "40", "--out", str(out)]) == 2
    assert out.is_dir() and not any(out.iterdir())


# -- resuming by any path ------------------------------------------------------------------


def _cut_last_episode(out: Path) -> None:
    """Make ``out`` look like a simulate run killed while writing its last episode."""
    lines = (out / "episodes.jsonl").read_text().splitlines(keepends=True)
    (out / "episodes.jsonl").write_text("".join(lines[:-1]) + lines[-1][:25])


def test_resume_accepts_the_folder_by_any_path(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert main([*SIMULATE, "--out", str(reference)]) == 0
    monkeypatch.chdir(tmp_path)
    assert main([*SIMULATE, "--out", "run"]) == 0  # relative
    for path in (tmp_path / "run", tmp_path / "link", tmp_path / "moved"):
        if path.name == "link":
            path.symlink_to(tmp_path / "run")
        if path.name == "moved":
            shutil.move(tmp_path / "run", path)
        _cut_last_episode(path)
        assert main([*SIMULATE, "--resume", "--out", str(path)]) == 0, path
        assert _files(path) == _files(reference), path


def test_folders_written_before_full_command_names_still_resume(tmp_path):
    bench, train = tmp_path / "bench", tmp_path / "train"
    assert main([*BENCH, "--out", str(bench)]) == 0
    config = json.loads((bench / "config.json").read_text())
    settings = {k: v for k, v in config.items() if k not in ("command", "argv")}
    old = {"settings": settings, "command": ["/bin/mfllm", *config["argv"]]}
    (bench / "config.json").write_text(json.dumps(old))
    assert main([*BENCH, "--resume", "--out", str(bench)]) == 0
    assert main([*TRAIN_PLANNER, "--out", str(train)]) == 0
    config = json.loads((train / "config.json").read_text())
    (train / "config.json").write_text(json.dumps({**config, "command": "train"}))
    assert main([*TRAIN_PLANNER, "--resume", "--out", str(train)]) == 0


def test_training_folders_with_dev_scenarios_and_a_moot_dev_fraction_still_resume(tmp_path):
    """Before --dev-fraction and --dev-scenarios excluded each other, a run with dev
    scenarios stored the dev fraction it ignored (0.2); it is read as today's None."""
    options = {"method": "sft", "scenarios": "synthetic:0-3", "dev_scenarios": "synthetic:4"}
    (tmp_path / "config.json").write_text(
        json.dumps({**options, "dev_fraction": 0.2, "command": "train"})
    )
    folder = runs.RunFolder(tmp_path, "train sft", resume=True)
    with folder.writing({**options, "dev_fraction": None}):
        pass
    # Without dev scenarios the fraction is a setting: another one is refused.
    options["dev_scenarios"] = None
    (tmp_path / "config.json").write_text(
        json.dumps({**options, "dev_fraction": 0.2, "command": "train sft"})
    )
    folder = runs.RunFolder(tmp_path, "train sft", resume=True)
    with (
        pytest.raises(ValueError, match=r"dev_fraction: 0\.2 -> 0\.3"),
        folder.writing({**options, "dev_fraction": 0.3}),
    ):
        pass


def test_an_llm_run_resumes_to_the_byte_one_episode_at_a_time(tmp_path, capsys, tiny_model_dir):
    argv = ["simulate", "--scenario", "synthetic:0-1", "--policy", "mf", "--model"]
    argv += [str(tiny_model_dir), "--max-reactions", "16", "--warmup", "8", "--agents-per-step"]
    argv += ["8", "--max-new-tokens", "3", "--summary-tokens", "3", "--threads", "1"]
    argv += ["--no-progress"]
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    for out in (reference, cut):
        assert main([*argv, "--parallel", "1", "--out", str(out)]) == 0
    _cut_last_episode(cut)
    assert main([*argv, "--parallel", "1", "--resume", "--out", str(cut)]) == 0
    assert _files(cut) == _files(reference)
    # Batched, the episodes played on resume share other batches: said, not hidden.
    batched = tmp_path / "batched"
    assert main([*argv, "--parallel", "2", "--out", str(batched)]) == 0
    _cut_last_episode(batched)
    capsys.readouterr()
    assert main([*argv, "--parallel", "2", "--resume", "--out", str(batched)]) == 0
    assert "--parallel 1 resumes to the byte" in capsys.readouterr().err


def test_resume_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*SIMULATE, "--seed", "3", "--resume", "--out", str(out)]) == 2
    assert "seed: 0 -> 3; these may not change" in capsys.readouterr().err


# -- records files -------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [[], ["--resume"], ["--overwrite"]])
def test_a_folder_another_process_is_writing_is_refused(tmp_path, capsys, flag):
    out = tmp_path / "run"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    before = _files(out)
    if not flag:  # a run that has just made the folder; else one under way
        shutil.rmtree(out)
        out.mkdir()
    capsys.readouterr()
    with runs._locked(out):  # as another process's RunFolder.writing holds it
        assert main([*SIMULATE, "--out", str(out), *flag]) == 2
    assert "is being written by another mfllm process right now" in capsys.readouterr().err
    assert _files(out) == (before if flag else {})


def test_a_truncated_last_line_is_dropped_with_a_note(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert runs.read_records(path, ("a",)) == [{"a": 1}, {"a": 2}]
    assert "dropped the truncated last line 3" in capsys.readouterr().err
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'  # appends start on a clean line
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"records\.jsonl:2: not a JSON record"):
        runs.read_records(path)


@pytest.mark.parametrize(
    ("argv", "identity"),
    [
        (SIMULATE, "index 0"),
        (BENCH, "policy 'random', seed 0, episode 'synthetic/0'"),
        (PLANNER_EVAL, "planner 'none', scenario 'synthetic/0', seed 0"),
    ],
)
def test_a_repeated_record_line_is_refused_not_counted_twice(tmp_path, capsys, argv, identity):
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 0
    records = out / "episodes.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    records.write_text("".join([*lines, lines[0]]))
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"episodes.jsonl:{len(lines) + 1} repeats the record of line 1 ({identity})" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (SIMULATE, "records episode 0 ('synthetic/0') with warmup 8, this run 12"),
        (BENCH, "the record of random seed 0 on 'synthetic/0' has warmup 8, this bench 12"),
    ],
)
def test_resume_refuses_records_of_a_run_with_another_warmup(tmp_path, capsys, argv, message):
    other, out = tmp_path / "other", tmp_path / "run"
    assert main([*argv, "--warmup", "8", "--out", str(other)]) == 0
    assert main([*argv, "--warmup", "12", "--out", str(out)]) == 0
    for records in ("episodes.jsonl", "trajectory.jsonl"):  # a bench has no trajectory
        if (other / records).exists():
            shutil.copy(other / records, out / records)
    capsys.readouterr()
    assert main([*argv, "--warmup", "12", "--out", str(out), "--resume"]) == 2
    assert f"{message}: it holds lines of another run" in capsys.readouterr().err


def test_simulate_resume_plays_again_episodes_whose_steps_are_lost(tmp_path, capsys):
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert main([*SIMULATE, "--out", str(reference)]) == 0
    shutil.copytree(reference, out)
    trajectory = out / "trajectory.jsonl"
    trajectory.write_text(trajectory.read_text().splitlines(keepends=True)[0])
    capsys.readouterr()
    assert main([*SIMULATE, "--out", str(out), "--resume"]) == 0
    assert "lacks steps of 3 finished episode(s) (first: 'synthetic/0')" in capsys.readouterr().err
    assert _files(out) == _files(reference)
    trajectory.unlink()
    assert main([*SIMULATE, "--out", str(out), "--resume"]) == 0
    assert _files(out) == _files(reference)


def test_simulate_resume_refuses_episode_records_of_another_run(tmp_path, capsys):
    out, other = tmp_path / "run", tmp_path / "other"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    assert main([*SIMULATE, "--seed", "1", "--out", str(other)]) == 0
    records = out / "episodes.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    other_lines = (other / "episodes.jsonl").read_text().splitlines(keepends=True)
    capsys.readouterr()
    records.write_text("".join([other_lines[0], *lines[1:]]))
    assert main([*SIMULATE, "--out", str(out), "--resume"]) == 2
    assert "records episode 0 ('synthetic/0') played with seed" in capsys.readouterr().err
    beyond = json.loads(lines[2]) | {"index": 3, "seed": episode_seed(0, 3)}
    records.write_text("".join([*lines[:2], json.dumps(beyond) + "\n"]))
    trajectory = out / "trajectory.jsonl"
    trajectory.write_text(trajectory.read_text().replace('"index": 2,', '"index": 3,'))
    assert main([*SIMULATE, "--out", str(out), "--resume"]) == 2
    assert "records episode 3 ('synthetic/2'), but there are 3 scenarios" in capsys.readouterr().err
    swapped = json.loads(lines[1]) | {"index": 0, "seed": episode_seed(0, 0)}
    records.write_text("".join([json.dumps(swapped) + "\n", *lines[1:]]))
    assert main([*SIMULATE, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "records episode 0 as 'synthetic/1', but this run's episode 0 is 'synthetic/0'" in err


def test_an_atomic_write_that_is_cut_short_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    runs.write_atomic(path, "old")

    def killed(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        runs.write_atomic(path, "new")
    assert path.read_text() == "old"


# -- file names from scenario ids ----------------------------------------------------------


@settings(max_examples=200)
@given(st.text(min_size=0, max_size=400), st.text(min_size=0, max_size=400))
def test_file_names_are_short_safe_and_distinct(first, second):
    name = runs.file_name(first)
    assert len(name) <= runs.SLUG_LENGTH + 9
    assert name == runs.file_name(first)
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
    assert not name.startswith(".")
    if first != second:
        assert name != runs.file_name(second)


def test_long_and_clashing_scenario_ids_get_their_own_plots(tmp_path):
    ids = ["x" * 300, "event/a", "event_a", "event a"]
    scenarios = [
        dataclasses.replace(synthetic_scenario(seed=seed, n_reactions=24), scenario_id=i)
        for seed, i in enumerate(ids)
    ]
    write_scenarios_jsonl(scenarios, tmp_path / "s.jsonl")
    out = tmp_path / "run"
    argv = ["simulate", "--scenario", f"jsonl:{tmp_path / 's.jsonl'}", "--policy", "herding"]
    argv += ["--warmup", "8", "--agents-per-step", "8", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == sorted(f"{runs.file_name(i)}.png" for i in ids[1:])


# -- determinism to the byte -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "files"),
    [
        (SIMULATE, ("metrics.json", "trajectory.jsonl", "episodes.jsonl")),
        (BENCH, ("episodes.jsonl", "leaderboard.json", "leaderboard.csv", "leaderboard.md")),
        (PLANNER_EVAL, ("episodes.jsonl", "results.json", "results.md")),
    ],
)
def test_the_same_seed_gives_the_same_files_to_the_byte(tmp_path, argv, files):
    for name in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    metrics = (tmp_path / "a" / files[0]).read_text()
    assert "seconds" not in metrics and "per_hour" not in metrics


# -- interrupted at every write, then resumed ------------------------------------------------


class Killed(BaseException):
    """The run is killed at a write (as by SIGKILL: not a KeyboardInterrupt, which the
    command line catches)."""


def _interrupt_at(monkeypatch, k: int | None) -> list[int]:
    """Make write number ``k`` (counting atomic writes and appends from 0) kill the run:
    an atomic write dies before its rename, an append after half its line. Returns a
    one-element list that counts the writes."""
    count = [0]
    write_atomic, append_record = runs.write_atomic, runs.append_record

    def atomic(path, data):
        count[0] += 1
        if count[0] - 1 == k:
            partial = Path(path).with_name(Path(path).name + runs.PARTIAL)
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(b"half")
            raise Killed
        write_atomic(path, data)

    def append(handle, record):
        count[0] += 1
        if count[0] - 1 == k:
            line = json.dumps(record, ensure_ascii=False)
            handle.write(line[: len(line) // 2])
            handle.flush()
            raise Killed
        append_record(handle, record)

    monkeypatch.setattr(runs, "write_atomic", atomic)
    monkeypatch.setattr(runs, "append_record", append)
    return count


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled by main


@pytest.mark.parametrize(
    ("interrupt", "code", "word"), [(_ctrl_c, 130, "interrupted"), (_sigterm, 143, "terminated")]
)
def test_an_interruption_is_one_line_and_its_exit_code_then_resume_finishes_the_run(
    tmp_path, monkeypatch, capsys, interrupt, code, word
):
    """Ctrl-C exits 130, SIGTERM 143, each with one line; --resume then finishes the run
    as an uninterrupted one."""
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert main([*SIMULATE, "--out", str(reference)]) == 0
    append_record, appends = runs.append_record, [0]

    def interrupt_at_the_fifth_append(handle, record):
        appends[0] += 1
        if appends[0] == 5:
            interrupt()
        append_record(handle, record)

    with monkeypatch.context() as patch:
        patch.setattr(runs, "append_record", interrupt_at_the_fifth_append)
        capsys.readouterr()
        assert main([*SIMULATE, "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert err == f"mfllm simulate: {word}; the same command with --resume continues it\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main put it back
    assert main([*SIMULATE, "--out", str(out), "--resume"]) == 0
    assert _files(out) == _files(reference)


def _every_interruption(tmp_path, monkeypatch, argv, resume_argv=None, results=None) -> int:
    """Run ``argv`` once, then once per write point killed there and resumed; every
    resumed folder must give the uninterrupted one's ``results`` (default: all its files)
    and hold no partial file. Returns the number of cases."""
    results = results or _files
    reference = tmp_path / "reference"
    with monkeypatch.context() as patch:
        writes = _interrupt_at(patch, None)
        assert main([*argv, "--out", str(reference)]) == 0
    expected = results(reference)
    for k in range(writes[0]):
        out = tmp_path / f"cut-{k}"
        with monkeypatch.context() as patch:
            _interrupt_at(patch, k)
            with pytest.raises(Killed):
                main([*argv, "--out", str(out)])
        assert main([*(resume_argv or argv), "--resume", "--out", str(out)]) == 0, k
        assert results(out) == expected, f"killed at write {k}"
        assert not list(out.rglob(f"*{runs.PARTIAL}")), k
    return writes[0]


def test_simulate_resumes_from_any_write(tmp_path, monkeypatch):
    assert _every_interruption(tmp_path, monkeypatch, SIMULATE) >= 20


def test_bench_resumes_from_any_write(tmp_path, monkeypatch):
    assert _every_interruption(tmp_path, monkeypatch, BENCH) >= 10


def test_planner_eval_resumes_from_any_write(tmp_path, monkeypatch):
    assert _every_interruption(tmp_path, monkeypatch, PLANNER_EVAL) >= 8


def test_planner_training_resumes_from_any_write(tmp_path, monkeypatch):
    assert _every_interruption(tmp_path, monkeypatch, TRAIN_PLANNER) >= 6


RUNTIME_SUFFIXES = ("_runtime", "_per_second", "_preparation_time")  # wall-clock figures
# The trainer's final "train_loss" is the mean loss of the steps trained in that run.
OF_THIS_RUN = "train_loss"


def _training_results(out: Path) -> dict:
    """What an SFT run produced, less its wall-clock figures and how it was resumed."""
    summary = json.loads((out / "summary.json").read_text())
    for key in ("train_seconds", "resumed_from", "train_loss_of_this_run"):
        summary.pop(key)
    log = [
        {k: v for k, v in row.items() if not k.endswith(RUNTIME_SUFFIXES) and k != OF_THIS_RUN}
        for row in runs.read_records(out / "log.jsonl")
    ]
    files = {
        name: (out / name).read_bytes()
        for name in ("data/train.jsonl", "data/dev.jsonl", "policy/dev_before.json")
    }
    adapter = out / "policy" / "adapter" / "adapter_model.safetensors"
    return {"summary": summary, "log": log, "files": files, "adapter": adapter.read_bytes()}


def test_sft_resumes_from_any_write(tmp_path, monkeypatch, tiny_model_dir):
    argv = ["train", "sft", "--scenarios", "synthetic:0-3", "--model", str(tiny_model_dir)]
    argv += ["--max-reactions", "32", "--threads", "1", "--no-progress", "--max-steps", "2"]
    argv += ["--save-steps", "1", "--dev-examples", "2", "--batch-size", "2"]
    assert _every_interruption(tmp_path, monkeypatch, argv, results=_training_results) >= 8
