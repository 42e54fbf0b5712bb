"""Log evidence: each component's mix of log templates now against its own normal mix.

Templates: a message that starts with a code location (`Class#123`, `file.py:45`) is keyed
by it; any other message has ids, hex, UUIDs and numbers masked and is mined into a
template with Drain3, per service. Every log line of the store gets its template once
(`log_templates.parquet` in the evidence cache, keeping the line's trace and span ids).

Per component and template: expected = normal share x lines now. A template that made up
a real share of the normal mix and (nearly) vanished is a drop; a rare or new one far
above its expectation is a rise (errors count fully, info lines `info_rise_weight`).
Strength = Poisson z / `z_threshold`.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from thinkfl.evidence.cache import write_atomic
from thinkfl.evidence.model import EvidenceItem, EvidenceKind
from thinkfl.evidence.periods import Periods
from thinkfl.evidence.settings import LogSettings
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.store import sql_literal

TEMPLATES = "log_templates.parquet"
SEVERE = ("warn", "error", "fatal")
_MASKS = (
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b",  # hex with digits and letters
    r"\b[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*\b",
    r"\d+(\.\d+)?",
)
MAX_MASKED = 300


def _masked_sql(column: str) -> str:
    expr = column
    for pattern in _MASKS:
        expr = f"regexp_replace({expr}, {sql_literal(pattern)}, '<*>', 'g')"
    return f"left({expr}, {MAX_MASKED})"


def _template_id(service: str, template: str) -> str:
    return hashlib.sha1(f"{service}\x00{template}".encode()).hexdigest()[:10]


def _miner(settings: LogSettings) -> TemplateMiner:
    config = TemplateMinerConfig()
    config.drain_sim_th = settings.drain_similarity
    config.drain_depth = settings.drain_depth
    config.profiling_enabled = False
    return TemplateMiner(config=config)


def _mine(keys: list[dict[str, Any]], settings: LogSettings) -> dict[tuple[str, str], str]:
    """(service, key) -> template: code locations kept, masked messages mined per service."""
    by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in keys:
        by_service[row["service"]].append(row)
    result: dict[tuple[str, str], str] = {}
    for service, rows in by_service.items():
        miner = _miner(settings)
        clusters: dict[str, int] = {}
        for row in sorted(rows, key=lambda r: -r["n"]):
            if row["location"]:
                result[(service, row["key"])] = row["location"]
                continue
            clusters[row["key"]] = miner.add_log_message(row["key"])["cluster_id"]
        by_id = {c.cluster_id: c for c in miner.drain.clusters}
        for key, cluster_id in clusters.items():
            result[(service, key)] = by_id[cluster_id].get_template()
    return result


def template_table(store: TelemetryStore, folder: Path, settings: LogSettings) -> Path:
    """Every log line of the store with its template id (built once per store)."""
    path = folder / TEMPLATES
    if path.is_file():
        return path
    location = f"regexp_extract(message, {sql_literal(settings.code_location_pattern)}, 1)"
    con = store.con
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE evidence_log_keys AS
            SELECT *, CASE WHEN location <> '' THEN location ELSE masked END AS key
            FROM (SELECT time, service, pod, severity, trace_id, span_id,
                         {location} AS location, {_masked_sql("message")} AS masked
                  FROM logs)"""
    )
    try:
        keys = (
            con.sql(
                "SELECT service, key, any_value(location) AS location, count(*) AS n "
                "FROM evidence_log_keys GROUP BY service, key"
            )
            .to_arrow_table()
            .to_pylist()
        )
        mined = _mine(keys, settings)
        mapping = pa.table(
            {
                "service": [s for s, _k in mined],
                "key": [k for _s, k in mined],
                "template": list(mined.values()),
                "template_id": [_template_id(s, t) for (s, _k), t in mined.items()],
            }
        )
        con.register("evidence_template_map", mapping)
        table = con.sql(
            """SELECT l.time, l.service, l.pod, l.severity, l.trace_id, l.span_id,
                      m.template_id, m.template, l.masked AS example
               FROM evidence_log_keys l JOIN evidence_template_map m USING (service, key)
               ORDER BY l.time"""
        ).to_arrow_table()
        con.unregister("evidence_template_map")
    finally:
        con.execute("DROP TABLE IF EXISTS evidence_log_keys")
    write_atomic(path, table)
    return path


