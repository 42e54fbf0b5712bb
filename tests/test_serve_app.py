"""The server's rules in-process (FastAPI's TestClient): a full queue answers 429 and drops
nothing, the result webhook receives the finished investigation, /docs needs the token,
a public address needs a token, and the report page is written by `thinkfl report` and
`thinkfl localize --html`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from thinkfl.agent import ExpertPolicy, Reply
from thinkfl.cli import app as cli
from thinkfl.serve.app import ServeSettings, create_app
from thinkfl.telemetry import TelemetryStore, ingest

DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"
AUTH = {"Authorization": "Bearer t0k"}


class Gate:
    """A policy that waits until released, then answers like the expert."""

    name = "gated"
    native_tools = False

    def __init__(self) -> None:
        self.open = threading.Event()
        self.expert = ExpertPolicy()

    def respond(self, turn) -> Reply:
        self.open.wait(30)
        return self.expert.respond(turn)


def demo_store(tmp_path: Path) -> tuple[Path, str]:
    ingest("aiops2022", DEMO, tmp_path / "store")
    return tmp_path / "store", TelemetryStore.open(tmp_path / "store").cases()[0].case_id


def test_a_full_queue_answers_429_and_keeps_what_it_accepted(tmp_path):
    store, case_id = demo_store(tmp_path)
    gate = Gate()
    settings = ServeSettings(store=store, token="t0k", workers=1, queue_size=2)
    with TestClient(create_app(settings, lambda: gate)) as client:
        answers = [
            client.post("/v1/investigations", json={"case_id": case_id}, headers=AUTH)
            for _ in range(5)
        ]
        codes = [a.status_code for a in answers]
        # one running, two waiting; the rest refused with a reason
        assert codes.count(202) == 3 and codes.count(429) == 2, codes
        assert "retry later" in answers[-1].json()["error"]
        gate.open.set()
        accepted = [a.json()["id"] for a in answers if a.status_code == 202]
        for investigation_id in accepted:
            client.app.state.investigations.wait(investigation_id, 60)
        listed = client.get("/v1/investigations", headers=AUTH).json()
        assert sorted(i["id"] for i in listed) == sorted(accepted)
        assert all(i["status"] == "done" and i["causes"] for i in listed)
        assert client.get("/docs").status_code == 401
        assert client.get("/docs", headers=AUTH).status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}


def test_the_result_webhook_receives_the_finished_investigation(tmp_path):
    store, case_id = demo_store(tmp_path)
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/results"
    settings = ServeSettings(store=store, result_webhook=url)
    try:
        with TestClient(create_app(settings, ExpertPolicy)) as client:
            made = client.post("/v1/investigations", json={"case_id": case_id}).json()
            client.app.state.investigations.wait(made["id"], 60)
            for _ in range(100):
                if received:
                    break
                threading.Event().wait(0.05)
    finally:
        hook.shutdown()
    (result,) = received
    assert result["id"] == made["id"] and result["status"] == "done"
    assert result["causes"][0] == {"level": "pod", "name": "cartservice-1"}  # the label


def test_a_public_address_needs_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("THINKFL_API_TOKEN", raising=False)
    refused = CliRunner().invoke(
        cli, ["serve", "--store", str(tmp_path / "s"), "--host", "0.0.0.0"]
    )
    assert refused.exit_code == 2
    assert "needs a bearer token" in refused.stderr and not (tmp_path / "s").exists()


def test_report_and_localize_write_the_same_self_contained_page(tmp_path):
    store, case_id = demo_store(tmp_path)
    runner = CliRunner()
    written = runner.invoke(
        cli, ["report", str(store), "--case", case_id, "--out", str(tmp_path / "r.html")]
    )
    assert written.exit_code == 0, written.output
    shown = runner.invoke(
        cli, ["localize", str(store), "--case", case_id, "--html", str(tmp_path / "l.html")]
    )
    assert shown.exit_code == 0, shown.output
    for page in (tmp_path / "r.html", tmp_path / "l.html"):
        html = page.read_text()
        assert '<td class="name">cartservice-1</td>' in html and "<details" in html
        assert "http://" not in html and "https://" not in html  # nothing fetched from outside
