"""Label-free evidence for a failure case: what changed, where, against a clean baseline.

`evidence_for(store, case)` runs the detectors (logs, traces, metrics) over the case's
window against clean telemetry, fuses their items into one score per service, pod or node,
and caches the result beside the store, so tools and policies read it in milliseconds.
Rules and settings: docs/evidence.md.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime

from thinkfl.evidence.cache import cache_dir, write_atomic
from thinkfl.evidence.fusion import fuse
from thinkfl.evidence.logs import log_evidence, template_table
from thinkfl.evidence.metrics import metric_evidence
from thinkfl.evidence.model import EntityScore, Evidence, EvidenceItem, EvidenceKind
from thinkfl.evidence.periods import Periods, periods_for
from thinkfl.evidence.settings import EvidenceSettings
from thinkfl.evidence.traces import call_edges, call_evidence, span_facts, trace_evidence
from thinkfl.files import safe_file_name
from thinkfl.telemetry import FailureCase, TelemetryStore

_BUILD_LOCK = threading.Lock()  # derived tables are built once even with parallel callers


def _settings_key(settings: EvidenceSettings) -> str:
    return hashlib.sha1(settings.model_dump_json().encode()).hexdigest()[:10]


def evidence_for(
    store: TelemetryStore,
    case: FailureCase,
    settings: EvidenceSettings | None = None,
    other_windows: list[tuple[datetime, datetime]] | None = None,
    use_cache: bool = True,
) -> Evidence:
    """The evidence of one case (cached per case and settings in the store's evidence folder).

    `other_windows`: the case windows the baseline must avoid; by default those of the
    store's cases.
    """
    settings = settings or EvidenceSettings()
    folder = cache_dir(store)
    # the case id comes from data (an alert, a cases.json): never a path of its own
    stamp = f"-{case.window_start.timestamp():.0f}-{_settings_key(settings)}.json"
    cached = folder / "cases" / safe_file_name(case.case_id, stamp)
    if use_cache and other_windows is None and cached.is_file():
        try:
            return Evidence.model_validate_json(cached.read_text(encoding="utf-8"))
        except ValueError:
            pass  # a damaged cache file is recomputed
    with _BUILD_LOCK:
        templates = template_table(store, folder, settings.logs)
        facts = span_facts(store, folder)
    periods = periods_for(store, case, settings.baseline, other_windows)
    periods.register(store)
    try:
        items = [
            *log_evidence(store, periods, templates, settings.logs),
            *trace_evidence(store, periods, facts, settings.traces),
            *call_evidence(store, periods, facts, settings.traces),
            *metric_evidence(store, periods, settings.metrics),
        ]
        edges = call_edges(store, periods, facts) | {
            (store.place(caller, None), store.place(callee, None))
            for caller, callee, _weight in store.call_graph()
            if caller != callee
        }
    finally:
        periods.unregister(store)
    evidence = Evidence(
        case_id=case.case_id,
        window_start=periods.window_start,
        window_end=periods.window_end,
        baseline_start=periods.baseline_start,
        baseline_end=periods.baseline_end,
        baseline_note=periods.note,
        scores=fuse(items, settings.fusion, edges, store.entities()),
    )
    if use_cache and other_windows is None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, evidence.model_dump_json().encode())
    return evidence


__all__ = [
    "EntityScore",
    "Evidence",
    "EvidenceItem",
    "EvidenceKind",
    "EvidenceSettings",
    "Periods",
    "evidence_for",
    "periods_for",
]
