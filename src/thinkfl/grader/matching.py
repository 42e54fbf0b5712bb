"""When a predicted entity hits a label. The one place these rules live (docs/evaluation.md).

strict: same level and exactly the same name as the label (a node label is hit only by that
        node — never by any node, the defect of the authors' evaluation).
service: both sides lifted to their service (a pod counts as its service; a node has no
        service and is hit only by the same node).
"""

from __future__ import annotations

from enum import StrEnum

from thinkfl.telemetry import Candidate, Entity, GroundTruth, Level


class MatchLevel(StrEnum):
    STRICT = "strict"
    SERVICE = "service"


def _lifted(level: str, name: str, entities: dict[str, Entity]) -> tuple[str, str]:
    if level == Level.POD:
        entity = entities.get(name)
        if entity is not None and entity.service:
            return Level.SERVICE.value, entity.service
    return level, name


def hits(
    item: Candidate, truth: GroundTruth, entities: dict[str, Entity], match: MatchLevel
) -> bool:
    """Whether one predicted candidate hits the label."""
    level, name = item.level.value, item.name
    if match == MatchLevel.STRICT:
        return level == truth.level.value and name == truth.entity
    if truth.level == Level.NODE:
        return level == Level.NODE.value and name == truth.entity
    want = truth.service or truth.entity
    return _lifted(level, name, entities) == (Level.SERVICE.value, want)


def rank_of_truth(
    ranking: list[Candidate],
    truth: GroundTruth,
    entities: dict[str, Entity],
    match: MatchLevel = MatchLevel.STRICT,
) -> int | None:
    """0-based rank of the first item that hits the label; None when none does."""
    for rank, item in enumerate(ranking):
        if hits(item, truth, entities, match):
            return rank
    return None
