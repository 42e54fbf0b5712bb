"""Failure cases: for each labelled fault, the anomalous entry trace the agent starts from.

Rules (docs/data-model.md, "Failure cases"):
- The fault window is [inject - before_s, inject + after_s].
- The fault-free baseline of an entry operation (service, operation) is the median duration
  of its entry spans that fall in no fault window; with fewer than `min_baseline_spans` of
  them, the median over all fault-free entry spans; with none, over all entry spans.
- An entry span in the window is anomalous when its status is error or its duration is at
  least `latency_factor` times its baseline.
- The case starts from the anomalous entry span with the highest latency ratio. When none
  passes the thresholds, the most anomalous entry span is still taken and the case is
  marked `weak`, so every labelled fault with traffic in its window yields a case.
The labels are never used to choose the entry span (that would leak the answer).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from thinkfl.telemetry.model import (
    EntryAnomaly,
    FailureCase,
    Fault,
    GroundTruth,
    Manifest,
    SpanStatus,
)
from thinkfl.telemetry.store import StoreWriter, TelemetryStore


class CaseRules(BaseModel):
    """Thresholds for picking the entry span of a case (all configurable from the CLI)."""

    before_s: float = Field(0.0, ge=0, description="window start, seconds before injection")
    after_s: float = Field(180.0, gt=0, description="window end, seconds after injection")
    latency_factor: float = Field(5.0, gt=0, description="anomalous at >= this x baseline")
    min_baseline_spans: int = Field(20, ge=1, description="per-operation baseline minimum")


class CaseExtraction(BaseModel):
    cases: list[FailureCase]
    faults_without_traffic: list[str] = Field(
        default_factory=list, description="faults whose window holds no entry span"
    )


Window = tuple[str, datetime, datetime]  # (key, start, end)


def fault_windows(faults: list[Fault], rules: CaseRules) -> list[Window]:
    return [
        (
            f.fault_id,
            f.time - timedelta(seconds=rules.before_s),
            f.time + timedelta(seconds=rules.after_s),
        )
        for f in faults
    ]


def _windows(windows: list[Window]) -> pa.Table:
    return pa.table(
        {
            "fault_id": [key for key, _a, _b in windows],
            "t0": pa.array([a for _k, a, _b in windows], pa.timestamp("us", tz="UTC")),
            "t1": pa.array([b for _k, _a, b in windows], pa.timestamp("us", tz="UTC")),
        }
    )


_SCORED_ENTRIES = """
WITH entries AS (SELECT * FROM spans WHERE parent_id IS NULL),
clean AS (
    SELECT * FROM entries e
    WHERE NOT EXISTS (SELECT 1 FROM fault_windows w WHERE e.start BETWEEN w.t0 AND w.t1)
),
per_operation AS (
    SELECT service, operation, median(duration_us) AS baseline, count(*) AS n
    FROM clean GROUP BY service, operation
),
fallback AS (
    SELECT coalesce((SELECT median(duration_us) FROM clean),
                    (SELECT median(duration_us) FROM entries)) AS baseline
)
SELECT w.fault_id, e.trace_id, e.span_id, e.service, e.operation, e.start, e.duration_us,
       e.status,
       e.duration_us / greatest(
           CASE WHEN p.n >= ? THEN p.baseline ELSE f.baseline END, 1) AS ratio
