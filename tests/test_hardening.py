"""Security and data hardening: identifiers from data never become paths, gzip bodies are
inflated within the limit, no write replaces a special file, and a damaged store never
answers."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from thinkfl.agent import ExpertPolicy, Finish, run_case
from thinkfl.cli import app as cli
from thinkfl.evidence import evidence_for
from thinkfl.files import SpecialFileError, atomic_write, safe_file_name
from thinkfl.serve.app import ServeSettings, create_app
from thinkfl.serve.body import BodyTooLarge, inflate_gzip
from thinkfl.serve.otlp import RequestError
from thinkfl.telemetry import StoreError, TelemetryStore, ingest
from thinkfl.tools import Toolbox

DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"
AUTH = {"Authorization": "Bearer t0k"}
HOSTILE_IDS = ["x/../../../../outside", "../../escape", "a\x00b", "/abs/path", "z" * 200_000]
runner = CliRunner()


def demo_store(folder: Path) -> Path:
    ingest("aiops2022", DEMO, folder / "store")
    return folder / "store"


def files_outside(root: Path, store: Path) -> set[Path]:
    """Paths under `root` that are not inside `store`, from one walk (investigations still
    running in the store may create and remove files while it is walked)."""
    store = store.resolve()
    return {
        p for p in (q.resolve() for q in root.rglob("*")) if p != store and store not in p.parents
    }


@given(st.text(max_size=300))
def test_a_safe_file_name_is_one_bounded_component(identifier):
    name = safe_file_name(identifier, ".json")
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert len(name) <= 80 and name.endswith(".json")
    assert safe_file_name(identifier + "x") != safe_file_name(identifier)


def test_hostile_ids_never_leave_the_store(tmp_path):
    store = demo_store(tmp_path)
    opened = TelemetryStore.open(store)
    case = opened.cases()[0]
    outside_before = files_outside(tmp_path, store)
    # the evidence cache names its file after the case id
    for hostile in HOSTILE_IDS:
        evidence_for(opened, case.model_construct(**{**dict(case), "case_id": hostile}))
    # an alert whose name climbs out of the store
    alert = json.loads((Path(__file__).parent / "data" / "alertmanager-v4.json").read_text())
    for item in alert["alerts"]:
        item["labels"]["alertname"] = HOSTILE_IDS[0]
        item["startsAt"] = case.entry_start.isoformat()
        item["labels"].pop("service", None)
    settings = ServeSettings(store=store, token="t0k")
    with TestClient(create_app(settings, ExpertPolicy)) as client:
        answer = client.post("/v1/alerts", json=alert, headers=AUTH)
        assert answer.status_code in (200, 202), answer.text
        for started in answer.json()["investigations"]:
            assert client.get(f"/v1/investigations/{started}", headers=AUTH).status_code == 200
        for hostile in HOSTILE_IDS[:2]:
            refused = client.post("/v1/investigations", json={"case_id": hostile}, headers=AUTH)
            assert refused.status_code == 400 and "case_id" in refused.json()["error"]
    ids = [c.case_id for c in TelemetryStore.open(store).cases()]
    assert all("/" not in i and ".." not in i for i in ids), ids
    assert files_outside(tmp_path, store) == outside_before


def test_a_hostile_case_id_in_cases_json_is_refused_by_the_cli(tmp_path):
    store = demo_store(tmp_path)
    cases = json.loads((store / "cases.json").read_text())
    cases[0]["case_id"] = HOSTILE_IDS[0]
    (store / "cases.json").write_text(json.dumps(cases))
    result = runner.invoke(cli, ["localize", str(store), "--case", HOSTILE_IDS[0]])
    assert result.exit_code == 2
    assert f"{store}/cases.json: [0].case_id" in result.stderr
    assert not (tmp_path.parent / "outside").exists()


def test_identifiers_too_long_or_with_nul_are_refused_at_ingest(tmp_path):
    from malformed import otlp, span, spans_request

    def request(service: str) -> dict:
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        return spans_request(span(), resource=resource)

    lines = [request("api"), request("a" * 300), request("bad\x00name")]
    for index, line in enumerate(lines):
        line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = f"{index:016x}"
    otlp(tmp_path / "o", "\n".join(json.dumps(line) for line in lines))
    result = ingest("otlp", tmp_path / "o" / "src", tmp_path / "o" / "store")
    assert result.counts["spans"] == 1
    (rejected,) = result.rejected_rows
    assert rejected.count == 2 and "over 256 characters or with control characters" in (
        rejected.reason
    )


def test_gzip_is_inflated_within_the_limit():
    assert inflate_gzip(gzip.compress(b"abc") + gzip.compress(b"de"), 5) == b"abcde"
    with pytest.raises(BodyTooLarge):
        inflate_gzip(gzip.compress(b"x" * 6), 5)
    with pytest.raises(RequestError, match="not valid gzip"):
        inflate_gzip(b"not gzip at all", 100)
    with pytest.raises(RequestError, match="ends early"):
        inflate_gzip(gzip.compress(b"y" * 1000)[:-12], 10_000)


def _bomb(inflated_bytes: int) -> bytes:
    """A gzip body of zeros that inflates to `inflated_bytes` (about 1 MB per GB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(inflated_bytes >> 20)]
    return b"".join(parts) + packer.flush()


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


