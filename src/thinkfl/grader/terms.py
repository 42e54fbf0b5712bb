"""The multi-factor grader's terms: plain functions of (trajectory, ground truth).

Paper §3 with its gaps filled (docs/evaluation.md):
- recall R: r = 0-based rank of the first hit. R = 1 − r/r_max for r < r_max (the paper's
  values), then 1/(r_max + r) for r ≥ r_max, so R falls monotonically with rank (the paper's
  formula gave rank 10 less than rank 11); an absent root cause scores 0.
- route P: the exploration path is the sequence of components the calls visited. If the
  root cause is visited, last at 1-based position r of L steps, P = min(r / (L − μ), 1)
  (full score within the last μ steps); otherwise P = min(L / D_max, 1).
- hallucination H = λ1·N_invented/N + λ2·N_duplicate/N over the N printed items, where an
  invented item names something no observation or argument of the run ever showed.
- format F: share of well-formed actions (replies with a parsable call to a known tool with
  its required arguments, and printed items with exactly one of service/pod/node).
- diversity D: per question, a cache of de-duplicated tool paths; a new path that finds the
  root cause earns A, a new wrong one B, a repeated one C (A ≫ B > C).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from thinkfl.agent.protocol import parse_tool_calls
from thinkfl.agent.trajectory import Trajectory
from thinkfl.grader.matching import MatchLevel, hits, rank_of_truth
from thinkfl.telemetry import Candidate, Entity, GroundTruth
from thinkfl.tools import TOOL_SPECS


class TermSettings(BaseModel):
    """The named constants of the terms, with their documented defaults."""

    r_max: int = Field(10, ge=1, description="recall: ranks at which R reaches 1/r_max")
    mu: int = Field(2, ge=0, description="route: full score when found within the last mu steps")
    d_max: int = Field(10, ge=1, description="route: the depth budget D_max")
    lambda_invented: float = Field(1.0, ge=0, description="hallucination weight of invented items")
    lambda_duplicate: float = Field(0.5, ge=0, description="hallucination weight of duplicates")
    novel_correct: float = Field(1.0, description="diversity A: new path, root cause found")
    novel_wrong: float = Field(0.1, description="diversity B: new path, root cause missed")
    repeated: float = Field(0.0, description="diversity C: a path already taken for this question")
    match: MatchLevel = MatchLevel.STRICT


def recall(
    trajectory: Trajectory, truth: GroundTruth, entities: dict[str, Entity], settings: TermSettings
) -> float:
    rank = rank_of_truth(trajectory.ranking, truth, entities, settings.match)
    if rank is None:
        return 0.0
    if rank < settings.r_max:
        return 1.0 - rank / settings.r_max
    return 1.0 / (settings.r_max + rank)


def visited(trajectory: Trajectory) -> list[tuple[Candidate, ...]]:
    """What each exploring call looked at, in order: the component(s) of one call (a span is
    named by its service, pod and node)."""
    path: list[tuple[Candidate, ...]] = []
    for step in trajectory.explored:
        if not step.ok:
            continue
        if step.tool in ("search_traces", "search_span") and step.data.get("where"):
            place = step.data["where"]
        elif "service_name" in step.arguments and step.data.get("entity"):
            place = step.data["entity"]
        else:
            continue
        path.append(tuple(Candidate.parse({level: name}) for level, name in place.items() if name))
    return path


def route(
    trajectory: Trajectory, truth: GroundTruth, entities: dict[str, Entity], settings: TermSettings
) -> float:
    path = visited(trajectory)
    length = len(path)
    positions = [
        index + 1
        for index, place in enumerate(path)
        if any(hits(candidate, truth, entities, MatchLevel.SERVICE) for candidate in place)
    ]
    if positions:
        span = length - settings.mu
        return 1.0 if span <= 0 else min(positions[-1] / span, 1.0)
    return min(length / settings.d_max, 1.0)


def _seen_text(trajectory: Trajectory) -> str:
    parts = [s.observation for s in trajectory.explored]
    parts += [json.dumps(s.arguments, default=str) for s in trajectory.explored]
    parts += [m.content for m in trajectory.messages if m.role == "user"]
    return "\n".join(parts)


def hallucination(trajectory: Trajectory, truth: GroundTruth, settings: TermSettings) -> float:
    items = trajectory.ranking
    if not items:
        return 0.0
    seen = _seen_text(trajectory)
    duplicates = len(items) - len(set(items))
    invented = sum(1 for item in items if item.name not in seen)
    return (settings.lambda_invented * invented + settings.lambda_duplicate * duplicates) / len(
        items
    )


_TOOLS = {spec.name: spec for spec in TOOL_SPECS}


def format_score(trajectory: Trajectory) -> float:
    checks: list[bool] = []
    for message in trajectory.messages:
        if message.role != "assistant":
            continue
        calls = parse_tool_calls(message.content)
        ok = bool(calls) and all(
            c.name in _TOOLS and set(_TOOLS[c.name].parameters["required"]) <= set(c.arguments)
            for c in calls
        )
        checks.append(ok)
    checks += [True] * len(trajectory.ranking)  # the answer tool keeps only well-formed items
    return sum(checks) / len(checks) if checks else 0.0


class PathCache:
    """Per question, the de-duplicated tool paths already taken (for the diversity term)."""

    def __init__(self) -> None:
        self._paths: dict[str, set[str]] = {}

    def add(self, question: str, path: str) -> bool:
        """Record a path; True when it is new for this question."""
        known = self._paths.setdefault(question, set())
        is_new = path not in known
        known.add(path)
        return is_new


def tool_path(trajectory: Trajectory) -> str:
    """The exploring calls of a run, de-duplicated in order, as one key."""
    seen: list[str] = []
    for step in trajectory.explored:
        key = json.dumps([step.tool, step.arguments], sort_keys=True, default=str)
        if key not in seen:
            seen.append(key)
    return "|".join(seen)


def diversity(
    trajectory: Trajectory,
    truth: GroundTruth,
    entities: dict[str, Entity],
    cache: PathCache,
    settings: TermSettings,
) -> float:
    if not cache.add(trajectory.case_id, tool_path(trajectory)):
        return settings.repeated
    found = rank_of_truth(trajectory.ranking, truth, entities, settings.match) is not None
    return settings.novel_correct if found else settings.novel_wrong
