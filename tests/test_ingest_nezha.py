"""The Nezha adapter on a hand-written day: exact rows out for known rows in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conftest import write
from thinkfl.telemetry import IngestError, Level, TelemetryStore, ingest

T0 = 1674981780  # 2023-01-29 08:43:00 UTC
POD_A = "ts-alpha-service-5dc8d4f9fd-46997"
POD_GW = "ts-gateway-service-6f6cfc45b-h5m2n"


def ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@pytest.fixture()
def nezha_day(tmp_path):
    day = tmp_path / "nezha" / "rca_data" / "2023-01-29"
    trace_rows = f"""
        TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration
        t1,s1,root,{POD_GW},/*,{ns(T0 + 10)},{ns(T0 + 10.5)},500000
        t1,s2,s1,{POD_GW},HTTP POST,{ns(T0 + 10.1)},{ns(T0 + 10.4)},300000
        t1,s3,s2,{POD_A},/api/v1/alpha/run,{ns(T0 + 10.2)},{ns(T0 + 10.3)},100000
        t1,s4,s3,{POD_A},SELECT ts.alpha,{ns(T0 + 10.25)},{ns(T0 + 10.26)},10000
        """
    write(day / "trace" / "08_43_trace.csv", trace_rows)
    # The next minute's file repeats s3 (overlapping exports) and adds a second trace.
    write(
        day / "trace" / "08_44_trace.csv",
        f"""
        TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration
        t1,s3,s2,{POD_A},/api/v1/alpha/run,{ns(T0 + 10.2)},{ns(T0 + 10.3)},100000
        t2,s9,root,{POD_GW},/*,{ns(T0 + 70)},{ns(T0 + 70.1)},100000
        """,
    )
    log_json = (
        '"{""log"":""16:43:10.250 ERROR a.AlphaServiceImpl#40 TraceID: t1 SpanID: s3 '
        '[run][failed]\\n"",""stream"":""stdout""}"'
    )
    info_json = '"{""log"":""16:43:10.100 INFO  g.Gateway#1 [route]\\n"",""stream"":""stdout""}"'
    write(
        day / "log" / "08_43_log.csv",
        f"""
        Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log
        x,{ns(T0 + 10.25)},10.0.0.2,{POD_A},server,t1,s3,{log_json}
        x,{ns(T0 + 10.1)},10.0.0.1,{POD_GW},server,,,{info_json}
        """,
    )
    write(
        day / "metric" / f"{POD_A}_metric.csv",
        f"""
        Time,TimeStamp,PodName,CpuUsageRate(%),PodServerLatencyP90(s),NodeCpuUsageRate(%)
        2023-01-29 08:43:00 +0000 UTC m=+0.9,{T0},{POD_A},12.5,0.02,40.0
        2023-01-29 08:44:00 +0000 UTC m=+60.9,{T0 + 60},{POD_A},97.0,NaN,41.0
        """,
    )
    write(
        day / "metric" / "front_service.csv",
        f"""
        Time,TimeStamp,ServiceName,SuccessRate(%),LatencyP50(s)
        2023-01-29 08:43:00 +0000 UTC m=+0.1,{T0},Frontend,100,0.05
        """,
    )
    write(
        day / "2023-01-29-fault_list.json",
        f"""
        {{"08": [{{"inject_time": "2023-01-29 08:43:04", "inject_timestamp": "1674953044",
                  "inject_pod": "{POD_A}", "inject_type": "exception"}}]}}
        """,
    )
    return tmp_path / "nezha"


def test_spans_are_deduplicated_typed_and_placed(nezha_day, tmp_path):
    result = ingest("nezha", nezha_day, tmp_path / "store")
    assert result.counts["spans"] == 5  # 6 rows in, one exact duplicate
    store = TelemetryStore.open(tmp_path / "store")
    spans = {row["span_id"]: row for row in store.query("SELECT * FROM spans").to_pylist()}
    assert spans["s1"] == {
        "trace_id": "t1",
        "span_id": "s1",
        "parent_id": None,
        "service": "ts-gateway-service",
        "pod": POD_GW,
        "node": "10.0.0.1",
        "operation": "/*",
        "start": datetime(2023, 1, 29, 8, 43, 10, tzinfo=UTC),
        "duration_us": 500000,
        "status": "unset",
        "kind": "server",
    }
    assert spans["s2"]["kind"] == "client"
    assert spans["s4"]["kind"] == "client"  # SQL statement
    assert spans["s3"]["service"] == "ts-alpha-service"
    assert spans["s3"]["node"] == "10.0.0.2"
    assert [r["span_id"] for r in store.children("s2").to_pylist()] == ["s3"]
    assert [r["span_id"] for r in store.children("s1").to_pylist()] == ["s2"]


def test_logs_keep_the_application_line_and_its_severity(nezha_day, tmp_path):
    ingest("nezha", nezha_day, tmp_path / "store")
    store = TelemetryStore.open(tmp_path / "store")
    logs = store.query("SELECT * FROM logs ORDER BY time").to_pylist()
    assert [(r["pod"], r["severity"]) for r in logs] == [(POD_GW, "info"), (POD_A, "error")]
    assert logs[1]["message"] == (
        "a.AlphaServiceImpl#40 TraceID: t1 SpanID: s3 [run][failed]"  # clock and level have columns
    )
    assert (logs[1]["trace_id"], logs[1]["span_id"]) == ("t1", "s3")
    assert (logs[0]["trace_id"], logs[0]["span_id"]) == (None, None)


def test_metrics_split_pod_node_and_service_levels_without_nan(nezha_day, tmp_path):
    ingest("nezha", nezha_day, tmp_path / "store")
    store = TelemetryStore.open(tmp_path / "store")
    rows = store.query("SELECT level, entity, metric, epoch(time)::BIGINT t, value FROM metrics")
    got = sorted(tuple(r.values()) for r in rows.to_pylist())
    assert got == sorted(
        [
            ("pod", POD_A, "CpuUsageRate(%)", T0, 12.5),
            ("pod", POD_A, "CpuUsageRate(%)", T0 + 60, 97.0),
            ("pod", POD_A, "PodServerLatencyP90(s)", T0, 0.02),  # the NaN sample is dropped
            ("node", "10.0.0.2", "NodeCpuUsageRate(%)", T0, 40.0),
            ("node", "10.0.0.2", "NodeCpuUsageRate(%)", T0 + 60, 41.0),
            # front_service.csv belongs to the entry service (the root spans' service)
            ("service", "ts-gateway-service", "SuccessRate(%)", T0, 100.0),
            ("service", "ts-gateway-service", "LatencyP50(s)", T0, 0.05),
        ]
    )


def test_entities_and_labels(nezha_day, tmp_path):
    ingest("nezha", nezha_day, tmp_path / "store")
    store = TelemetryStore.open(tmp_path / "store")
    entities = store.entities()
    assert entities[POD_A].service == "ts-alpha-service"
    assert entities[POD_A].node == "10.0.0.2"
    assert entities["10.0.0.1"].level == Level.NODE
    assert entities["ts-gateway-service"].level == Level.SERVICE
    (fault,) = store.faults()
    assert fault.time == datetime(2023, 1, 29, 8, 43, 4, tzinfo=UTC)  # inject_time as UTC
    assert fault.truth.level == Level.SERVICE
    assert fault.truth.entity == "ts-alpha-service"
    assert fault.truth.pod == POD_A
    assert fault.truth.fault_type == "exception"
    (case,) = store.cases()
    assert case.fault_id == fault.fault_id == "nezha-20230129-084304"
    # Both entry spans fall in the window and no fault-free entry exists, so the baseline is
    # the median of all entries (300 ms): s1 is 1.67x, s9 0.33x; neither reaches 5x.
    assert case.entry_span_id == "s1"
    assert case.anomaly == "weak"
    assert case.latency_ratio == pytest.approx(500000 / 300000, abs=1e-3)


@pytest.fixture()
def boutique_day(nezha_day):
    """The hand-written day in the Online Boutique layout: a call graph, per-edge latency
    files (one with an epoch 8 h off its text time), and a file the format does not know."""
    metric = nezha_day / "rca_data" / "2023-01-29" / "metric"
    write(
        metric / "dependency.csv",
        """
        Source,Target,Weight
        ts-gateway-service,ts-alpha-service,3
        """,
    )
    pair = "ts-gateway-service_ts-alpha-service"
    write(
        metric / "source_50.csv",
        f"""
        time,timestamp,{pair}
        2023-01-29 08:43:00,{T0},0.05
        2023-01-29 08:44:00,{T0 + 60},NaN
        """,
    )
    write(
        metric / "destination_50.csv",
        f"""
        time,timestamp,{pair}
        2023-01-29 08:43:00,{T0 - 8 * 3600},0.07
        """,
    )
    write(metric / "notes.csv", "anything,else\n1,2\n")
    return nezha_day


def test_online_boutique_layout_keeps_call_graph_and_edge_latencies(boutique_day, tmp_path):
    result = ingest("nezha", boutique_day, tmp_path / "store")
    store = TelemetryStore.open(tmp_path / "store")
    assert store.call_graph() == [("ts-gateway-service", "ts-alpha-service", 3.0)]
    rows = store.query(
        "SELECT entity, metric, epoch(time)::BIGINT t, value FROM metrics "
        "WHERE metric LIKE 'latency_%' ORDER BY metric"
    ).to_pylist()
    assert [tuple(r.values()) for r in rows] == [
        # the epoch column is 8 h off the traces: the text time is used
        ("ts-alpha-service", "latency_destination_50_from_ts-gateway-service", T0, 0.07),
        ("ts-alpha-service", "latency_source_50_from_ts-gateway-service", T0, 0.05),
    ]
    unknown = boutique_day / "rca_data" / "2023-01-29" / "metric" / "notes.csv"
    assert result.skipped_files == [str(unknown)]
    assert store.manifest.skipped_files == [str(unknown)]
    (note,) = store.manifest.notes
    assert "destination_50.csv" in note and "disagree by 28800 s" in note
    assert "used 'time'" in note


def test_impossible_rows_are_left_out_and_listed(nezha_day, tmp_path):
    day = nezha_day / "rca_data" / "2023-01-29"
    write(
        day / "trace" / "08_45_trace.csv",
        f"""
        TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration
        t3,s20,root,{POD_GW},/*,{ns(T0 + 20)},{ns(T0 + 20.1)},-5
        ,s21,root,{POD_GW},/*,{ns(T0 + 21)},{ns(T0 + 21.1)},100
        t1,s3,s2,{POD_A},/api/v1/alpha/run,{ns(T0 + 10.2)},{ns(T0 + 10.9)},700000
        t4,s22,root,{POD_GW},/*,-99999999999,0,100
        """,
    )
    result = ingest("nezha", nezha_day, tmp_path / "store")
    reasons = {(r.table, r.reason): r.count for r in result.rejected_rows}
    assert reasons == {
        ("spans", "negative duration"): 1,
        ("spans", "trace_id missing"): 1,
        ("spans", "start missing or outside 1970-01-01..2262-04-11"): 1,
        (
            "spans",
            "same (trace_id, span_id) as another row with other content (the earliest is kept)",
        ): 1,
    }
    store = TelemetryStore.open(tmp_path / "store")
    assert store.manifest.rejected_rows == result.rejected_rows
    assert result.counts["spans"] == 5  # the 5 good spans of the fixture, nothing else
    kept = store.query("SELECT duration_us FROM spans WHERE span_id = 's3'").to_pylist()
    assert kept == [{"duration_us": 700000}]  # same start: the longer of the two is kept
    with pytest.raises(IngestError, match=r"spans rows: 1 row\(s\) with trace_id missing"):
        ingest("nezha", nezha_day, tmp_path / "strict", invalid_rows="fail")
    assert not (tmp_path / "strict").exists()


def test_a_fault_listed_twice_is_kept_once_and_reported(nezha_day, tmp_path):
    write(
        nezha_day / "rca_data" / "2023-01-29" / "2023-01-29-fault_list.json",
        f"""
        {{"08": [{{"inject_time": "2023-01-29 08:43:04", "inject_pod": "{POD_A}",
                  "inject_type": "exception"}},
                 {{"inject_time": "2023-01-29 08:43:04", "inject_pod": "{POD_A}",
                  "inject_type": "exception"}}]}}
        """,
    )
    result = ingest("nezha", nezha_day, tmp_path / "store")
    assert [(r.table, r.count, r.examples) for r in result.rejected_rows] == [
        ("faults", 1, ["nezha-20230129-084304"])
    ]
    assert [c.case_id for c in TelemetryStore.open(tmp_path / "store").cases()] == [
        "nezha-20230129-084304"
    ]
