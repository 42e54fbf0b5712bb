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
- Online Boutique days add, in `metric/`: `dependency.csv` (Source, Target, Weight: the
  service call graph, kept as the store's call graph) and per-edge latency files
  (`source_50.csv`, `destination_50.csv`: columns time, timestamp, then one column per
  `caller_callee` pair), kept as service-level metrics of the callee named
  `latency_<file>_from_<caller>`. Where the text time and the epoch disagree, the one inside
  the traces' time range is used, and the manifest says so.
- Any other file in `metric/` is listed in the manifest as not read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from thinkfl.telemetry.errors import IngestError
from thinkfl.telemetry.ingest.aiops2022 import epoch_us_sql
from thinkfl.telemetry.ingest.base import (
    IngestContext,
    require_files,
    severity_sql,
    timestamp_sql,
)
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
    f"CASE WHEN TimeUnixNano > 0 THEN {timestamp_sql('TimeUnixNano // 1000')} "
    "ELSE try_cast(left(regexp_replace(Timestamp, 'Z$', ''), 26) AS TIMESTAMP) END"
)
SERVICE_OF_POD = "regexp_replace({pod}, '-[^-]+-[^-]+$', '')"
FAULT_FIELDS = ("inject_time", "inject_pod", "inject_type")
POD_METRICS_SUFFIX = "_metric.csv"
CALL_GRAPH_FILE = "dependency.csv"
CALL_GRAPH_COLUMNS = {"Source": "VARCHAR", "Target": "VARCHAR", "Weight": "DOUBLE"}
EDGE_LATENCY_PREFIXES = ("source_", "destination_")
EDGE_TIME_COLUMNS = {"time": "VARCHAR", "timestamp": "DOUBLE"}
# Seconds by which an export's text time and epoch may differ before they count as disagreeing.
TIME_COLUMNS_TOLERANCE_S = 60


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
            entry_service, span_range = self._load_traces(folders, pod_nodes, ctx, day)
            self._load_metrics(folders, pod_nodes, entry_service, span_range, ctx)
            faults.extend(self._load_faults(day))
        ctx.writer.add_faults(faults)

    # --- logs --------------------------------------------------------------------------
    def _load_logs(self, folders: list[Path], ctx: IngestContext) -> pa.Table:
        pod_nodes: list[pa.Table] = []
        for folder in folders:
            for file in sorted((folder / "log").glob("*.csv")):
                raw = ctx.read_csv(file, LOG_COLUMNS, what="a Nezha log file")
                ctx.check_epoch_column(file, raw, "TimeUnixNano", "nanoseconds")
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
                    FROM raw""",
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
    ) -> tuple[str | None, tuple[int, int] | None]:
        """Loads the spans; returns the entry service and the spans' time range (epoch µs)."""
        root_services: dict[str, int] = {}
        low: int | None = None
        high: int | None = None
        trace_files = [f for folder in folders for f in sorted((folder / "trace").glob("*.csv"))]
        if not trace_files:
            raise IngestError(day / "trace", "", "no trace files (*_trace.csv)", "check the export")
        for file in trace_files:
            raw = ctx.read_csv(file, TRACE_COLUMNS, what="a Nezha trace file")
            ctx.check_epoch_column(file, raw, "StartTimeUnixNano", "nanoseconds")
            spans = ctx.transform(
                f"""SELECT TraceID AS trace_id, SpanID AS span_id,
                    CASE WHEN ParentID IN ('root', '') THEN NULL ELSE ParentID END AS parent_id,
                    {SERVICE_OF_POD.format(pod="r.PodName")} AS service, r.PodName AS pod,
                    m.node AS node, OperationName AS operation,
                    {timestamp_sql("StartTimeUnixNano // 1000")} AS start,
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
            first, last = (
                ctx.transform(
                    "SELECT min(epoch_us(start)) AS a, max(epoch_us(start)) AS b FROM spans",
                    spans=spans,
                )
                .to_pylist()[0]
                .values()
            )
            if first is not None:
                low = first if low is None else min(low, first)
                high = last if high is None else max(high, last)
            ctx.advance(file.name)
        entry = max(root_services, key=lambda s: root_services[s]) if root_services else None
        return entry, (low, high) if low is not None and high is not None else None

    # --- metrics -----------------------------------------------------------------------
    def _load_metrics(
        self,
        folders: list[Path],
        pod_nodes: pa.Table,
        entry_service: str | None,
        span_range: tuple[int, int] | None,
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
                elif file.name == CALL_GRAPH_FILE:
                    self._load_call_graph(file, ctx)
                elif file.name.startswith(EDGE_LATENCY_PREFIXES):
                    self._load_edge_latency(file, span_range, ctx)
                elif file.name.endswith(POD_METRICS_SUFFIX):
                    self._load_pod_metrics(file, node_of, nodes_taken, ctx)
                else:
                    ctx.skipped_files.append(str(file))
                ctx.advance(file.name)

    def _load_call_graph(self, file: Path, ctx: IngestContext) -> None:
        raw = ctx.read_csv(file, CALL_GRAPH_COLUMNS, what="Nezha dependency.csv")
        rows = raw.to_pylist()
        ctx.writer.add_call_edges(
            (r["Source"].strip(), r["Target"].strip(), r["Weight"])
            for r in rows
            if r["Source"] and r["Target"]
        )

    def _load_edge_latency(
        self, file: Path, span_range: tuple[int, int] | None, ctx: IngestContext
    ) -> None:
        header = read_header(file)
        pairs = [name for name in header if name not in EDGE_TIME_COLUMNS]
        raw = ctx.read_csv(
            file, EDGE_TIME_COLUMNS, {name: "DOUBLE" for name in pairs}, "a Nezha edge latency file"
        )
        time_sql = self._edge_time(file, raw, span_range, ctx)
        known = ctx.writer.call_graph_services()
        names = {pair: _split_pair(pair, known) for pair in pairs}
        mapping = pa.table(
            {
                "pair": list(names),
                "caller": [caller for caller, _ in names.values()],
                "callee": [callee for _, callee in names.values()],
            }
        )
        stem = sql_literal(file.stem)
        samples = ctx.transform(
            f"""WITH long AS (
                    UNPIVOT (SELECT {time_sql} AS t, * EXCLUDE (time, timestamp) FROM raw)
                    ON COLUMNS(* EXCLUDE (t)) INTO NAME pair VALUE value)
                SELECT 'service' AS level, m.callee AS entity,
                       'latency_' || {stem} || '_from_' || m.caller AS metric,
                       {timestamp_sql("t")} AS time, value
                FROM long JOIN mapping m USING (pair)
                WHERE t IS NOT NULL AND value IS NOT NULL AND NOT isnan(value)""",
            raw=raw,
            mapping=mapping,
        )
        ctx.writer.add("metrics", samples)

    def _edge_time(
        self, file: Path, raw: pa.Table, span_range: tuple[int, int] | None, ctx: IngestContext
    ) -> str:
        """SQL (epoch µs) of the time column to trust: the epoch, unless it disagrees with the
        text time and only the text time lies within the traces' range."""
        text_us = "epoch_us(try_cast(time AS TIMESTAMP))"
        epoch_us = epoch_us_sql("timestamp")
        stats = ctx.transform(
            f"""SELECT median(abs({text_us} - {epoch_us})) AS gap,
                       median({text_us}) AS text_mid, median({epoch_us}) AS epoch_mid FROM raw""",
            raw=raw,
        ).to_pylist()[0]
        if stats["gap"] is None or stats["gap"] <= TIME_COLUMNS_TOLERANCE_S * 1e6:
            return epoch_us
        chosen, reason = epoch_us, "the traces' time range is unknown"
        if span_range is not None:
            low, high = span_range
            inside = {
                name: low - 3.6e9 <= mid <= high + 3.6e9
                for name, mid in (("text", stats["text_mid"]), ("epoch", stats["epoch_mid"]))
            }
            if inside["text"] and not inside["epoch"]:
                chosen, reason = text_us, "it lies within the traces' time range"
            else:
                reason = "it lies within the traces' time range" if inside["epoch"] else reason
        ctx.notes.append(
            f"{file}: columns 'time' and 'timestamp' disagree by {stats['gap'] / 1e6:.0f} s "
            f"(median); used '{'time' if chosen == text_us else 'timestamp'}' because {reason}"
        )
        return chosen

    def _load_pod_metrics(
        self, file: Path, node_of: dict[str, str], nodes_taken: set[str], ctx: IngestContext
    ) -> None:
        header = read_header(file)
        values = {name: "DOUBLE" for name in header if name not in NOT_METRICS}
        raw = ctx.read_csv(file, METRIC_KEYS, values, "a Nezha metric file")
        ctx.check_epoch_column(file, raw, "TimeStamp", "seconds")
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
                       metric, {timestamp_sql("TimeStamp * 1000000.0")} AS time, value
                FROM long
                WHERE value IS NOT NULL AND NOT isnan(value)
                  AND NOT (metric ILIKE 'node%' AND {node is not None} AND NOT {node_level})""",
            raw=raw,
        )
        ctx.writer.add("metrics", samples)

    def _load_front(self, file: Path, entry_service: str | None, ctx: IngestContext) -> None:
        header = read_header(file)
        values = {name: "DOUBLE" for name in header if name not in NOT_METRICS | {"ServiceName"}}
        raw = ctx.read_csv(file, FRONT_KEYS, values, "Nezha front_service.csv")
        ctx.check_epoch_column(file, raw, "TimeStamp", "seconds")
        entity = sql_literal(entry_service) if entry_service else "ServiceName"
        samples = ctx.transform(
            f"""WITH long AS (
                    UNPIVOT raw ON COLUMNS(* EXCLUDE (TimeStamp, ServiceName))
                    INTO NAME metric VALUE value)
                SELECT 'service' AS level, {entity} AS entity, metric,
                       {timestamp_sql("TimeStamp * 1000000.0")} AS time, value
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


def _split_pair(pair: str, known: set[str]) -> tuple[str, str]:
    """`caller_callee` into its two services: the split whose sides are both known services
    of the call graph, else the first underscore."""
    cuts = [i for i, ch in enumerate(pair) if ch == "_"]
    for cut in cuts:
        if pair[:cut] in known and pair[cut + 1 :] in known:
            return pair[:cut], pair[cut + 1 :]
    if not cuts:
        return "", pair
    return pair[: cuts[0]], pair[cuts[0] + 1 :]


def parse_fault_list(file: Path) -> list[Fault]:
    """The labels of one Nezha day, lifted to service level (the injected pod kept)."""
    try:
        groups = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise IngestError(
            file, f"byte {error.start}", "not UTF-8 text", "save the fault list as UTF-8 JSON"
        ) from None
    except json.JSONDecodeError as error:
        raise IngestError(
            file, f"line {error.lineno}", f"invalid JSON ({error.msg})", "repair the file"
        ) from error
    except RecursionError:
        raise IngestError(file, "", "the JSON is nested too deeply", "repair the file") from None
    if not isinstance(groups, dict):
        raise IngestError(file, "top level", "expected an object of hour -> list", "check file")
    faults: list[Fault] = []
    for hour, items in groups.items():
        if not isinstance(items, list):
            raise IngestError(
                file,
                f"[{hour!r}]",
                f"expected a list of faults, found {type(items).__name__}",
                'write each hour as "HH": [{"inject_time": ..., "inject_pod": ..., "inject_type": ...}]',
            )
        for index, item in enumerate(items):
            faults.append(_fault(file, f"[{hour!r}][{index}]", item))
    return sorted(faults, key=lambda f: f.time)


def _fault(file: Path, where: str, item: object) -> Fault:
    if not isinstance(item, dict):
        raise IngestError(file, where, f"expected an object, found {type(item).__name__}", "fix it")
    missing = [k for k in FAULT_FIELDS if k not in item]
    if missing:
        raise IngestError(file, where, f"missing field(s) {missing}", "add them")
    for name in FAULT_FIELDS:
        if not isinstance(item[name], str) or not item[name].strip():
            raise IngestError(
                file,
                f"{where}.{name}",
                f"expected a non-empty string, found {item[name]!r:.40}",
                'write it as text, e.g. "2023-01-29 08:43:04" for inject_time',
            )
    try:
        time = datetime.strptime(item["inject_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError as error:
        raise IngestError(
            file,
            f"{where}.inject_time",
            f"malformed timestamp {item['inject_time']!r:.40}",
            "write it as 'YYYY-MM-DD HH:MM:SS'",
        ) from error
    pod = item["inject_pod"].strip()
    service = nezha_service(pod)
    return Fault(
        fault_id=f"nezha-{time:%Y%m%d-%H%M%S}",
        time=time,
        truth=GroundTruth(
            level=Level.SERVICE,
            entity=service,
            fault_type=item["inject_type"].strip(),
            service=service,
            pod=pod,
        ),
    )
