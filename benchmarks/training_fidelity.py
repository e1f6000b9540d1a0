"""Before/after fine-tuning on RumourEval dev events: the macro KL between simulated and
real SDQC shares (and, with ``--nll``, the policy's NLL of the real reactions), for State
vs MF, untuned vs tuned.

Runs ``mfllm simulate`` four times (a run whose ``metrics.json`` exists is not redone):

=================  ==========================================================
state              State policy, untuned SmolLM2
state-sft          State policy + the SFT adapter (``mfllm train sft``)
mf                 MF policy + LLM mean field, both untuned
mf-ib-tune         MF policy + LLM mean field, both from ``mfllm train ib-tune``
=================  ==========================================================

and prints a table (``--json``: the numbers as JSON). The README's run::

    python benchmarks/training_fidelity.py --data PATH/rumoureval-2019-training-data \\
        --sft-adapter runs/train/state-sft/policy/adapter \\
        --ib-tune runs/train/ib-tune --out runs/eval --threads 1 --limit 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mfllm_cli.main import main as mfllm

METRICS = (
    ("nll_per_token", "NLL / token"),
    ("kl", "macro KL, final shares"),
    ("kl_mean_over_time", "mean KL over time"),
    ("micro_f1", "micro-F1"),
)


def configurations(args: argparse.Namespace) -> dict[str, list[str]]:
    adapters = args.ib_tune / "adapters"
    return {
        "state": ["--policy", "state"],
        "state-sft": ["--policy", "sft", "--adapter", str(args.sft_adapter)],
        "mf": ["--policy", "mf", "--mean-field", "llm"],
        "mf-ib-tune": [
            "--policy", "mf", "--mean-field", "llm",
            "--adapter", str(adapters / "policy"),
            "--mean-field-adapter", str(adapters / "mean_field"),
        ],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="rumoureval-2019-training-data")
    parser.add_argument("--sft-adapter", type=Path, required=True)
    parser.add_argument("--ib-tune", type=Path, required=True, help="ib-tune run folder")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"))
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--max-reactions", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--summary-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--limit", type=int, help="only the first N dev events (the loader lists Twitter first)"
    )
    parser.add_argument("--nll", action="store_true", help="also score the real reactions")
    parser.add_argument(
        "--configs", help="comma-separated subset of the configurations (default: all four)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    common = [
        "simulate", "--scenario", f"rumoureval:{args.data}:dev", "--model", "smollm2",
        "--warmup", str(args.warmup), "--max-reactions", str(args.max_reactions),
        "--max-new-tokens", str(args.max_new_tokens),
        "--summary-tokens", str(args.summary_tokens),
        "--threads", str(args.threads), "--no-progress",
    ]  # fmt: skip
    if args.nll:
        common.append("--nll")
    if args.limit:
        common += ["--limit", str(args.limit)]
    chosen = configurations(args)
    if args.configs:
        unknown = set(args.configs.split(",")) - set(chosen)
        if unknown:
            parser.error(f"unknown configurations {sorted(unknown)}; choose from {list(chosen)}")
        chosen = {k: v for k, v in chosen.items() if k in args.configs.split(",")}
    results = {}
    for name, extra in chosen.items():
        out = args.out / name
        if not (out / "metrics.json").exists():
            code = mfllm([*common, *extra, "--out", str(out)])
            if code:
                raise SystemExit(f"{name}: mfllm simulate exited with {code}")
        results[name] = json.loads((out / "metrics.json").read_text())
    if args.json:
        print(json.dumps({k: v["metrics"] for k, v in results.items()}, indent=2))
        return
    print("| configuration | " + " | ".join(title for _, title in METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for name, result in results.items():
        cells = []
        for key, _ in METRICS:
            stats = result["metrics"].get(key)
            cells.append(f"{stats['mean']:.3f} ± {stats['stderr']:.3f}" if stats else "n/a")
        print(f"| {name} | " + " | ".join(cells) + " |")
    episodes = {result["episodes"] for result in results.values()}
    print(f"\nmean ± standard error over {', '.join(map(str, sorted(episodes)))} episodes")


if __name__ == "__main__":
    main()
