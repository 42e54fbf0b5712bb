"""OpenTelemetry OTLP/JSON, as the collector's file exporter writes it.

Each line of a `*.json` / `*.jsonl` file (or a whole pretty-printed file) is one export
request: `{"resourceSpans": [...]}`, `{"resourceMetrics": [...]}` or `{"resourceLogs": [...]}`.
Resource attributes give the entity: `service.name`, `k8s.pod.name`, `k8s.node.name`
(or `host.name`). Metrics: gauge and sum points as they are; histogram points as
`<name>.mean` (sum/count) and `<name>.count`; summary points as `<name>.p<quantile>`;
point attributes are appended as `{k=v,...}`. Optional labels: `faults.csv` beside the
data with columns time (ISO 8601 or epoch), level, entity, fault_type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from thinkfl.telemetry.errors import IngestError
from thinkfl.telemetry.ingest.aiops2022 import epoch_to_datetime
from thinkfl.telemetry.ingest.base import (
    ImplausibleTime,
    IngestContext,
    implausible_time,
    labelled_fault,
)
from thinkfl.telemetry.model import (
    LOG_SCHEMA,
    METRIC_SCHEMA,
    SPAN_SCHEMA,
    Fault,
    Level,
    service_of_pod,
)

_SPAN_KIND = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
LABEL_COLUMNS = {
    "time": "VARCHAR",
    "level": "VARCHAR",
    "entity": "VARCHAR",
    "fault_type": "VARCHAR",
}


def _enum(value: Any, names: dict[int, str], prefix: str) -> str:
    """OTLP enums arrive as numbers or as names like SPAN_KIND_SERVER / STATUS_CODE_ERROR."""
    if isinstance(value, int):
        return names.get(value, names[0])
    if isinstance(value, str) and value:
        name = value.upper().removeprefix(prefix).lower()
        return name if name in names.values() else names[0]
    return names[0]


Reject = Callable[[str, str, str], None]  # (table, reason, example) of a row left out


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]` as an object ({} when absent or null); anything else is refused."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' must be an object, not {type(value).__name__}")
    return value


def _objects(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """`parent[key]` as a list of objects ([] when absent or null); anything else is refused."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be a list, not {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"'{key}[{index}]' must be an object, not {type(item).__name__}")
    return value


def _any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in _objects(_object(value, "arrayValue"), "values")]
    if "kvlistValue" in value:
        return _attributes(_objects(_object(value, "kvlistValue"), "values"))
    return None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(item["key"]): _any_value(item.get("value")) for item in items if "key" in item}


def _text(value: Any) -> str | None:
    """An attribute as text (a number given for a name is taken as its digits)."""
    return None if value is None or value == "" else str(value)


ID_LENGTHS = {"traceId": 32, "spanId": 16, "parentSpanId": 16}  # hex characters
_HEX = re.compile(r"[0-9a-fA-F]+")


def _hex_id(value: Any, field: str, required: bool = True) -> str | None:
    """A trace or span id (checked by `check_ids` before), lower case."""
    if value in (None, ""):
        if required:
            raise ValueError(f"'{field}' must be a non-empty hex string")
        return None
    return str(value).lower()


