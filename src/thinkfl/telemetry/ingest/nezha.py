"""Nezha (FSE'23) Train-Ticket / Online Boutique exports.

Accepts the data set root (holding `rca_data/` and optionally `construct_data/`) or one
day folder (`rca_data/2023-01-29`). Quirks handled (from reading the data):
- `inject_time` is wall-clock time that matches the telemetry when parsed as UTC;
  `inject_timestamp` is 8 h off and sometimes a minute more, so it is ignored.
- metric `Time` carries Go's monotonic suffix; `TimeStamp` (Unix seconds) is used.
- pod names carry ReplicaSet hashes; the service is the name without its last two
  dash-separated parts. Labels are lifted to service level, the pod kept.
- the same span appears in two overlapping minute files: exact duplicates are dropped.
- 45 log rows carry Go's zero time in `TimeUnixNano`: their `Timestamp` text is used.
- traces carry no status (stored as `unset`); the pod→node map comes from the logs' `Node`.
- pod metric files repeat their node's KPIs (`Node*` columns): they become node-level
  samples of that node (taken from one pod per node), or stay on the pod if its node is
  unknown. `front_service.csv` describes the entry service (the service of the root spans).
- construct_data (fault-free traces and logs) is ingested too; its metrics duplicate
  rca_data's and are read only for pods rca_data lacks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from thinkfl.telemetry.errors import IngestError
from thinkfl.telemetry.ingest.base import IngestContext, require_files, severity_sql
from thinkfl.telemetry.ingest.csvread import read_header
from thinkfl.telemetry.model import Entity, Fault, GroundTruth, Level
from thinkfl.telemetry.store import sql_literal

TRACE_COLUMNS = {
    "TraceID": "VARCHAR",
    "SpanID": "VARCHAR",
    "ParentID": "VARCHAR",
    "PodName": "VARCHAR",
    "OperationName": "VARCHAR",
    "StartTimeUnixNano": "BIGINT",
    "Duration": "BIGINT",
}
LOG_COLUMNS = {
    "Timestamp": "VARCHAR",
    "TimeUnixNano": "BIGINT",
    "Node": "VARCHAR",
    "PodName": "VARCHAR",
    "TraceID": "VARCHAR",
    "SpanID": "VARCHAR",
    "Log": "VARCHAR",
}
METRIC_KEYS = {"TimeStamp": "BIGINT", "PodName": "VARCHAR"}
FRONT_KEYS = {"TimeStamp": "BIGINT", "ServiceName": "VARCHAR"}
NOT_METRICS = {"Time", "TimeStamp", "PodName", "ServiceName"}

# The word after the clock time in "16:42:22.382 INFO  t.s.TravelServiceImpl#532 ...".
LEVEL_WORD = "'^\\S+\\s+([A-Za-z]+)'"
# ... and what follows the level word: the message (time and level have their own columns)
AFTER_LEVEL = "'(?s)^\\d\\d:\\d\\d:\\d\\d\\S*\\s+[A-Za-z]+\\s+(.*)$'"
# Some log rows carry Go's zero time (-6795364578871345152) in TimeUnixNano; their
# `Timestamp` text (UTC, with or without a trailing Z) still holds the true time.
LOG_TIME = (
    "CASE WHEN TimeUnixNano > 0 THEN make_timestamp(TimeUnixNano // 1000) "
    "ELSE try_cast(left(regexp_replace(Timestamp, 'Z$', ''), 26) AS TIMESTAMP) END"
)
SERVICE_OF_POD = "regexp_replace({pod}, '-[^-]+-[^-]+$', '')"
FAULT_FIELDS = ("inject_time", "inject_pod", "inject_type")


def nezha_service(pod: str) -> str:
    """The Nezha rule: drop the last two dash-separated parts of the pod name."""
    parts = pod.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else pod


class NezhaAdapter:
    name = "nezha"
    description = "Nezha Train-Ticket/Online Boutique export (rca_data/<day>/..., fault_list.json)"

    def _days(self, src: Path) -> list[Path]:
        if (src / "trace").is_dir():
            return [src]
        days = sorted(p for p in (src / "rca_data").glob("*") if (p / "trace").is_dir())
        if not days:
            raise IngestError(
                src,
                "",
                "no Nezha day folder found (expected rca_data/<day>/trace/*.csv)",
                "point at the data set root or at one rca_data/<day> folder",
            )
        return days

    def _construct(self, day: Path) -> Path | None:
        candidate = day.parent.parent / "construct_data" / day.name
        return candidate if candidate.is_dir() else None

    def files(self, src: Path) -> list[Path]:
        found: list[Path] = []
        for day in self._days(src):
            for folder in [day, self._construct(day)]:
                if folder is None:
                    continue
                for kind in ("log", "trace", "metric"):
                    found.extend(sorted((folder / kind).glob("*.csv")))
        return found

    def load(self, src: Path, ctx: IngestContext) -> None:
        faults: list[Fault] = []
        for day in self._days(src):
            construct = self._construct(day)
            folders = [day] + ([construct] if construct else [])
            pod_nodes = self._load_logs(folders, ctx)
            entry_service = self._load_traces(folders, pod_nodes, ctx, day)
            self._load_metrics(folders, pod_nodes, entry_service, ctx)
            faults.extend(self._load_faults(day))
        ctx.writer.add_faults(faults)

    # --- logs --------------------------------------------------------------------------
    def _load_logs(self, folders: list[Path], ctx: IngestContext) -> pa.Table:
        pod_nodes: list[pa.Table] = []
        for folder in folders:
            for file in sorted((folder / "log").glob("*.csv")):
                raw = ctx.read_csv(file, LOG_COLUMNS, what="a Nezha log file")
                line = "coalesce(CASE WHEN json_valid(Log) THEN json_extract_string(Log, '$.log') END, Log)"
                severity_word = f"regexp_extract({line}, {LEVEL_WORD}, 1)"
                logs = ctx.transform(
                    f"""SELECT {LOG_TIME} AS time,
                        {SERVICE_OF_POD.format(pod="PodName")} AS service,
                        PodName AS pod, nullif(Node, '') AS node,
                        {severity_sql(severity_word)}
                            AS severity,
                        coalesce(nullif(regexp_extract(rtrim({line}, chr(10)), {AFTER_LEVEL}, 1), ''),
                                 rtrim({line}, chr(10))) AS message,
                        nullif(TraceID, '') AS trace_id, nullif(SpanID, '') AS span_id
                    FROM raw WHERE PodName IS NOT NULL AND {LOG_TIME} IS NOT NULL""",
                    raw=raw,
                )
                ctx.writer.add("logs", logs)
                pod_nodes.append(
                    ctx.transform(
                        "SELECT DISTINCT pod, node FROM logs WHERE node IS NOT NULL", logs=logs
                    )
                )
                ctx.advance(file.name)
        if not pod_nodes:
            return pa.table({"pod": pa.array([], pa.string()), "node": pa.array([], pa.string())})
        return ctx.transform(
            "SELECT pod, min(node) AS node FROM t GROUP BY pod", t=pa.concat_tables(pod_nodes)
        )

    # --- traces ------------------------------------------------------------------------
    def _load_traces(
        self, folders: list[Path], pod_nodes: pa.Table, ctx: IngestContext, day: Path
    ) -> str | None:
        root_services: dict[str, int] = {}
        trace_files = [f for folder in folders for f in sorted((folder / "trace").glob("*.csv"))]
        if not trace_files:
            raise IngestError(day / "trace", "", "no trace files (*_trace.csv)", "check the export")
        for file in trace_files:
            raw = ctx.read_csv(file, TRACE_COLUMNS, what="a Nezha trace file")
            spans = ctx.transform(
                f"""SELECT TraceID AS trace_id, SpanID AS span_id,
                    CASE WHEN ParentID IN ('root', '') THEN NULL ELSE ParentID END AS parent_id,
                    {SERVICE_OF_POD.format(pod="r.PodName")} AS service, r.PodName AS pod,
                    m.node AS node, OperationName AS operation,
                    make_timestamp(StartTimeUnixNano // 1000) AS start,
                    Duration AS duration_us, 'unset' AS status,
                    CASE WHEN OperationName LIKE '/%' THEN 'server'
                         WHEN regexp_matches(OperationName,
                              '^(HTTP [A-Z]+|SELECT|INSERT|UPDATE|DELETE)\\b') THEN 'client'
                         ELSE 'internal' END AS kind
                FROM raw r LEFT JOIN pod_nodes m ON m.pod = r.PodName""",
                raw=raw,
                pod_nodes=pod_nodes,
            )
            ctx.writer.add("spans", spans)
            roots = ctx.transform(
                "SELECT service, count(*) AS n FROM spans WHERE parent_id IS NULL GROUP BY 1",
                spans=spans,
            )
            for row in roots.to_pylist():
                root_services[row["service"]] = root_services.get(row["service"], 0) + row["n"]
            ctx.advance(file.name)
        return max(root_services, key=lambda s: root_services[s]) if root_services else None

    # --- metrics -----------------------------------------------------------------------
    def _load_metrics(
        self,
        folders: list[Path],
        pod_nodes: pa.Table,
        entry_service: str | None,
        ctx: IngestContext,
    ) -> None:
        seen: set[str] = set()
        nodes_taken: set[str] = set()
        node_of = dict(zip(*pod_nodes.to_pydict().values(), strict=True)) if pod_nodes else {}
        for folder in folders:
            for file in sorted((folder / "metric").glob("*.csv")):
                if file.name in seen:  # construct_data repeats rca_data's metric files
                    ctx.advance(file.name)
                    continue
                seen.add(file.name)
                if file.name == "front_service.csv":
                    self._load_front(file, entry_service, ctx)
                else:
                    self._load_pod_metrics(file, node_of, nodes_taken, ctx)
                ctx.advance(file.name)

    def _load_pod_metrics(
        self, file: Path, node_of: dict[str, str], nodes_taken: set[str], ctx: IngestContext
    ) -> None:
        header = read_header(file)
        values = {name: "DOUBLE" for name in header if name not in NOT_METRICS}
        raw = ctx.read_csv(file, METRIC_KEYS, values, "a Nezha metric file")
        pods = {p for p in raw.column("PodName").to_pylist() if p}
        ctx.writer.add_entities(
            Entity(level=Level.POD, name=p, service=nezha_service(p), node=node_of.get(p))
            for p in pods
        )
        pod = next(iter(pods)) if len(pods) == 1 else None
        node = node_of.get(pod) if pod else None
        # Node KPIs go to the node once (from the first pod seen on it); otherwise stay on the pod.
        node_level = node is not None and node not in nodes_taken
        if node is not None:
            nodes_taken.add(node)
        samples = ctx.transform(
            f"""WITH long AS (
                    UNPIVOT raw ON COLUMNS(* EXCLUDE (TimeStamp, PodName))
                    INTO NAME metric VALUE value)
                SELECT CASE WHEN metric ILIKE 'node%' AND {node_level} THEN 'node' ELSE 'pod' END
                           AS level,
                       CASE WHEN metric ILIKE 'node%' AND {node_level} THEN {sql_literal(node or "")}
                            ELSE PodName END AS entity,
                       metric, make_timestamp(TimeStamp * 1000000) AS time, value
                FROM long
                WHERE value IS NOT NULL AND NOT isnan(value) AND TimeStamp IS NOT NULL
                  AND NOT (metric ILIKE 'node%' AND {node is not None} AND NOT {node_level})""",
            raw=raw,
        )
        ctx.writer.add("metrics", samples)

    def _load_front(self, file: Path, entry_service: str | None, ctx: IngestContext) -> None:
        header = read_header(file)
        values = {name: "DOUBLE" for name in header if name not in NOT_METRICS | {"ServiceName"}}
        raw = ctx.read_csv(file, FRONT_KEYS, values, "Nezha front_service.csv")
        entity = sql_literal(entry_service) if entry_service else "ServiceName"
        samples = ctx.transform(
            f"""WITH long AS (
                    UNPIVOT raw ON COLUMNS(* EXCLUDE (TimeStamp, ServiceName))
                    INTO NAME metric VALUE value)
                SELECT 'service' AS level, {entity} AS entity, metric,
                       make_timestamp(TimeStamp * 1000000) AS time, value
                FROM long WHERE value IS NOT NULL AND NOT isnan(value)""",
            raw=raw,
        )
        ctx.writer.add("metrics", samples)

    # --- labels ------------------------------------------------------------------------
    def _load_faults(self, day: Path) -> list[Fault]:
        files = require_files(
            day, "*fault_list.json", "fault list", "add the day's <day>-fault_list.json"
        )
        faults: list[Fault] = []
        for file in files:
            faults.extend(parse_fault_list(file))
        return faults


def parse_fault_list(file: Path) -> list[Fault]:
    """The labels of one Nezha day, lifted to service level (the injected pod kept)."""
    try:
        groups = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IngestError(
            file, f"line {error.lineno}", f"invalid JSON ({error.msg})", "repair the file"
        ) from error
    if not isinstance(groups, dict):
        raise IngestError(file, "top level", "expected an object of hour -> list", "check file")
    faults: list[Fault] = []
    for hour, items in groups.items():
        for index, item in enumerate(items):
            where = f"[{hour!r}][{index}]"
            missing = [k for k in FAULT_FIELDS if k not in item]
            if missing:
                raise IngestError(file, where, f"missing field(s) {missing}", "add them")
            try:
                time = datetime.strptime(item["inject_time"], "%Y-%m-%d %H:%M:%S").replace(
                    tzinfo=UTC
                )
            except ValueError as error:
                raise IngestError(
                    file,
                    f"{where}.inject_time",
                    f"malformed timestamp {item['inject_time']!r}",
                    "write it as 'YYYY-MM-DD HH:MM:SS'",
                ) from error
            pod = item["inject_pod"]
            service = nezha_service(pod)
            faults.append(
                Fault(
                    fault_id=f"nezha-{time:%Y%m%d-%H%M%S}",
                    time=time,
                    truth=GroundTruth(
                        level=Level.SERVICE,
                        entity=service,
                        fault_type=item["inject_type"],
                        service=service,
                        pod=pod,
                    ),
                )
            )
    return sorted(faults, key=lambda f: f.time)
