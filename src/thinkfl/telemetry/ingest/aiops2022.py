"""AIOps Challenge 2022 layout (HipsterShop / Online Boutique), as used by the ThinkFL paper.

    groundtruth*.csv (or groundtruth/*.csv)   timestamp (s), level, cmdb_id, failure_type
    trace/**/*.csv                            timestamp (ms), cmdb_id (pod), span_id, trace_id,
                                              duration (µs), type, status_code, operation_name,
                                              parent_span (empty for entry spans)
    log/**/*.csv                              log_id, timestamp (s), cmdb_id, log_name, value
    metric/**/*.csv  KPI files                timestamp (s), cmdb_id, kpi_name, value, where
                                              cmdb_id is `node-6.cartservice-2` (container:
                                              pod on node), `node-6` (node) or a pod
    metric/**/*.csv  service files            service (`cartservice-grpc`), timestamp, rr, sr,
                                              mrt, count
Pods map to services by their replica suffix (`cartservice-2` -> `cartservice`), to nodes by
the container KPI ids. Istio pair KPIs (`node-6.frontend-2.source...`) describe an edge, not an
entity, and are not ingested. Timestamps are read in s, ms, µs or ns by magnitude.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from thinkfl.telemetry.errors import IngestError
from thinkfl.telemetry.ingest.base import (
    IngestContext,
    labelled_fault,
    severity_sql,
    timestamp_sql,
)
from thinkfl.telemetry.ingest.csvread import read_header
from thinkfl.telemetry.model import Entity, Fault, Level, service_of_pod

TRACE_COLUMNS = {
    "timestamp": "BIGINT",
    "cmdb_id": "VARCHAR",
    "span_id": "VARCHAR",
    "trace_id": "VARCHAR",
    "duration": "BIGINT",
    "operation_name": "VARCHAR",
    "parent_span": "VARCHAR",
}
TRACE_OPTIONAL = {"status_code": "VARCHAR", "type": "VARCHAR"}
LOG_COLUMNS = {"timestamp": "BIGINT", "cmdb_id": "VARCHAR", "value": "VARCHAR"}
KPI_COLUMNS = {
    "timestamp": "BIGINT",
    "cmdb_id": "VARCHAR",
    "kpi_name": "VARCHAR",
    "value": "DOUBLE",
}
SERVICE_KPI_KEYS = {"service": "VARCHAR", "timestamp": "BIGINT"}
TRUTH_COLUMNS = {
    "timestamp": "BIGINT",
    "level": "VARCHAR",
    "cmdb_id": "VARCHAR",
    "failure_type": "VARCHAR",
}

# SQL: a pod's service (`cartservice-2` -> `cartservice`), as model.service_of_pod does.
SERVICE_OF_POD = "regexp_replace({pod}, '-\\d+$', '')"


# "severity: info, message: received conversion request" -> the message part
WRAPPED_MESSAGE = "'(?s)^severity:\\s*\\w+,\\s*message:\\s*(.*)$'"


def epoch_us_sql(column: str) -> str:
    """SQL turning an epoch number in s, ms, µs or ns (told apart by magnitude) into µs."""
    return (
        f"CASE WHEN abs({column}) < 100000000000 THEN {column} * 1000000 "
        f"WHEN abs({column}) < 100000000000000 THEN {column} * 1000 "
        f"WHEN abs({column}) < 100000000000000000 THEN {column} "
        f"ELSE {column} // 1000 END"
    )


def epoch_to_datetime(value: int) -> datetime:
    for limit, scale in ((1e11, 1), (1e14, 1e3), (1e17, 1e6)):
        if abs(value) < limit:
            return datetime.fromtimestamp(value / scale, UTC)
    return datetime.fromtimestamp(value / 1e9, UTC)


class Aiops2022Adapter:
    name = "aiops2022"
    description = "AIOps Challenge 2022 layout (trace/, log/, metric/, groundtruth.csv)"

    def _truth_files(self, src: Path) -> list[Path]:
        return sorted(src.glob("groundtruth*.csv")) + sorted(src.glob("groundtruth/*.csv"))

    def files(self, src: Path) -> list[Path]:
        if not src.is_dir():
            raise IngestError(src, "", "not a directory", "point at the data set folder")
        traces = sorted(src.glob("trace/**/*.csv"))
        if not traces:
            raise IngestError(
                src,
                "",
                "no trace files found (looked for trace/**/*.csv)",
                "point at a folder in the AIOps 2022 layout (trace/, log/, metric/)",
            )
        return (
            sorted(src.glob("metric/**/*.csv"))
            + sorted(src.glob("log/**/*.csv"))
            + traces
            + self._truth_files(src)
        )

    def load(self, src: Path, ctx: IngestContext) -> None:
        pod_nodes = self._load_metrics(src, ctx)
        self._load_logs(src, pod_nodes, ctx)
        self._load_traces(src, pod_nodes, ctx)
        faults: list[Fault] = []
        truth_files = self._truth_files(src)
        if not truth_files:
            ctx.notes.append(
                f"{src}: no groundtruth*.csv, so no labels: the cases are the incidents "
                "found in the telemetry itself"
            )
        for file in truth_files:
            faults.extend(self._load_truth(file, ctx))
            ctx.advance(file.name)
        ctx.writer.add_faults(faults)

    # --- metrics (first: container ids give the pod -> node map) -------------------------
    def _load_metrics(self, src: Path, ctx: IngestContext) -> pa.Table:
        pod_nodes: dict[str, str] = {}
        for file in sorted(src.glob("metric/**/*.csv")):
            header = read_header(file)
            if set(KPI_COLUMNS) <= set(header):
                pod_nodes.update(self._load_kpis(file, ctx))
            elif set(SERVICE_KPI_KEYS) <= set(header):
                self._load_service_kpis(file, header, ctx)
            else:
                raise IngestError(
                    file,
                    "header",
                    f"neither a KPI file nor a service metric file (found: {', '.join(header)})",
                    f"KPI files need {', '.join(KPI_COLUMNS)}; service files need "
                    f"{', '.join(SERVICE_KPI_KEYS)} and metric columns",
                )
            ctx.advance(file.name)
        ctx.writer.add_entities(
            Entity(level=Level.POD, name=pod, service=service_of_pod(pod), node=node)
            for pod, node in pod_nodes.items()
        )
        return pa.table(
            {
                "pod": pa.array(list(pod_nodes), pa.string()),
                "node": pa.array(list(pod_nodes.values()), pa.string()),
            }
        )

    def _load_kpis(self, file: Path, ctx: IngestContext) -> dict[str, str]:
        raw = ctx.read_csv(file, KPI_COLUMNS, what="an AIOps 2022 KPI file")
        samples = ctx.transform(
            f"""WITH parts AS (
                    SELECT *, string_split(cmdb_id, '.') AS p FROM raw
                    WHERE value IS NOT NULL AND NOT isnan(value))
                SELECT CASE WHEN len(p) = 2 THEN 'pod'
                            WHEN regexp_matches(cmdb_id, '^node-\\d+$') THEN 'node'
                            ELSE 'pod' END AS level,
                       CASE WHEN len(p) = 2 THEN p[2] ELSE cmdb_id END AS entity,
                       kpi_name AS metric, {timestamp_sql(epoch_us_sql("timestamp"))} AS time,
                       value
                FROM parts WHERE len(p) <= 2""",
            raw=raw,
        )
        ctx.writer.add("metrics", samples)
        containers = ctx.transform(
            "SELECT DISTINCT string_split(cmdb_id, '.')[2] AS pod, "
            "string_split(cmdb_id, '.')[1] AS node FROM raw WHERE len(string_split(cmdb_id, '.')) = 2",
            raw=raw,
        )
        return {row["pod"]: row["node"] for row in containers.to_pylist()}

    def _load_service_kpis(self, file: Path, header: list[str], ctx: IngestContext) -> None:
        values = {name: "DOUBLE" for name in header if name not in SERVICE_KPI_KEYS}
        raw = ctx.read_csv(file, SERVICE_KPI_KEYS, values, "a service KPI file")
        samples = ctx.transform(
            f"""WITH long AS (UNPIVOT raw ON COLUMNS(* EXCLUDE (service, timestamp))
                              INTO NAME metric VALUE value)
                SELECT 'service' AS level,
                       regexp_replace(service, '-(grpc|http)$', '') AS entity, metric,
                       {timestamp_sql(epoch_us_sql("timestamp"))} AS time, value
                FROM long WHERE value IS NOT NULL AND NOT isnan(value)""",
            raw=raw,
        )
        ctx.writer.add("metrics", samples)

    # --- logs and traces -----------------------------------------------------------------
    def _load_logs(self, src: Path, pod_nodes: pa.Table, ctx: IngestContext) -> None:
        word = (
            "coalesce(nullif(regexp_extract(value, '(?i)(?:severity|level)[\"'':=\\s]+([a-z]+)', 1),"
            " ''), regexp_extract(value, '\\b(FATAL|ERROR|WARN|WARNING|INFO|DEBUG)\\b', 1))"
        )
        for file in sorted(src.glob("log/**/*.csv")):
            raw = ctx.read_csv(file, LOG_COLUMNS, what="an AIOps 2022 log file")
            logs = ctx.transform(
                f"""SELECT {timestamp_sql(epoch_us_sql("timestamp"))} AS time,
                       {SERVICE_OF_POD.format(pod="cmdb_id")} AS service, cmdb_id AS pod,
                       m.node AS node, {severity_sql(word)} AS severity,
                       coalesce(nullif(regexp_extract(value, {WRAPPED_MESSAGE}, 1), ''), value, '')
                           AS message,
                       NULL::VARCHAR AS trace_id, NULL::VARCHAR AS span_id
                FROM raw LEFT JOIN pod_nodes m ON m.pod = raw.cmdb_id""",
                raw=raw,
                pod_nodes=pod_nodes,
            )
            ctx.writer.add("logs", logs)
            ctx.advance(file.name)

    def _load_traces(self, src: Path, pod_nodes: pa.Table, ctx: IngestContext) -> None:
        for file in sorted(src.glob("trace/**/*.csv")):
            raw = ctx.read_csv(file, TRACE_COLUMNS, TRACE_OPTIONAL, "an AIOps 2022 trace file")
            if "status_code" not in raw.column_names:
                raw = raw.append_column("status_code", pa.nulls(raw.num_rows, pa.string()))
            spans = ctx.transform(
                f"""SELECT trace_id, span_id, nullif(trim(coalesce(parent_span, '')), '')
                           AS parent_id,
                       {SERVICE_OF_POD.format(pod="cmdb_id")} AS service, cmdb_id AS pod,
                       m.node AS node, operation_name AS operation,
                       {timestamp_sql(epoch_us_sql("timestamp"))} AS start,
                       duration AS duration_us,
                       CASE WHEN status_code IS NULL OR trim(status_code) IN ('', 'Unset', 'UNSET')
                                THEN 'unset'
                            WHEN trim(status_code) IN ('0', 'OK', 'Ok', 'ok', 'STATUS_CODE_OK')
                                OR regexp_matches(trim(status_code), '^[23]\\d\\d$') THEN 'ok'
                            ELSE 'error' END AS status,
                       'unspecified' AS kind
                FROM raw LEFT JOIN pod_nodes m ON m.pod = raw.cmdb_id""",
                raw=raw,
                pod_nodes=pod_nodes,
            )
            ctx.writer.add("spans", spans)
            ctx.advance(file.name)

    # --- labels ----------------------------------------------------------------------------
    def _load_truth(self, file: Path, ctx: IngestContext) -> list[Fault]:
        raw = ctx.read_csv(file, TRUTH_COLUMNS, what="an AIOps 2022 ground truth")
        faults: list[Fault] = []
        for line, row in enumerate(raw.to_pylist(), start=2):
            time = _label_time(file, line, row["timestamp"])
            faults.append(
                labelled_fault(
                    "aiops", file, line, time, row["level"], row["cmdb_id"], row["failure_type"]
                )
            )
        return faults


def _label_time(file: Path, line: int, value: int | None) -> datetime:
    """A label's epoch time; an empty or impossible one names its line."""
    try:
        if value is None:
            raise ValueError("empty")
        time = epoch_to_datetime(value)
    except (OverflowError, OSError, ValueError):
        time = None
    if time is None or time.year < 1970 or time.year > 2262:
        raise IngestError(
            file,
            f"line {line}, column 'timestamp'",
            f"no usable time ({'empty' if value is None else value})",
            "write the fault's time as epoch seconds",
        )
    return time
