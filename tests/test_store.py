"""The store: fast-path queries, atomic publication, concurrent readers."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from storekit import at, build_store, span
from thinkfl.telemetry import Level, StoreError, StoreWriter, TelemetryStore
from thinkfl.telemetry.model import SPAN_SCHEMA, Manifest

SPANS = [
    span("r", None, "frontend", 0, 900_000),
    span("b", "r", "cart", 0.2, 100_000, pod="cart-1"),
    span("a", "r", "cart", 0.1, 800_000, status="error", pod="cart-0"),
    span("c", "a", "redis", 0.15, 700_000),
]
METRICS = [
    {"level": "pod", "entity": "cart-0", "metric": "cpu", "time": at(t), "value": float(t)}
    for t in (0, 60, 120, 180)
] + [{"level": "pod", "entity": "cart-1", "metric": "cpu", "time": at(60), "value": 5.0}]
LOGS = [
    {
        "time": at(1),
        "service": "cart",
        "pod": "cart-0",
        "node": "n1",
        "severity": "error",
        "message": "redis timeout",
        "trace_id": "t",
        "span_id": "a",
    },
    {
        "time": at(500),
        "service": "cart",
        "pod": "cart-1",
        "node": "n2",
        "severity": "info",
        "message": "ok",
        "trace_id": None,
        "span_id": None,
    },
]


@pytest.fixture()
def store(tmp_path):
    return build_store(tmp_path / "store", SPANS, METRICS, LOGS)


def test_children_in_start_order(store):
    assert [r["span_id"] for r in store.children("r").to_pylist()] == ["a", "b"]
    assert store.children("c").num_rows == 0
    assert store.children("no-such-span").num_rows == 0


def test_span_and_trace_lookup(store):
    assert store.span("c")["parent_id"] == "a"
    assert store.span("zzz") is None
    assert [r["span_id"] for r in store.trace("t").to_pylist()] == ["r", "a", "c", "b"]


def test_metrics_of_one_entity_in_a_window(store):
    rows = store.metrics("cart-0", at(30), at(150)).to_pylist()
    assert [(r["entity"], r["value"]) for r in rows] == [("cart-0", 60.0), ("cart-0", 120.0)]
    both = store.metrics(["cart-0", "cart-1"], at(60), at(60)).to_pylist()
    assert sorted((r["entity"], r["value"]) for r in both) == [("cart-0", 60.0), ("cart-1", 5.0)]
    # exact names only: "cart" is no pod, and never matches "cart-0" by substring
    assert store.metrics("cart", at(0), at(999)).num_rows == 0


def test_logs_by_service_pod_or_node(store):
    assert len(store.logs("cart", Level.SERVICE, at(0), at(1000))) == 2
    assert [r["message"] for r in store.logs("cart-0", Level.POD, at(0), at(10)).to_pylist()] == [
        "redis timeout"
    ]
    assert store.logs("n2", Level.NODE, at(0), at(10)).num_rows == 0
    assert store.logs("n2", Level.NODE, at(0), at(1000)).num_rows == 1


def test_entities_are_derived_from_the_data(store):
    entities = store.entities()
    assert entities["cart-0"].service == "cart" and entities["cart-0"].node == "n1"
    assert entities["n2"].level == Level.NODE
    assert {e.name for e in entities.values() if e.level == Level.SERVICE} == {
        "frontend",
        "cart",
        "redis",
    }


def test_a_failed_write_leaves_no_store_and_keeps_the_old_one(tmp_path, store):
    before = store.children("r").num_rows
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "store", overwrite=True) as writer:
        writer.add("spans", pa.Table.from_pylist(SPANS[:1], schema=SPAN_SCHEMA))
        raise RuntimeError("crash in the middle of an ingest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert TelemetryStore.open(tmp_path / "store").children("r").num_rows == before


def test_overwrite_replaces_atomically_and_refuses_foreign_folders(tmp_path, store):
    build_store(tmp_path / "store2", SPANS[:1])
    with pytest.raises(StoreError, match="already exists"):
        StoreWriter(tmp_path / "store2")
    with StoreWriter(tmp_path / "store2", overwrite=True) as writer:
        writer.add("spans", pa.Table.from_pylist(SPANS, schema=SPAN_SCHEMA))
        writer.publish(Manifest(source_format="test", source="x"))
    assert TelemetryStore.open(tmp_path / "store2").manifest.counts == {}
    assert TelemetryStore.open(tmp_path / "store2").span("c") is not None
    (tmp_path / "mine").mkdir()
    with pytest.raises(StoreError, match="not a ThinkFL store"):
        StoreWriter(tmp_path / "mine", overwrite=True)


def test_a_folder_without_manifest_is_no_store(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(StoreError, match=r"no manifest\.json"):
        TelemetryStore.open(tmp_path / "half")
    with pytest.raises(StoreError, match="no such store"):
        TelemetryStore.open(tmp_path / "nothing")


def test_threads_share_one_store(store):
    def work(i: int) -> list[str]:
        return [r["span_id"] for r in store.children("r").to_pylist()]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(64))) == [["a", "b"]] * 64


def _children_in_another_process(path: str) -> list[str]:
    return [r["span_id"] for r in TelemetryStore.open(path).children("r").to_pylist()]


def test_processes_read_concurrently(store):
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        assert pool.map(_children_in_another_process, [str(store.path)] * 3) == [["a", "b"]] * 3