FROM entries e
JOIN fault_windows w ON e.start BETWEEN w.t0 AND w.t1
LEFT JOIN per_operation p ON p.service = e.service AND p.operation = e.operation
CROSS JOIN fallback f
"""


def scored_entries(
    store: TelemetryStore, windows: list[Window], rules: CaseRules
) -> dict[str, list[dict[str, Any]]]:
    """Entry spans in each window with their latency ratio (against the baseline of its
    operation outside every window), by window key."""
    con = store.con
    con.register("fault_windows", _windows(windows))
    try:
        rows = con.sql(_SCORED_ENTRIES, params=[rules.min_baseline_spans])
        scored = rows.to_arrow_table().to_pylist()
    finally:
        con.unregister("fault_windows")
    by_fault: dict[str, list[dict[str, Any]]] = {}
    for row in scored:
        by_fault.setdefault(row["fault_id"], []).append(row)
    return by_fault


def extract_cases(store: TelemetryStore, rules: CaseRules | None = None) -> CaseExtraction:
    """Build one failure case per labelled fault in the store (see the module rules)."""
    rules = rules or CaseRules()
    faults = store.faults()
    if not faults:
        return CaseExtraction(cases=[])
    by_fault = scored_entries(store, fault_windows(faults, rules), rules)
    cases: list[FailureCase] = []
    without: list[str] = []
    for fault in faults:
        candidates = by_fault.get(fault.fault_id, [])
        if not candidates:
            without.append(fault.fault_id)
            continue
        cases.append(_case_from(fault, candidates, rules))
    return CaseExtraction(cases=cases, faults_without_traffic=without)


def is_anomalous(row: dict[str, Any], rules: CaseRules) -> bool:
    return bool(row["status"] == SpanStatus.ERROR or row["ratio"] >= rules.latency_factor)


def _case_from(fault: Fault, candidates: list[dict[str, Any]], rules: CaseRules) -> FailureCase:
    return case_from_entries(
        fault.fault_id,
        fault.truth,
        fault.time,
        (
            fault.time - timedelta(seconds=rules.before_s),
            fault.time + timedelta(seconds=rules.after_s),
        ),
        candidates,
        rules,
    )


def case_from_entries(
    case_id: str,
    truth: GroundTruth | None,
    inject_time: datetime,
    window: tuple[datetime, datetime],
    candidates: list[dict[str, Any]],
    rules: CaseRules,
) -> FailureCase:
    """The case that starts from the most anomalous of `candidates` (scored entry spans)."""
    anomalous = [row for row in candidates if is_anomalous(row, rules)]
    pool = anomalous or candidates
    # Highest latency ratio first; earliest start breaks ties so the choice is deterministic.
    entry = min(pool, key=lambda row: (-row["ratio"], row["start"], row["span_id"]))
    return FailureCase(
        case_id=case_id,
        fault_id=case_id,
        truth=truth,
        inject_time=inject_time,
        window_start=window[0],
        window_end=window[1],
        entry_trace_id=entry["trace_id"],
        entry_span_id=entry["span_id"],
        entry_service=entry["service"],
        entry_operation=entry["operation"],
        entry_start=entry["start"],
        entry_duration_us=entry["duration_us"],
        entry_status=SpanStatus(entry["status"]),
        anomaly=EntryAnomaly.STRONG if anomalous else EntryAnomaly.WEAK,
        latency_ratio=round(float(entry["ratio"]), 3),
        anomalous_traces=len(anomalous),
    )


def _traces_through(store: TelemetryStore, case: FailureCase, level: str, name: str) -> set[str]:
    column = {"pod": "pod", "node": "node"}.get(level, "service")
    return {
        row["trace_id"]
        for row in store.query(
            f"SELECT DISTINCT trace_id FROM spans WHERE {column} = ? AND start BETWEEN ? AND ?",
            [name, case.window_start, case.window_end],
        ).to_pylist()
    }


def restart_through(
    store: TelemetryStore,
    case: FailureCase,
    level: str,
    name: str,
    rules: CaseRules | None = None,
    service: str | None = None,
) -> FailureCase | None:
    """The case started instead from the most anomalous entry trace of its window that passes
    through the component (level, name) (and through `service`, when given); None when no
    entry trace of the window does.

    Used with a label-free choice of component (the strongest evidence): code-level faults
    barely change latency, so the slowest entry trace often never reaches the culprit.
    """
    rules = rules or CaseRules()
    through = _traces_through(store, case, level, name)
    if service is not None:
        through &= _traces_through(store, case, "service", service)
    # the other labelled faults' windows, as long as this case's, stay out of the baseline
    like_this = rules.model_copy(
        update={
            "before_s": (case.inject_time - case.window_start).total_seconds(),
            "after_s": (case.window_end - case.inject_time).total_seconds(),
        }
    )
    windows = [(case.case_id, case.window_start, case.window_end)]
    others = [w for w in fault_windows(store.faults(), like_this) if w[0] != case.fault_id]
    rows = scored_entries(store, windows + others, rules).get(case.case_id, [])
    candidates = [row for row in rows if row["trace_id"] in through]
    if not candidates:
        return None
    chosen = case_from_entries(
        case.case_id,
        case.truth,
        case.inject_time,
        (case.window_start, case.window_end),
        candidates,
        rules,
    )
    return chosen.model_copy(
        update={"fault_id": case.fault_id, "start_component": f"{level}:{name}"}
    )


def seal(
    writer: StoreWriter,
    manifest: Manifest,
    rules: CaseRules | None = None,
    check: Callable[[StoreWriter], None] = lambda _writer: None,
) -> tuple[Manifest, CaseExtraction]:
    """The one tail of every store writer (ingest, simulate): finish the tables, `check` them,
    build the failure cases, complete the manifest (counts, time range, rejected rows) and
    publish. Returns the manifest written and the case extraction."""
    counts = writer.finish_tables()
    check(writer)
    draft = TelemetryStore.open_unpublished(writer.path)
    try:
        extraction = extract_cases(draft, rules)
        time_range = draft.time_range()
    finally:
        draft.close()
    writer.write_cases(extraction.cases)
    final = manifest.model_copy(
        update={
            "counts": counts | {"cases": len(extraction.cases)},
            "time_range": time_range,
            "rejected_rows": writer.rejected,
        }
    )
    writer.publish(final)
    return final, extraction
