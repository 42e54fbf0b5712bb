"""The OTLP/JSON adapter on hand-written collector file-exporter output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conftest import write
from thinkfl.telemetry import Level, TelemetryStore, ingest

NS = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC


def attrs(**values: str) -> list[dict]:
    return [{"key": k.replace("_", "."), "value": {"stringValue": v}} for k, v in values.items()]


def resource(service: str, pod: str | None = None, node: str | None = None) -> dict:
    values = {"service_name": service}
    if pod:
        values["k8s_pod_name"] = pod
    if node:
        values["k8s_node_name"] = node
    return {"attributes": attrs(**values)}


TRACES = {
    "resourceSpans": [
        {
            "resource": resource("checkout", "checkout-7d9f8c6b5-abcde", "worker-1"),
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "",
                            "name": "POST /checkout",
                            "kind": 2,
                            "startTimeUnixNano": str(NS),
                            "endTimeUnixNano": str(NS + 250_000_000),
                            "status": {"code": 2, "message": "payment failed"},
                        },
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "AAA19B7EC3C1B175",
                            "parentSpanId": "EEE19B7EC3C1B174",
                            "name": "charge",
                            "kind": "SPAN_KIND_CLIENT",
                            "startTimeUnixNano": str(NS + 1_000_000),
                            "endTimeUnixNano": str(NS + 201_000_000),
                            "status": {},
                        },
                    ]
                }
            ],
        }
    ]
}
METRICS = {
    "resourceMetrics": [
        {
            "resource": resource("checkout", "checkout-7d9f8c6b5-abcde", "worker-1"),
            "scopeMetrics": [
                {
                    "metrics": [
                        {
                            "name": "container.cpu.utilization",
                            "gauge": {"dataPoints": [{"timeUnixNano": str(NS), "asDouble": 0.93}]},
                        },
                        {
                            "name": "http.server.duration",
                            "histogram": {
                                "dataPoints": [
                                    {
                                        "timeUnixNano": str(NS),
                                        "count": "4",
                                        "sum": 1.0,
                                        "attributes": attrs(http_route="/checkout"),
                                    }
                                ]
                            },
                        },
                    ]
                }
            ],
        },
        {
            "resource": {"attributes": attrs(host_name="worker-1")},
            "scopeMetrics": [
                {
                    "metrics": [
                        {
                            "name": "system.memory.usage",
                            "sum": {"dataPoints": [{"timeUnixNano": str(NS), "asInt": "2048"}]},
                        }
                    ]
                }
            ],
        },
    ]
}
LOGS = {
    "resourceLogs": [
        {
            "resource": resource("checkout", "checkout-7d9f8c6b5-abcde"),
            "scopeLogs": [
                {
                    "logRecords": [
                        {
                            "timeUnixNano": str(NS + 200_000_000),
                            "severityNumber": 17,
                            "body": {"stringValue": "payment declined: upstream 503"},
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "AAA19B7EC3C1B175",
                        },
                        {
                            "observedTimeUnixNano": str(NS + 300_000_000),
                            "severityText": "Warning",
                            "body": {"kvlistValue": {"values": attrs(event="retry")}},
                        },
                    ]
                }
            ],
        }
    ]
}


@pytest.fixture()
def otlp_dir(tmp_path):
    root = tmp_path / "otel"
    lines = "\n".join(json.dumps(x) for x in (TRACES, METRICS, LOGS))
    write(root / "export.jsonl", lines + "\n")
    write(
        root / "faults.csv",
        """
        time,level,entity,fault_type
        2023-11-14T22:13:19Z,pod,checkout-7d9f8c6b5-abcde,cpu
        """,
    )
    return root


def test_spans_metrics_logs_and_labels(otlp_dir, tmp_path):
    result = ingest("otlp", otlp_dir, tmp_path / "s")
    assert result.counts == {
        "spans": 2,
        "metrics": 4,
        "logs": 2,
        "entities": 3,
        "faults": 1,
        "cases": 1,
    }
    store = TelemetryStore.open(tmp_path / "s")
    root = store.span("eee19b7ec3c1b174")
    assert root == {
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "parent_id": None,
        "service": "checkout",
        "pod": "checkout-7d9f8c6b5-abcde",
        "node": "worker-1",
        "operation": "POST /checkout",
        "start": datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        "duration_us": 250_000,
        "status": "error",
        "kind": "server",
    }
    (child,) = store.children("eee19b7ec3c1b174").to_pylist()
    assert (child["kind"], child["status"], child["duration_us"]) == ("client", "unset", 200_000)
    samples = store.query("SELECT level, entity, metric, value FROM metrics").to_pylist()
    assert sorted(tuple(r.values()) for r in samples) == [
        ("node", "worker-1", "system.memory.usage", 2048.0),
        ("pod", "checkout-7d9f8c6b5-abcde", "container.cpu.utilization", 0.93),
        (
            "pod",
            "checkout-7d9f8c6b5-abcde",
            "http.server.duration.count{http.route=/checkout}",
            4.0,
        ),
        (
            "pod",
            "checkout-7d9f8c6b5-abcde",
            "http.server.duration.mean{http.route=/checkout}",
            0.25,
        ),
    ]
    logs = store.query("SELECT severity, message, span_id FROM logs ORDER BY time").to_pylist()
    assert logs == [
        {
            "severity": "error",
            "message": "payment declined: upstream 503",
            "span_id": "aaa19b7ec3c1b175",
        },
        {"severity": "warn", "message": '{"event": "retry"}', "span_id": None},
    ]
    (case,) = store.cases()
    assert case.truth.level == Level.POD and case.truth.service == "checkout"
    assert case.entry_status == "error" and case.anomaly == "strong"


def test_pretty_printed_single_document(tmp_path):
    write(tmp_path / "otel" / "traces.json", json.dumps(TRACES, indent=2))
    result = ingest("otlp", tmp_path / "otel", tmp_path / "s")
    assert result.counts["spans"] == 2 and result.counts["faults"] == 0
