"""OTLP/HTTP requests to rows: protobuf (the default encoding) or JSON (hex ids).

Protobuf bodies are decoded with `opentelemetry-proto` and turned into the OTLP/JSON form
(ids from bytes to hex), so one reader (`ingest.otlp.rows_of_request`) serves the collector's
files and the live receiver alike. Every problem is a `RequestError` naming the field.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pyarrow as pa
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from thinkfl.telemetry.ingest.otlp import ID_LENGTHS, records_of, rows_of_request
from thinkfl.telemetry.model import RejectedRows, count_rejected

SIGNALS: dict[str, tuple[type[Message], str, str, str]] = {
    # signal: (protobuf request, resource list, scope list, record list)
    "traces": (ExportTraceServiceRequest, "resourceSpans", "scopeSpans", "spans"),
    "metrics": (ExportMetricsServiceRequest, "resourceMetrics", "scopeMetrics", "metrics"),
    "logs": (ExportLogsServiceRequest, "resourceLogs", "scopeLogs", "logRecords"),
}
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class RequestError(ValueError):
    """A request that cannot be read: the message names the field and what was expected."""


def decode(signal: str, content_type: str, body: bytes) -> dict[str, Any]:
    """The request as OTLP/JSON with hex ids; raises RequestError."""
    message_type, resources, scopes, records = SIGNALS[signal]
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == PROTOBUF:
        message = message_type()
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError) as error:
            raise RequestError(f"body: not a valid {message_type.__name__} ({error})") from None
        request: dict[str, Any] = MessageToDict(message)
        _ids_to_hex(request, resources, scopes, records)
    elif kind == JSON:
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise RequestError(f"body: not valid JSON ({type(error).__name__})") from None
        if not isinstance(request, dict):
            raise RequestError(f"body: expected a JSON object, found {type(request).__name__}")
    else:
        raise RequestError(
            f"Content-Type '{content_type[:60]}': send {PROTOBUF} (the default) or {JSON}"
        )
    return request


def rows(signal: str, request: dict[str, Any]) -> tuple[dict[str, pa.Table], list[RejectedRows]]:
    """Rows of a decoded request, and those left out (impossible times)."""
    left_out: list[RejectedRows] = []

    def reject(table: str, reason: str, example: str) -> None:
        count_rejected(left_out, table, reason, 1, [example])

    try:
        tables = rows_of_request(request, reject)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        problem = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise RequestError(f"{SIGNALS[signal][1]}: {problem[:200]}") from None
    return tables, left_out


def _ids_to_hex(request: dict[str, Any], resources: str, scopes: str, records: str) -> None:
    """Protobuf's JSON mapping writes bytes as base64; OTLP/JSON uses hex."""
    for _where, record in records_of(request, resources, scopes, records):
        for key in ID_LENGTHS:
            if record.get(key):
                record[key] = base64.b64decode(record[key]).hex()
