"""Each grader term against hand-computed values, edge cases included."""

from __future__ import annotations

import pytest

from test_matching import ENTITIES, NODE, POD, SERVICE
from thinkfl.agent import Message, Step, Trajectory
from thinkfl.grader import (
    STAGES,
    MultiFactorGrader,
    PathCache,
    TermSettings,
    Weights,
    diversity,
    format_score,
    hallucination,
    recall,
    route,
)

S = TermSettings()


def traj(ranking=(), steps=(), messages=(), case="c1") -> Trajectory:
    return Trajectory(
        case_id=case, policy="t", ranking=list(ranking), steps=list(steps), messages=list(messages)
    )


def step(tool, where=None, entity=None, observation="", ok=True, **arguments) -> Step:
    data = {}
    if where:
        data["where"] = where
    if entity:
        data["entity"] = entity
    return Step(turn=1, tool=tool, arguments=arguments, observation=observation, ok=ok, data=data)


@pytest.mark.parametrize(
    ("rank", "expected"),
    [(0, 1.0), (1, 0.9), (9, 0.1), (10, 1 / 20), (11, 1 / 21), (None, 0.0)],
)
def test_recall_falls_monotonically_with_rank(rank, expected):
    filler = [{"service": f"s{i}"} for i in range(12)]
    ranking = filler if rank is None else [*filler[:rank], {"pod": "cart-1"}]
    assert recall(traj(ranking), POD, ENTITIES, S) == pytest.approx(expected)


def test_recall_edge_cases():
    assert recall(traj([]), POD, ENTITIES, S) == 0.0
    assert recall(traj([{"service": "cart"}]), POD, ENTITIES, S) == 0.0  # strict: pod label
    service_level = TermSettings(match="service")
    assert recall(traj([{"service": "cart"}]), POD, ENTITIES, service_level) == 1.0


def test_route_rewards_reaching_the_culprit_late_in_the_path():
    steps = [
        step("search_traces", where={"service": "frontend"}),
        step("search_traces", where={"service": "cart", "pod": "cart-1", "node": "node-6"}),
        step("search_logs", entity={"service": "cart"}, service_name="cart"),
        step("search_traces", where={"service": "redis"}),
        step("search_traces", where={"service": "redis"}),
    ]
    # L = 5, mu = 2: the culprit's service is last seen at position 3 -> min(3 / 3, 1) = 1
    assert route(traj(steps=steps), SERVICE, ENTITIES, S) == 1.0
    # at position 2 only (drop the logs step): min(2 / (4 - 2), 1) = 1; with mu = 0: 2 / 4
    short = [steps[0], steps[1], steps[3], steps[4]]
    assert route(traj(steps=short), SERVICE, ENTITIES, S) == 1.0
    assert route(traj(steps=short), SERVICE, ENTITIES, TermSettings(mu=0)) == 0.5
    # a node label is reached through a span on that node
    assert route(traj(steps=short), NODE, ENTITIES, TermSettings(mu=0)) == 0.5


def test_route_without_the_culprit_rewards_exploring_further():
    steps = [step("search_traces", where={"service": "frontend"})] * 4
    assert route(traj(steps=steps), SERVICE, ENTITIES, S) == pytest.approx(0.4)  # 4 / D_max
    assert route(traj(steps=steps * 3), SERVICE, ENTITIES, S) == 1.0
    assert route(traj(), SERVICE, ENTITIES, S) == 0.0  # entities never visited
    failed = [step("search_traces", where={"service": "cart"}, ok=False)]
    assert route(traj(steps=failed), SERVICE, ENTITIES, S) == 0.0  # a refused call visits nothing


def test_hallucination_counts_invented_and_duplicate_items():
    seen = [step("search_traces", observation="a1  cart-1  GetCart ... | b2  redis  HGET")]
    ranking = [{"pod": "cart-1"}, {"service": "ghost"}, {"pod": "cart-1"}, {"service": "redis"}]
    # N = 4: one invented (ghost) x 1.0, one duplicate x 0.5 -> 1.5 / 4
    assert hallucination(traj(ranking, seen), POD, S) == pytest.approx(0.375)
    assert hallucination(traj([], seen), POD, S) == 0.0
    # a malformed item ({}) cannot be a candidate: the answer tool drops it, the grader never
    # sees it (test_tools: print_results lists it as a problem)


def test_format_scores_calls_and_printed_items():
    def reply(text: str) -> Message:
        return Message(role="assistant", content=text)

    def tagged(name: str, arguments: str) -> str:
        return f'<tool_call>{{"name": "{name}", "arguments": {arguments}}}</tool_call>'

    messages = [
        Message(role="system", content="..."),
        reply(tagged("search_traces", '{"parent_span_id": "a"}')),
        reply("I will look deeper"),  # no call
        reply(tagged("search_logs", "{}")),  # required arguments missing
        reply(tagged("teleport", "{}")),  # unknown tool
    ]
    ranking = [{"service": "cart"}]
    # checks: 4 replies (1 good) + 1 printed candidate (malformed items never get this far:
    # the answer tool keeps only {service|pod|node: name}) -> 2 / 5
    assert format_score(traj(ranking, messages=messages)) == pytest.approx(2 / 5)
    assert format_score(traj()) == 0.0


def test_diversity_rewards_new_paths_per_question():
    cache = PathCache()
    path = [step("search_traces", parent_span_id="a"), step("search_traces", parent_span_id="b")]
    right, wrong = [{"pod": "cart-1"}], [{"service": "redis"}]
    assert diversity(traj(right, path), POD, ENTITIES, cache, S) == 1.0  # new, correct: A
    assert diversity(traj(wrong, path), POD, ENTITIES, cache, S) == 0.0  # repeated: C
    assert diversity(traj(wrong, path[:1]), POD, ENTITIES, cache, S) == 0.1  # new, wrong: B
    assert diversity(traj(right, path, case="c2"), POD, ENTITIES, cache, S) == 1.0  # other question
    # the same calls repeated inside one run are one path
    assert diversity(traj(right, path + path[:1]), POD, ENTITIES, cache, S) == 0.0


def test_weighted_total_and_breakdown():
    steps = [
        step("search_traces", where={"service": "cart", "pod": "cart-1"}, observation="x cart-1 y")
    ] * 2
    ranking = [{"service": "cart"}, {"pod": "cart-1"}, {"service": "ghost"}]
    score = MultiFactorGrader()(traj(ranking, steps), POD, ENTITIES)
    # R = 0.9 (rank 1); P: L = 2 <= mu -> 1; H: ghost invented -> 1/3 ("cart" is in "cart-1")
    assert score.breakdown == {
        "recall": 0.9,
        "route": 1.0,
        "hallucination": pytest.approx(1 / 3, abs=1e-6),
    }
    assert score.total == pytest.approx(0.9 + 0.2 * 1.0 - 0.2 / 3, abs=1e-6)
    stage2 = MultiFactorGrader(STAGES["stage2"])
    first = stage2(traj(ranking, steps), POD, ENTITIES)
    assert first.breakdown == {"recall": 0.9, "diversity": 1.0}
    assert stage2(traj(ranking, steps), POD, ENTITIES).total == pytest.approx(0.9)  # repeat: C = 0
    assert MultiFactorGrader(Weights(route=0, hallucination=0))(traj(), POD, ENTITIES).total == 0.0
