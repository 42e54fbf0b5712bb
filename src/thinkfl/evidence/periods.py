"""Which telemetry is "now" and which is "normal" for a case.

The window is the case's. The baseline is clean telemetry — outside every case window of
the store — in the `lookback_s` before the window; where that holds fewer than
`min_minutes` minutes with spans (the first minutes of a day, an export with little fault-free data), all
clean telemetry of the store is the baseline, after the window too, and the note says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from thinkfl.evidence.settings import BaselineSettings
from thinkfl.telemetry import FailureCase, TelemetryStore

TIMESTAMP = pa.timestamp("us", tz="UTC")
EXCLUDED = "evidence_excluded_windows"


@dataclass(frozen=True)
class Periods:
    window_start: datetime
    window_end: datetime
    baseline_start: datetime
    baseline_end: datetime
    excluded: list[tuple[datetime, datetime]]
    note: str

    def register(self, store: TelemetryStore) -> None:
        """Make the excluded windows a table of this thread's cursor (see `is_baseline`)."""
        table = pa.table(
            {
                "t0": pa.array([w[0] for w in self.excluded], TIMESTAMP),
                "t1": pa.array([w[1] for w in self.excluded], TIMESTAMP),
            }
        )
        store.con.register(EXCLUDED, table)

    def unregister(self, store: TelemetryStore) -> None:
        store.con.unregister(EXCLUDED)

    def is_baseline(self, column: str) -> str:
        """SQL: the row's time lies in the baseline period and in no case window."""
        return (
            f"({column} BETWEEN TIMESTAMPTZ '{self.baseline_start.isoformat()}' "
            f"AND TIMESTAMPTZ '{self.baseline_end.isoformat()}' AND NOT EXISTS "
            f"(SELECT 1 FROM {EXCLUDED} w WHERE {column} BETWEEN w.t0 AND w.t1))"
        )

    def is_window(self, column: str) -> str:
        return (
            f"({column} BETWEEN TIMESTAMPTZ '{self.window_start.isoformat()}' "
            f"AND TIMESTAMPTZ '{self.window_end.isoformat()}')"
        )


def periods_for(
    store: TelemetryStore,
    case: FailureCase,
    settings: BaselineSettings,
    other_windows: list[tuple[datetime, datetime]] | None = None,
) -> Periods:
    """The window and the clean baseline of a case (see the module rules)."""
    windows = (
        other_windows
        if other_windows is not None
        else [(c.window_start, c.window_end) for c in store.cases()]
    )
    excluded = sorted({*windows, (case.window_start, case.window_end)})
    start = case.window_start - timedelta(seconds=settings.lookback_s)
    before = Periods(
        case.window_start,
        case.window_end,
        start,
        case.window_start - timedelta(microseconds=1),
        excluded,
        "clean telemetry before the window",
    )
    before.register(store)
    try:
        (count,) = store.con.sql(
            "SELECT count(DISTINCT date_trunc('minute', start)) FROM spans "
            f"WHERE {before.is_baseline('start')}"
        ).fetchall()[0]
    finally:
        before.unregister(store)
    if count >= settings.min_minutes:
        return before
    time_range = store.time_range()
    low, high = time_range if time_range else (start, case.window_end)
    return Periods(
        case.window_start,
        case.window_end,
        min(low, start),
        max(high, case.window_end),
        excluded,
        f"all clean telemetry of the store (only {count} clean minutes before the window)",
    )
