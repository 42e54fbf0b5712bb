"""Metrics on hand-made rankings; the runner resumes after an interruption; plots render."""

from __future__ import annotations

import json

import pytest

from conftest import items
from storekit import build_store, fault, span
from thinkfl.baselines import BASELINES
from thinkfl.evaluate import CaseResult, accuracy, load_done, markdown, run_method, summarize
from thinkfl.evaluate import runner as runner_module


def test_accuracy_on_hand_made_ranks():
    ranks = [0, 2, None, 1, 9]
    got = accuracy(ranks)
    assert got["R@1"] == 0.2 and got["R@2"] == 0.4 and got["R@3"] == 0.6
    assert got["R@5"] == 0.6 and got["R@10"] == 0.8
    assert got["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 10) / 5, abs=1e-4)
    assert got["Avg@5"] == pytest.approx((0.2 + 0.4 + 0.6 + 0.6 + 0.6) / 5, abs=1e-4)
    assert accuracy([]) == {}


def result(method, rank, fault_type="cpu", level="pod", seconds=1.0):
    return CaseResult(
        method=method,
        case_id=f"{method}{rank}{fault_type}",
        fault_type=fault_type,
        level=level,
        rank_strict=rank,
        rank_service=rank,
        seconds=seconds,
        tokens=10,
        tool_calls=3,
        finish="printed",
    )


def test_summary_groups_by_method_fault_type_and_level():
    rows = [result("a", 0), result("a", None, "disk", "node", 3.0), result("b", 1)]
    summary = summarize(rows)
    assert summary["a"]["strict"]["R@1"] == 0.5
    assert summary["a"]["by_fault_type"] == {
        "cpu": accuracy([0]) | {"cases": 1},
        "disk": accuracy([None]) | {"cases": 1},
    }
    assert summary["a"]["by_level"]["node"]["cases"] == 1
    assert summary["a"]["cost"]["latency_p50_s"] == 2.0
    assert summary["b"]["strict"]["MRR"] == 0.5
    assert "| a | 2 | 0.500 |" in markdown(summary, "t")


@pytest.fixture()
def store(tmp_path):
    spans = [span(f"r{i}", None, "web", 100 * i, 900_000, trace=f"t{i}") for i in range(4)] + [
        span(f"c{i}", f"r{i}", "db", 100 * i + 0.1, 800_000, trace=f"t{i}") for i in range(4)
    ]
    faults = [fault(f"f{i}", 100 * i - 1, "db" if i < 3 else "web") for i in range(4)]
    return build_store(tmp_path / "s", spans, faults=faults)


def test_an_interrupted_run_resumes_where_it_stopped(store, tmp_path, monkeypatch):
    calls = []

    def flaky_baseline(_store, case):
        calls.append(case.case_id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed ^C during the third case
        return [{"service": "db"}]

    monkeypatch.setitem(BASELINES, "flaky", flaky_baseline)
    cases = store.cases()
    with pytest.raises(KeyboardInterrupt):
        run_method("flaky", store, tmp_path / "out", cases, budget=None, workers=1)
    path = tmp_path / "out" / "flaky.jsonl"
    assert list(load_done(path)) == ["f0", "f1"]
    with path.open("a") as handle:
        handle.write('{"case_id": "f2", "policy": "fla')  # a write cut off by the crash
    calls.clear()
    trajectories = run_method("flaky", store, tmp_path / "out", cases, budget=None, workers=1)
    assert calls == ["f2", "f3"]  # only what was missing ran again
    assert [t.case_id for t in trajectories] == ["f0", "f1", "f2", "f3"]
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)


def test_most_frequent_is_leave_one_out(store):
    cases = {c.case_id: c for c in store.cases()}
    # f3's label is web; the other three say db: history alone predicts db first
    assert BASELINES["most-frequent"](store, cases["f3"])[0].as_item() == {"service": "db"}
    # for f0, the others are db, db, web
    assert items(BASELINES["most-frequent"](store, cases["f0"])[:2]) == [
        {"service": "db"},
        {"service": "web"},
    ]
    ranking = BASELINES["random"](store, cases["f0"])
    assert ranking == BASELINES["random"](store, cases["f0"])  # reproducible
    assert sorted(candidate.name for candidate in ranking) == ["db", "web"]


def test_plots_render(tmp_path):
    from thinkfl.evaluate.plots import latency, recall_curves

    rows = [result("a", 0), result("a", 3, seconds=0.1), result("b", None)]
    summary = summarize(rows)
    for path in (
        recall_curves(summary, tmp_path / "r.png", "t"),
        latency(rows, tmp_path / "l.png", "t"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_runner_refuses_unknown_methods(store, tmp_path):
    with pytest.raises(runner_module.EvaluationError, match="Methods: expert, hf, local"):
        run_method("magic", store, tmp_path / "o", store.cases(), budget=None)
