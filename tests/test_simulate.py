"""The simulator: deterministic, realistic evidence per fault type, healthy siblings, scale."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta

import pytest

from thinkfl.simulate import LEVEL_OF, PRESETS, FaultType, SimulationSettings, make_system, simulate
from thinkfl.telemetry import Level, TelemetryStore

FAST = {"normal_s": 600.0, "fault_s": 240.0, "request_rate": 0.5}


def content_hash(store: TelemetryStore) -> str:
    digest = hashlib.sha256()
    for table, order in (
        ("spans", "span_id"),
        ("metrics", "entity, metric, time"),
        ("logs", "time, message"),
    ):
        for row in store.query(f"SELECT * FROM {table} ORDER BY {order}").to_pylist():
            digest.update(repr(sorted(row.items())).encode())
    digest.update(repr([c.model_dump(mode="json") for c in store.cases()]).encode())
    return digest.hexdigest()


def test_same_seed_same_store_other_seed_other_store(tmp_path):
    settings = SimulationSettings(**FAST)
    hashes = [
        content_hash(TelemetryStore.open(simulate(tmp_path / name, 3, seed, settings)))
        for name, seed in (("a", 7), ("b", 7), ("c", 8))
    ]
    assert hashes[0] == hashes[1] != hashes[2]


def one_fault(
    tmp_path, fault_type: FaultType, system: str = "boutique", seed: int = 3
) -> TelemetryStore:
    settings = SimulationSettings(
        system=system, difficulty=PRESETS["easy"], fault_types=[fault_type], **FAST
    )
    return TelemetryStore.open(simulate(tmp_path / fault_type.value, 1, seed, settings))


def metric_ratios(store: TelemetryStore, metric: str) -> dict[str, float]:
    """Per entity: mean of `metric` while the fault is on / mean before it."""
    (case,) = store.cases()
    rows = store.query(
        "SELECT entity, avg(value) FILTER (WHERE time >= ? AND time < ?) AS on_, "
        "avg(value) FILTER (WHERE time < ?) AS before FROM metrics WHERE metric = ? GROUP BY entity",
        [case.inject_time, case.window_end, case.inject_time, metric],
    ).to_pylist()
    return {r["entity"]: (r["on_"] or 0) / max(r["before"] or 0, 1e-9) for r in rows}


METRIC_EVIDENCE = {
    FaultType.CPU_CONTENTION: "cpu_usage_percent",
    FaultType.MEMORY_EXHAUSTION: "memory_usage_percent",
    FaultType.DISK_IO: "disk_io_ms",
    FaultType.PACKET_LOSS: "tcp_retransmits",
    FaultType.NETWORK_DELAY: "network_rtt_ms",
    FaultType.NODE_CPU: "node_cpu_usage_percent",
    FaultType.NODE_MEMORY: "node_memory_usage_percent",
    FaultType.NODE_DISK: "node_disk_io_ms",
}


@pytest.mark.parametrize("fault_type", sorted(METRIC_EVIDENCE))
def test_the_culprits_metric_moves_most(tmp_path, fault_type):
    store = one_fault(tmp_path, fault_type)
    (case,) = store.cases()
    assert case.truth.level == LEVEL_OF[fault_type]
    ratios = metric_ratios(store, METRIC_EVIDENCE[fault_type])
    strongest = max(ratios, key=ratios.get)
    assert strongest == case.truth.entity, (
        strongest,
        ratios[strongest],
        ratios.get(case.truth.entity),
    )
    assert ratios[strongest] > 1.5


def line_counts(store: TelemetryStore, service: str, needle: str) -> tuple[int, int]:
    """Lines of `service` containing `needle`: (in the fault window, in as long before it)."""
    (case,) = store.cases()
    span = case.window_end - case.inject_time
    row = store.query(
        "SELECT count(*) FILTER (WHERE time >= ? AND time < ?) AS on_, "
        "count(*) FILTER (WHERE time >= ? AND time < ?) AS before FROM logs "
        "WHERE service = ? AND contains(message, ?)",
        [
            case.inject_time,
            case.window_end,
            case.inject_time - span,
            case.inject_time,
            service,
            needle,
        ],
    ).to_pylist()[0]
    return row["on_"], row["before"]


def test_every_service_logs_a_normal_mix_from_code_locations_with_span_ids(tmp_path):
    from thinkfl.simulate.logs import location

    store = one_fault(tmp_path, FaultType.CPU_CONTENTION)
    rows = store.query(
        "SELECT service, count(DISTINCT severity) AS severities, count(*) AS n, "
        "count(span_id) AS with_span, any_value(message) AS example FROM logs "
        "WHERE severity = 'info' AND service != 'frontend' GROUP BY service"
    ).to_pylist()
    system = make_system("boutique", 3)
    assert {r["service"] for r in rows} == set(system.services) - {"frontend"}
    assert all(r["with_span"] == r["n"] > 100 for r in rows)
    located = [r for r in rows if location(r["service"], 1)]
    plain = [r for r in rows if not location(r["service"], 1)]
    assert located and plain  # both ways of grouping lines are exercised
    assert all(r["example"].split()[0].rsplit(":", 1)[1].isdigit() for r in located)
    # every line joins a server span of its own service
    orphans = store.query(
        "SELECT count(*) AS n FROM logs l LEFT JOIN spans s ON l.span_id = s.span_id "
        "AND s.service = l.service WHERE l.span_id IS NOT NULL AND s.span_id IS NULL"
    ).to_pylist()[0]["n"]
    assert orphans == 0


def test_code_exception_silences_a_frequent_info_line_and_fails_the_culprit(tmp_path):
    store = one_fault(tmp_path, FaultType.CODE_EXCEPTION)
    (case,) = store.cases()
    culprit = case.truth.entity
    errors = store.query(
        "SELECT service, avg((status = 'error')::INT) AS rate FROM spans WHERE kind = 'server' "
        "AND start BETWEEN ? AND ? GROUP BY service ORDER BY rate DESC",
        [case.inject_time, case.window_end],
    ).to_pylist()
    assert errors[0]["service"] == culprit and errors[0]["rate"] > 0.3
    on, before = line_counts(store, culprit, "status=OK")
    assert before >= 10 and on < 0.3 * before  # the completion line vanishes
    arrivals_on, arrivals_before = line_counts(store, culprit, "request id=")
    assert arrivals_on > 0.6 * arrivals_before  # while requests keep arriving
    assert line_counts(store, culprit, "NullPointerException")[0] > 5


def test_wrong_return_makes_a_rare_error_line_frequent(tmp_path):
    store = one_fault(tmp_path, FaultType.WRONG_RETURN)
    (case,) = store.cases()
    window = (case.inject_time, case.window_end)
    on, before = line_counts(store, case.truth.entity, "failed validation")
    assert on >= 5 and on > 5 * (before + 1)
    callers = (
        store.query(
            "SELECT DISTINCT service FROM logs WHERE message = ? AND time BETWEEN ? AND ?",
            [f"unexpected response from {case.truth.entity}: validation failed", *window],
        )
        .column("service")
        .to_pylist()
    )
    system = make_system("boutique", 3)
    assert callers and set(callers) <= set(system.callers(case.truth.entity))


@pytest.mark.parametrize(
    ("fault_type", "metric"),
    [
        (FaultType.CPU_CONTENTION, "cpu_usage_percent"),
        (FaultType.MEMORY_EXHAUSTION, "memory_usage_percent"),
        (FaultType.NODE_CPU, "node_cpu_usage_percent"),
    ],
)
def test_resource_faults_pin_the_culprit_at_its_limit(tmp_path, fault_type, metric):
    store = one_fault(tmp_path, fault_type)
    (case,) = store.cases()
    rows = store.query(
        "SELECT entity, min(value) FILTER (WHERE time >= ? AND time < ?) AS low_on, "
        "max(value) AS peak, median(value) FILTER (WHERE time < ?) AS normal "
        "FROM metrics WHERE metric = ? GROUP BY entity",
        [case.inject_time, case.window_end, case.inject_time, metric],
    ).to_pylist()
    by_entity = {r["entity"]: r for r in rows}
    culprit = by_entity[case.truth.entity]
    assert culprit["low_on"] >= 90 and culprit["normal"] < 60
    assert all(r["peak"] <= 100 for r in rows)  # a utilisation never exceeds its limit
    assert all(r["low_on"] < 90 for e, r in by_entity.items() if e != case.truth.entity)


def test_pod_restart_counts_restarts_on_the_culprit_only(tmp_path):
    store = one_fault(tmp_path, FaultType.POD_RESTART)
    (case,) = store.cases()
    restarted = (
        store.query("SELECT DISTINCT entity FROM metrics WHERE metric = 'restarts' AND value > 0.5")
        .column("entity")
        .to_pylist()
    )
    assert restarted == [case.truth.entity]


def own_time_ratio(store: TelemetryStore, pod: str) -> float:
    """Median server-span time of a pod while the fault is on / before it."""
    (case,) = store.cases()
    row = store.query(
        "SELECT median(duration_us) FILTER (WHERE start >= ?) AS on_, "
        "median(duration_us) FILTER (WHERE start < ?) AS before FROM spans "
        "WHERE pod = ? AND kind = 'server' AND start < ?",
        [case.inject_time, case.inject_time, pod, case.window_end],
    ).to_pylist()[0]
    return row["on_"] / row["before"]


def test_cpu_contention_slows_one_replica_and_its_siblings_stay_healthy(tmp_path):
    store = one_fault(tmp_path, FaultType.CPU_CONTENTION, seed=11)
    (case,) = store.cases()
    culprit = case.truth.entity
    siblings = [
        e.name
        for e in store.entities().values()
        if e.level == Level.POD and e.service == case.truth.service and e.name != culprit
    ]
    assert siblings, "pick a seed whose culprit has replicas"
    assert own_time_ratio(store, culprit) > 3
    for sibling in siblings:
        assert own_time_ratio(store, sibling) < 1.5


def test_network_delay_shows_on_the_callers_side(tmp_path):
    store = one_fault(tmp_path, FaultType.NETWORK_DELAY, seed=5)
    (case,) = store.cases()
    culprit = case.truth.entity
    # the culprit's own server spans keep their normal time...
    assert own_time_ratio(store, culprit) < 1.5
    # ...while the client spans calling into it (on other pods) grow by the delay
    grown = store.query(
        "SELECT median(c.duration_us - s.duration_us) FILTER (WHERE c.start >= ?) AS on_, "
        "median(c.duration_us - s.duration_us) FILTER (WHERE c.start < ?) AS before "
        "FROM spans s JOIN spans c ON s.parent_id = c.span_id WHERE s.pod = ? AND s.kind = 'server'",
        [case.inject_time, case.inject_time, culprit],
    ).to_pylist()[0]
    assert grown["on_"] > grown["before"] + 100_000  # > 100 ms more on the caller's side


def test_every_fault_type_in_a_realistic_run(tmp_path):
    settings = SimulationSettings(difficulty=PRESETS["realistic"], **FAST)
    store = TelemetryStore.open(simulate(tmp_path / "r", 22, 2, settings))
    cases = store.cases()
    assert len(cases) == 22
    assert {c.truth.fault_type for c in cases} == {t.value for t in FaultType}
    assert {c.truth.level for c in cases} == {Level.SERVICE, Level.POD, Level.NODE}
    starts = sorted(c.inject_time for c in cases)
    assert all(b - a >= timedelta(seconds=840) for a, b in itertools.pairwise(starts))


def test_a_thousand_service_system(tmp_path):
    system = make_system("generated:1000", 1)
    assert len(system.services) == 1000 and len(system.nodes) >= 100
    settings = SimulationSettings(
        system="generated:1000",
        request_rate=0.2,
        **{k: v for k, v in FAST.items() if k != "request_rate"},
    )
    store = TelemetryStore.open(simulate(tmp_path / "big", 2, 1, settings))
    assert len(store.cases()) == 2
    assert sum(e.level == Level.SERVICE for e in store.entities().values()) > 100


def test_export_then_ingest_reproduces_the_dataset(tmp_path):
    from thinkfl.telemetry import ingest
    from thinkfl.telemetry.export import export_aiops2022

    original = TelemetryStore.open(simulate(tmp_path / "sim", 3, 4, SimulationSettings(**FAST)))
    export_aiops2022(original, tmp_path / "export")
    ingest("aiops2022", tmp_path / "export", tmp_path / "back")
    back = TelemetryStore.open(tmp_path / "back")
    queries = {  # compared at the layout's resolution: span starts in ms, log times in s
        "spans": "SELECT trace_id, span_id, parent_id, service, pod, node, operation, "
        "epoch_us(start) // 1000, duration_us, status FROM spans ORDER BY span_id",
        "metrics": "SELECT level, entity, metric, time, value FROM metrics ORDER BY ALL",
        "logs": "SELECT epoch(time)::BIGINT, service, pod, node, severity, message FROM logs ORDER BY ALL",
        "entities": "SELECT level, name, service, node FROM entities ORDER BY ALL",
    }
    for name, sql in queries.items():
        assert original.query(sql).to_pylist() == back.query(sql).to_pylist(), name
    truth = sorted(
        (f.time, f.truth.level, f.truth.entity, f.truth.fault_type) for f in original.faults()
    )
    assert truth == sorted(
        (f.time, f.truth.level, f.truth.entity, f.truth.fault_type) for f in back.faults()
    )


def test_nezha_export_round_trips_what_the_layout_carries(tmp_path):
    from thinkfl.telemetry import ingest
    from thinkfl.telemetry.export import export_nezha

    pod_and_service_faults = [t for t in FaultType if LEVEL_OF[t] != Level.NODE]
    settings = SimulationSettings(system="trainticket", fault_types=pod_and_service_faults, **FAST)
    original = TelemetryStore.open(simulate(tmp_path / "sim", 3, 4, settings))
    export_nezha(original, tmp_path / "export")
    ingest("nezha", tmp_path / "export", tmp_path / "back")
    back = TelemetryStore.open(tmp_path / "back")
    queries = {
        "spans": "SELECT trace_id, span_id, parent_id, service, pod, operation, start, duration_us "
        "FROM spans ORDER BY span_id",
        "logs": "SELECT time, service, pod, severity, message FROM logs ORDER BY ALL",
        "pod metrics": "SELECT entity, metric, time, value FROM metrics "
        "WHERE level = 'pod' AND metric NOT ILIKE 'node%' ORDER BY ALL",
    }
    for name, sql in queries.items():
        assert original.query(sql).to_pylist() == back.query(sql).to_pylist(), name
    # Nezha labels are pods lifted to their service
    assert sorted(
        (f.time, f.truth.service, f.truth.fault_type) for f in original.faults()
    ) == sorted((f.time, f.truth.entity, f.truth.fault_type) for f in back.faults())


def test_nezha_export_refuses_stores_without_nezha_pod_names(tmp_path):
    from thinkfl.telemetry import StoreError
    from thinkfl.telemetry.export import export_nezha

    store = TelemetryStore.open(simulate(tmp_path / "sim", 1, 4, SimulationSettings(**FAST)))
    with pytest.raises(StoreError, match="does not follow Nezha's naming"):
        export_nezha(store, tmp_path / "export")
    assert not (tmp_path / "export").exists()