def records_of(
    request: dict[str, Any], resources: str, scopes: str, records: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    for r, resource in enumerate(request.get(resources) or []):
        if not isinstance(resource, dict):
            continue
        for s, scope in enumerate(resource.get(scopes) or []):
            if not isinstance(scope, dict):
                continue
            for i, record in enumerate(scope.get(records) or []):
                if isinstance(record, dict):
                    yield f"{resources}[{r}].{scopes}[{s}].{records}[{i}]", record


def check_ids(request: dict[str, Any], resources: str, scopes: str, records: str) -> None:
    """Every trace and span id of a request is hex of its fixed length; the first that is not
    is named by its place (the receiver and `ingest otlp` refuse the same ids alike)."""
    for where, record in records_of(request, resources, scopes, records):
        for key, length in ID_LENGTHS.items():
            value = record.get(key)
            if value in (None, ""):
                continue
            if not isinstance(value, str) or len(value) != length:
                shown = (
                    f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
                )
                raise ValueError(f"{where}.{key}: {shown}, expected {length} hex digits")
            if not _HEX.fullmatch(value):
                raise ValueError(f"{where}.{key}: not hexadecimal")


SIGNAL_LISTS = (
    ("resourceSpans", "scopeSpans", "spans"),
    ("resourceLogs", "scopeLogs", "logRecords"),
)


def _time(nanos: Any, field: str = "time") -> datetime | None:
    if nanos in (None, "", "0") or (nanos == 0 and not isinstance(nanos, bool)):
        return None
    if isinstance(nanos, bool) or not isinstance(nanos, int | str):
        raise ValueError(f"'{field}' must be an integer of nanoseconds, not {nanos!r:.40}")
    try:
        value = int(nanos)
    except ValueError:
        raise ValueError(
            f"'{field}' must be an integer of nanoseconds, not {nanos!r:.40}"
        ) from None
    if value < 0 or implausible_time(value, "nanoseconds"):
        raise ImplausibleTime(field, value, "nanoseconds")
    return datetime.fromtimestamp(value // 1000 / 1e6, UTC).replace(
        microsecond=value // 1000 % 1_000_000
    )


class _Resource:
    """Who emitted the data: service, pod and node from the resource attributes."""

    def __init__(self, resource: dict[str, Any]) -> None:
        attributes = _attributes(_objects(resource, "attributes"))
        self.pod: str | None = _text(attributes.get("k8s.pod.name"))
        self.node: str | None = _text(attributes.get("k8s.node.name")) or _text(
            attributes.get("host.name")
        )
        service = _text(attributes.get("service.name"))
        if not service or service.startswith("unknown_service"):
            service = service_of_pod(self.pod) if self.pod else None
        self.service: str | None = service

    def entity(self) -> tuple[str, str] | None:
        if self.pod:
            return Level.POD.value, self.pod
        if self.service:
            return Level.SERVICE.value, self.service
        if self.node:
            return Level.NODE.value, self.node
        return None


def _decode(file: Path, where_line: int, text: str) -> dict[str, Any]:
    try:
        request = json.loads(text)
    except RecursionError:
        raise IngestError(
            file,
            f"line {where_line}",
            "the JSON is nested too deeply to be an OTLP export",
            "check the file",
        ) from None
    except json.JSONDecodeError as error:
        truncated = error.pos >= len(text.rstrip()) - 1
        problem = "the JSON ends early (truncated?)" if truncated else f"invalid JSON ({error.msg})"
        line = where_line + error.lineno - 1
        raise IngestError(file, f"line {line}", problem, "re-export the file completely") from error
    if not isinstance(request, dict):
        raise IngestError(
            file,
            f"line {where_line}",
            f"expected a JSON object (an export request), found a {type(request).__name__}",
            "each line must hold resourceSpans, resourceMetrics or resourceLogs",
        )
    return request


def _requests(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, export request) from a JSON-lines or a whole-JSON file."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise IngestError(
            file,
            f"byte {error.start}",
            "not UTF-8 text (binary data?)",
            "give OTLP/JSON files only",
        ) from None
    if not text.strip():
        raise IngestError(file, "line 1", "the file is empty", "re-export it")
    lines = text.splitlines()
    filled = [line.strip() for line in lines if line.strip()]
    first = filled[0]
    # JSON lines (blank lines between requests are skipped) or one pretty-printed request
    if len(filled) > 1 and first.startswith("{") and first.endswith("}"):
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, _decode(file, number, line)
    else:
        yield 1, _decode(file, 1, text)


