"""`thinkfl train report RUN`: the stages of a run laid end to end, one panel per quantity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from thinkfl.train.config import ORDER, TrainError
from thinkfl.train.observe import read_rows

PANELS: list[tuple[str, list[str]]] = [
    ("loss", ["loss"]),
    ("reward (grader total)", ["reward"]),
    (
        "reward per term",
        [f"rewards/{t}/mean" for t in ("recall", "route", "hallucination", "format", "diversity")],
    ),
    ("model tokens per rollout", ["completions/mean_length"]),
    ("tool calls per rollout", ["rollout/tool_calls"]),
    ("KL to base", ["kl"]),
    ("truth ranked first (share)", ["rollout/hit_at_1"]),
    ("SFT token accuracy", ["mean_token_accuracy"]),
]


def _stage_rows(run: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    stages = []
    for stage in ORDER:
        rows = [r for r in read_rows(run / stage.value / "metrics.jsonl") if "loss" in r]
        if rows:
            stages.append((stage.value, rows))
    if not stages:
        raise TrainError(
            f"{run}: no stage metrics (expected {run}/sft/metrics.jsonl, .../stage1/... ). "
            "Fix: give the `run` folder of a training config"
        )
    return stages


def report(run: Path, out: Path | None = None) -> Path:
    """Draw every logged quantity of every stage; returns the PNG path (RUN/report.png)."""
    stages = _stage_rows(run)
    panels = [
        (title, keys)
        for title, keys in PANELS
        if any(key in row for _, rows in stages for row in rows for key in keys)
    ]
    columns = 2
    figure, axes = plt.subplots(
        (len(panels) + 1) // columns,
        columns,
        figsize=(12, 3 * ((len(panels) + 1) // columns)),
        squeeze=False,
    )
    for axis, (title, keys) in zip(axes.flat, panels, strict=False):
        offset = 0
        for stage, rows in stages:
            for key in keys:
                points = [(offset + i + 1, r[key]) for i, r in enumerate(rows) if key in r]
                if points:
                    label = key.split("/")[1] if key.startswith("rewards/") else stage
                    xs, ys = zip(*points, strict=True)
                    axis.plot(
                        xs,
                        ys,
                        marker=".",
                        label=f"{stage}: {label}" if key.startswith("rewards/") else label,
                    )
            offset += len(rows)
            axis.axvline(offset + 0.5, color="0.85", linewidth=0.8)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("logged step (stages end to end)", fontsize=8)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.suptitle(f"training run {run.name}")
    figure.tight_layout()
    target = out or run / "report.png"
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
