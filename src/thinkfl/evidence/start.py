"""Alert -> start point: begin each case from an entry trace through the strongest evidence.

The slowest entry trace of a window often never reaches the culprit (code-level faults
barely change latency). Label-free, each case is restarted from the most anomalous entry
trace that passes through the component with the highest fused evidence score; the next
components are tried (up to `tries`) when no trace of the window passes through one.
"""

from __future__ import annotations

from collections.abc import Callable

from thinkfl.evidence import EvidenceSettings, evidence_for
from thinkfl.telemetry import FailureCase, TelemetryStore
from thinkfl.telemetry.cases import restart_through


def choose_start(
    store: TelemetryStore,
    case: FailureCase,
    settings: EvidenceSettings | None = None,
    tries: int = 3,
) -> FailureCase:
    evidence = evidence_for(store, case, settings)
    for score in evidence.rank()[:tries]:
        restarted = restart_through(store, case, score.level, score.entity)
        if restarted is not None:
            return restarted
    return case


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
