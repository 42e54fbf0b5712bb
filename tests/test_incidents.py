"""Incidents found in the telemetry itself, and investigations without a case id.

The system of test_evidence: web -> api -> db, one request every 2 s for 1,500 s; in
[1200 s, 1380 s] the network into db adds 100 ms (entries ~5x their normal ~24 ms).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from storekit import at, build_store, fault
from test_evidence import FAULT_S, scenario
from thinkfl.cli import app
from thinkfl.simulate import FaultType, SimulationSettings, simulate
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.incidents import IncidentRules, case_at, case_for_trace, detect_incidents

runner = CliRunner()


def unlabelled(tmp_path, faults=()):
    spans, logs, metrics = scenario(gap_in_window=True)
    return build_store(tmp_path / "s", spans, metrics, logs, faults=list(faults))


def test_an_unlabelled_slow_period_is_one_incident(tmp_path):
    store = unlabelled(tmp_path)
    assert store.cases() == []  # nothing labelled
    (incident,) = detect_incidents(store).incidents
    assert (
        incident.truth is None and incident.case_id == "incident-20240501-102000"
    )  # BASE 10:00 + 1200 s
    # every request of the 180 s slow period is anomalous (91 of them); the window runs
    # from 60 s before the first to 180 s after the last
    assert incident.anomalous_traces == 91
    assert incident.inject_time == at(FAULT_S)
    assert (incident.window_start, incident.window_end) == (
        at(FAULT_S - 60),
        at(FAULT_S + 180 + 180),
    )
    assert at(FAULT_S) <= incident.entry_start <= at(FAULT_S + 180)
    # a stricter rule sees nothing: the entries are about 5x, not 10x, their median
    assert detect_incidents(store, IncidentRules(latency_factor=10)).incidents == []


def test_a_detected_incident_carries_the_fault_it_overlaps_and_misses_are_listed(tmp_path):
    store = unlabelled(tmp_path, [fault("net", FAULT_S, "db"), fault("ghost", 300, "api")])
    found = detect_incidents(store)
    (incident,) = found.incidents
    assert incident.fault_id == "net" and incident.truth.entity == "db"
    assert found.missed == ["ghost"]  # nothing happened at 300 s


def test_cases_lists_incidents_and_localize_investigates_by_trace_or_time(tmp_path):
    store = unlabelled(tmp_path)
    listed = runner.invoke(app, ["cases", str(store.path), "--json"])
    assert listed.exit_code == 0, listed.output
    (incident,) = json.loads(listed.stdout)
    assert incident["truth"] is None
    by_trace = runner.invoke(
        app,
        ["localize", str(store.path), "--trace", incident["entry_trace_id"], "--json"],
    )
    assert by_trace.exit_code == 0, by_trace.output
    assert json.loads(by_trace.stdout)["ranking"][0] == {
        "level": "service",
        "name": "db",
    }  # the gap's callee
    by_time = runner.invoke(
        app,
        ["localize", str(store.path), "--at", at(FAULT_S + 30).isoformat(), "--json"],
    )
    assert by_time.exit_code == 0, by_time.output
    assert json.loads(by_time.stdout)["ranking"][0] == {"level": "service", "name": "db"}
    both = runner.invoke(app, ["localize", str(store.path), "--trace", "x", "--at", "1"])
    assert both.exit_code == 2 and "exactly one of --case, --trace or --at" in both.output
    nowhere = runner.invoke(app, ["localize", str(store.path), "--trace", "nope"])
    assert nowhere.exit_code == 2 and "no trace 'nope'" in nowhere.output


def test_a_case_for_a_trace_or_a_time_needs_traffic_there(tmp_path):
    store = unlabelled(tmp_path)
    case = case_at(store, at(FAULT_S + 30), service="db")
    assert case.case_id.endswith("-db") and case.window_start == at(FAULT_S - 30)
    from thinkfl.telemetry import TelemetryError

    with pytest.raises(TelemetryError, match="no entry trace through service 'nobody'"):
        case_at(store, at(FAULT_S), service="nobody")
    assert case_for_trace(store, case.entry_trace_id).entry_span_id == case.entry_span_id


def test_simulated_faults_are_detected_and_fault_free_traffic_raises_none(tmp_path):
    settings = SimulationSettings(
        fault_types=[FaultType.CPU_CONTENTION, FaultType.CODE_EXCEPTION, FaultType.NETWORK_DELAY],
        normal_s=600.0,
        fault_s=240.0,
        request_rate=0.5,
        difficulty={"severity": (6.0, 8.0)},
    )
    store = TelemetryStore.open(simulate(tmp_path / "sim", 6, 5, settings))
    found = detect_incidents(store)
    assert len(found.missed) <= 1  # at least 5 of the 6 faults are found
    # 6 x 600 s of fault-free traffic before the faults: no incident there
    assert [c.case_id for c in found.incidents if c.truth is None] == []


def test_cases_detect_on_a_labelled_store_names_the_missed_faults(tmp_path):
    store = unlabelled(tmp_path, [fault("net", FAULT_S, "db"), fault("ghost", 300, "api")])
    shown = runner.invoke(app, ["cases", str(store.path), "--detect"])
    assert shown.exit_code == 0, shown.output
    assert "service: db" in shown.output and "incident-20240501-102000" in shown.output
    assert "1 labelled faults without a detected incident: ghost" in shown.output
