"""Integration on the real data in ../shared (skipped with a message where it is absent)."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime

import pytest

from conftest import AIOPS_SAMPLE_DIR, NEZHA_DIR, require_shared
from thinkfl.telemetry import Level, TelemetryStore, ingest

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def nezha_store(tmp_path_factory):
    src = require_shared(NEZHA_DIR)
    out = tmp_path_factory.mktemp("nezha") / "store"
    result = ingest("nezha", src, out)
    return result, TelemetryStore.open(out)


def test_nezha_day_counts(nezha_store):
    result, store = nezha_store
    # 328,848 trace rows hold 321,068 distinct spans; construct_data adds 4,890 more, of
    # which 99 repeat rca spans (both exports cover 08:48-08:51).
    assert result.counts == {
        "spans": 325_859,
        "metrics": 717_933,
        "logs": 175_209,
        "entities": 101,
        "faults": 28,
        "cases": 28,
    }
    # Exactly the two spliced rows of 10_06_log.csv are skipped, and said so.
    assert [row.split(": ")[0].rsplit("/", 1)[1] for row in result.skipped_rows] == [
        "10_06_log.csv:631",
        "10_06_log.csv:760",
    ]
    low, high = store.manifest.time_range
    assert low == datetime(2023, 1, 29, 8, 41, 9, tzinfo=UTC)  # no Go zero-time sentinel left
    assert high.date() == low.date()


def test_nezha_cases_match_the_fault_list(nezha_store):
    _, store = nezha_store
    fault_list = json.loads(
        (NEZHA_DIR / "rca_data/2023-01-29/2023-01-29-fault_list.json").read_text()
    )
    expected = sorted(
        (f["inject_time"], f["inject_pod"].rsplit("-", 2)[0], f["inject_type"])
        for hour in fault_list.values()
        for f in hour
    )
    cases = store.cases()
    got = sorted(
        (f"{c.inject_time:%Y-%m-%d %H:%M:%S}", c.truth.entity, c.truth.fault_type) for c in cases
    )
    assert got == expected
    assert all(c.truth.level == Level.SERVICE for c in cases)
    assert collections.Counter(c.truth.fault_type for c in cases) == {
        "exception": 13,
        "return": 11,
        "cpu_contention": 4,
    }


def test_named_nezha_cases(nezha_store):
    _, store = nezha_store
    first = store.case("nezha-20230129-084304")
    assert first.truth.entity == "ts-contacts-service"
    assert first.truth.pod == "ts-contacts-service-866bd68c97-xcqfx"
    assert first.truth.fault_type == "return"
    assert first.entry_service == "ts-gateway-service" and first.entry_operation == "/*"
    entry = store.span(first.entry_span_id)
    assert entry["parent_id"] is None and first.window_start <= entry["start"] <= first.window_end
    cpu = store.case("nezha-20230129-133154")
    assert (cpu.truth.entity, cpu.truth.fault_type) == ("ts-contacts-service", "cpu_contention")
    # the injected pod's node comes from the logs
    assert store.entities()[first.truth.pod].node == "33.33.33.79"


def test_aiops_sample(tmp_path):
    src = require_shared(AIOPS_SAMPLE_DIR)
    result = ingest("aiops2022", src, tmp_path / "s")
    assert (result.counts["spans"], result.counts["logs"], result.counts["faults"]) == (
        26,
        14_434,
        1,
    )
    (case,) = TelemetryStore.open(tmp_path / "s").cases()
    assert (case.truth.level, case.truth.entity) == (Level.SERVICE, "recommendationservice")
    # the same entry span the data set's own error_traces.txt names
    assert case.entry_span_id == "d1b3f238e544e3f0"


def test_nezha_log_lines_join_their_spans_and_evidence_localizes(nezha_store):
    from thinkfl.evidence import evidence_for
    from thinkfl.evidence.cache import cache_dir
    from thinkfl.evidence.start import choose_start

    _result, store = nezha_store
    cases = store.cases()
    ranks = []
    for case in cases:
        ranking = [s.entity for s in evidence_for(store, case).rank()]
        truth = case.truth.entity
        ranks.append(ranking.index(truth) + 1 if truth in ranking else None)
    templates = (cache_dir(store) / "log_templates.parquet").as_posix()
    joined, total = store.con.sql(
        f"""SELECT count(s.span_id), count(*) FROM read_parquet('{templates}') l
            LEFT JOIN spans s ON s.span_id = l.span_id AND s.service = l.service
            WHERE l.span_id IS NOT NULL"""
    ).fetchall()[0]
    # every log line with a span id finds a span of its own service
    assert total > 170_000 and joined == total
    # measured 2026-12-02 (docs/results.md): culprit first in 23 of 28, in the top 3 in all
    assert sum(r == 1 for r in ranks) >= 22
    assert all(r is not None and r <= 3 for r in ranks)
    restarted = choose_start(store, cases[0])
    assert restarted.start_component is not None


def test_a_fault_time_and_its_case_start_from_the_same_entry_trace(nezha_store):
    """`localize --at <fault time>` and `localize --case <its id>` begin the same way: the same
    window, the same start chosen by the same code (before, --at took the slowest trace of a
    wider window and reached other answers on 3 of the first 8 faults)."""
    from thinkfl.evidence.start import case_starting_at, choose_start

    _, store = nezha_store
    for case in store.cases():
        stored = choose_start(store, case)  # what `thinkfl ingest` saves for the case id
        by_time = case_starting_at(store, case.inject_time)
        assert (by_time.window_start, by_time.window_end) == (case.window_start, case.window_end)
        assert by_time.entry_span_id == stored.entry_span_id, case.case_id
