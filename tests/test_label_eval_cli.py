"""``mfllm label-eval``: scoring the default labeller from the command line."""

from __future__ import annotations

import json

from mfllm_cli.main import main
from mfllm_env.loaders import write_scenarios_jsonl
from mfllm_env.scenario import Author, Reaction, Scenario


def _jsonl(tmp_path) -> str:
    def post(pid: str, text: str, stance: str, t: float) -> Reaction:
        return Reaction(pid, Author("u" + pid), text, t, labels={"stance": stance})

    scenario = Scenario(
        "tiny/1",
        post("0", "BREAKING: police confirm two hostages escaped", "support", 0.0),
        [
            post("1", "@bbc is this confirmed? any source?", "query", 1.0),
            post("2", "@cnn this is fake, a hoax, not true", "deny", 2.0),
            post("3", "", "comment", 3.0),
        ],
    )
    path = tmp_path / "tiny.jsonl"
    write_scenarios_jsonl([scenario], path)
    return str(path)


def test_label_eval_table(tmp_path, capsys) -> None:
    assert main(["label-eval", "jsonl", _jsonl(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "n=4" in out and "macro-F1=" in out and "confusion" in out
    assert "unlabelled (-1, scored as 'comment')=1" in out
    for label in ("support", "deny", "query", "comment"):
        assert label in out


def test_label_eval_json_without_sources(tmp_path, capsys) -> None:
    assert main(["label-eval", "jsonl", _jsonl(tmp_path), "--json", "--no-sources"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 3 and report["dimension"] == "stance"
    assert set(report["per_class"]) == {"support", "deny", "query", "comment"}
    assert report["n_unlabelled"] == 1


def test_label_eval_errors(tmp_path, capsys) -> None:
    path = _jsonl(tmp_path)
    assert main(["label-eval", "jsonl", path, "--dimension", "certainty"]) == 2
    assert "no default labeller exists for dimension 'certainty'" in capsys.readouterr().err
    assert main(["label-eval", "jsonl", path, "--dimension", "weibo"]) == 2
    assert "carries a human 'weibo' label" in capsys.readouterr().err


def test_label_eval_rumoureval_dev(rumoureval_dir, capsys) -> None:
    argv = ["label-eval", "rumoureval", str(rumoureval_dir), "--split", "dev", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 1485 and report["macro_f1"] >= 0.50
    key = str(rumoureval_dir / "dev-key.json")
    assert main(["label-eval", "rumoureval", str(rumoureval_dir), "--key", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1485
