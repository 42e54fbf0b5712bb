"""Classical RCA baselines: metric deviation (n-sigma, BARO) and trace-based (MicroRank, TraceRCA).

All are label-free. Time windows come from the case: normal = [inject − 20 min, inject),
anomalous = [inject, window end]. Rankings name components the way the tools show them: a
pod when its service has several pods, else the service; nodes as nodes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import networkx as nx

from thinkfl.telemetry import Candidate, FailureCase, Level, Ranking, TelemetryStore

NORMAL_S = 1200.0


def _place(store: TelemetryStore, level: str, name: str) -> Candidate:
    """A component named as the tools name it (TelemetryStore.place); nodes stay nodes."""
    if level == Level.POD:
        entity = store.entities().get(name)
        if entity and entity.service:
            placed_level, placed = store.place(entity.service, name)
            return Candidate(level=Level(placed_level), name=placed)
    return Candidate(level=Level(level), name=name)


def _ranked(store: TelemetryStore, scored: list[tuple[str, str, float]]) -> Ranking:
    """(level, name, score) -> unique places, highest score first (name breaks ties)."""
    ranking: Ranking = []
    for level, name, _score in sorted(scored, key=lambda t: (-t[2], t[1])):
        place = _place(store, level, name)
        if place not in ranking:
            ranking.append(place)
    return ranking


def _metric_scores(
    store: TelemetryStore, case: FailureCase, robust: bool
) -> list[tuple[str, str, float]]:
    """Per entity, the largest deviation of any of its metrics in the anomalous window."""
    centre = "median(value)" if robust else "avg(value)"
    spread = (
        "quantile_cont(value, 0.75) - quantile_cont(value, 0.25)" if robust else "stddev_pop(value)"
    )
    normal_start = case.inject_time - timedelta(seconds=NORMAL_S)
    rows = store.query(
        f"""WITH normal AS (
                SELECT level, entity, metric, {centre} AS c, {spread} AS s FROM metrics
                WHERE time >= ? AND time < ? GROUP BY ALL),
            anomalous AS (
                SELECT level, entity, metric, max(value) AS hi, min(value) AS lo FROM metrics
                WHERE time BETWEEN ? AND ? GROUP BY ALL)
            SELECT a.level, a.entity,
                   max(greatest(abs(a.hi - n.c), abs(a.lo - n.c))
                       / greatest(coalesce(n.s, 0), 1e-9 + 0.01 * abs(n.c))) AS score
            FROM anomalous a JOIN normal n USING (level, entity, metric)
            GROUP BY a.level, a.entity""",
        [normal_start, case.inject_time, case.inject_time, case.window_end],
    ).to_pylist()
    return [(r["level"], r["entity"], float(r["score"] or 0.0)) for r in rows]


def n_sigma(store: TelemetryStore, case: FailureCase) -> Ranking:
    """Rank components by their largest |x − μ| / σ against the normal period (RCAEval's n-sigma)."""
    return _ranked(store, _metric_scores(store, case, robust=False))


def baro(store: TelemetryStore, case: FailureCase) -> Ranking:
    """BARO's robust scoring: |x − median| / IQR of the normal period. The fault time is known
    here, so BARO's Bayesian change-point step (which estimates it) is not needed."""
    return _ranked(store, _metric_scores(store, case, robust=True))


_SPANS_WITH_NORMAL = """
WITH children AS (
    SELECT parent_id, sum(duration_us) AS inner_us FROM spans
    WHERE start BETWEEN ? AND ? AND parent_id IS NOT NULL GROUP BY parent_id),
own AS (
    SELECT s.*, greatest(s.duration_us - coalesce(c.inner_us, 0), 0) AS own_us
    FROM spans s LEFT JOIN children c ON c.parent_id = s.span_id
    WHERE s.start BETWEEN ? AND ?),
normal AS (
    SELECT service, operation, median(own_us) AS m FROM own WHERE start < ? GROUP BY ALL)
SELECT o.trace_id, o.span_id, o.parent_id, o.service, o.pod, o.own_us, o.status,
       coalesce(n.m, o.own_us) AS normal_us
FROM own o LEFT JOIN normal n USING (service, operation)
WHERE o.start >= ?
"""


def _window_spans(store: TelemetryStore, case: FailureCase) -> list[dict[str, Any]]:
    """Spans of the anomalous window with their exclusive time (duration minus children) and
    the normal exclusive time of their (service, operation) from the normal period."""
    normal_start = case.inject_time - timedelta(seconds=NORMAL_S)
    bounds = [normal_start, case.window_end]
    rows: list[dict[str, Any]] = store.query(
        _SPANS_WITH_NORMAL, [*bounds, *bounds, case.inject_time, case.inject_time]
    ).to_pylist()
    return rows


def _is_anomalous(span: dict[str, Any], factor: float = 3.0) -> bool:
    """Failing, or spending far more time *itself* than normal (latency inherited from callees
    does not count: it would blame every caller up the tree)."""
    return bool(span["status"] == "error" or span["own_us"] > factor * max(span["normal_us"], 1000))


def _place_of_span(store: TelemetryStore, span: dict[str, Any]) -> tuple[str, str]:
    return store.place(span["service"], span["pod"])


def microrank(store: TelemetryStore, case: FailureCase) -> Ranking:
    """MicroRank-style: personalized PageRank over the call graph of the window (caller ->
    callee), personalized by how many anomalous spans each component has."""
    spans = _window_spans(store, case)
    by_id = {s["span_id"]: s for s in spans}
    graph = nx.DiGraph()
    weight: dict[tuple[str, str], float] = {}
    for span in spans:
        node = _place_of_span(store, span)
        graph.add_node(node)
        if _is_anomalous(span):
            weight[node] = weight.get(node, 0.0) + 1.0
        parent = by_id.get(span["parent_id"] or "")
        if parent is not None:
            caller = _place_of_span(store, parent)
            if caller != node:
                graph.add_edge(caller, node)  # rank flows down the calls to where time is spent
    if graph.number_of_nodes() == 0:
        return []
    personalization = weight or None
    scores = nx.pagerank(graph, alpha=0.85, personalization=personalization)
    return _ranked(store, [(level, name, score) for (level, name), score in scores.items()])


def tracerca(store: TelemetryStore, case: FailureCase) -> Ranking:
    """TraceRCA-style: components whose own spans are anomalous in many anomalous traces
    (support) and in most traces they take part in (confidence); score = support x confidence."""
    spans = _window_spans(store, case)
    members: dict[str, set[tuple[str, str]]] = {}
    blamed: dict[str, set[tuple[str, str]]] = {}
    for span in spans:
        place = _place_of_span(store, span)
        members.setdefault(span["trace_id"], set()).add(place)
        if _is_anomalous(span):
            blamed.setdefault(span["trace_id"], set()).add(place)
    anomalous = set(blamed)
    if not anomalous:
        return []
    counts: dict[tuple[str, str], list[int]] = {}
    for trace, places in members.items():
        for place in places:
            seen = counts.setdefault(place, [0, 0])
            seen[0] += place in blamed.get(trace, set())
            seen[1] += 1
    scored = [
        (level, name, (hit / len(anomalous)) * (hit / total))
        for (level, name), (hit, total) in counts.items()
    ]
    return _ranked(store, scored)
