"""Telemetry: the canonical model, the DuckDB/Parquet store, ingest adapters, failure cases."""

from thinkfl.telemetry.cases import CaseExtraction, CaseRules, extract_cases
from thinkfl.telemetry.errors import IngestError, StoreError, TelemetryError
from thinkfl.telemetry.ingest import ADAPTERS, IngestResult, ingest
from thinkfl.telemetry.model import (
    Candidate,
    Entity,
    FailureCase,
    Fault,
    GroundTruth,
    Level,
    Ranking,
    Severity,
    SpanKind,
    SpanStatus,
    candidates,
    service_of_pod,
)
from thinkfl.telemetry.store import StoreWriter, TelemetryStore

__all__ = [
    "ADAPTERS",
    "Candidate",
    "CaseExtraction",
    "CaseRules",
    "Entity",
    "FailureCase",
    "Fault",
    "GroundTruth",
    "IngestError",
    "IngestResult",
    "Level",
    "Ranking",
    "Severity",
    "SpanKind",
    "SpanStatus",
    "StoreError",
    "StoreWriter",
    "TelemetryError",
    "TelemetryStore",
    "candidates",
    "extract_cases",
    "ingest",
    "service_of_pod",
]
