"""The AIOps 2022 adapter on hand-written files: exact rows out for known rows in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conftest import write
from thinkfl.telemetry import Level, TelemetryStore, ingest

T0 = 1647747300  # 2022-03-20 03:35:00 UTC


@pytest.fixture()
def aiops_dir(tmp_path):
    root = tmp_path / "cloudbed"
    write(
        root / "trace" / "all" / "trace_jaeger-span.csv",
        f"""
        timestamp,cmdb_id,span_id,trace_id,duration,type,status_code,operation_name,parent_span
        {(T0 + 40) * 1000 + 0},frontend-2,r1,t1,2500000,http,0,hipstershop.Frontend/Recv.,
        {(T0 + 40) * 1000 + 1},frontend-2,c1,t1,2400000,rpc,0,hipstershop.CartService/GetCart,r1
        {(T0 + 40) * 1000 + 2},cartservice-1,c2,t1,2390000,rpc,14,hipstershop.CartService/GetCart,c1
        {(T0 + 40) * 1000 + 90},frontend-0,r2,t2,1000,http,200,hipstershop.Frontend/Recv.,
        """,
    )
    write(
        root / "log" / "all" / "logs.csv",
        f"""
        log_id,timestamp,cmdb_id,log_name,value
        a1,{T0 + 1},cartservice-1,log_cartservice-service_application,"severity: error, message: redis timeout"
        a2,{T0 + 2},frontend-2,log_frontend-service_application,"{{""level"":""warn"",""msg"":""slow cart""}}"
        a3,{T0 + 3},frontend-2,log_frontend-service_application,plain text without a level
        """,
    )
    write(
        root / "metric" / "container" / "kpi_container_cpu_usage_seconds.csv",
        f"""
        timestamp,cmdb_id,kpi_name,value
        {T0},node-6.cartservice-1,container_cpu_usage_seconds,0.9
        {T0},node-5.frontend-2,container_cpu_usage_seconds,0.1
        {T0 + 60},node-6.cartservice-1,container_cpu_usage_seconds,
        """,
    )
    write(
        root / "metric" / "node" / "kpi_cloudbed1_metric_0320.csv",
        f"""
        timestamp,cmdb_id,kpi_name,value
        {T0},node-6,system.cpu.pct_usage,88.0
        """,
    )
    write(
        root / "metric" / "istio" / "kpi_istio_request_duration.csv",
        f"""
        timestamp,cmdb_id,kpi_name,value
        {T0},node-5.frontend-2.source.frontend.cartservice,istio_request_duration,3.0
        """,
    )
    write(
        root / "metric" / "service" / "metric_service.csv",
        f"""
        service,timestamp,rr,sr,mrt,count
        cartservice-grpc,{T0},100.0,97.5,2390.0,40
        """,
    )
    write(
        root / "groundtruth.csv",
        f"""
        timestamp,level,cmdb_id,failure_type
        {T0 + 30},pod,cartservice-1,k8s容器cpu负载
        {T0 + 31},node,node-6,node节点CPU故障
        """,
    )
    return root


def test_spans_statuses_and_nodes(aiops_dir, tmp_path):
    ingest("aiops2022", aiops_dir, tmp_path / "s")
    store = TelemetryStore.open(tmp_path / "s")
    spans = {r["span_id"]: r for r in store.query("SELECT * FROM spans").to_pylist()}
    assert spans["c2"] == {
        "trace_id": "t1",
        "span_id": "c2",
        "parent_id": "c1",
        "service": "cartservice",
        "pod": "cartservice-1",
        "node": "node-6",
        "operation": "hipstershop.CartService/GetCart",
        "start": datetime(2022, 3, 20, 3, 35, 40, 2000, tzinfo=UTC),
        "duration_us": 2390000,
        "status": "error",  # gRPC code 14 (UNAVAILABLE)
        "kind": "unspecified",
    }
    assert spans["r1"]["parent_id"] is None
    assert spans["r1"]["status"] == "ok"
    assert spans["r2"]["status"] == "ok"  # HTTP 200
    assert spans["r2"]["node"] is None  # frontend-0 has no container KPI: node unknown


def test_logs_metrics_and_entities(aiops_dir, tmp_path):
    ingest("aiops2022", aiops_dir, tmp_path / "s")
    store = TelemetryStore.open(tmp_path / "s")
    logs = store.query("SELECT pod, node, severity, message FROM logs ORDER BY time").to_pylist()
    assert [(r["pod"], r["node"], r["severity"]) for r in logs] == [
        ("cartservice-1", "node-6", "error"),
        ("frontend-2", "node-5", "warn"),
        ("frontend-2", "node-5", "unknown"),
    ]
    assert [r["message"] for r in logs] == [
        "redis timeout",  # the "severity: …, message: …" wrapper is taken apart
        '{"level":"warn","msg":"slow cart"}',
        "plain text without a level",
    ]
    rows = store.query("SELECT level, entity, metric, epoch(time)::BIGINT t, value FROM metrics")
    assert sorted(tuple(r.values()) for r in rows.to_pylist()) == sorted(
        [
            ("pod", "cartservice-1", "container_cpu_usage_seconds", T0, 0.9),
            ("pod", "frontend-2", "container_cpu_usage_seconds", T0, 0.1),
            ("node", "node-6", "system.cpu.pct_usage", T0, 88.0),
            ("service", "cartservice", "rr", T0, 100.0),
            ("service", "cartservice", "sr", T0, 97.5),
            ("service", "cartservice", "mrt", T0, 2390.0),
            ("service", "cartservice", "count", T0, 40.0),
        ]
    )  # the empty value is dropped; the istio edge KPI is not an entity
    entities = store.entities()
    assert entities["cartservice-1"].node == "node-6"
    assert entities["cartservice-1"].service == "cartservice"
    assert entities["node-6"].level == Level.NODE


def test_labels_at_their_own_level(aiops_dir, tmp_path):
    ingest("aiops2022", aiops_dir, tmp_path / "s")
    store = TelemetryStore.open(tmp_path / "s")
    pod_fault, node_fault = store.faults()
    assert (pod_fault.truth.level, pod_fault.truth.entity) == (Level.POD, "cartservice-1")
    assert pod_fault.truth.service == "cartservice"
    assert pod_fault.truth.fault_type == "k8s容器cpu负载"
    assert (node_fault.truth.level, node_fault.truth.entity) == (Level.NODE, "node-6")
    assert node_fault.truth.service is None
    cases = store.cases()
    assert [c.entry_span_id for c in cases] == ["r1", "r1"]
