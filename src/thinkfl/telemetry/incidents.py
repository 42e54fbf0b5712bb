"""Incidents found in the telemetry itself: no labels needed.

Rules (every threshold a field of `IncidentRules`, docs/data-model.md "Incidents"):
- An entry span (a root span) is anomalous when its status is error or its duration is at
  least `latency_factor` times the median of its operation over the whole store (the
  paper's rule; a median stays normal while faults are a minority of the traffic).
- Anomalous entry spans closer than `merge_gap_s` to the previous one form one group; a
  group with at least `min_traces` of them is an incident (a lone slow request is not).
- Its window runs from `before_s` before the first anomalous entry to `after_s` after the
  last; it starts from the most anomalous entry span (a case like a labelled one).
- On a labelled store, an incident whose window holds a labelled fault's time (or starts at
  most `match_slack_s` after it) carries that fault's truth; labelled faults no incident
  holds are reported as missed.
The same rules give a case for one trace (`case_for_trace`) or a time (`case_at`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from thinkfl.telemetry.cases import CaseRules, case_from_entries, is_anomalous
from thinkfl.telemetry.errors import TelemetryError
from thinkfl.telemetry.model import FailureCase, Fault
from thinkfl.telemetry.store import TelemetryStore

INCIDENT_PREFIX = "incident-"  # detected incidents' ids: this, then the first anomaly's time


def cases_phrase(cases: Sequence[FailureCase]) -> str:
    """How many cases a store lists, in one wording everywhere (ingest, info, cases): detected
    incidents are "incidents", cases of labelled faults "cases".

    >>> cases_phrase([])
    '0 cases'
    """
    detected = sum(case.case_id.startswith(INCIDENT_PREFIX) for case in cases)
    if cases and detected == len(cases):
        return f"{len(cases)} incident{'s' * (len(cases) != 1)}"
    phrase = f"{len(cases)} case{'s' * (len(cases) != 1)}"
    return phrase + (f" ({detected} of them detected incidents)" if detected else "")


class IncidentRules(BaseModel):
    latency_factor: float = Field(
        3.0, gt=1, description="anomalous entry: >= this x its median (docs/results.md)"
    )
    min_traces: int = Field(3, ge=1, description="anomalous entry traces that make an incident")
    merge_gap_s: float = Field(
        120.0, gt=0, description="anomalous entries closer than this belong to one incident"
    )
    before_s: float = Field(60.0, ge=0, description="window start before the first anomaly")
    after_s: float = Field(180.0, gt=0, description="window end after the last anomaly")
    min_baseline_spans: int = Field(
        20, ge=1, description="an operation with fewer entry spans uses the store-wide median"
    )
    match_slack_s: float = Field(
        300.0, ge=0, description="a labelled fault up to this long before an incident matches it"
    )

    def case_rules(self) -> CaseRules:
        return CaseRules(
            latency_factor=self.latency_factor, min_baseline_spans=self.min_baseline_spans
        )


class Detection(BaseModel):
    incidents: list[FailureCase]
    missed: list[str] = Field(default_factory=list, description="labelled faults not detected")


_SCORED = """
WITH entries AS (SELECT * FROM spans WHERE parent_id IS NULL),
per_operation AS (
    SELECT service, operation, median(duration_us) AS baseline, count(*) AS n
    FROM entries GROUP BY service, operation),
overall AS (SELECT median(duration_us) AS baseline FROM entries)
SELECT e.trace_id, e.span_id, e.service, e.operation, e.start, e.duration_us, e.status,
       e.duration_us / greatest(CASE WHEN p.n >= ? THEN p.baseline ELSE o.baseline END, 1)
           AS ratio
