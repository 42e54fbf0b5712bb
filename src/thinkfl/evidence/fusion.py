"""Fusion: one score per entity from its evidence items.

score = the strongest weighted item (weight x log2(1 + strength)) plus `support_share`
of the strongest weighted item of each other kind. A log scale keeps a huge count or
ratio from drowning the other channels; the weights (settings) put saturation first and
noisy metric shifts last. A caller whose callee has comparable evidence is discounted:
faults show upstream, the origin is downstream. A rising log line of a caller that names
one of its callees is evidence about that callee. Metric evidence of a component whose
own spans and logs show nothing counts less: a resource at its limit that slows or breaks
nothing did not fail the request.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from thinkfl.evidence.model import METRIC_KINDS, EntityScore, EvidenceItem, EvidenceKind
from thinkfl.evidence.settings import FusionSettings
from thinkfl.telemetry import Entity, Level


def weighted(item: EvidenceItem, settings: FusionSettings) -> float:
    return settings.weights.get(item.kind, 1.0) * math.log2(1.0 + item.strength)


OWN_RESOURCE_KINDS = {EvidenceKind.SATURATION, EvidenceKind.SELF_TIME}
ORIGIN_KINDS = set(EvidenceKind) - {EvidenceKind.METRIC_SHIFT}
Edge = tuple[tuple[str, str], tuple[str, str]]


def fuse(
    items: list[EvidenceItem],
    settings: FusionSettings,
    edges: set[Edge] | None = None,
    entities: dict[str, Entity] | None = None,
) -> list[EntityScore]:
    if edges and entities:
        items = _attributed_to_callees(items, edges, entities)
    by_entity: dict[tuple[str, str], list[EvidenceItem]] = defaultdict(list)
    for item in items:
        by_entity[(item.level, item.entity)].append(item)
    corroborated = _corroborated(by_entity, entities or {})
    scores = []
    for (level, entity), found in by_entity.items():
        found.sort(key=lambda i: -weighted(i, settings))
        best_per_kind: dict[EvidenceKind, float] = {}
        for item in found:
            factor = 1.0
            if item.kind in METRIC_KINDS and (level, entity) not in corroborated:
                factor = settings.uncorroborated_metric_factor
            best_per_kind.setdefault(item.kind, factor * weighted(item, settings))
        values = sorted(best_per_kind.values(), reverse=True)
        score = values[0] + settings.support_share * sum(values[1:])
        scores.append(
            EntityScore(
                level=level,
                entity=entity,
                score=round(score, 4),
                items=found[: settings.max_items],
            )
        )
    if edges:
        scores = _discount_explained(scores, edges, settings)
    if entities:
        scores = _merge_same(scores + _lifted(scores, entities, settings), settings)
    scores.sort(key=lambda s: (-s.score, s.level, s.entity))
    return scores


def _merge_same(scores: list[EntityScore], settings: FusionSettings) -> list[EntityScore]:
    """One score per entity: a lifted service or node that also has evidence of its own
    keeps the higher score and the strongest items of both."""
    merged: dict[tuple[str, str], EntityScore] = {}
    for score in scores:
        known = merged.get(score.key)
        if known is None:
            merged[score.key] = score
            continue
        items = sorted([*known.items, *score.items], key=lambda i: -weighted(i, settings))
        merged[score.key] = known.model_copy(
            update={"score": max(known.score, score.score), "items": items[: settings.max_items]}
        )
    return list(merged.values())


def _service_of(key: tuple[str, str], entities: dict[str, Entity]) -> str:
    entity = entities.get(key[1])
    if key[0] == Level.POD.value and entity is not None and entity.service:
        return entity.service
    return key[1]


def _attributed_to_callees(
    items: list[EvidenceItem], edges: set[Edge], entities: dict[str, Entity]
) -> list[EvidenceItem]:
    """A rising log line of a caller that names exactly one of the services it calls
    ("unexpected response from X", "connection refused to X") is evidence about X."""
    callees: dict[str, set[str]] = defaultdict(set)
    for caller, callee in edges:
        callees[_service_of(caller, entities)].add(_service_of(callee, entities))
    result = []
    for item in items:
        if item.kind != EvidenceKind.LOG_RISE:
            result.append(item)
            continue
        speaker = _service_of((item.level, item.entity), entities)
        named = [
            callee
            for callee in callees.get(speaker, set())
            if callee != speaker and _names(callee, f"{item.subject} {item.example}")
        ]
        if len(named) == 1:
            item = item.model_copy(
                update={
                    "level": Level.SERVICE.value,
                    "entity": named[0],
                    "subject": f"{item.entity} says: {item.subject}",
                }
            )
        result.append(item)
    return result


def _names(component: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(component)}(?![\w-])", text) is not None


def _corroborated(
    by_entity: dict[tuple[str, str], list[EvidenceItem]], entities: dict[str, Entity]
) -> set[tuple[str, str]]:
    """Components whose own spans or logs show something (a node: through any of its pods;
    a pod: through its service too, where the evidence is service-wide)."""
    shows = {
        key for key, found in by_entity.items() if any(i.kind not in METRIC_KINDS for i in found)
    }
    result = set(shows)
    for name, entity in entities.items():
        if entity.level != Level.POD:
            continue
        if (Level.POD.value, name) in shows and entity.node:
            result.add((Level.NODE.value, entity.node))
        if entity.service and (Level.SERVICE.value, entity.service) in shows:
            result.add((Level.POD.value, name))
    return result


def _downstream(edges: set[Edge]) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Every component each caller reaches through the calls of the window."""
    callees: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for caller, callee in edges:
        callees[caller].add(callee)
    reach: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for start in list(callees):
        seen: set[tuple[str, str]] = set()
        todo = list(callees[start])
        while todo:
            node = todo.pop()
            if node in seen or node == start:
                continue
            seen.add(node)
            todo.extend(callees.get(node, ()))
        reach[start] = seen
    return reach


