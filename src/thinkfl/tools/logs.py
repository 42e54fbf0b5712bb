"""The log tool: how a component's log mix shifted (drops and rises against its normal),
then its warning and error patterns, most unusual first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from thinkfl.evidence import EvidenceItem
from thinkfl.evidence.model import LOG_KINDS
from thinkfl.telemetry import Entity
from thinkfl.tools.base import (
    ComponentScore,
    EntityTool,
    Observation,
    log_pattern,
)

if TYPE_CHECKING:
    from thinkfl.tools.toolbox import Toolbox


class LogFindings(BaseModel):
    shifts: list[EvidenceItem] = Field(default_factory=list)
    scores: list[ComponentScore] = Field(default_factory=list)
    patterns: list[tuple[str, str, int, float]] = Field(
        default_factory=list, description="(severity, pattern, count, usual count per window)"
    )


class SearchLogs(EntityTool):
    name = "search_logs"
    description = (
        "Log shifts of a service, pod or node around a time (frequent lines that vanished, "
        "rare ones that rose, now vs normal), then its error and warning patterns."
    )

    def look(self, box: Toolbox, entity: Entity, when: datetime) -> Observation:
        tool = self.name
        window = timedelta(seconds=box.limits.log_window_s)
        # the window, and the same-length windows just before it, read in one query
        span = 2 * window * box.limits.log_baseline_windows
        read = box.severe_logs(entity, when - window - span, when + window)
        records = [r for r in read if r["time"] >= when - window]
        before = [r for r in read if r["time"] < when - window]
        usual: dict[tuple[str, str], int] = {}
        for record in before:
            key = (record["severity"], log_pattern(record["message"]))
            usual[key] = usual.get(key, 0) + 1
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault((record["severity"], log_pattern(record["message"])), []).append(
                record
            )
        scale = box.limits.log_baseline_windows
        rank = {"fatal": 0, "error": 1, "warn": 2}
        block, scores, shifts = box.evidence_view(entity, LOG_KINDS, "log shifts")

        def surprise(key: tuple[str, str], items: list[dict[str, Any]]) -> float:
            """How far above its usual rate a pattern is (usual counts per window, +1 smoothed)."""
            return len(items) / (usual.get(key, 0) / scale + 1)

        ordered = sorted(
            groups.items(), key=lambda kv: (-surprise(*kv), rank[kv[0][0]], -len(kv[1]), kv[0][1])
        )
        if not ordered:
            text = (
                f"no warning or error logs of {entity.level.value} {entity.name} within "
                f"±{box.limits.log_window_s:g}s of {box.rel(when)}"
            )
            return Observation(
                tool=tool,
                text=f"{block}\n{text}",
                data=LogFindings(shifts=shifts, scores=scores).model_dump(),
            )
        lines = [
            f"{sev.upper():<5} x{len(items):<4} usual {usual.get((sev, pattern), 0) / scale:<5.1f} "
            f"first {box.rel(items[0]['time'])} {(items[0]['pod'] or items[0]['service'])}: "
            f"{items[0]['message'][:200]}"
            for (sev, pattern), items in ordered
        ]
        body, cut = box.cut(lines, len(lines), "log patterns", box.limits.error_rows)
        head = (
            f"{len(records)} warning/error logs ({len(ordered)} patterns) of {entity.level.value} "
            f"{entity.name} within ±{box.limits.log_window_s:g}s of {box.rel(when)}, most "
            f"unusual first (usual = count per window over the {scale} windows before):"
        )
        return Observation(
            tool=tool,
            text=f"{block}\n{head}\n{body}",
            truncated=cut,
            data=LogFindings(
                shifts=shifts,
                scores=scores,
                patterns=[
                    (sev, pattern, len(items), usual.get((sev, pattern), 0) / scale)
                    for (sev, pattern), items in ordered
                ],
            ).model_dump(),
        )