class OtlpAdapter:
    name = "otlp"
    description = "OpenTelemetry OTLP/JSON (collector file exporter), optional faults.csv"

    def files(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        if not src.is_dir():
            raise IngestError(src, "", "no such file or directory", "check the path")
        found = sorted(p for p in src.rglob("*") if p.suffix in {".json", ".jsonl"} and p.is_file())
        if not found:
            raise IngestError(
                src,
                "",
                "no OTLP/JSON files found (*.json, *.jsonl)",
                "point at the collector file exporter's output",
            )
        return found

    def load(self, src: Path, ctx: IngestContext) -> None:
        found = 0
        for file in self.files(src):
            spans: list[dict[str, Any]] = []
            metrics: list[dict[str, Any]] = []
            logs: list[dict[str, Any]] = []
            for line, request in _requests(file):
                try:  # a file with times in another unit is refused whole, the unit named
                    self._collect(request, spans, metrics, logs, None)
                except ImplausibleTime as error:
                    problem = f"'{error.field}' {error.value}: {error.problem}"
                    raise IngestError(file, f"line {line}", problem, error.fix) from None
                except (KeyError, TypeError, ValueError, OverflowError) as error:
                    problem = (
                        f"missing field {error}" if isinstance(error, KeyError) else str(error)
                    )
                    raise IngestError(
                        file,
                        f"line {line}",
                        f"not an OTLP export request ({problem[:200]})",
                        "each line must hold resourceSpans, resourceMetrics or resourceLogs "
                        "as the OTLP/JSON encoding defines them",
                    ) from None
            found += len(spans) + len(metrics) + len(logs)
            ctx.writer.add("spans", pa.Table.from_pylist(spans, schema=SPAN_SCHEMA))
            ctx.writer.add("metrics", pa.Table.from_pylist(metrics, schema=METRIC_SCHEMA))
            ctx.writer.add("logs", pa.Table.from_pylist(logs, schema=LOG_SCHEMA))
            ctx.advance(file.name)
        if not found:
            raise IngestError(
                src,
                "",
                "no spans, metric points or log records found",
                "give OTLP/JSON export requests (resourceSpans, resourceMetrics, resourceLogs)",
            )
        labels = (src if src.is_dir() else src.parent) / "faults.csv"
        if labels.is_file():
            ctx.writer.add_faults(self._labels(labels, ctx))

    def _collect(
        self,
        request: dict[str, Any],
        spans: list[Any],
        metrics: list[Any],
        logs: list[Any],
        reject: Reject | None,
    ) -> None:
        for lists in SIGNAL_LISTS:
            check_ids(request, *lists)
        for block in _objects(request, "resourceSpans"):
            resource = _Resource(_object(block, "resource"))
            for scope in _objects(block, "scopeSpans"):
                for span in _objects(scope, "spans"):
                    _keep(spans, partial(self._span, span, resource), "spans", reject)
        for block in _objects(request, "resourceMetrics"):
            resource = _Resource(_object(block, "resource"))
            entity = resource.entity()
            if entity is None:
                continue
            for scope in _objects(block, "scopeMetrics"):
                for metric in _objects(scope, "metrics"):
                    for sample in self._metric_samples(metric, *entity):
                        _keep(metrics, sample, "metrics", reject)
        for block in _objects(request, "resourceLogs"):
            resource = _Resource(_object(block, "resource"))
            for scope in _objects(block, "scopeLogs"):
                for record in _objects(scope, "logRecords"):
                    _keep(logs, partial(self._log, record, resource), "logs", reject)

    def _span(self, span: dict[str, Any], resource: _Resource) -> dict[str, Any]:
        if "startTimeUnixNano" not in span:
            raise KeyError("startTimeUnixNano")
        start = _time(span["startTimeUnixNano"], "start")
        end = _time(span.get("endTimeUnixNano"), "end")
        if resource.service is None:
            raise ValueError("resource has no service.name")
        duration = int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"]) if end else 0
        return {
            "trace_id": _hex_id(span.get("traceId"), "traceId"),
            "span_id": _hex_id(span.get("spanId"), "spanId"),
            "parent_id": _hex_id(span.get("parentSpanId"), "parentSpanId", required=False),
            "service": resource.service,
            "pod": resource.pod,
            "node": resource.node,
            "operation": _text(span.get("name")) or "",
            "start": start,
            "duration_us": duration // 1000,  # a negative one is refused by the store, counted
            "status": _enum(_object(span, "status").get("code"), _STATUS, "STATUS_CODE_"),
            "kind": _enum(span.get("kind"), _SPAN_KIND, "SPAN_KIND_"),
        }

    def _metric_samples(
        self, metric: dict[str, Any], level: str, entity: str
    ) -> Iterator[Callable[[], dict[str, Any]]]:
        """The metric's samples, each as a thunk (a point with an impossible time is counted
        alone, the others kept)."""
        name = _text(metric.get("name"))
        if name is None:
            raise KeyError("name")
        for kind in ("gauge", "sum"):
            for point in _objects(_object(metric, kind), "dataPoints"):
                value = point.get("asDouble", point.get("asInt"))
                if value is not None:
                    yield partial(self._sample, level, entity, name, point, float(value))
        for point in _objects(_object(metric, "histogram"), "dataPoints"):
            count = int(point.get("count", 0))
            yield partial(self._sample, level, entity, f"{name}.count", point, float(count))
            if count and "sum" in point:
                mean = float(point["sum"]) / count
                yield partial(self._sample, level, entity, f"{name}.mean", point, mean)
        for point in _objects(_object(metric, "summary"), "dataPoints"):
            for quantile in _objects(point, "quantileValues"):
                label = f"{name}.p{float(quantile.get('quantile', 0)) * 100:g}"
                value = float(quantile.get("value", 0))
                yield partial(self._sample, level, entity, label, point, value)

    def _sample(
        self, level: str, entity: str, name: str, point: dict[str, Any], value: float
    ) -> dict[str, Any]:
        attributes = _attributes(_objects(point, "attributes"))
        if attributes:
            name += "{" + ",".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + "}"
        if "timeUnixNano" not in point:
            raise KeyError("timeUnixNano")
        return {
            "level": level,
            "entity": entity,
            "metric": name,
            "time": _time(point["timeUnixNano"]),
            "value": value,
        }

    def _log(self, record: dict[str, Any], resource: _Resource) -> dict[str, Any]:
        time = _time(record.get("timeUnixNano")) or _time(record.get("observedTimeUnixNano"))
        if time is None:
            raise ValueError("log record without timeUnixNano or observedTimeUnixNano")
        body = _any_value(record.get("body"))
        number = _severity_number(record.get("severityNumber"))
        text = (_text(record.get("severityText")) or "").lower()
        return {
            "time": time,
            "service": resource.service or "unknown",
            "pod": resource.pod,
            "node": resource.node,
            "severity": _severity(number, text),
            "message": body if isinstance(body, str) else json.dumps(body, default=str),
            "trace_id": _hex_id(record.get("traceId"), "traceId", required=False),
            "span_id": _hex_id(record.get("spanId"), "spanId", required=False),
        }

    def _labels(self, file: Path, ctx: IngestContext) -> list[Fault]:
        raw = ctx.read_csv(file, LABEL_COLUMNS, what="faults.csv")
        faults = []
        for line, row in enumerate(raw.to_pylist(), start=2):
            time = _parse_label_time(file, line, row["time"])
            faults.append(
                labelled_fault(
                    "otlp", file, line, time, row["level"], row["entity"], row["fault_type"]
                )
            )
        return faults


def _keep(
    rows: list[dict[str, Any]],
    make: Callable[[], dict[str, Any]],
    table: str,
    reject: Reject | None,
) -> None:
    """Append the row `make` builds. A row with an implausible time (a unit mistake) is
    counted through `reject` with the fix as its reason, or, without `reject`, raised."""
    try:
        rows.append(make())
    except ImplausibleTime as error:
        if reject is None:
            raise
        reject(table, f"{error.field} implausible. Fix: {error.fix}", str(error)[:200])


def rows_of_request(request: dict[str, Any], reject: Reject) -> dict[str, pa.Table]:
    """The rows of one OTLP export request in its JSON form (hex ids), as Arrow tables; the
    live receiver's path: a row with an implausible time is left out and counted.
    Raises ValueError (or KeyError) naming what is malformed."""
    spans: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    OtlpAdapter()._collect(request, spans, metrics, logs, reject)
    return {
        "spans": pa.Table.from_pylist(spans, schema=SPAN_SCHEMA),
        "metrics": pa.Table.from_pylist(metrics, schema=METRIC_SCHEMA),
        "logs": pa.Table.from_pylist(logs, schema=LOG_SCHEMA),
    }


_SEVERITY_NAMES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}


