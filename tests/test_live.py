"""The live store: batches appear atomically to readers that are already open, impossible
rows are refused as by an ingest, retention drops whole batches, and cases and baselines
work on a live store exactly as on the ingested store it grew from."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from thinkfl.agent import Budget
from thinkfl.evaluate import case_results, run_method, summarize
from thinkfl.telemetry import TelemetryStore, ingest
from thinkfl.telemetry.live import LiveStore
from thinkfl.telemetry.model import SPAN_SCHEMA

DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"


def spans_of(store: TelemetryStore) -> pa.Table:
    return store.query("SELECT * FROM spans ORDER BY trace_id, span_id")


def test_a_live_store_answers_like_the_store_it_grew_from(tmp_path):
    ingest("aiops2022", DEMO, tmp_path / "static")
    shutil.copytree(tmp_path / "static", tmp_path / "live")
    live = LiveStore(tmp_path / "live")
    static, grown = TelemetryStore.open(tmp_path / "static"), live.open()
    assert grown.live and not static.live
    assert spans_of(grown) == spans_of(static)
    summaries = []
    for store, out in ((static, tmp_path / "e1"), (grown, tmp_path / "e2")):
        results = []
        for method in ("expert", "baro", "n-sigma"):
            trajectories = run_method(method, store, out, store.cases(), Budget(), workers=1)
            results += case_results(method, trajectories, store)
        summaries.append({m: s["strict"] for m, s in summarize(results).items()})
    assert summaries[0] == summaries[1]


def test_batches_appear_whole_to_open_readers_and_bad_rows_are_refused(tmp_path):
    live = LiveStore(tmp_path / "live")
    reader = live.open()  # opened before anything arrives
    assert reader.query("SELECT count(*) n FROM spans").to_pylist() == [{"n": 0}]
    row = {
        "trace_id": "t1",
        "span_id": "s1",
        "parent_id": None,
        "service": "api",
        "pod": "api-0",
        "node": "n1",
        "operation": "GET /",
        "start": None,
        "duration_us": 1000,
        "status": "ok",
        "kind": "server",
    }
    good = {**row, "start": datetime(2024, 5, 1, tzinfo=UTC)}
    negative = {
        **row,
        "span_id": "s2",
        "start": datetime(2024, 5, 1, tzinfo=UTC),
        "duration_us": -5,
    }
    result = live.append({"spans": pa.Table.from_pylist([good, negative], schema=SPAN_SCHEMA)})
    assert result.kept == {"spans": 1, "metrics": 0, "logs": 0}
    assert [(r.reason, r.count) for r in result.rejected] == [("negative duration", 1)]
    assert reader.query("SELECT span_id FROM spans").to_pylist() == [{"span_id": "s1"}]
    assert live.open().entities()["api-0"].service == "api"
    assert live.received() == {"spans": 1, "metrics": 0, "logs": 0}
    # retention drops whole batches by age, never the seed
    assert live.retain(hours=1.0, now=time.time() + 7200) == [result.batch]
    assert reader.query("SELECT count(*) n FROM spans").to_pylist() == [{"n": 0}]
