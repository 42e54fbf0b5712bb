"""The tool-call protocol: prompts in the paper's style and a lenient tool-call parser.

A model writes `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. Small models get
this slightly wrong in many ways, so the parser also accepts: a missing closing tag, single
quotes (Python dict syntax), arguments given as a JSON string, fenced or bare JSON, prose
around the call, and the OpenAI shapes `{"function": {"name", "arguments"}}`.
"""

from __future__ import annotations

import ast
import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from thinkfl.telemetry import FailureCase
from thinkfl.tools import TOOL_SPECS, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class ToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None  # set by endpoints with native tool calling


def tools_block(specs: list[ToolSpec]) -> str:
    lines = []
    for spec in specs:
        args = ", ".join(spec.parameters["properties"])
        lines.append(f"- {spec.name}({args}): {spec.description}")
    return "\n".join(lines)


SYSTEM_PROMPT = """You are an expert site reliability engineer. A request to a microservice \
system failed or was far slower than normal. Find the root cause: the service, pod or node \
where the failure started.

Think recursively (Recursion-of-Thought): start from the entry span, list its child calls \
with search_traces, and follow the calls that are failing or slow, one level deeper each \
time, until you reach the component where the time is spent or the error starts. Check the \
metrics and logs of the suspects around the failure time. Do not guess names: use only \
services, pods and nodes that tools showed you.

Tools:
{tools}

Call exactly one tool per reply, written as
<tool_call>{{"name": "search_traces", "arguments": {{"parent_span_id": "..."}}}}</tool_call>
When you are sure, finish with print_results and at least three candidates, most likely first:
<tool_call>{{"name": "print_results", "arguments": {{"root_causes": [{{"service": "..."}}, \
{{"pod": "..."}}, {{"node": "..."}}]}}}}</tool_call>"""


class DialogueStyle(StrEnum):
    """How a dialogue is written: `full`, the tool manual and long observations (untrained and
    remote models, and adapters trained on it); `compact`, a short prompt and the compact
    observations (tools/compact.py) for a small model trained on them."""

    FULL = "full"
    COMPACT = "compact"


# For a model trained on compact dialogues: what the manual says, in the fewest tokens.
COMPACT_SYSTEM_PROMPT = (
    "Find the root cause (service, pod or node) of a failed or slow request. From the entry "
    "span, follow failing or high-evidence calls down with search_traces; check search_logs "
    "and search_fluctuating_metrics of suspects. Use only names shown.\n"
    "Tools: {tools}\n"
    'One call per reply: <tool_call>{{"name": ..., "arguments": {{...}}}}</tool_call>\n'
    "Finish with print_results, at least three causes, most likely first."
)


def _untimed(properties: dict[str, Any]) -> list[str]:
    return [name for name, schema in properties.items() if schema.get("x-identifier") != "time"]


def system_prompt(
    specs: list[ToolSpec] | None = None, style: DialogueStyle = DialogueStyle.FULL
) -> str:
    if style == DialogueStyle.COMPACT:
        # compact calls leave the time out (the tools default to the failure time)
        signatures = [
            f"{spec.name}({', '.join(_untimed(spec.parameters['properties']))})"
            for spec in specs or TOOL_SPECS
        ]
        return COMPACT_SYSTEM_PROMPT.format(tools="; ".join(signatures))
    return SYSTEM_PROMPT.format(tools=tools_block(specs or TOOL_SPECS))


def user_prompt(case: FailureCase, style: DialogueStyle = DialogueStyle.FULL) -> str:
    if style == DialogueStyle.COMPACT:
        status = "failed" if case.entry_status == "error" else "slow"
        return (
            f"Entry {case.entry_service} {case.entry_operation[:40]} {status}: "
            f"{case.entry_duration_us / 1000:.0f} ms, {case.latency_ratio:.1f}x normal. "
            f"Span {case.entry_span_id}"
        )
    status = "failed" if case.entry_status == "error" else "was slow"
    return (
        f"The request entering at service {case.entry_service} ({case.entry_operation}) {status}: "
        f"it took {case.entry_duration_us / 1000:.0f} ms, about {case.latency_ratio:.1f} times "
        f"its normal duration.\nEntry span id: {case.entry_span_id}\n"
        f"Failure time: {case.entry_start.isoformat()}\n"
        "Find the root cause."
    )


