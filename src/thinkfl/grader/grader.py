"""The weighted multi-factor grader: S = a*R + b*P - g*H (+ the stage-specific terms)."""

from __future__ import annotations

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
        w, s = self.weights, self.settings
        terms = {"recall": recall(trajectory, truth, entities, s)}
        if w.route:
            terms["route"] = route(trajectory, truth, entities, s)
        if w.hallucination:
            terms["hallucination"] = hallucination(trajectory, truth, s)
        if w.format:
            terms["format"] = format_score(trajectory)
        if w.diversity:
            terms["diversity"] = diversity(trajectory, truth, entities, self.cache, s)
        total = sum(
            (-1.0 if name == "hallucination" else 1.0) * getattr(w, name) * value
            for name, value in terms.items()
        )
        return Score(total=round(total, 6), breakdown={k: round(v, 6) for k, v in terms.items()})
