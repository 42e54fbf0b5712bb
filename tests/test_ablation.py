"""Telemetry-shape ablations: each cell is the same store as another stack would record it."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkfl.evaluate.ablation import ABLATIONS, SKEW_MS, TRACE_SHARE, ablated_store
from thinkfl.simulate import simulate
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.errors import StoreError


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TelemetryStore:
    out = tmp_path_factory.mktemp("sim") / "store"
    simulate(out, n_cases=6, seed=3)
    return TelemetryStore.open(out)


def count(store: TelemetryStore, sql: str) -> int:
    return store.query(sql).column(0)[0].as_py()


def test_without_client_spans_their_children_hang_from_the_clients_parent(store, tmp_path):
    cell = ablated_store(store, "no-client-spans", tmp_path / "cell")
    clients = count(store, "SELECT count(*) FROM spans WHERE kind = 'client'")
    assert clients > 0
    assert count(cell, "SELECT count(*) FROM spans") == (
        count(store, "SELECT count(*) FROM spans") - clients
    )
    assert count(cell, "SELECT count(*) FROM spans WHERE kind = 'client'") == 0
    orphans = """SELECT count(*) FROM spans s WHERE s.parent_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM spans p WHERE p.span_id = s.parent_id)"""
    assert count(cell, orphans) == count(store, orphans) == 0
    # a server span that a client span wrapped now has its caller's server span as parent
    assert count(
        cell,
        """SELECT count(*) FROM spans s JOIN spans p ON p.span_id = s.parent_id
           WHERE p.service <> s.service""",
    ) == count(
        store,
        """SELECT count(*) FROM spans s JOIN spans p ON p.span_id = s.parent_id
           WHERE p.service <> s.service""",
    )
    assert [f.fault_id for f in cell.faults()] == [f.fault_id for f in store.faults()]
    assert len(cell.cases()) == len(store.cases())  # every fault still gets its case


def test_kinds_skew_sampling_and_metric_cells_change_only_what_they_say(store, tmp_path):
    spans = count(store, "SELECT count(*) FROM spans")
    internal = ablated_store(store, "kinds-internal", tmp_path / "internal")
    assert count(internal, "SELECT count(DISTINCT kind) FROM spans") == 1
    assert count(internal, "SELECT count(*) FROM spans WHERE kind = 'internal'") == spans

    skewed = ablated_store(store, "clock-skew-5ms", tmp_path / "skew")
    shifts = skewed.query(
        f"""SELECT s.service, min(epoch_us(s.start) - epoch_us(o.start)) AS low,
                   max(epoch_us(s.start) - epoch_us(o.start)) AS high
            FROM spans s JOIN read_parquet('{store.path / "spans.parquet"}') o USING (span_id)
            GROUP BY s.service"""
    ).to_pylist()
    assert all(r["low"] == r["high"] and abs(r["low"]) <= SKEW_MS * 1000 for r in shifts)
    assert len({r["low"] for r in shifts}) > 1  # services disagree with each other

    sampled = ablated_store(store, "traces-10pct", tmp_path / "sampled")
    traces = count(store, "SELECT count(DISTINCT trace_id) FROM spans")
    kept = count(sampled, "SELECT count(DISTINCT trace_id) FROM spans")
    assert 0.5 * traces / TRACE_SHARE < kept < 1.5 * traces / TRACE_SHARE
    # whole traces are kept: every kept trace has all of its spans
    assert count(
        sampled,
        f"""SELECT count(*) FROM read_parquet('{store.path / "spans.parquet"}')
                     WHERE trace_id IN (SELECT trace_id FROM spans)""",
    ) == count(sampled, "SELECT count(*) FROM spans")

    per_service = ablated_store(store, "metrics-per-service", tmp_path / "per-service")
    assert count(per_service, "SELECT count(*) FROM metrics WHERE level = 'pod'") == 0
    assert count(per_service, "SELECT count(*) FROM metrics WHERE level = 'service'") > 0
    assert (
        count(ablated_store(store, "no-logs", tmp_path / "no-logs"), "SELECT count(*) FROM logs")
        == 0
    )


def test_an_unknown_cell_names_the_cells(store, tmp_path):
    with pytest.raises(StoreError, match=r"no ablation 'kinds'\. Cells: full, kinds-absent"):
        ablated_store(store, "kinds", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert set(ABLATIONS) >= {"full", "no-logs", "traces-10pct"}


def test_a_cell_is_reused_when_already_built(store, tmp_path):
    first = ablated_store(store, "kinds-absent", tmp_path / "cell")
    stamp = (Path(first.path) / "manifest.json").read_text()
    again = ablated_store(store, "kinds-absent", tmp_path / "cell")
    assert (Path(again.path) / "manifest.json").read_text() == stamp