def _severity_number(value: Any) -> int:
    """severityNumber as a number, or as its enum name (protobuf's JSON mapping writes
    SEVERITY_NUMBER_ERROR2 and the like)."""
    if value in (None, ""):
        return 0
    if isinstance(value, str) and not value.strip().isdigit():
        name = value.upper().removeprefix("SEVERITY_NUMBER_").rstrip("234")
        return _SEVERITY_NAMES.get(name, 0)
    return int(value)


def _severity(number: int, text: str) -> str:
    if number:
        return ["debug", "debug", "info", "warn", "error", "fatal"][min((number - 1) // 4, 5)]
    for word, severity in (
        ("fatal", "fatal"),
        ("crit", "fatal"),
        ("err", "error"),
        ("warn", "warn"),
        ("info", "info"),
        ("debug", "debug"),
        ("trace", "debug"),
    ):
        if text.startswith(word):
            return severity
    return "unknown"


def _parse_label_time(file: Path, line: int, value: str | None) -> datetime:
    text = (value or "").strip()
    try:
        if text.lstrip("-").isdigit():
            return epoch_to_datetime(int(text))
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError as error:
        raise IngestError(
            file,
            f"line {line}, column 'time'",
            f"malformed timestamp {text!r}",
            "use ISO 8601 (2024-05-01T10:00:00Z) or epoch seconds",
        ) from error
