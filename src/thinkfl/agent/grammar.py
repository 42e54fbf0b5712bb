"""A grammar for one reply: exactly one tool call, derived from the tool declarations, whose
identifiers are those the dialogue has shown.

Each declared argument carries what it names (`x-identifier` in its schema: a span, a
component, a time, a ranking); the grammar lets a span argument be only a span id seen so
far, a component only a service, pod or node seen so far, the time only the failure time of
the question, and a ranking only 1 to `max_causes` seen components at their own level; a
call already made (same tool, same span or component) is left out. A model decoding under
it writes a parsable, new call that names nothing invented (llama.cpp GBNF).
"""

from __future__ import annotations

import json

from thinkfl.agent.protocol import CLOSE, OPEN
from thinkfl.agent.seen import LEVELS, ShownIdentifiers
from thinkfl.agent.trajectory import Step
from thinkfl.tools import ToolSpec
from thinkfl.tools.base import Identifier

MAX_CAUSES = 5
KINDS = {kind.value for kind in Identifier}


def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _choice(values: list[str]) -> str:
    """A JSON string that is one of `values`."""
    return " | ".join(_literal(json.dumps(value, ensure_ascii=False)) for value in values)


def _rule_name(tool: str) -> str:
    return "call-" + tool.replace("_", "-")


def call_grammar(
    specs: list[ToolSpec],
    shown: ShownIdentifiers,
    failure_time: str,
    made: dict[str, set[str]] | None = None,
) -> str:
    """GBNF for one `<tool_call>{...}</tool_call>` of one of `specs` (module doc). `made`:
    per tool, the span or component it was already called with — a repeat answers nothing
    new, so the grammar leaves it out (a tool with nothing left is not offered)."""
    made = made or {}
    pools = {"span": shown.spans, "component": shown.components}
    rules: dict[str, str] = {}
    calls = []
    for spec in specs:
        parts = [_literal(f'{{"name": "{spec.name}", "arguments": {{')]
        offered = True
        for index, (name, schema) in enumerate(spec.parameters["properties"].items()):
            kind = schema.get("x-identifier")
            if kind not in KINDS:
                raise ValueError(f"{spec.name}.{name}: no identifier kind to constrain it by")
            rule = kind  # time and ranking: one rule for all tools
            if kind in pools:
                fresh = [v for v in pools[kind] if v not in made.get(spec.name, set())]
                rule = f"{kind}-{spec.name.replace('_', '-')}"
                rules[rule] = _choice(fresh) if fresh else ""
                offered = offered and bool(fresh)
            separator = ", " if index else ""
            parts += [_literal(f'{separator}"{name}": '), rule]
        if not offered:
            continue
        parts.append(_literal("}}"))
        rules[_rule_name(spec.name)] = " ".join(parts)
        calls.append(_rule_name(spec.name))
    if not calls:  # everything was made already: allow repeats rather than nothing
        return call_grammar(specs, shown, failure_time)
    rules = {name: body for name, body in rules.items() if body}
    rules["time"] = _choice([failure_time])
    causes = [
        f"{_literal('{' + json.dumps(level) + ': ')} {level}-name {_literal('}')}"
        for level in LEVELS
        if shown.names.get(level)
    ]
    for level in LEVELS:
        if shown.names.get(level):
            rules[f"{level}-name"] = _choice(shown.names[level])
    rules["cause"] = " | ".join(causes)
    rules["ranking"] = _ranking_rule()
    head = f"root ::= {_literal(OPEN)} ({' | '.join(calls)}) {_literal(CLOSE)}"
    return "\n".join([head, *(f"{name} ::= {body}" for name, body in rules.items())])


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


def _ranking_rule() -> str:
    """ "[" cause ("," cause){0,MAX-1} "]", spelled out (no repetition operator needed)."""
    tail = ""
    for _ in range(MAX_CAUSES - 1):
        tail = f"({_literal(', ')} cause {tail})?"
    return f"{_literal('[')} cause {tail} {_literal(']')}"
