"""Export a store in the layouts the ingest adapters read, so exports round-trip.

`aiops2022`: trace/all/trace_jaeger-span.csv, log/all/logs.csv, metric/container|node|service,
groundtruth.csv. The layout's own resolution applies: span starts in ms, logs and metrics in
seconds; span kind and the trace/span ids of logs are not part of it.
The output folder is written beside its final place and renamed at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import duckdb

from thinkfl.telemetry.errors import StoreError
from thinkfl.telemetry.store import TelemetryStore, sql_literal


def _copy(con: duckdb.DuckDBPyConnection, sql: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO {sql_literal(target)} (FORMAT csv, HEADER true)").fetchall()


def export_aiops2022(store: TelemetryStore, out: Path) -> Path:
    """Write `store` in the AIOps Challenge 2022 layout at `out` (a new folder)."""
    out = Path(out)
    if out.exists():
        raise StoreError(f"{out}: already exists. Fix: choose another --out")
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    con = store.con
    try:
        _copy(
            con,
            """SELECT (epoch_us(start) // 1000) AS timestamp, coalesce(pod, service) AS cmdb_id,
                       span_id, trace_id, duration_us AS duration, 'rpc' AS type,
                       CASE status WHEN 'ok' THEN '0' WHEN 'error' THEN '2' ELSE '' END AS status_code,
                       operation AS operation_name, coalesce(parent_id, '') AS parent_span
                FROM spans ORDER BY start, span_id""",
            staging / "trace/all/trace_jaeger-span.csv",
        )
        _copy(
            con,
            """SELECT 'L' || row_number() OVER (ORDER BY time, pod, message) AS log_id,
                       epoch(time)::BIGINT AS timestamp, coalesce(pod, service) AS cmdb_id,
                       'log_' || service || '_application' AS log_name,
                       'severity: ' || severity || ', message: ' || message AS value
                FROM logs ORDER BY time, pod, message""",
            staging / "log/all/logs.csv",
        )
        _copy(
            con,
            """SELECT epoch(m.time)::BIGINT AS timestamp,
                       CASE WHEN e.node IS NOT NULL THEN e.node || '.' || m.entity ELSE m.entity END
                           AS cmdb_id, m.metric AS kpi_name, m.value
                FROM metrics m LEFT JOIN entities e ON e.name = m.entity AND e.level = 'pod'
                WHERE m.level = 'pod' ORDER BY m.time, cmdb_id, kpi_name""",
            staging / "metric/container/kpi_container.csv",
        )
        _copy(
            con,
            """SELECT epoch(time)::BIGINT AS timestamp, entity AS cmdb_id, metric AS kpi_name, value
                FROM metrics WHERE level = 'node' ORDER BY time, entity, metric""",
            staging / "metric/node/kpi_node.csv",
        )
        service_metrics = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT metric FROM metrics WHERE level = 'service' ORDER BY 1"
            ).fetchall()
        ]
        if service_metrics:
            columns = ", ".join(
                f"max(value) FILTER (WHERE metric = {sql_literal(m)}) AS {duckdb_identifier(m)}"
                for m in service_metrics
            )
            _copy(
                con,
                f"""SELECT entity AS service, epoch(time)::BIGINT AS timestamp, {columns}
                    FROM metrics WHERE level = 'service' GROUP BY entity, time ORDER BY time, entity""",
                staging / "metric/service/metric_service.csv",
            )
        lines = ["timestamp,level,cmdb_id,failure_type"] + [
            f"{int(f.time.timestamp())},{f.truth.level.value},{f.truth.entity},{f.truth.fault_type}"
            for f in store.faults()
        ]
        (staging / "groundtruth.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def duckdb_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


EXPORTERS = {"aiops2022": export_aiops2022}
