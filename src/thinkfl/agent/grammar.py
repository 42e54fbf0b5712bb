"""What one reply may be: exactly one tool call, derived from the tool declarations, whose
identifiers are those the dialogue has shown.

A reply is the call as a bare JSON object, the form the SFT data teaches (`plain_calls`:
in small Qwen models the `<tool_call>` tags are untrained special tokens); the protocol's
parser reads it. Each declared argument carries what it names (`x-identifier` in its schema: a span, a
component, a time, a ranking). A span argument may be only a span id seen so far, a
component only a service, pod or node seen so far, the time only the failure time of the
question, and a ranking 1 to `MAX_CAUSES` distinct seen components at their own level; a
call already made (same tool, same span or component) is left out.

`ReplyChoices` states this as a short sequence of choices among literal strings: which call
(or the start of an answer), then answer items and separators. The token decoders in
`thinkfl.models.constrained` walk it (llama.cpp engine and a transformers logits
processor), and `call_grammar` renders the same language as GBNF for servers that take a
grammar. A model decoding under it writes a parsable, new call that names nothing invented.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

from thinkfl.agent.seen import LEVELS, ShownIdentifiers, shown_identifiers
from thinkfl.agent.trajectory import Step
from thinkfl.tools import ToolSpec
from thinkfl.tools.base import Identifier

MAX_CAUSES = 5
MIN_CAUSES = 3  # the prompt asks for at least three (fewer when fewer were shown)
KINDS = {kind.value for kind in Identifier}
SEPARATOR = ", "


@dataclass(frozen=True)
class ReplyChoices:
    """The replies allowed for one turn, as a sequence of choices among literal strings.

    First choice: one of `calls` (a complete exploring call: the reply is finished) or
    `answer_open` (the start of an answer). An answer continues with one of `causes`, then
    `SEPARATOR` and another cause not yet chosen, until `answer_close`.
    """

    calls: tuple[str, ...]
    answer_open: str | None = None
    causes: tuple[str, ...] = ()
    answer_close: str = "]}}"
    min_causes: int = MIN_CAUSES
    max_causes: int = MAX_CAUSES
    _first: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        first = self.calls + ((self.answer_open,) if self.answer_open and self.causes else ())
        if not first:
            raise ValueError("a reply with nothing to choose: no call and no answer offered")
        object.__setattr__(self, "_first", first)

    def options(self, chosen: list[str]) -> tuple[str, ...]:
        """The strings that may come next after `chosen`; () when the reply is complete."""
        if not chosen:
            return self._first
        if chosen[0] != self.answer_open or chosen[-1] == self.answer_close:
            return ()
        picked = [c for c in chosen[1:] if c in self.causes]
        if chosen[-1] in (self.answer_open, SEPARATOR):
            return tuple(c for c in self.causes if c not in picked)
        enough = len(picked) >= min(self.min_causes, len(self.causes))
        more = len(picked) < self.max_causes and len(picked) < len(self.causes)
        return ((SEPARATOR,) if more else ()) + ((self.answer_close,) if enough or not more else ())


def _fresh(values: list[str], made: set[str]) -> list[str]:
    return [value for value in values if value not in made]


def _call_text(tool: str, arguments: dict[str, str]) -> str:
    return json.dumps({"name": tool, "arguments": arguments}, ensure_ascii=False)


def reply_choices(
    specs: list[ToolSpec],
    shown: ShownIdentifiers,
    failure_time: str | None,
    made: dict[str, set[str]] | None = None,
) -> ReplyChoices:
    """The calls of `specs` naming only what was shown (module doc). `made`: per tool, the
    span or component it was already called with; a repeat answers nothing new, so it is left
    out (when everything was made already, repeats are allowed rather than nothing).
    `failure_time` None: calls leave their time argument out (compact dialogues; the tools
    default to the failure time)."""
    made = made or {}
    pools = {"span": shown.spans, "component": shown.components, "time": [failure_time or ""]}
    calls: list[str] = []
    answer_open = None
    for spec in specs:
        properties = spec.parameters["properties"]
        kinds = {name: schema.get("x-identifier") for name, schema in properties.items()}
        if failure_time is None:
            kinds = {name: kind for name, kind in kinds.items() if kind != "time"}
        for name, kind in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"{spec.name}.{name}: no identifier kind to constrain it by")
        if "ranking" in kinds.values():
            (argument,) = kinds  # an answer tool takes the ranking alone
            head = json.dumps({"name": spec.name, "arguments": {argument: []}})
            answer_open = head[: head.rindex("[") + 1]
            continue
        values = [
            _fresh(pools[str(kind)], made.get(spec.name, set()))
            if kind != "time"
            else pools["time"]
            for kind in kinds.values()
        ]
        for combination in itertools.product(*values):
            calls.append(_call_text(spec.name, dict(zip(kinds, combination, strict=True))))
    causes = tuple(
        json.dumps({level: name}, ensure_ascii=False)
        for level in LEVELS
        for name in shown.names.get(level, [])
    )
    if not calls and made and not (answer_open and causes):
        return reply_choices(specs, shown, failure_time)
    return ReplyChoices(tuple(calls), answer_open, causes)


def calls_made(steps: list[Step], specs: list[ToolSpec]) -> dict[str, set[str]]:
    """Per tool, the span ids or component names it was called with in `steps`."""
    kinds = {
        spec.name: [
            name
            for name, schema in spec.parameters["properties"].items()
            if schema.get("x-identifier") in ("span", "component")
        ]
        for spec in specs
    }
    made: dict[str, set[str]] = {}
    for step in steps:
        for argument in kinds.get(step.tool, []):
            if argument in step.arguments:
                made.setdefault(step.tool, set()).add(str(step.arguments[argument]))
    return made


def turn_choices(
    specs: list[ToolSpec],
    steps: list[Step],
    entry_span: str,
    entry_service: str,
    time: str | None,
    handles: bool = False,
) -> ReplyChoices:
    """The choices of the next reply of a dialogue that made `steps` so far (`handles`: name
    spans by the short handles compact observations show)."""
    shown = shown_identifiers(steps, entry_span, entry_service, handles)
    return reply_choices(specs, shown, time, calls_made(steps, specs))


# --- GBNF, for servers that take a grammar (llama.cpp server `grammar`) -----------------------
def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def call_grammar(choices: ReplyChoices) -> str:
    """`choices` as GBNF: the same language the token decoders walk."""
    first = [_literal(call) for call in choices.calls]
    rules = []
    if choices.answer_open and choices.causes:
        first.append("answer")
        # distinct causes are not expressible in GBNF without listing permutations: the
        # grammar allows repeats, the answer tool's de-duplication covers them
        least = min(choices.min_causes, len(choices.causes))
        most = min(choices.max_causes, len(choices.causes))
        tail = ""
        for index in range(most - 1, 0, -1):
            tail = f"{_literal(SEPARATOR)} cause {tail}"
            if index >= least:
                tail = f"({tail})?"
        rules.append(
            f"answer ::= {_literal(choices.answer_open)} cause {tail} "
            f"{_literal(choices.answer_close)}"
        )
        rules.append("cause ::= " + " | ".join(_literal(c) for c in choices.causes))
    return "\n".join(["root ::= " + " | ".join(first), *rules])
