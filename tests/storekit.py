"""Build small stores by hand for tests: rows in, a published store out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from thinkfl.telemetry import Fault, GroundTruth, Level, StoreWriter, TelemetryStore
from thinkfl.telemetry.cases import extract_cases
from thinkfl.telemetry.model import LOG_SCHEMA, METRIC_SCHEMA, SPAN_SCHEMA, Manifest

BASE = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def span(
    span_id,
    parent,
    service,
    start_s,
    duration_us,
    status="ok",
    trace="t",
    pod=None,
    op="op",
    kind="server",
):
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_id": parent,
        "service": service,
        "pod": pod,
        "node": None,
        "operation": op,
        "start": at(start_s),
        "duration_us": duration_us,
        "status": status,
        "kind": kind,
    }


def fault(fault_id: str, seconds: float, entity: str = "db") -> Fault:
    return Fault(
        fault_id=fault_id,
        time=at(seconds),
        truth=GroundTruth(level=Level.SERVICE, entity=entity, fault_type="cpu", service=entity),
    )


def build_store(out: Path, spans=(), metrics=(), logs=(), faults=()) -> TelemetryStore:
    with StoreWriter(out) as writer:
        writer.add("spans", pa.Table.from_pylist(list(spans), schema=SPAN_SCHEMA))
        writer.add("metrics", pa.Table.from_pylist(list(metrics), schema=METRIC_SCHEMA))
        writer.add("logs", pa.Table.from_pylist(list(logs), schema=LOG_SCHEMA))
        writer.add_faults(faults)
        writer.finish_tables()
        draft = TelemetryStore.open_unpublished(writer.path)
        writer.write_cases(extract_cases(draft).cases)
        draft.close()
        writer.publish(Manifest(source_format="test", source="hand-built"))
    return TelemetryStore.open(out)
