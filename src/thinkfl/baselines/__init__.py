"""Classical baselines behind one signature (like RCAEval): rank(store, case) -> ranking.

A ranking is a list of `Candidate`s, most likely first, as the agent's answer is, so the
evaluation treats baselines and agents alike.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable

from thinkfl.evidence import evidence_for
from thinkfl.telemetry import Candidate, FailureCase, Level, Ranking, TelemetryStore

Baseline = Callable[[TelemetryStore, FailureCase], Ranking]


def _services_by_activity(store: TelemetryStore, case: FailureCase) -> list[str]:
    rows = store.query(
        "SELECT service, count(*) n FROM spans WHERE start BETWEEN ? AND ? GROUP BY 1 ORDER BY n DESC, 1",
        [case.window_start, case.window_end],
    ).to_pylist()
    return [r["service"] for r in rows]


def random_ranking(store: TelemetryStore, case: FailureCase) -> Ranking:
    """Every service, pod and node in a random order (seeded by the case id: reproducible)."""
    names = sorted((e.level.value, e.name) for e in store.entities().values())
    seed = int(hashlib.sha256(case.case_id.encode()).hexdigest()[:16], 16)
    random.Random(seed).shuffle(names)
    return [Candidate(level=Level(level), name=name) for level, name in names]


def most_frequent(store: TelemetryStore, case: FailureCase) -> Ranking:
    """The labels most often seen on the *other* cases (leave-one-out), then the busiest services.

    The trivial baseline: what a system's fault history alone predicts.
    """
    history = Counter(
        (c.truth.level.value, c.truth.entity)
        for c in store.cases()
        if c.case_id != case.case_id and c.truth is not None
    )
    ranking = [
        Candidate(level=Level(level), name=name)
        for (level, name), _n in sorted(history.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return _then_busiest(store, case, ranking)


def evidence_ranking(store: TelemetryStore, case: FailureCase) -> Ranking:
    """The evidence layer's fused ranking, then the busiest services (never empty)."""
    ranking = [
        Candidate(level=Level(score.level), name=score.entity)
        for score in evidence_for(store, case).rank()
    ]
    return _then_busiest(store, case, ranking)


def _then_busiest(store: TelemetryStore, case: FailureCase, ranking: Ranking) -> Ranking:
    """The ranking, completed with the busiest services of the window not in it yet."""
    for service in _services_by_activity(store, case):
        candidate = Candidate(level=Level.SERVICE, name=service)
        if candidate not in ranking:
            ranking.append(candidate)
    return ranking


from thinkfl.baselines.classical import baro, microrank, n_sigma, tracerca  # noqa: E402

BASELINES: dict[str, Baseline] = {
    "random": random_ranking,
    "most-frequent": most_frequent,
    "n-sigma": n_sigma,
    "baro": baro,
    "microrank": microrank,
    "tracerca": tracerca,
    "evidence": evidence_ranking,
}

__all__ = [
    "BASELINES",
    "Baseline",
    "Ranking",
    "baro",
    "evidence_ranking",
    "microrank",
    "most_frequent",
    "n_sigma",
    "random_ranking",
    "tracerca",
]
