"""Each classical baseline ranks the culprit first on a small incident where it is obvious."""

from __future__ import annotations

import pytest

from conftest import items
from storekit import at, build_store, fault, span
from thinkfl.baselines import BASELINES

INJECT = 1500  # seconds after the store's base time


def requests() -> list[dict]:
    """web -> api -> db every 20 s; from INJECT on, db itself takes 10x longer."""
    spans = []
    for i, t in enumerate(range(300, INJECT + 180, 20)):
        slow = t >= INJECT
        db = 200_000 if slow else 20_000
        api, web = db + 10_000, db + 15_000
        trace = f"t{i}"
        spans += [
            span(f"w{i}", None, "web", t, web, trace=trace, pod="web-0", op="GET /"),
            span(f"a{i}", f"w{i}", "api", t + 0.001, api, trace=trace, pod="api-0", op="GET /api"),
            span(f"d{i}", f"a{i}", "db", t + 0.002, db, trace=trace, pod="db-0", op="SELECT"),
        ]
    return spans


def metrics() -> list[dict]:
    """One cpu series per pod, alternating around 10; db-0 jumps to 95 after INJECT."""
    rows = []
    for pod in ("web-0", "api-0", "db-0"):
        for minute in range(5, 29):
            t = minute * 60
            value = 95.0 if pod == "db-0" and t >= INJECT else 10.0 + (minute % 2)
            rows.append(
                {"level": "pod", "entity": pod, "metric": "cpu", "time": at(t), "value": value}
            )
    return rows


@pytest.fixture(scope="module")
def obvious(tmp_path_factory):
    store = build_store(
        tmp_path_factory.mktemp("b") / "s", requests(), metrics(), faults=[fault("f", INJECT, "db")]
    )
    return store, store.cases()[0]


@pytest.mark.parametrize("name", ["n-sigma", "baro", "microrank", "tracerca"])
def test_the_culprit_comes_first(obvious, name):
    store, case = obvious
    ranking = BASELINES[name](store, case)
    # single-pod services are named as services, the way the tools show them
    assert ranking[0].as_item() == {"service": "db"}, ranking
    assert {"service": "web"} in items(ranking)  # everything seen is ranked, not only the winner


def test_baselines_on_a_quiet_window_return_what_they_can(tmp_path):
    store = build_store(tmp_path / "q", requests()[:30], faults=[fault("f", 305, "db")])
    case = store.cases()[0]
    assert BASELINES["n-sigma"](store, case) == []  # no metrics at all
    assert BASELINES["tracerca"](store, case) == []  # nothing anomalous