FROM entries e
JOIN per_operation p USING (service, operation)
CROSS JOIN overall o
"""


def _scored(
    store: TelemetryStore, rules: IncidentRules, where: str = "", params: Sequence[object] = ()
) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM ({_SCORED}) {where} ORDER BY start, span_id"
    rows: list[dict[str, Any]] = store.query(sql, [rules.min_baseline_spans, *params]).to_pylist()
    return rows


def detect_incidents(store: TelemetryStore, rules: IncidentRules | None = None) -> Detection:
    """The incidents of a store (module rules), matched to its labelled faults if any."""
    rules = rules or IncidentRules()
    case_rules = rules.case_rules()
    anomalous = [row for row in _scored(store, rules) if is_anomalous(row, case_rules)]
    groups: list[list[dict[str, Any]]] = []
    for row in anomalous:
        if groups and (row["start"] - groups[-1][-1]["start"]).total_seconds() <= rules.merge_gap_s:
            groups[-1].append(row)
        else:
            groups.append([row])
    faults = sorted(store.faults(), key=lambda f: f.time)
    matched: set[str] = set()
    incidents = []
    for group in groups:
        if len(group) < rules.min_traces:
            continue
        start = group[0]["start"] - timedelta(seconds=rules.before_s)
        end = group[-1]["start"] + timedelta(seconds=rules.after_s)
        fault = _matching(faults, start, end, rules)
        if fault is not None:
            matched.add(fault.fault_id)
        case = case_from_entries(
            f"{INCIDENT_PREFIX}{group[0]['start']:%Y%m%d-%H%M%S}",
            fault.truth if fault else None,
            group[0]["start"],
            (start, end),
            group,
            case_rules,
        )
        update: dict[str, Any] = {"anomalous_traces": len(group)}
        if fault is not None:
            update["fault_id"] = fault.fault_id
        incidents.append(case.model_copy(update=update))
    missed = [f.fault_id for f in faults if f.fault_id not in matched]
    return Detection(incidents=incidents, missed=missed)


def _matching(
    faults: list[Fault], start: datetime, end: datetime, rules: IncidentRules
) -> Fault | None:
    """The labelled fault an incident window [start, end] belongs to: among the faults from
    `match_slack_s` before it to its end, the one whose case window (the stored cases' window
    after the fault time) overlaps it most; the nearest in time when none overlaps."""
    slack = timedelta(seconds=rules.match_slack_s)
    near = [f for f in faults if start - slack <= f.time <= end]
    if not near:
        return None
    active = timedelta(seconds=CaseRules().after_s)

    def overlap(fault: Fault) -> float:
        shared = min(end, fault.time + active) - max(start, fault.time)
        return max(shared.total_seconds(), 0.0)

    return max(near, key=lambda f: (overlap(f), -abs((f.time - start).total_seconds())))


def case_for_trace(
    store: TelemetryStore, trace_id: str, rules: IncidentRules | None = None
) -> FailureCase:
    """A case that starts from this trace's entry span; its window around the entry."""
    rules = rules or IncidentRules()
    rows = _scored(store, rules, "WHERE trace_id = ?", [trace_id])
    if not rows:
        raise TelemetryError(
            f"{store.path}: no trace '{trace_id}' with an entry (root) span; list incidents with "
            "`thinkfl cases` or pick a trace id from your tracing UI"
        )
    entry = rows[0]
    window = (
        entry["start"] - timedelta(seconds=rules.before_s),
        entry["start"] + timedelta(seconds=rules.after_s),
    )
    case_id = f"trace-{trace_id[:16]}"
    return case_from_entries(case_id, None, entry["start"], window, [entry], rules.case_rules())


def case_at(
    store: TelemetryStore,
    when: datetime,
    service: str | None = None,
    rules: IncidentRules | None = None,
) -> FailureCase:
    """A case for a time: the most anomalous entry trace within the window around it (that
    passes through `service`, when given)."""
    rules = rules or IncidentRules()
    start = when - timedelta(seconds=rules.before_s)
    end = when + timedelta(seconds=rules.after_s)
    where, params = "WHERE start BETWEEN ? AND ?", list[Any]([start, end])
    if service:
        where += " AND trace_id IN (SELECT trace_id FROM spans WHERE service = ? AND start BETWEEN ? AND ?)"
        params += [service, start, end]
    rows = _scored(store, rules, where, params)
    if not rows:
        scope = f" through service '{service}'" if service else ""
        raise TelemetryError(
            f"{store.path}: no entry trace{scope} between {start:%Y-%m-%d %H:%M:%S} and "
            f"{end:%H:%M:%S} UTC; check the time (UTC) and `thinkfl info` for the store's range"
        )
    case_id = f"at-{when:%Y%m%d-%H%M%S}" + (f"-{service}" if service else "")
    return case_from_entries(case_id, None, when, (start, end), rows, rules.case_rules())
