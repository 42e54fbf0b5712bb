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
from typing import Any

import duckdb

from thinkfl.files import safe_file_name
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
            columns = _pivot_columns(service_metrics)
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


def export_nezha(store: TelemetryStore, out: Path) -> Path:
    """Write `store` in the Nezha layout (rca_data/<day>/trace|log|metric, fault_list.json).

    Needs Deployment-style pod names (service = pod name less its last two dash parts), as
    Nezha uses. What the layout cannot carry: span status and kind, service-level metrics
    other than the entry service's (front_service.csv), the node of a pod that never logs.
    """
    import json

    out = Path(out)
    if out.exists():
        raise StoreError(f"{out}: already exists. Fix: choose another --out")
    con = store.con
    bad = con.execute(
        "SELECT name, service FROM entities WHERE level = 'pod' "
        "AND regexp_replace(name, '-[^-]+-[^-]+$', '') <> service LIMIT 1"
    ).fetchall()
    if bad:
        raise StoreError(
            f"pod '{bad[0][0]}' of service '{bad[0][1]}' does not follow Nezha's naming "
            "(<service>-<replicaset>-<suffix>). Fix: export this store as aiops2022"
        )
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        days = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT strftime(start, '%Y-%m-%d') FROM spans ORDER BY 1"
            ).fetchall()
        ]
        for day in days:
            root = staging / "rca_data" / day
            for folder in ("trace", "log", "metric"):
                (root / folder).mkdir(parents=True, exist_ok=True)
            partition = "strftime({t}, '%H_%M')"
            con.execute(f"""COPY (
                SELECT TraceID, SpanID, ParentID, PodName, OperationName, StartTimeUnixNano,
                       EndTimeUnixNano, Duration, minute FROM (
                    SELECT trace_id AS TraceID, span_id AS SpanID, coalesce(parent_id, 'root') AS ParentID,
                           coalesce(pod, service) AS PodName, operation AS OperationName,
                           epoch_us(start) * 1000 AS StartTimeUnixNano,
                           (epoch_us(start) + duration_us) * 1000 AS EndTimeUnixNano,
                           duration_us AS Duration, {partition.format(t="start")} AS minute
                    FROM spans WHERE strftime(start, '%Y-%m-%d') = {sql_literal(day)} ORDER BY start))
                TO {sql_literal(root / "trace")} (FORMAT csv, HEADER true, PARTITION_BY (minute),
                    FILENAME_PATTERN 'trace', OVERWRITE_OR_IGNORE true)""").fetchall()
            con.execute(f"""COPY (
                SELECT strftime(time, '%Y-%m-%dT%H:%M:%S.%fZ') AS Timestamp,
                       epoch_us(time) * 1000 AS TimeUnixNano,
                       coalesce(node, '') AS Node, coalesce(pod, service) AS PodName, 'server' AS Container,
                       coalesce(trace_id, '') AS TraceID, coalesce(span_id, '') AS SpanID,
                       json_object('log', {CLOCK} || ' ' || upper(severity) || '  ' || message || chr(10),
                                   'stream', 'stdout')::VARCHAR AS Log,
                       {partition.format(t="time")} AS minute
                FROM logs WHERE strftime(time, '%Y-%m-%d') = {sql_literal(day)} ORDER BY time)
                TO {sql_literal(root / "log")} (FORMAT csv, HEADER true, PARTITION_BY (minute),
                    FILENAME_PATTERN 'log', OVERWRITE_OR_IGNORE true)""").fetchall()
            _flatten_partitions(root / "trace", "trace")
            _flatten_partitions(root / "log", "log")
            _nezha_metrics(con, root / "metric", day)
            faults: dict[str, list[dict[str, Any]]] = {}
            for fault in store.faults():
                if f"{fault.time:%Y-%m-%d}" != day:
                    continue
                pod = fault.truth.pod or fault.truth.entity
                faults.setdefault(f"{fault.time:%H}", []).append(
                    {
                        "inject_time": f"{fault.time:%Y-%m-%d %H:%M:%S}",
                        "inject_timestamp": str(int(fault.time.timestamp())),
                        "inject_pod": pod,
                        "inject_type": fault.truth.fault_type,
                    }
                )
            (root / f"{day}-fault_list.json").write_text(
                json.dumps(faults, indent=4), encoding="utf-8"
            )
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