def _discount_explained(
    scores: list[EntityScore], edges: set[Edge], settings: FusionSettings
) -> list[EntityScore]:
    """Faults propagate to callers: a caller whose callee (direct or not) has comparable
    evidence is likely showing the callee's fault, so its score is discounted. Not when its
    strongest item is about its own resources (saturation, self-time): callees cannot
    cause those."""
    # a component with only metric deviations explains nothing (they are the noisiest kind)
    explaining = {s.key: s.score for s in scores if any(i.kind in ORIGIN_KINDS for i in s.items)}
    reach = _downstream(edges)
    result = []
    for score in scores:
        below = [explaining[k] for k in reach.get(score.key, ()) if k in explaining]
        own_resource = score.items[0].kind in OWN_RESOURCE_KINDS
        if below and not own_resource and max(below) >= settings.explained_ratio * score.score:
            score = score.model_copy(
                update={"score": round(score.score * settings.explained_factor, 4)}
            )
        result.append(score)
    return result


def _lifted(
    scores: list[EntityScore], entities: dict[str, Entity], settings: FusionSettings
) -> list[EntityScore]:
    """Scores for what several pods share: a service all of whose pods (two or more) carry
    evidence (a fault in its code), and a node hosting `node_min_pods` pods of different
    services with evidence while showing evidence itself (a node fault)."""
    pods_of: dict[str, list[str]] = defaultdict(list)
    on_node: dict[str, list[Entity]] = defaultdict(list)
    for entity in entities.values():
        if entity.level == Level.POD and entity.service:
            pods_of[entity.service].append(entity.name)
            if entity.node:
                on_node[entity.node].append(entity)
    pod_scores = {s.entity: s for s in scores if s.level == Level.POD}
    own = {s.key: s for s in scores}
    lifted = []
    for service, pods in pods_of.items():
        found = [pod_scores[p] for p in pods if p in pod_scores]
        if len(pods) >= 2 and len(found) == len(pods):
            lifted.append(_merged(Level.SERVICE.value, service, found, settings))
    for node, residents in on_node.items():
        found = [pod_scores[p.name] for p in residents if p.name in pod_scores]
        services = {entities[s.entity].service for s in found}
        node_score = own.get((Level.NODE.value, node))
        if len(services) >= settings.node_min_pods and node_score is not None:
            lifted.append(_merged(Level.NODE.value, node, [node_score, *found], settings))
    return lifted


def _merged(level: str, name: str, parts: list[EntityScore], s: FusionSettings) -> EntityScore:
    items = sorted((i for p in parts for i in p.items), key=lambda i: -weighted(i, s))
    best = max(p.score for p in parts)
    return EntityScore(
        level=level, entity=name, score=round(best * s.lift_bonus, 4), items=items[: s.max_items]
    )
