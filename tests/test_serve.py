"""`thinkfl serve` as a real process on 127.0.0.1: the real OpenTelemetry SDK exports to it,
a recorded Alertmanager payload starts an investigation, headless Chromium reads the report
page, malformed requests are refused and change nothing, and a SIGKILL loses no
acknowledged batch."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.incidents import case_at
from thinkfl.tools import Toolbox

pytest.importorskip("opentelemetry.sdk")
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from test_otel_sdk import REQUESTS, T0, run_toy_program

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m thinkfl serve` in a child process."""

    def __init__(self, store: Path, *extra: str) -> None:
        self.store, self.port = store, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "THINKFL_API_TOKEN": TOKEN}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "thinkfl",
                "serve",
                "--store",
                str(store),
                "--port",
                str(self.port),
                "--max-body-mb",
                "1",
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
            if self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"thinkfl serve did not start: {self.process.stdout.read()[-2000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def export_logs_and_metrics(url: str) -> None:
    """One ERROR log record and one gauge point from the cart service, through the SDK."""
    resource = Resource.create({"service.name": "cart", "k8s.pod.name": "cart-7d9f-x1"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=AUTH))
    )
    logs.get_logger("toy").emit(
        timestamp=T0 + 3_001_000_000_000,
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body="cart store timeout after 250 ms",
    )
    logs.force_flush()
    logs.shutdown()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers=AUTH),
        export_interval_millis=3_600_000,
    )
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    queue = meters.get_meter("toy").create_up_down_counter("cart.queue.length")
    queue.add(42)
    meters.force_flush()
    meters.shutdown()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = tmp_path_factory.mktemp("serve") / "live"
    server = Server(store)
    try:
        run_toy_program(f"{server.url}/v1/traces", headers=AUTH)
        export_logs_and_metrics(server.url)
        yield server
    finally:
        server.stop()


def test_the_sdk_telemetry_lands_in_the_store_and_reads_back_through_the_tools(served):
    store = TelemetryStore.open(served.store)
    assert store.live
    spans = store.query("SELECT count(*) n, count(DISTINCT trace_id) t FROM spans").to_pylist()
    assert spans == [{"n": 3 * REQUESTS, "t": REQUESTS}]
    (log,) = store.query("SELECT service, pod, severity, message FROM logs").to_pylist()
    assert log == {
        "service": "cart",
        "pod": "cart-7d9f-x1",
        "severity": "error",
        "message": "cart store timeout after 250 ms",
    }
    # the SDK exports the cumulative point at force_flush and again at shutdown
    (metric,) = store.query("SELECT DISTINCT level, entity, metric, value FROM metrics").to_pylist()
    assert metric == {
        "level": "pod",
        "entity": "cart-7d9f-x1",
        "metric": "cart.queue.length",
        "value": 42.0,
    }
    # through the tools: the slow request at 1500 (2 s apart from T0) starts at cart
    case = case_at(store, store.query("SELECT min(start) s FROM spans").to_pylist()[0]["s"])
    observation = Toolbox(store, case).call("search_traces", {"parent_span_id": case.entry_span_id})
    assert observation.ok and "cart" in observation.text and "GetCart" in observation.text


def test_an_alert_becomes_a_case_and_an_investigation_naming_the_culprit(served):
    with served.client() as client:
        answer = client.post("/v1/alerts", content=(DATA / "alertmanager-v4.json").read_bytes())
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["resolved"] == 1 and body["skipped"] == []
        (investigation_id,) = body["investigations"]
        for _ in range(600):
            result = client.get(f"/v1/investigations/{investigation_id}").json()
            if result["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert result["status"] == "done", result.get("error")
        assert result["causes"][0] == {"level": "service", "name": "cart"}
        assert result["case"]["case_id"] == "alert-CheckoutLatencyHigh-5f2a9d41c3b7e810"
        cases = client.get("/v1/cases").json()
        assert [c["case_id"] for c in cases] == ["alert-CheckoutLatencyHigh-5f2a9d41c3b7e810"]
        page = client.get(f"/investigations/{investigation_id}")
        assert page.status_code == 200 and "cart" in page.text
    recorded = (served.store / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in recorded] == ["firing", "resolved"]
    served.investigation = investigation_id


def test_headless_chromium_shows_the_tree_the_path_and_the_causes(served, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(
            "chromium not installed (CI installs Debian's chromium; apt-get install chromium)"
        )
    investigation = getattr(served, "investigation", None)
    if investigation is None:
        pytest.skip("needs the alert test's investigation")
    with served.client() as client:
        page = client.get(f"/investigations/{investigation}").text
    file = tmp_path / "report.html"
    file.write_text(page, encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", file.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count("<details") >= 1  # the collapsible call tree
    assert dom.count('class="hop on-path') >= 2  # the entry and the hop the investigator took
    first = dom.split('class="cause', 1)[1]
    assert '<td class="name">cart</td>' in first.split("</tr>", 1)[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", file.as_uri()], capture_output=True, timeout=120
    )
    assert shot.stat().st_size > 10_000


def _otlp_json(trace_id: str = "0af7651916cd43dd8448eb211c80319c", **span: object) -> dict:
    body = {
        "traceId": trace_id,
        "spanId": "b7ad6b7169203331",
        "name": "GET /",
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 10**6),
        **span,
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [body]}]}]}


