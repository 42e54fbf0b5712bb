"""Metric evidence: deviation from a series' own recent past, and saturation against a limit.

The baseline of a series is its own recent past (`lookback_s` before the window), without
other case windows where enough samples remain, else all of it.

Guards against meaningless alarms (measured on real exports): a series that is constant
in the baseline and the window, or zero throughout, says nothing; a flat series has its
spread floored at `relative_spread_floor` of its median, so a tiny wiggle of a constant
KPI cannot give a z of a million; strengths are capped. A deviation needs both a robust z
of `sigma` and a relative change of `min_relative_change`.

Saturation: a metric whose name says it is a utilisation (`utilisation_pattern`), read as
0–100 (named as a percentage, or values above 1) or else 0–1, that reaches `saturation_level` of its
limit in the window while its normal median is below `saturation_normal_max`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from thinkfl.evidence.model import EvidenceItem, EvidenceKind
from thinkfl.evidence.periods import EXCLUDED, Periods
from thinkfl.evidence.settings import MetricSettings
from thinkfl.telemetry import Level, TelemetryStore

PERCENT = re.compile(r"%|(?i:percent|pct)")


def metric_evidence(
    store: TelemetryStore, periods: Periods, settings: MetricSettings
) -> list[EvidenceItem]:
    now = periods.is_window("time")
    recent_start = periods.window_start - timedelta(seconds=settings.lookback_s)
    recent = (
        f"(time >= TIMESTAMPTZ '{recent_start.isoformat()}' "
        f"AND time < TIMESTAMPTZ '{periods.window_start.isoformat()}')"
    )
    clean = (
        f"({recent} AND NOT EXISTS (SELECT 1 FROM {EXCLUDED} w WHERE time BETWEEN w.t0 AND w.t1))"
    )
    # its own recent past, clean where enough of it is; else all of the recent past
    (clean_samples,) = store.con.sql(
        f"SELECT count(DISTINCT time) FROM metrics WHERE {clean}"
    ).fetchall()[0]
    normal = clean if clean_samples >= settings.min_baseline_samples else recent
    rows = store.query(
        f"""SELECT level, entity, metric,
                   median(value) FILTER (WHERE {normal}) AS centre,
                   mad(value) FILTER (WHERE {normal}) AS mad,
                   count(*) FILTER (WHERE {normal}) AS n_normal,
                   min(value) FILTER (WHERE {normal}) AS normal_lo,
                   max(value) FILTER (WHERE {normal}) AS normal_hi,
                   max(value) FILTER (WHERE {now}) AS hi,
                   min(value) FILTER (WHERE {now}) AS lo,
                   median(value) FILTER (WHERE {now}) AS now_centre,
                   count(*) FILTER (WHERE {now}) AS n_now,
                   max(abs(value)) AS largest
            FROM metrics WHERE {now} OR {normal}
            GROUP BY level, entity, metric"""
    ).to_pylist()
    utilisation = re.compile(settings.utilisation_pattern)
    entities = store.entities()
    items: list[EvidenceItem] = []
    for row in rows:
        if not row["n_now"] or row["n_normal"] < settings.min_baseline_samples:
            continue
        if row["largest"] == 0 or (row["normal_lo"] == row["normal_hi"] == row["lo"] == row["hi"]):
            continue  # zero or constant throughout: nothing to see
        level, name = _placed(store, entities, row["level"], row["entity"])
        if utilisation.search(row["metric"]):
            item = _saturation(level, name, row, settings)
            if item is not None:
                items.append(item)
                continue
        item = _deviation(level, name, row, settings)
        if item is not None:
            items.append(item)
    return items


def _placed(
    store: TelemetryStore, entities: dict[str, Any], level: str, name: str
) -> tuple[str, str]:
    if level == Level.POD:
        entity = entities.get(name)
        if entity is not None and entity.service:
            return store.place(entity.service, name)
    return level, name


def _saturation(
    level: str, name: str, row: dict[str, Any], s: MetricSettings
) -> EvidenceItem | None:
    limit = _limit(row["metric"], max(row["normal_hi"], row["hi"]))
    peak, centre = row["hi"] / limit, row["centre"] / limit
    if peak < s.saturation_level or centre >= s.saturation_normal_max:
        return None
    return EvidenceItem(
        level=level,
        entity=name,
        kind=EvidenceKind.SATURATION,
        subject=row["metric"],
        observed=round(row["hi"], 3),
        normal=round(row["centre"], 3),
        unit="",
        strength=round(peak / s.saturation_level * (1 + (1 - centre)), 3),
        pointers=[f"metric:{row['entity']}/{row['metric']}"],
    )


def _limit(metric: str, largest: float) -> float:
    """100 for a percentage (named so, or values above 1), else 1 (a fraction)."""
    return 100.0 if PERCENT.search(metric) or largest > 1.0 else 1.0


def _deviation(
    level: str, name: str, row: dict[str, Any], s: MetricSettings
) -> EvidenceItem | None:
    centre = row["centre"]
    spread = max(1.4826 * (row["mad"] or 0.0), s.relative_spread_floor * abs(centre), 1e-9)
    extreme = row["hi"] if abs(row["hi"] - centre) >= abs(row["lo"] - centre) else row["lo"]
    change = abs(extreme - centre)
    if abs(centre) > 0 and change < s.min_relative_change * abs(centre):
        return None
    cap = s.max_strength * s.sigma
    z = min(change / spread, cap)
    if z < s.sigma:
        return None
    return EvidenceItem(
        level=level,
        entity=name,
        kind=EvidenceKind.METRIC_SHIFT,
        subject=row["metric"],
        observed=round(extreme, 4),
        normal=round(centre, 4),
        unit="",
        strength=round(z / s.sigma, 3),
        capped=z >= cap,
        pointers=[f"metric:{row['entity']}/{row['metric']}"],
    )
