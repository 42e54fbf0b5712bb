"""Typed evidence: what a detector found about one entity, and the fused ranking.

An `EvidenceItem` says what was seen (kind, observed, normal), how strong it is (strength:
1.0 is the firing threshold of its detector, larger is stronger) and where to look
(pointers to spans, log templates or metric series). `Evidence` is everything found for
one case, with one fused score per entity.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class EvidenceKind(StrEnum):
    """What a detector measured. Each kind is documented in docs/evidence.md."""

    LOG_DROP = "log_drop"  # a normally frequent log template (nearly) stopped appearing
    LOG_RISE = "log_rise"  # a rare or new log template appeared far more than usual
    SELF_TIME = "self_time"  # time spent in the component's own spans (children excluded)
    INCOMING_GAP = "incoming_gap"  # time between a caller's client span and this callee's span
    OWN_ERRORS = "own_errors"  # error spans whose children did not fail: the error starts here
    METRIC_SHIFT = "metric_shift"  # a metric left its own recent range (flat series guarded)
    SATURATION = "saturation"  # a utilisation metric at its limit, normally well below it
    CALL_SHIFT = "call_shift"  # a caller stopped calling a callee, or started calling a new one


LOG_KINDS = frozenset({EvidenceKind.LOG_DROP, EvidenceKind.LOG_RISE})
METRIC_KINDS = frozenset({EvidenceKind.SATURATION, EvidenceKind.METRIC_SHIFT})


class EvidenceItem(BaseModel):
    """One finding about one entity (a service, a pod or a node, named as the tools name it)."""

    level: str
    entity: str
    kind: EvidenceKind
    subject: str = Field(description="what was measured: an operation, a log template, a metric")
    example: str = Field("", description="one line of a rising log template, ids masked")
    observed: float
    normal: float
    unit: str = ""
    strength: float = Field(description="1.0 = the detector's threshold; larger is stronger")
    capped: bool = Field(False, description="the strength hit its detector's cap (it was larger)")
    pointers: list[str] = Field(
        default_factory=list,
        description="span ids, 'log:<template id>' or 'metric:<entity>/<name>'",
    )

    def short(self) -> str:
        """One compact phrase for a small model: what, now against normal."""
        now, normal = short_number(self.observed) + self.unit, short_number(self.normal) + self.unit
        return f"{self.kind.value} {self.subject[:60]}: {now} vs {normal}"

    def strength_text(self) -> str:
        """The strength as what it is, a multiple of the detector's threshold, never to be
        read as observed / normal (a capped strength says so)."""
        return f"strength {self.strength:.1f}" + (" capped" if self.capped else "")


class EntityScore(BaseModel):
    """The fused score of one entity and the items that explain it, strongest first."""

    level: str
    entity: str
    score: float
    items: list[EvidenceItem]

    @property
    def key(self) -> tuple[str, str]:
        return self.level, self.entity


class Evidence(BaseModel):
    """Everything the detectors found for one case, and its ranking by fused score."""

    case_id: str
    window_start: datetime
    window_end: datetime
    baseline_start: datetime
    baseline_end: datetime
    baseline_note: str = ""
    scores: list[EntityScore] = Field(default_factory=list)

    def rank(self) -> list[EntityScore]:
        """Entities with evidence, highest fused score first."""
        return self.scores

    def score_of(self, level: str, entity: str) -> EntityScore | None:
        for score in self.scores:
            if score.level == level and score.entity == entity:
                return score
        return None

    def of_service(self, service: str, entities: dict[str, Any]) -> list[EntityScore]:
        """Scores of a service and of its pods (entities maps a name to its Entity)."""
        found = []
        for score in self.scores:
            entity = entities.get(score.entity)
            owner = entity.service if entity is not None else None
            if score.entity == service or owner == service:
                found.append(score)
        return found


def short_number(value: float) -> str:
    """A number in a few characters: whole from 100, one decimal from 1, else 2 significant
    digits (95.0, 0.042, 4322)."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"
