"""Alert -> start point: begin each case from an entry trace through the strongest evidence.

The slowest entry trace of a window often never reaches the culprit (code-level faults
barely change latency). Label-free, each case is restarted from the most anomalous entry
trace that passes through the component with the highest fused evidence score; the next
components are tried (up to `tries`) when no trace of the window passes through one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from thinkfl.evidence import EvidenceSettings, evidence_for
from thinkfl.telemetry import FailureCase, TelemetryStore
from thinkfl.telemetry.cases import CaseRules, restart_through
from thinkfl.telemetry.errors import TelemetryError
from thinkfl.telemetry.incidents import INCIDENT_PREFIX, IncidentRules, case_at, detect_incidents


def choose_start(
    store: TelemetryStore,
    case: FailureCase,
    settings: EvidenceSettings | None = None,
    tries: int = 3,
    service: str | None = None,
) -> FailureCase:
    """`case` restarted from an entry trace through its strongest evidence (and through
    `service`, when given); `case` itself when no entry trace of its window passes there."""
    evidence = evidence_for(store, case, settings)
    for score in evidence.rank()[:tries]:
        restarted = restart_through(store, case, score.level, score.entity, service=service)
        if restarted is not None:
            return restarted
    return case


# Alertmanager's startsAt comes after the rule's `for:` delay, so an alert's window also
# looks this far back before it; a time a person gives is taken as the failure's start.
ALERT_LOOKBACK_S = 60.0


def case_starting_at(
    store: TelemetryStore,
    when: datetime,
    service: str | None = None,
    settings: EvidenceSettings | None = None,
    lookback_s: float = 0.0,
) -> FailureCase:
    """The case for a time (`thinkfl localize --at`, an alert, the API's `at`): the window a
    stored case has around its fault time (CaseRules), opened `lookback_s` earlier, and the
    start chosen by the same code as every stored case's (`choose_start`), so a fault's time
    and its case id start from the same entry trace and reach the same answer."""
    case_window = CaseRules()
    rules = IncidentRules(before_s=case_window.before_s + lookback_s, after_s=case_window.after_s)
    return choose_start(store, case_at(store, when, service, rules), settings, service=service)


def choose_starts(
    store: TelemetryStore,
    settings: EvidenceSettings | None = None,
    on_case: Callable[[FailureCase], None] = lambda _case: None,
) -> list[FailureCase]:
    """Every case of the store restarted (see `choose_start`); the caller saves them."""
    chosen = []
    for case in store.cases():
        chosen.append(choose_start(store, case, settings))
        on_case(chosen[-1])
    return chosen


def case_by_id(store: TelemetryStore, case_id: str) -> FailureCase:
    """A stored case, or an incident `thinkfl cases --detect` lists on a labelled store
    (detected again, and started as stored cases are)."""
    try:
        return store.case(case_id)
    except TelemetryError:
        if not case_id.startswith(INCIDENT_PREFIX):
            raise
        for incident in detect_incidents(store).incidents:
            if incident.case_id == case_id:
                return choose_start(store, incident)
        raise TelemetryError(
            f"{store.path}: no case or detected incident '{case_id}'. Fix: pick an id "
            f"from `thinkfl cases {store.path}` or `thinkfl cases {store.path} --detect`"
        ) from None
