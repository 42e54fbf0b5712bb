"""Trajectories: everything one run of a case produced, saved as JSON lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from thinkfl.files import open_append
from thinkfl.telemetry import Candidate, GroundTruth, candidates


class Message(BaseModel):
    role: str  # system | user | assistant | tool
    content: str
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # native tool calls of an assistant turn
    # For `tool` (and `user` observation) messages: tokens the loss must not train on.
    is_observation: bool = False


class Step(BaseModel):
    """One tool call and what it returned."""

    turn: int
    tool: str
    arguments: dict[str, Any]
    observation: str
    ok: bool
    repeated: bool = False
    seconds: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)


class Finish(StrEnum):
    """How an investigation ended."""

    UNFINISHED = "unfinished"
    PRINTED = "printed"  # the model printed a usable answer while exploring
    FORCED = "forced"  # ... in the print-only turn after the budget was spent
    FALLBACK = "fallback"  # the loop ranked what the observations showed
    NO_ANSWER = "no_answer"
    WALL_CLOCK = "wall_clock"
    TOKENS = "tokens"
    ERROR = "error"  # a crashed backend; `Trajectory.error` says why

    @property
    def answered(self) -> bool:
        return self in (Finish.PRINTED, Finish.FORCED, Finish.FALLBACK)


class Trajectory(BaseModel):
    case_id: str
    policy: str
    truth: GroundTruth | None = None
    messages: list[Message] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    ranking: list[Candidate] = Field(default_factory=list)
    finish: Finish = Finish.UNFINISHED
    turns: int = 0
    replies_without_call: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    policy_seconds: float = 0.0
    prompt_seconds: float = 0.0  # of policy_seconds, reading prompts (where the backend says)
    tool_seconds: float = 0.0
    error: str | None = None
    store_failures: list[str] = Field(
        default_factory=list,
        description="tool calls the store failed underneath (a damaged file): no answer stands",
    )

    @field_validator("ranking", mode="before")
    @classmethod
    def _one_key_items(cls, value: object) -> object:
        """Trajectories saved before Candidate held {level: name} items."""
        return candidates(value) if isinstance(value, list) else value

    @property
    def explored(self) -> list[Step]:
        return [s for s in self.steps if s.tool != "print_results"]

    def valid_call_share(self) -> float:
        """Share of model replies that held a parsable tool call."""
        return 1.0 - self.replies_without_call / self.turns if self.turns else 0.0


def save_jsonl(trajectories: Iterable[Trajectory], path: Path) -> None:
    """Append trajectories to a JSONL file (one per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_append(path) as handle:
        for trajectory in trajectories:
            handle.write(trajectory.model_dump_json() + "\n")


def load_jsonl(path: Path) -> Iterator[Trajectory]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield Trajectory.model_validate_json(line)