FORCE_PRINT = (
    "The investigation budget is spent. Reply now with print_results only, ranking at least "
    "three of the services, pods or nodes you have seen, most likely first."
)


def force_print_nudge(candidates: list[dict[str, str]], shown: int = 5) -> str:
    """The forced-answer nudge, with the strongest candidates of what the observations showed
    (a small model asked to rank from memory tends to name the last thing it looked at)."""
    if not candidates:
        return FORCE_PRINT
    listed = ", ".join(json.dumps(item, ensure_ascii=False) for item in candidates[:shown])
    return f"{FORCE_PRINT} Strongest in your observations so far: {listed}."


NO_CALL = (
    "No tool call found. Reply with one call written as "
    '<tool_call>{"name": "...", "arguments": {...}}</tool_call>'
)
REPEATED = "You already made this exact call; its result is above. Try another span or component."
RETHINK = (
    "Before printing, rethink: have you followed the slow or failing calls down to the deepest "
    "component, and checked its metrics and logs? Inspect deeper, then print_results."
)


def observation_message(tool: str, text: str) -> str:
    return f"<tool_response>\n{tool}: {text}\n</tool_response>"


# --- parsing ---------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|JSON|tool_call)?\s*(.*?)```", re.S)


def _balanced_objects(text: str) -> list[str]:
    """Every top-level {...} substring, honouring quotes; an unclosed one runs to the end."""
    found, depth, start, quote, escaped = [], 0, -1, "", False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'" and depth:
            quote = char
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                found.append(text[start : index + 1])
    if depth and start >= 0:
        found.append(text[start:] + "}" * depth)
    return found


def _load(candidate: str) -> Any:
    for attempt in (candidate, candidate.replace("\n", " ")):
        try:
            return json.loads(attempt)
        except (json.JSONDecodeError, ValueError, RecursionError):
            pass
        try:
            python = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", attempt))
            python = re.sub(r"\bnull\b", "None", python)
            return ast.literal_eval(python)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None


MAX_ARGUMENT_DEPTH = 16  # deeper arguments are no call: nothing the tools take nests so deep


def _too_deep(obj: Any, limit: int = MAX_ARGUMENT_DEPTH) -> bool:
    """Whether lists/dicts nest deeper than `limit` (iterative: safe on any depth)."""
    todo = [(obj, 0)]
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            todo.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            todo.extend((value, depth + 1) for value in item)
    return False


def _as_call(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict) or _too_deep(obj):
        return None
    if isinstance(obj.get("function"), dict):
        obj = {**obj["function"], "id": obj.get("id")}
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    if isinstance(arguments, str):
        loaded = _load(arguments) if arguments.strip() else {}
        arguments = loaded if isinstance(loaded, dict) else {}
    if not isinstance(arguments, dict):
        arguments = {}
    call_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    return ToolCall(name=name.strip(), arguments=arguments, id=call_id)


def _calls_in(text: str) -> list[ToolCall]:
    calls = []
    for candidate in _balanced_objects(text):
        call = _as_call(_load(candidate))
        if call is not None:
            calls.append(call)
    return calls


def parse_tool_calls(text: str) -> list[ToolCall]:
    """All tool calls in a model reply, in order; [] when there is none. Never raises."""
    if not text:
        return []
    if OPEN in text:
        calls: list[ToolCall] = []
        for chunk in text.split(OPEN)[1:]:
            body = chunk.split(CLOSE, 1)[0]
            fenced = _FENCE.findall(body)
            found = _calls_in(" ".join(fenced) if fenced else body)
            calls.extend(found[:1])  # one call per tag
        if calls:
            return calls
    fenced = _FENCE.findall(text)
    if fenced:
        calls = [c for block in fenced for c in _calls_in(block)]
        if calls:
            return calls
    return _calls_in(text)
