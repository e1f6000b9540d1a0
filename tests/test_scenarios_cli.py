"""``mfllm scenarios``: the summary it prints, in both output modes, and its errors."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from mfllm_cli import scenarios_cmd


def run_cli(argv: list[str]) -> int:
    """Run the sub-command through its own parser, as ``mfllm_cli.main`` registers it."""
    parser = argparse.ArgumentParser(prog="mfllm")
    scenarios_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_json_summary_of_rumoureval(rumoureval_dir: Path, capsys):
    assert run_cli(["scenarios", "rumoureval", str(rumoureval_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 365 and summary["reactions"] == 6337
    assert summary["splits"] == {"dev": 38, "train": 327}
    assert summary["labelled"] == {"stance": 6337}
    assert sum(summary["source_label_counts"]["stance"].values()) == 365
    assert list(summary["label_counts"]["stance"]) == ["support", "deny", "query", "comment"]
    assert summary["reactions_per_episode"]["median"] == 12


def test_table_of_train_events_with_key_and_pheme(
    rumoureval_dir: Path, pheme_annotations: Path, capsys
):
    argv = [
        "scenarios",
        "rumoureval",
        str(rumoureval_dir),
        "--key",
        str(rumoureval_dir / "train-key.json"),
        "--split",
        "train",
        "--episode",
        "event",
        "--platform",
        "twitter",
        "--pheme",
        str(pheme_annotations),
    ]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "episodes: 8 " in out  # the Twitter events with train threads (not illary)
    assert "episodes by split: train 8" in out
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()}
    assert rows[("stance", "(labelled)")] == ["4,511", "8"]  # 4,519 train tweets
    labelled = [int(n.replace(",", "")) for n in rows[("certainty", "(labelled)")]]
    assert sum(labelled) == 1997  # PHEME certainty: train Twitter threads only


def test_ced_sample_summary(ced_sample_dir: Path, capsys):
    assert run_cli(["scenarios", "ced", str(ced_sample_dir), "--max-reactions", "300"]) == 0
    out = capsys.readouterr().out
    assert "episodes: 4   reactions: 1,044 (per episode: min 205, median 269.5, max 300)" in out
    assert "no human labels" in out


def test_loader_errors_reach_the_user(ced_sample_dir: Path, tmp_path: Path):
    # Named by their flags: --key, not the loader's 'keys'; no loader-only option listed.
    taken = "which takes --max-reactions, --limit, --on-error"
    with pytest.raises(ValueError, match=f"^--split: not for ced data, {taken}$"):
        run_cli(["scenarios", "ced", str(ced_sample_dir), "--split", "dev"])
    with pytest.raises(ValueError, match=f"^--key/--no-keys, --pheme: not for ced data, {taken}$"):
        run_cli(["scenarios", "ced", str(ced_sample_dir), "--key", "k.json", "--pheme", "p"])
    with pytest.raises(FileNotFoundError):
        run_cli(["scenarios", "jsonl", str(tmp_path / "none.jsonl")])


def test_through_the_mfllm_entry_point(ced_sample_dir: Path, capsys):
    pytest.importorskip("mfllm_cli.label_eval_cmd", reason="other sub-commands not written yet")
    pytest.importorskip("mfllm_cli.simulate_cmd", reason="other sub-commands not written yet")
    from mfllm_cli.main import main

    assert main(["scenarios", "ced", str(ced_sample_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reactions"] == 1418  # one repost listed twice
    assert main(["scenarios", "ced", str(ced_sample_dir), "--episode", "event"]) == 2
    assert "--episode: not for ced data" in capsys.readouterr().err


def test_rumoureval_without_key_files_is_refused_unless_no_keys(
    rumoureval_dir: Path, tmp_path: Path, capsys
):
    from mfllm_cli.main import main

    thread = rumoureval_dir / "twitter-english" / "charliehebdo" / "552783667052167168"
    shutil.copytree(thread, tmp_path / "twitter-english" / "charliehebdo" / thread.name)
    assert main(["scenarios", "rumoureval", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"mfllm scenarios: error: {tmp_path}: no key files (*-key.json) here")
    assert main(["scenarios", "rumoureval", str(tmp_path), "--no-keys", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 1 and summary["reactions"] == 5 and summary["labelled"] == {}
    with pytest.raises(SystemExit):
        run_cli(["scenarios", "rumoureval", str(tmp_path), "--no-keys", "--key", "k.json"])
    assert "not allowed with argument" in capsys.readouterr().err
