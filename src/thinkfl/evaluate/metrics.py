"""Accuracy and cost metrics over per-case results (R@k, MRR, Avg@k; latency, tokens)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel

KS = (1, 2, 3, 5, 10)


class CaseResult(BaseModel):
    """One case of one method: where the label ranked, and what it cost."""

    method: str
    case_id: str
    fault_type: str
    level: str
    rank_strict: int | None
    rank_service: int | None
    seconds: float
    tokens: int
    tool_calls: int
    finish: str


def accuracy(ranks: list[int | None]) -> dict[str, float]:
    """R@k for k in KS, MRR (a miss counts 0) and Avg@5 = mean(R@1..R@5)."""
    n = len(ranks)
    if n == 0:
        return {}
    out = {f"R@{k}": sum(r is not None and r < k for r in ranks) / n for k in KS}
    out["MRR"] = sum(1.0 / (r + 1) for r in ranks if r is not None) / n
    out["Avg@5"] = statistics.mean(
        sum(r is not None and r < k for r in ranks) / n for k in range(1, 6)
    )
    return {key: round(value, 4) for key, value in out.items()}


def _cost(results: list[CaseResult]) -> dict[str, float]:
    seconds = [r.seconds for r in results]
    return {
        "latency_p50_s": round(float(np.percentile(seconds, 50)), 4),
        "latency_p95_s": round(float(np.percentile(seconds, 95)), 4),
        "tokens_per_case": round(statistics.mean(r.tokens for r in results), 1),
        "tool_calls_per_case": round(statistics.mean(r.tool_calls for r in results), 2),
    }


def summarize(results: list[CaseResult]) -> dict[str, dict[str, Any]]:
    """Per method: overall strict and service-level accuracy, per fault type and per level."""
    by_method: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        by_method[result.method].append(result)
    summary: dict[str, dict[str, Any]] = {}
    for method, rows in by_method.items():
        groups: dict[str, dict[str, list[CaseResult]]] = {"fault_type": {}, "level": {}}
        for row in rows:
            groups["fault_type"].setdefault(row.fault_type, []).append(row)
            groups["level"].setdefault(row.level, []).append(row)
        summary[method] = {
            "cases": len(rows),
            "strict": accuracy([r.rank_strict for r in rows]),
            "service": accuracy([r.rank_service for r in rows]),
            "cost": _cost(rows),
            "finish": {
                f: sum(r.finish == f for r in rows) for f in sorted({r.finish for r in rows})
            },
            **{
                f"by_{name}": {
                    key: {"cases": len(items), **accuracy([r.rank_strict for r in items])}
                    for key, items in sorted(group.items())
                }
                for name, group in groups.items()
            },
        }
    return summary


def markdown(summary: dict[str, dict[str, Any]], title: str) -> str:
    """The summary as Markdown tables, one row per method."""
    lines = [
        f"# {title}",
        "",
        "| method | cases | R@1 | R@3 | R@5 | MRR | Avg@5 | R@1 (service) |"
        " MRR (service) | p50 s | p95 s | tokens | calls |",
        "|" + "---|" * 13,
    ]
    for method, s in summary.items():
        a, b, c = s["strict"], s["service"], s["cost"]
        lines.append(
            f"| {method} | {s['cases']} | {a['R@1']:.3f} | {a['R@3']:.3f} | {a['R@5']:.3f} | "
            f"{a['MRR']:.3f} | {a['Avg@5']:.3f} | {b['R@1']:.3f} | {b['MRR']:.3f} | "
            f"{c['latency_p50_s']:.3f} | {c['latency_p95_s']:.3f} | {c['tokens_per_case']:.0f} | "
            f"{c['tool_calls_per_case']:.1f} |"
        )
    lines += ["", "Strict: same level and name as the label. Service: a pod counts as its service."]
    for method, s in summary.items():
        lines += [
            "",
            f"## {method} by fault type (strict)",
            "",
            "| fault type | cases | R@1 | R@3 | MRR |",
            "|---|---|---|---|---|",
        ]
        for key, a in s["by_fault_type"].items():
            lines.append(
                f"| {key} | {a['cases']} | {a['R@1']:.3f} | {a['R@3']:.3f} | {a['MRR']:.3f} |"
            )
    return "\n".join(lines) + "\n"
