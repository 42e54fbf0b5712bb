"""Matching rules: strict and service level, hand-checked."""

from __future__ import annotations

from thinkfl.grader import MatchLevel, rank_of_truth
from thinkfl.telemetry import Entity, GroundTruth, Level

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


def test_strict_needs_same_level_and_name():
    ranking = [{"service": "cart"}, {"pod": "cart-0"}, {"pod": "cart-1"}]
    assert rank_of_truth(ranking, POD, ENTITIES) == 2
    assert rank_of_truth(ranking, SERVICE, ENTITIES) == 0
    assert rank_of_truth([{"node": "node-5"}, {"node": "node-6"}], NODE, ENTITIES) == 1
    assert rank_of_truth([{"node": "node-5"}], NODE, ENTITIES) is None  # any node is not a hit


def test_service_level_lifts_pods_to_their_service():
    assert rank_of_truth([{"pod": "cart-0"}], POD, ENTITIES, MatchLevel.SERVICE) == 0
    assert rank_of_truth([{"pod": "cart-0"}], SERVICE, ENTITIES, MatchLevel.SERVICE) == 0
    assert (
        rank_of_truth([{"service": "cartservice"}], SERVICE, ENTITIES, MatchLevel.SERVICE) is None
    )
    assert (
        rank_of_truth([{"node": "node-5"}, {"node": "node-6"}], NODE, ENTITIES, MatchLevel.SERVICE)
        == 1
    )


def test_malformed_items_never_hit():
    assert rank_of_truth([{}, {"service": "cart", "pod": "cart-1"}], SERVICE, ENTITIES) is None
    assert rank_of_truth([], SERVICE, ENTITIES) is None