# A log line's clock as Nezha's applications print it: HH:MM:SS.mmm
CLOCK = "strftime(time, '%H:%M:%S.') || lpad((epoch_ms(time) % 1000)::VARCHAR, 3, '0')"


def _flatten_partitions(folder: Path, kind: str) -> None:
    """DuckDB writes minute=HH_MM/<kind>.csv; Nezha wants HH_MM_<kind>.csv."""
    for part in sorted(folder.glob("minute=*")):
        minute = part.name.split("=", 1)[1]
        for file in part.glob("*.csv"):
            file.replace(folder / f"{minute}_{kind}.csv")
        shutil.rmtree(part)


def _pivot_columns(metrics: list[str]) -> str:
    """SQL select items turning long (metric, value) rows into one column per metric."""
    return ", ".join(
        f"max(value) FILTER (WHERE metric = {sql_literal(m)}) AS {duckdb_identifier(m)}"
        for m in metrics
    )


def _nezha_metrics(con: duckdb.DuckDBPyConnection, folder: Path, day: str) -> None:
    """One wide file per pod (its own metrics and its node's), front_service.csv for the entry."""
    pods = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT entity FROM metrics WHERE level = 'pod' ORDER BY 1"
        ).fetchall()
    ]
    in_day = f"strftime(time, '%Y-%m-%d') = {sql_literal(day)}"
    for pod in pods:
        names = [
            r[0]
            for r in con.execute(
                f"""SELECT DISTINCT metric FROM metrics WHERE level = 'pod' AND entity = ? AND {in_day}
                UNION SELECT DISTINCT m.metric FROM metrics m JOIN entities e ON e.node = m.entity
                WHERE e.name = ? AND m.level = 'node' AND {in_day} ORDER BY 1""",
                [pod, pod],
            ).fetchall()
        ]
        if not names:
            continue
        columns = _pivot_columns(names)
        _copy(
            con,
            f"""SELECT strftime(time, '%Y-%m-%d %H:%M:%S +0000 UTC') AS Time,
                       epoch(time)::BIGINT AS TimeStamp, {sql_literal(pod)} AS PodName, {columns}
                FROM (SELECT time, metric, value FROM metrics
                      WHERE level = 'pod' AND entity = {sql_literal(pod)} AND {in_day}
                      UNION ALL SELECT m.time, m.metric, m.value FROM metrics m JOIN entities e
                      ON e.node = m.entity AND e.name = {sql_literal(pod)} WHERE m.level = 'node' AND {in_day})
                GROUP BY time ORDER BY time""",
            folder / safe_file_name(pod, "_metric.csv"),  # the reader takes PodName
        )
    entry = con.execute(
        "SELECT service FROM spans WHERE parent_id IS NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchall()
    if entry:
        names = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT metric FROM metrics WHERE level = 'service' AND entity = ? "
                f"AND {in_day} ORDER BY 1",
                [entry[0][0]],
            ).fetchall()
        ]
        if names:
            columns = _pivot_columns(names)
            _copy(
                con,
                f"""SELECT strftime(time, '%Y-%m-%d %H:%M:%S +0000 UTC') AS Time,
                           epoch(time)::BIGINT AS TimeStamp, 'Frontend' AS ServiceName, {columns}
                    FROM metrics WHERE level = 'service' AND entity = {sql_literal(entry[0][0])} AND {in_day}
                    GROUP BY time ORDER BY time""",
                folder / "front_service.csv",
            )


EXPORTERS = {"aiops2022": export_aiops2022, "nezha": export_nezha}
