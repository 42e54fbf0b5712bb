"""Incident detection quality on labelled stores: recall, false incidents per fault-free hour,
time from the labelled fault to the first anomalous entry, for a grid of the two main
thresholds (the default row is marked).

    python bench/bench_incidents.py STORE [STORE ...]

Fault-free hours = the span of entry traffic minus 300 s per labelled fault; an incident is
false when no labelled fault matches it (docs/data-model.md, "Incidents").
"""

from __future__ import annotations

import statistics
import sys

from machine import cpu_line
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.incidents import IncidentRules, detect_incidents

GRID = [(factor, traces) for factor in (2.0, 3.0, 5.0) for traces in (2, 3, 5)]


def main() -> None:
    default = IncidentRules()
    print(cpu_line())
    print(
        f"{'store':<16}{'factor':>7}{'min':>5}{'incidents':>10}{'recall':>8}{'false/h':>9}{'delay p50':>11}"
    )
    for path in sys.argv[1:]:
        store = TelemetryStore.open(path)
        faults = {f.fault_id: f for f in store.faults()}
        span = store.query(
            "SELECT min(start) AS a, max(start) AS b FROM spans WHERE parent_id IS NULL"
        ).to_pylist()[0]
        clean_h = (span["b"] - span["a"]).total_seconds() / 3600 - len(faults) * 300 / 3600
        for factor, traces in GRID:
            found = detect_incidents(store, IncidentRules(latency_factor=factor, min_traces=traces))
            false = sum(1 for c in found.incidents if c.truth is None)
            delays = [
                (c.inject_time - faults[c.fault_id].time).total_seconds()
                for c in found.incidents
                if c.truth is not None and c.fault_id in faults
            ]
            mark = (
                " <- default"
                if (factor, traces) == (default.latency_factor, default.min_traces)
                else ""
            )
            print(
                f"{path.rstrip('/').split('/')[-1]:<16}{factor:>7.1f}{traces:>5}{len(found.incidents):>10}"
                f"{1 - len(found.missed) / max(len(faults), 1):>8.2f}{false / clean_h:>9.2f}"
                f"{statistics.median(delays) if delays else float('nan'):>10.0f}s{mark}"
            )


if __name__ == "__main__":
    main()