@pytest.mark.slow
def test_a_gzip_bomb_is_refused_without_growing_the_server(tmp_path):
    from test_serve import AUTH as SERVER_AUTH
    from test_serve import Server

    server = Server(tmp_path / "live")
    try:
        import httpx

        headers = {**SERVER_AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            client.post("/v1/traces", content=gzip.compress(b"{}"))  # warm the code paths
            before = _peak_rss_kib(server.process.pid)
            bomb = _bomb(1 << 30)  # 1 GiB of zeros in about 1 MB, under the 1 MB limit?
            assert len(bomb) < 1 << 20
            for path in ("/v1/traces", "/v1/logs", "/v1/alerts", "/v1/investigations"):
                answer = client.post(path, content=bomb)
                assert answer.status_code == 413, (path, answer.text)
            broken = client.post("/v1/traces", content=b"\x1f\x8b\x08garbage")
            assert broken.status_code == 400 and "gzip" in broken.json()["error"]
            grown_mib = (_peak_rss_kib(server.process.pid) - before) / 1024
        assert grown_mib <= 50, grown_mib
    finally:
        server.stop()


def test_no_write_replaces_a_special_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SpecialFileError):
        atomic_write(fifo, "x")
    assert fifo.is_fifo()
    store = demo_store(tmp_path)
    case = TelemetryStore.open(store).cases()[0].case_id
    for argv in (
        ["report", str(store), "--case", case, "--out", str(fifo)],
        ["localize", str(store), "--case", case, "--html", str(fifo)],
        ["localize", str(store), "--case", case, "--save", str(fifo)],  # once waited forever
    ):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 2, result.output
        assert "exists and is not a regular file" in result.stderr
        assert fifo.is_fifo()


def test_a_store_with_wrong_columns_or_counts_or_no_cases_is_refused(tmp_path):
    store = demo_store(tmp_path)
    pq.write_table(pa.table({"x": [1]}), store / "spans.parquet")
    with pytest.raises(StoreError, match=r"spans.parquet: damaged \(column 'trace_id' missing"):
        TelemetryStore.open(store)
    result = runner.invoke(cli, ["cases", str(store)])
    assert result.exit_code == 2 and "spans.parquet: damaged" in result.stderr

    other = demo_store(tmp_path / "b")
    logs = pq.read_table(other / "logs.parquet")
    pq.write_table(logs.slice(0, logs.num_rows - 1), other / "logs.parquet")
    with pytest.raises(StoreError, match="the manifest says"):
        TelemetryStore.open(other)

    third = demo_store(tmp_path / "c")
    (third / "cases.json").unlink()
    with pytest.raises(StoreError, match=r"missing cases\.json"):
        TelemetryStore.open(third)


def test_a_store_failing_under_a_tool_gives_no_answer(tmp_path, monkeypatch):
    store = TelemetryStore.open(demo_store(tmp_path))
    case = store.cases()[0]

    def broken(*_args, **_kwargs):
        raise duckdb.IOException(f"could not read {store.path}/spans.parquet")

    monkeypatch.setattr(store, "trace", broken)
    monkeypatch.setattr(store, "children", broken)
    trajectory = run_case(Toolbox(store, case), ExpertPolicy())
    assert trajectory.finish == Finish.ERROR and trajectory.ranking == []
    assert "spans.parquet" in trajectory.store_failures[0]
    assert "spans.parquet" in (trajectory.error or "")


def test_info_counts_what_the_files_hold(tmp_path):
    store = demo_store(tmp_path)
    opened = TelemetryStore.open(store)
    rows = opened.table_rows()
    assert rows["spans"] == pq.read_metadata(store / "spans.parquet").num_rows > 0
    result = runner.invoke(cli, ["info", str(store)])
    assert result.exit_code == 0
    assert f"{rows['spans']:,}" in result.stdout
    assert f"\n  {len(opened.cases())} case\n" in result.stdout  # the demo has one case
