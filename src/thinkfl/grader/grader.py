"""The weighted multi-factor grader: S = a*R + b*P - g*H (+ the stage-specific terms)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from thinkfl.agent.trajectory import Trajectory
from thinkfl.grader.terms import (
    PathCache,
    TermSettings,
    diversity,
    format_score,
    hallucination,
    recall,
    route,
)
from thinkfl.telemetry import Entity, GroundTruth


class Weights(BaseModel):
    """Weights of the terms; hallucination is subtracted. Paper: a=1, b=0.2, g=0.2."""

    recall: float = 1.0
    route: float = 0.2
    hallucination: float = 0.2
    format: float = 0.0
    diversity: float = 0.0


# The three GRPO stages of the paper (§4). Stage 2 weighs recall slightly above diversity.
STAGES: dict[str, Weights] = {
    "stage1": Weights(recall=1.0, route=0.0, hallucination=0.0, format=0.5),
    "stage2": Weights(recall=1.0, route=0.0, hallucination=0.0, diversity=0.8),
    "stage3": Weights(recall=1.0, route=0.2, hallucination=0.2, format=0.2),
}


class Score(BaseModel):
    total: float
    breakdown: dict[str, float] = Field(default_factory=dict)


@dataclass(frozen=True)
class Term:
    """One graded term: its name (also its `Weights` field), sign and how it is computed."""

    name: str
    sign: float  # +1 a reward, -1 a penalty
    compute: Callable[[MultiFactorGrader, Trajectory, GroundTruth, dict[str, Entity]], float]


class MultiFactorGrader:
    """Scores a trajectory against its ground truth; keeps the diversity path cache."""

    def __init__(
        self, weights: Weights | None = None, settings: TermSettings | None = None
    ) -> None:
        self.weights = weights or Weights()
        self.settings = settings or TermSettings()
        self.cache = PathCache()

    def __call__(
        self, trajectory: Trajectory, truth: GroundTruth, entities: dict[str, Entity]
    ) -> Score:
        # recall is always reported; the other terms only where their stage weighs them
        terms = {
            term.name: term.compute(self, trajectory, truth, entities)
            for term in TERMS
            if term.name == "recall" or getattr(self.weights, term.name)
        }
        signs = {term.name: term.sign for term in TERMS}
        total = sum(
            signs[name] * getattr(self.weights, name) * value for name, value in terms.items()
        )
        return Score(total=round(total, 6), breakdown={k: round(v, 6) for k, v in terms.items()})


# Every term, declared once: the grader and the training reward functions iterate this.
TERMS: tuple[Term, ...] = (
    Term("recall", 1.0, lambda g, t, truth, e: recall(t, truth, e, g.settings)),
    Term("route", 1.0, lambda g, t, truth, e: route(t, truth, e, g.settings)),
    Term("hallucination", -1.0, lambda g, t, truth, _e: hallucination(t, truth, g.settings)),
    Term("format", 1.0, lambda _g, t, _truth, _e: format_score(t)),
    Term("diversity", 1.0, lambda g, t, truth, e: diversity(t, truth, e, g.cache, g.settings)),
)
