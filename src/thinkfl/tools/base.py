"""What every tool shares: its declaration (name, description, an argument model that
generates the schema), the observation it returns, and the limits of its text.

A tool is a `Tool` subclass: `Arguments` (a Pydantic model: the JSON schema shown to a
model is generated from it, and the arguments of a call are validated by it) and `run`,
which returns an `Observation` whose `data` is the dump of a typed result model. One
registry (`thinkfl.tools.registry.TOOLS`) drives the prompt, the grader's format check and
the dispatch.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

if TYPE_CHECKING:
    from thinkfl.telemetry import Entity
    from thinkfl.tools.toolbox import Toolbox


class ToolLimits(BaseModel):
    """Budgets and windows of the tools (defaults follow the authors' server where sane)."""

    max_rows: int = Field(15, ge=1, description="rows per observation before it is cut")
    sigma: float = Field(3.0, gt=0, description="n of the n-sigma fluctuation test")
    baseline_before_s: float = Field(1200.0, description="baseline starts this long before t")
    baseline_gap_s: float = Field(300.0, description="baseline ends this long before t")
    current_before_s: float = Field(60.0, description="tested window starts before t")
    current_after_s: float = Field(300.0, description="tested window ends after t")
    log_window_s: float = Field(60.0, description="logs within +- this of t")
    log_baseline_windows: int = Field(5, ge=1, description="windows before, for usual rates")
    max_evidence_rows: int = Field(4, ge=1, description="evidence items shown per observation")
    error_rows: int = Field(3, ge=1, description="error/warning patterns shown by search_logs")
    max_time_offset_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="a timestamp further than this from the failure time is refused",
    )
    max_observation_chars: int = Field(
        4000, ge=200, description="characters of an observation's text before it is cut"
    )
    max_data_items: int = Field(
        100, ge=1, description="items of any list in an observation's data before it is cut"
    )
    max_data_chars: int = Field(
        300, ge=20, description="characters of any string in an observation's data"
    )
    max_answer_items: int = Field(20, ge=3, description="root causes read from one answer")


class Observation(BaseModel):
    """What a tool call returns to the agent: text for the model, data for programs."""

    tool: str
    text: str
    ok: bool = True
    truncated: bool = False
    data: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(BaseModel):
    """A tool as declared to a model (OpenAI `tools` style JSON schema)."""

    name: str
    description: str
    parameters: dict[str, Any]


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 text, or epoch seconds/ms/µs/ns (number or digits); None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not math.isfinite(number):
        return None
    scale = next(
        (s for limit, s in ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6)) if abs(number) < limit), 1e9
    )
    try:
        return datetime.fromtimestamp(number / scale, UTC)
    except (OverflowError, ValueError, OSError):  # beyond the years datetime can hold
        return None


_VOLATILE = re.compile(r"\b[0-9a-f]{12,}\b|\b\d+(\.\d+)?\b|[0-9a-f]{8}-[0-9a-f-]{27}")


def log_pattern(message: str) -> str:
    """A message with ids and numbers masked, so repeats group together."""
    return _VOLATILE.sub("<*>", message)[:160]


class Identifier(StrEnum):
    """What an argument names, for constrained generation (thinkfl.agent.grammar): its value
    is one of the identifiers of that kind the dialogue has shown."""

    SPAN = "span"
    COMPONENT = "component"  # a service, pod or node
    TIME = "time"
    RANKING = "ranking"  # a list of {"service"|"pod"|"node": name}


def identifies(kind: Identifier) -> dict[str, JsonValue]:
    """The schema mark of an argument that names an identifier of `kind`."""
    return {"x-identifier": kind.value}


class ToolArguments(BaseModel):
    """Arguments as a model sends them: unknown keys ignored, numbers read as text (an epoch
    timestamp, a numeric id); each tool checks the meaning itself and refuses with a hint."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class Tool:
    """A tool declared to the model and run over one case's `Toolbox`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Arguments: ClassVar[type[ToolArguments]]

    @classmethod
    def spec(cls) -> ToolSpec:
        """The declaration shown to a model, generated from the argument model."""
        schema = cls.Arguments.model_json_schema()
        properties = {
            key: {k: v for k, v in value.items() if k != "title"}
            for key, value in schema.get("properties", {}).items()
        }
        return ToolSpec(
            name=cls.name,
            description=cls.description,
            parameters={
                "type": "object",
                "properties": properties,
                "required": list(schema.get("required", [])),
            },
        )

    def run(self, box: Toolbox, arguments: Any) -> Observation:
        raise NotImplementedError


class EntityAtTime(ToolArguments):
    """The metric and log tools take the same arguments: a component and a time."""

    service_name: str = Field(
        description="a service, pod or node name, exactly as shown",
        json_schema_extra=identifies(Identifier.COMPONENT),
    )
    timestamp: str | None = Field(
        None,
        description="ISO 8601 or epoch seconds, e.g. the entry span's start (default: the "
        "failure time of the question)",
        json_schema_extra=identifies(Identifier.TIME),
    )


class EntityTool(Tool):
    """A tool about one component around a time (the metric and log tools)."""

    Arguments = EntityAtTime

    def run(self, box: Toolbox, arguments: EntityAtTime) -> Observation:
        found = box.entity_at(self.name, arguments.service_name, arguments.timestamp)
        if isinstance(found, Observation):
            return found
        return self.look(box, *found)

    def look(self, box: Toolbox, entity: Entity, when: datetime) -> Observation:
        raise NotImplementedError


class ComponentScore(BaseModel):
    """The fused evidence score of one component an observation covers."""

    level: str
    name: str
    score: float
    kinds: list[str]
    service: str | None = Field(None, description="its service (None for a node)")