JSON = {"Content-Type": "application/json"}
PROTO = {"Content-Type": "application/x-protobuf"}
BAD_REQUESTS = [
    # (name, method, path, headers (auth added unless 'noauth'), body, status, says)
    ("no token", "POST", "/v1/traces", {"noauth": "1", **JSON}, b"{}", 401, "bearer token"),
    (
        "wrong token",
        "POST",
        "/v1/traces",
        {"Authorization": "Bearer nope", **JSON},
        b"{}",
        401,
        "bearer token",
    ),
    (
        "bad protobuf",
        "POST",
        "/v1/traces",
        PROTO,
        b"\xff\xff\xff\xff",
        400,
        "ExportTraceServiceRequest",
    ),
    (
        "wrong content type",
        "POST",
        "/v1/traces",
        {"Content-Type": "text/plain"},
        b"hi",
        415,
        "Content-Type",
    ),
    (
        "trace id too short",
        "POST",
        "/v1/traces",
        JSON,
        json.dumps(_otlp_json(trace_id="abc")).encode(),
        400,
        "traceId: 3 characters, expected 32",
    ),
    (
        "span id not hex",
        "POST",
        "/v1/traces",
        JSON,
        json.dumps(_otlp_json(spanId="zzzzzzzzzzzzzzzz")).encode(),
        400,
        "spanId: not hexadecimal",
    ),
    ("huge body", "POST", "/v1/traces", JSON, b" " * (2 * 2**20), 413, "limit"),
    ("json array", "POST", "/v1/traces", JSON, b"[1, 2]", 400, "expected a JSON object"),
    ("invalid json", "POST", "/v1/logs", JSON, b'{"resourceLogs": [', 400, "not valid JSON"),
    (
        "resourceSpans a string",
        "POST",
        "/v1/traces",
        JSON,
        b'{"resourceSpans": "x"}',
        400,
        "'resourceSpans' must be a list",
    ),
    (
        "bad gzip",
        "POST",
        "/v1/traces",
        {**JSON, "Content-Encoding": "gzip"},
        b"not gzip",
        400,
        "not valid gzip",
    ),
    (
        "unknown encoding",
        "POST",
        "/v1/metrics",
        {**JSON, "Content-Encoding": "br"},
        b"{}",
        400,
        "Content-Encoding",
    ),
    (
        "gzip bomb",
        "POST",
        "/v1/traces",
        {**JSON, "Content-Encoding": "gzip"},
        gzip.compress(b" " * (3 * 2**20)),
        413,
        "limit",
    ),
    (
        "alert version 3",
        "POST",
        "/v1/alerts",
        JSON,
        b'{"version": "3", "status": "firing", "alerts": []}',
        400,
        "version",
    ),
    (
        "alert without startsAt",
        "POST",
        "/v1/alerts",
        JSON,
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing"}]}',
        400,
        "alerts.0.startsAt",
    ),
    (
        "alert list empty",
        "POST",
        "/v1/alerts",
        JSON,
        b'{"version": "4", "status": "firing", "alerts": []}',
        400,
        "alerts",
    ),
    (
        "unknown case",
        "POST",
        "/v1/investigations",
        JSON,
        b'{"case_id": "nope"}',
        404,
        "no case 'nope'",
    ),
    ("empty investigation", "POST", "/v1/investigations", JSON, b"{}", 400, "give case_id"),
    (
        "unknown investigation",
        "GET",
        "/v1/investigations/deadbeef",
        {},
        b"",
        404,
        "no investigation",
    ),
    (
        "path outside the store",
        "GET",
        "/investigations/..%2F..%2Fetc%2Fpasswd",
        {},
        b"",
        404,
        "Not Found",
    ),
]


def _state(store: Path) -> tuple:
    batches = sorted(p.name for p in (store / "batches").iterdir())
    cases = (store / "cases.json").read_text() if (store / "cases.json").exists() else ""
    return batches, cases, sorted(p.name for p in (store / "investigations").iterdir())


@pytest.mark.parametrize(
    "name,method,path,headers,body,status,says", BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS]
)
def test_a_malformed_request_gets_a_clear_4xx_and_changes_nothing(
    served, name, method, path, headers, body, status, says
):
    before = _state(served.store)
    sent = {k: v for k, v in headers.items() if k != "noauth"}
    if "noauth" not in headers and "Authorization" not in headers:
        sent.update(AUTH)
    answer = httpx.request(method, served.url + path, headers=sent, content=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert _state(served.store) == before


def test_a_killed_server_keeps_every_acknowledged_batch(tmp_path):
    store = tmp_path / "live"
    server = Server(store)
    acknowledged: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.url, headers={**AUTH, **JSON}, timeout=5) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                trace_id = f"{n:032x}"
                try:
                    answer = client.post("/v1/traces", content=json.dumps(_otlp_json(trace_id)))
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    acknowledged.append(trace_id)

    writer = threading.Thread(target=stream)
    writer.start()
    while len(acknowledged) < 40:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    stop.set()
    writer.join(10)
    restarted = Server(store)  # opens the store as a crashed server left it
    try:
        kept = TelemetryStore.open(store).query("SELECT DISTINCT trace_id FROM spans").to_pylist()
        assert set(acknowledged) <= {row["trace_id"] for row in kept}
        assert not list((store / "batches").glob(".tmp-*"))
    finally:
        restarted.stop()
