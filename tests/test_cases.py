"""Failure-case extraction: baselines outside fault windows, thresholds, weak fallback."""

from __future__ import annotations

import pytest

from storekit import build_store, fault, span
from thinkfl.telemetry import CaseRules, extract_cases

# 30 fault-free entry spans of "GET /home" at 100 ms, minutes before any fault.
BASELINE = [
    span(f"b{i}", None, "web", 10 * i, 100_000, trace=f"b{i}", op="GET /home") for i in range(30)
]


def entries(*rows):
    return BASELINE + [
        span(sid, None, "web", start, duration, status=status, trace=sid, op=op)
        for sid, start, duration, status, op in rows
    ]


def test_the_slowest_anomalous_entry_is_chosen(tmp_path):
    store = build_store(
        tmp_path / "s",
        entries(
            ("slow", 1010, 900_000, "ok", "GET /home"),  # 9x the 100 ms baseline
            ("slower", 1020, 1_500_000, "ok", "GET /home"),  # 15x
            ("fast", 1030, 90_000, "ok", "GET /home"),
            ("late", 1300, 5_000_000, "ok", "GET /home"),  # outside the 180 s window
        ),
        faults=[fault("f1", 1000)],
    )
    (case,) = store.cases()
    assert case.entry_span_id == "slower"
    assert case.latency_ratio == pytest.approx(15.0)
    assert case.anomaly == "strong" and case.anomalous_traces == 2
    assert case.truth.entity == "db"


def test_error_status_is_anomalous_even_when_fast(tmp_path):
    store = build_store(
        tmp_path / "s",
        entries(
            ("err", 1010, 100_000, "error", "GET /home"), ("ok", 1020, 200_000, "ok", "GET /home")
        ),
        faults=[fault("f1", 1000)],
    )
    (case,) = store.cases()
    assert (case.entry_span_id, case.entry_status, case.anomaly) == ("err", "error", "strong")


def test_weak_case_when_nothing_passes_and_none_without_traffic(tmp_path):
    store = build_store(
        tmp_path / "s",
        entries(("meh", 1010, 300_000, "ok", "GET /home")),
        faults=[fault("f1", 1000), fault("quiet", 5000)],
    )
    result = extract_cases(store)
    (case,) = result.cases
    assert (case.entry_span_id, case.anomaly, case.anomalous_traces) == ("meh", "weak", 0)
    assert result.faults_without_traffic == ["quiet"]


def test_thresholds_and_windows_are_configurable(tmp_path):
    store = build_store(
        tmp_path / "s",
        entries(
            ("meh", 1010, 300_000, "ok", "GET /home"), ("before", 950, 2_000_000, "ok", "GET /home")
        ),
        faults=[fault("f1", 1000)],
    )
    strict = extract_cases(store).cases[0]
    assert strict.entry_span_id == "meh" and strict.anomaly == "weak"
    loose = extract_cases(store, CaseRules(latency_factor=2.5)).cases[0]
    assert loose.entry_span_id == "meh" and loose.anomaly == "strong"
    earlier = extract_cases(store, CaseRules(before_s=60)).cases[0]
    assert earlier.entry_span_id == "before"


def test_rare_operations_fall_back_to_the_global_baseline(tmp_path):
    # "POST /pay" has no fault-free history: its ratio uses the 100 ms global median.
    store = build_store(
        tmp_path / "s",
        entries(("pay", 1010, 700_000, "ok", "POST /pay")),
        faults=[fault("f1", 1000)],
    )
    (case,) = store.cases()
    assert case.entry_operation == "POST /pay"
    assert case.latency_ratio == pytest.approx(7.0)
