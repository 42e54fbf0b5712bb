"""What an evaluation leaves in its folder: summary.json, summary.md and the two plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thinkfl.evaluate.metrics import CaseResult, markdown, summarize
from thinkfl.evaluate.plots import latency, recall_curves
from thinkfl.files import atomic_write, atomic_write_json

REPORT_FILES = ("summary.json", "summary.md", "recall_at_k.png", "latency.png")


def write_report(results: list[CaseResult], out: Path, title: str) -> dict[str, dict[str, Any]]:
    """Summarize per-case results and write the report files into `out`; the summary."""
    summary = summarize(results)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    atomic_write(out / "summary.md", markdown(summary, title))
    recall_curves(summary, out / "recall_at_k.png", title)
    latency(results, out / "latency.png", title)
    return summary
