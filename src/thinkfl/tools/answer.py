"""The answer tool: the ranked root causes, checked against the known entities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from thinkfl.telemetry import Candidate, Level
from thinkfl.tools.base import Identifier, Observation, Tool, ToolArguments, identifies

if TYPE_CHECKING:
    from thinkfl.tools.toolbox import Toolbox


class Answer(BaseModel):
    ranking: list[Candidate] = Field(description="the causes as read, most likely first")
    problems: list[str] = Field(default_factory=list)


class AnswerArguments(ToolArguments):
    root_causes: Any = Field(
        description='most likely first, at least three, each {"service": name} or '
        '{"pod": name} or {"node": name}',
        json_schema_extra={
            "type": "array",
            "items": {"type": "object"},
            **identifies(Identifier.RANKING),
        },
    )


class PrintResults(Tool):
    name = "print_results"
    description = (
        "Finish: give the ranked root causes, most likely first, at least three, "
        'each {"service": name} or {"pod": name} or {"node": name}.'
    )
    Arguments = AnswerArguments

    def run(self, box: Toolbox, arguments: AnswerArguments) -> Observation:
        tool = self.name
        root_causes = arguments.root_causes
        if not isinstance(root_causes, list):
            return box.refuse(
                tool, 'root_causes must be a list like [{"service": "cartservice"}, ...]'
            )
        ranking: list[Candidate] = []
        problems: list[str] = []
        ignored = max(0, len(root_causes) - box.limits.max_answer_items)
        for index, item in enumerate(root_causes[: box.limits.max_answer_items]):
            keys = [k for k in ("service", "pod", "node") if isinstance(item, dict) and k in item]
            if len(keys) != 1 or len(item) != 1:
                problems.append(f"item {index + 1} must have exactly one of service, pod, node")
                continue
            level, name = keys[0], str(item[keys[0]]).strip()[:200]
            entity = box.entities.get(name)
            if entity is None or entity.level.value != level:
                problems.append(f"item {index + 1}: no {level} named '{name[:60]}'")
            ranking.append(Candidate(level=Level(level), name=name))
        text = "results: " + ", ".join(str(candidate) for candidate in ranking)
        if ignored:
            text += f" ({ignored} more items not read: {box.limits.max_answer_items} at most)"
        if problems:
            text += "\nproblems: " + "; ".join(problems) + ". " + box.valid_names_hint()
        answer = Answer(ranking=ranking, problems=problems)
        return Observation(tool=tool, text=text, ok=not problems, data=answer.model_dump())
