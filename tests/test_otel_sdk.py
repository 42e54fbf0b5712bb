"""End to end with the real OpenTelemetry SDK: a toy three-service program instrumented with
`opentelemetry-sdk`, exported over OTLP/HTTP (protobuf) to a capture endpoint on 127.0.0.1
that writes OTLP JSON lines the way the Collector's file exporter does (hex ids); one
service is slow and failing for a few minutes. No labels: `thinkfl ingest otlp` must find
that incident by itself and `thinkfl localize` must rank the injected service first.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinkfl.cli import app

pytest.importorskip("opentelemetry.sdk")
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

T0 = 1_700_000_000_000_000_000  # ns
REQUESTS, EVERY_S = 2000, 2.0  # about 67 minutes of traffic
SLOW_FROM, SLOW_TO = 1500, 1620  # requests 1500..1619: cart slow and failing (4 minutes)
HEX_FIELDS = ("traceId", "spanId", "parentSpanId")


class Capture(BaseHTTPRequestHandler):
    """OTLP/HTTP receiver writing each export as one OTLP JSON line, ids in hex."""

    out: Path

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        payload = MessageToDict(request)
        for resource_spans in payload.get("resourceSpans", []):
            for scope in resource_spans.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    for field in HEX_FIELDS:
                        if span.get(field):
                            span[field] = base64.b64decode(span[field]).hex()
        with self.out.open("a", encoding="utf-8") as file:
            file.write(json.dumps(payload) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def run_toy_program(endpoint: str, headers: dict[str, str] | None = None) -> None:
    rng = random.Random(7)
    providers = {
        name: TracerProvider(resource=Resource.create({"service.name": name}))
        for name in ("frontend", "cart", "db")
    }
    for provider in providers.values():
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    tracers = {name: provider.get_tracer("toy") for name, provider in providers.items()}
    for index in range(REQUESTS):
        start = T0 + int(index * EVERY_S * 1e9)
        broken = SLOW_FROM <= index < SLOW_TO
        db_ms = rng.uniform(2, 4)
        cart_ms = rng.uniform(3, 6) + (250 if broken else 0)
        root = tracers["frontend"].start_span("GET /cart", start_time=start)
        with trace.use_span(root, end_on_exit=False):
            cart = tracers["cart"].start_span("GetCart", start_time=start + 1_000_000)
            with trace.use_span(cart, end_on_exit=False):
                db = tracers["db"].start_span("SELECT cart", start_time=start + 2_000_000)
                db.end(end_time=start + 2_000_000 + int(db_ms * 1e6))
            if broken:
                cart.set_status(Status(StatusCode.ERROR, "cart store timeout"))
            cart_end = start + 2_000_000 + int((db_ms + cart_ms) * 1e6)
            cart.end(end_time=cart_end)
        if broken:
            root.set_status(Status(StatusCode.ERROR, "upstream failed"))
        root.end(end_time=cart_end + int(rng.uniform(1, 2) * 1e6))
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()


def captured_export(folder: Path, program: Callable[[str], None]) -> Path:
    """`program(endpoint)` exports to a capture server on 127.0.0.1; the OTLP JSON lines it
    received land in `folder` (returned), ready for `thinkfl ingest otlp`."""
    folder.mkdir()
    Capture.out = folder / "traces.jsonl"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        program(f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
    finally:
        server.shutdown()
    return folder


def test_real_sdk_export_is_ingested_and_its_incident_found_and_localized(tmp_path):
    source = captured_export(tmp_path / "otlp", run_toy_program)
    runner = CliRunner()
    store = tmp_path / "store"
    ingested = runner.invoke(app, ["ingest", "otlp", str(source), "--out", str(store)])
    assert ingested.exit_code == 0, ingested.output
    assert "6,000 spans" in ingested.output and "1 incident found" in ingested.output
    listed = runner.invoke(app, ["cases", str(store), "--json"])
    (incident,) = json.loads(listed.stdout)
    assert incident["truth"] is None and incident["anomalous_traces"] == SLOW_TO - SLOW_FROM
    localized = runner.invoke(
        app, ["localize", str(store), "--case", incident["case_id"], "--json"]
    )
    assert localized.exit_code == 0, localized.output
    assert json.loads(localized.stdout)["ranking"][0] == {"level": "service", "name": "cart"}
