"""A network delay on the link into one service, exported by the real OpenTelemetry SDK.

Two callers (`web`, `mobile`) each call `stock` and `auth`. For four minutes every request
into `stock` waits 150 ms on the wire: inside the caller's client span, before `stock`'s
server span starts; `stock`'s own spans stay normal and so do both callers' calls to
`auth`. The link's callee is what failed (its sidecar, its queue, its network): it must be
ranked first however the stack writes its spans: with real span kinds, with every span
INTERNAL (the SDK's default kind), and with no client spans at all (a server span parents
the callee's server span).
"""

from __future__ import annotations

import json
import random
from functools import partial

import pytest
from typer.testing import CliRunner

from thinkfl.cli import app
from thinkfl.evidence import evidence_for
from thinkfl.telemetry import TelemetryStore

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from test_otel_sdk import captured_export

T0 = 1_700_000_000_000_000_000  # ns
REQUESTS, EVERY_S = 1600, 2.0  # about 53 minutes of traffic, alternating web and mobile
DELAY_FROM, DELAY_TO = 1200, 1320  # four minutes of a 150 ms delay on the link into stock
DELAY_MS = 150.0
MS = 1_000_000


def run_program(endpoint: str, shape: str, fault: str) -> None:
    """shape: `kinds` (SERVER/CLIENT as instrumentation writes them), `internal` (every span
    INTERNAL) or `no-client` (no client spans: the caller's server span parents the callee's).
    fault: `link` (the wire into stock is slow) or `caller` (web itself works 150 ms longer
    before it calls stock: the negative control, the same idle time seen by one caller)."""
    rng = random.Random(11)
    names = ("web", "mobile", "stock", "auth")
    providers = {n: TracerProvider(resource=Resource.create({"service.name": n})) for n in names}
    for provider in providers.values():
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracers = {n: p.get_tracer("toy") for n, p in providers.items()}

    def kind(real: SpanKind) -> SpanKind:
        return SpanKind.INTERNAL if shape == "internal" else real

    def call(caller: str, callee: str, at: int, wire_ms: float, work_ms: float) -> int:
        """One call from `caller` into `callee` starting at `at`; returns when it ends."""
        client = None
        if shape != "no-client":
            client = tracers[caller].start_span(
                f"{callee}.call", kind=kind(SpanKind.CLIENT), start_time=at
            )
        parent = trace.use_span(client, end_on_exit=False) if client else None
        half = int(wire_ms / 2 * MS)
        server_start = at + half
        if parent:
            parent.__enter__()
        server = tracers[callee].start_span(
            f"{callee}.handle", kind=kind(SpanKind.SERVER), start_time=server_start
        )
        server_end = server_start + int(work_ms * MS)
        server.end(end_time=server_end)
        if parent:
            parent.__exit__(None, None, None)
        end = server_end + half
        if client:
            client.end(end_time=end)
        return end

    for index in range(REQUESTS):
        caller = ("web", "mobile")[index % 2]
        start = T0 + int(index * EVERY_S * 1e9)
        faulty = DELAY_FROM <= index < DELAY_TO
        delayed, busy = faulty and fault == "link", faulty and fault == "caller" and caller == "web"
        root = tracers[caller].start_span(
            f"GET /{caller}", kind=kind(SpanKind.SERVER), start_time=start
        )
        with trace.use_span(root, end_on_exit=False):
            at = start + int(rng.uniform(0.5, 1.0) * MS)
            at = call(caller, "auth", at, rng.uniform(0.4, 0.8), rng.uniform(1, 2))
            at += int((rng.uniform(0.2, 0.5) + (DELAY_MS if busy else 0.0)) * MS)
            wire = rng.uniform(0.4, 0.8) + (DELAY_MS if delayed else 0.0)
            at = call(caller, "stock", at, wire, rng.uniform(2, 4))
        root.end(end_time=at + int(rng.uniform(0.5, 1.0) * MS))
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()


@pytest.mark.parametrize("shape", ["kinds", "internal", "no-client"])
@pytest.mark.parametrize(("fault", "culprit"), [("link", "stock"), ("caller", "web")])
def test_a_delay_on_the_link_into_a_service_blames_the_callee(tmp_path, shape, fault, culprit):
    source = captured_export(tmp_path / "otlp", partial(run_program, shape=shape, fault=fault))
    runner = CliRunner()
    store = tmp_path / "store"
    ingested = runner.invoke(app, ["ingest", "otlp", str(source), "--out", str(store)])
    assert ingested.exit_code == 0, ingested.output
    opened = TelemetryStore.open(store)
    cases = opened.cases()
    delay_from, delay_to = (T0 / 1e9 + i * EVERY_S for i in (DELAY_FROM, DELAY_TO))
    assert cases, ingested.output  # the incident is found without labels
    for case in cases:  # ... where the delay was
        assert case.window_start.timestamp() < delay_to and case.window_end.timestamp() > delay_from
    for case in cases:
        evidence = evidence_for(opened, case)
        assert evidence.scores[0].key == ("service", culprit), evidence.scores[:3]
        shown = runner.invoke(app, ["localize", str(store), "--case", case.case_id, "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["ranking"][0] == {"level": "service", "name": culprit}
