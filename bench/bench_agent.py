"""Per-case latency, tokens, tool calls, per-tool latency, valid-call share and accuracy.

    python bench/bench_agent.py STORE --policy expert [--policy local] [--cases 28] [--out DIR]

Runs every case of STORE through the agent loop with each policy (one process, same cases)
and prints a table; trajectories go to DIR/<policy>.jsonl. Accuracy uses the matching rules
of thinkfl.grader (strict and service level).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from thinkfl.agent import Budget, run_case, save_jsonl
from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.models.factory import make_policy
from thinkfl.telemetry import TelemetryStore
from thinkfl.tools import Toolbox


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(name: str, trajectories, store) -> dict:
    entities = store.entities()
    cases = {c.case_id: c for c in store.cases()}
    ranks = {
        m: [rank_of_truth(t.ranking, cases[t.case_id].truth, entities, m) for t in trajectories]
        for m in MatchLevel
    }
    per_tool: dict[str, list[float]] = defaultdict(list)
    for t in trajectories:
        for step in t.steps:
            per_tool[step.tool].append(step.seconds * 1000)
    n = len(trajectories)
    row = {
        "policy": name,
        "cases": n,
        "p50_s": statistics.median(t.seconds for t in trajectories),
        "p95_s": pct([t.seconds for t in trajectories], 95),
        "tokens_per_case": statistics.mean(
            t.prompt_tokens + t.completion_tokens for t in trajectories
        ),
        "tool_calls_per_case": statistics.mean(len(t.explored) for t in trajectories),
        "valid_call_share": sum(t.turns - t.replies_without_call for t in trajectories)
        / max(1, sum(t.turns for t in trajectories)),
        "finish": {
            f: sum(t.finish == f for t in trajectories) for f in {t.finish for t in trajectories}
        },
        "per_tool_ms_p50": {k: round(statistics.median(v), 2) for k, v in sorted(per_tool.items())},
    }
    for match, values in ranks.items():
        row[f"R@1_{match}"] = sum(r == 0 for r in values) / n
        row[f"R@3_{match}"] = sum(r is not None and r < 3 for r in values) / n
        row[f"MRR_{match}"] = sum(1 / (r + 1) for r in values if r is not None) / n
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("--policy", action="append", default=[])
    parser.add_argument("--model", default=None)
    parser.add_argument("--cases", type=int, default=0, help="first N cases (0: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    store = TelemetryStore.open(args.store)
    cases = store.cases()[: args.cases or None]
    rows = []
    for kind in args.policy or ["expert"]:
        policy = make_policy(kind, args.model)
        trajectories = []
        started = time.monotonic()
        for case in cases:
            trajectories.append(run_case(Toolbox(store, case), policy, Budget()))
            print(
                f"  {kind} {case.case_id}: {trajectories[-1].finish} "
                f"{trajectories[-1].seconds:.1f} s {trajectories[-1].ranking[:2]}",
                flush=True,
            )
        path = args.out / f"{args.store.name}-{kind}.jsonl"
        path.unlink(missing_ok=True)
        save_jsonl(trajectories, path)
        rows.append(summarize(policy.name, trajectories, store))
        print(f"{kind}: {len(cases)} cases in {time.monotonic() - started:.0f} s -> {path}")
    for row in rows:
        print()
        for key, value in row.items():
            print(
                f"  {key:<22} {value:.3f}" if isinstance(value, float) else f"  {key:<22} {value}"
            )


if __name__ == "__main__":
    main()
