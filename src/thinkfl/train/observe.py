"""Per-step training records: metrics.jsonl (append-only) and metrics.csv (rewritten whole).

The trainer's logs (loss, KL, reward per grader term, completion length) are joined with
what the rollouts saw since the previous log (tool calls, finish reasons, turns).
"""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from thinkfl.files import atomic_path, open_append


class RolloutLog:
    """Every rollout of a stage, one JSON line each, plus running stats for the next log row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        with self._lock, open_append(self.path) as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            self._pending.append(record)

    def drain(self) -> dict[str, float]:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return {}
        count = len(pending)
        return {
            "rollout/tool_calls": sum(r["tool_calls"] for r in pending) / count,
            "rollout/turns": sum(r["turns"] for r in pending) / count,
            "rollout/printed": sum(r["finish"] == "printed" for r in pending) / count,
            "rollout/hit_at_1": sum(r["rank"] == 0 for r in pending) / count,
            "rollout/model_tokens": sum(r["model_tokens"] for r in pending) / count,
        }


class MetricsWriter(TrainerCallback):  # type: ignore[misc]  # TRL's class is untyped
    def __init__(self, folder: Path, stage: str, rollouts: RolloutLog | None = None) -> None:
        self.jsonl, self.csv = folder / "metrics.jsonl", folder / "metrics.csv"
        self.stage, self.rollouts = stage, rollouts

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any
    ) -> None:
        if not logs:
            return
        row = {"stage": self.stage, "step": state.global_step, **logs}
        if self.rollouts is not None:
            row.update(self.rollouts.drain())
        with open_append(self.jsonl) as handle:
            handle.write(json.dumps(row) + "\n")
        write_csv(read_rows(self.jsonl), self.csv)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with atomic_path(path) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