def log_evidence(
    store: TelemetryStore, periods: Periods, templates: Path, settings: LogSettings
) -> list[EvidenceItem]:
    """Drops and rises of each component's templates (see the module rules)."""
    source = f"read_parquet({sql_literal(templates.as_posix())})"
    rows = store.query(
        f"""SELECT service, pod, template_id, any_value(template) AS template,
                   any_value(example) FILTER (WHERE {periods.is_window("time")}) AS example,
                   max(CASE severity WHEN 'fatal' THEN 4 WHEN 'error' THEN 3 WHEN 'warn' THEN 2
                       ELSE 1 END) AS severity,
                   count(*) FILTER (WHERE {periods.is_window("time")}) AS now,
                   count(*) FILTER (WHERE {periods.is_baseline("time")}) AS normal,
                   (list(span_id) FILTER (WHERE {periods.is_window("time")} AND span_id IS NOT NULL))[1:3]
                       AS now_spans,
                   (list(span_id) FILTER (WHERE {periods.is_baseline("time")} AND span_id IS NOT NULL))[1:3]
                       AS normal_spans
            FROM {source}
            WHERE {periods.is_window("time")} OR {periods.is_baseline("time")}
            GROUP BY service, pod, template_id"""
    ).to_pylist()
    # Components as the tools name them: pods of one service merge when it has one replica.
    grouped: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict[str, Any])
    for row in rows:
        place = store.place(row["service"], row["pod"])
        slot = grouped[place].setdefault(
            row["template_id"],
            {**row, "now": 0, "normal": 0, "now_spans": [], "normal_spans": []},
        )
        slot["now"] += row["now"]
        slot["normal"] += row["normal"]
        slot["now_spans"] = (slot["now_spans"] + (row["now_spans"] or []))[:3]
        slot["normal_spans"] = (slot["normal_spans"] + (row["normal_spans"] or []))[:3]
    items: list[EvidenceItem] = []
    for (level, name), templates_of in grouped.items():
        items.extend(_shifts(level, name, list(templates_of.values()), settings))
    return items


def _shifts(
    level: str, name: str, rows: list[dict[str, Any]], s: LogSettings
) -> list[EvidenceItem]:
    total_normal = sum(r["normal"] for r in rows)
    total_now = sum(r["now"] for r in rows)
    if total_normal < s.min_baseline_logs or total_now == 0:
        return []
    found: list[EvidenceItem] = []
    for row in rows:
        share = row["normal"] / total_normal
        expected = share * total_now
        z = (row["now"] - expected) / math.sqrt(expected + 1)
        drop = (
            share >= s.drop_min_share
            and expected >= s.drop_min_expected
            and row["now"] <= s.drop_max_ratio * expected
        )
        rise = row["now"] >= s.rise_min_count and row["now"] >= s.rise_min_ratio * (expected + 1)
        if not (drop or rise):
            continue
        weight = 1.0 if row["severity"] >= 2 or drop else s.info_rise_weight
        strength = weight * abs(z) / s.z_threshold
        if strength < 1.0:
            continue
        spans = row["now_spans"] if rise else row["normal_spans"]
        found.append(
            EvidenceItem(
                level=level,
                entity=name,
                kind=EvidenceKind.LOG_RISE if rise else EvidenceKind.LOG_DROP,
                subject=_severity_word(row["severity"]) + " " + row["template"],
                example=(row["example"] or "")[:200] if rise else "",
                observed=row["now"],
                normal=round(expected, 2),
                unit=" lines",
                strength=round(strength, 3),
                pointers=[f"log:{row['template_id']}", *spans],
            )
        )
    return found


def _severity_word(rank: int) -> str:
    return {4: "FATAL", 3: "ERROR", 2: "WARN"}.get(rank, "INFO")


def read_templates(path: Path) -> pa.Table:
    return pq.read_table(path)
