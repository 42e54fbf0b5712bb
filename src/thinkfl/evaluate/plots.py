"""PNG plots of an evaluation: R@k curves per method and the latency distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from thinkfl.evaluate.metrics import KS, CaseResult


def recall_curves(summary: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, s in summary.items():
        axis.plot(KS, [s["strict"][f"R@{k}"] for k in KS], marker="o", label=method)
    axis.set(xlabel="k", ylabel="R@k (strict)", title=title, ylim=(0, 1.02), xticks=list(KS))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def latency(results: list[CaseResult], path: Path, title: str) -> Path:
    methods = sorted({r.method for r in results})
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    data = [[max(r.seconds, 1e-4) for r in results if r.method == m] for m in methods]
    axis.boxplot(data, tick_labels=methods, orientation="vertical")
    axis.set(ylabel="seconds per case (log)", title=title, yscale="log")
    axis.tick_params(axis="x", labelrotation=20, labelsize=8)
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
