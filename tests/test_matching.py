"""Matching rules: strict and service level, hand-checked."""

from __future__ import annotations

import pytest

from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.telemetry import Candidate, Entity, GroundTruth, Level, candidates

ENTITIES = {
    "cart-1": Entity(level=Level.POD, name="cart-1", service="cart", node="node-6"),
    "cart-0": Entity(level=Level.POD, name="cart-0", service="cart", node="node-5"),
    "cart": Entity(level=Level.SERVICE, name="cart", service="cart"),
    "node-6": Entity(level=Level.NODE, name="node-6", node="node-6"),
    "node-5": Entity(level=Level.NODE, name="node-5", node="node-5"),
}
POD = GroundTruth(level=Level.POD, entity="cart-1", fault_type="cpu", service="cart", pod="cart-1")
SERVICE = GroundTruth(level=Level.SERVICE, entity="cart", fault_type="x", service="cart")
NODE = GroundTruth(level=Level.NODE, entity="node-6", fault_type="disk")


def rank(items: list[dict[str, str]], truth: GroundTruth, match=MatchLevel.STRICT) -> int | None:
    """rank_of_truth over a ranking written as a model prints it."""
    return rank_of_truth(candidates(items), truth, ENTITIES, match)


def test_strict_needs_same_level_and_name():
    ranking = candidates([{"service": "cart"}, {"pod": "cart-0"}, {"pod": "cart-1"}])
    assert rank_of_truth(ranking, POD, ENTITIES) == 2
    assert rank_of_truth(ranking, SERVICE, ENTITIES) == 0
    assert rank([{"node": "node-5"}, {"node": "node-6"}], NODE) == 1
    assert rank([{"node": "node-5"}], NODE) is None  # any node is not a hit


def test_service_level_lifts_pods_to_their_service():
    assert rank([{"pod": "cart-0"}], POD, MatchLevel.SERVICE) == 0
    assert rank([{"pod": "cart-0"}], SERVICE, MatchLevel.SERVICE) == 0
    assert rank([{"service": "cartservice"}], SERVICE, MatchLevel.SERVICE) is None
    assert rank([{"node": "node-5"}, {"node": "node-6"}], NODE, MatchLevel.SERVICE) == 1


def test_malformed_items_are_no_candidates():
    for item in ({}, {"service": "cart", "pod": "cart-1"}, {"rack": "r1"}, "cart", None):
        with pytest.raises(ValueError):
            Candidate.parse(item)
    assert Candidate.parse({"pod": "cart-1"}) == Candidate(level=Level.POD, name="cart-1")
    assert Candidate.parse({"level": "pod", "name": "cart-1"}).as_item() == {"pod": "cart-1"}
    assert rank([], SERVICE) is None
