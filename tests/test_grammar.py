"""The reply grammar: derived from the tool declarations, identifiers limited to those shown."""

from __future__ import annotations

import json

import pytest

from storekit import build_store, fault
from test_tools import LOGS, METRICS, SPANS
from thinkfl.agent import ExpertPolicy, run_case
from thinkfl.agent.grammar import call_grammar, reply_choices
from thinkfl.agent.seen import shown_identifiers
from thinkfl.models.backends import openai_tools
from thinkfl.tools import TOOL_SPECS, Toolbox, ToolSpec


@pytest.fixture()
def shown(tmp_path):
    store = build_store(tmp_path / "s", SPANS, METRICS, LOGS, faults=[fault("f", 1000, "cart")])
    box = Toolbox(store, store.cases()[0])
    steps = run_case(box, ExpertPolicy()).steps[:2]  # the root's children, then cart0001's
    return shown_identifiers(steps, box.case.entry_span_id, box.case.entry_service)


def test_the_dialogue_shows_these_identifiers(shown):
    # entry span, the root's first child and the evidence it points to below it (cart0001,
    # searched next), the second child, and where each ran; no node has been shown yet (the
    # trace rows of this store carry none)
    assert shown.spans == ["root0001", "call0001", "cart0001", "cat00001"]
    assert shown.names == {"service": ["frontend", "cart"], "pod": ["frontend-0", "cart-1"]}


def _arguments(choices, tool: str) -> list[str]:
    """The first argument of every offered call of `tool`."""
    calls = [json.loads(call) for call in choices.calls]
    return [next(iter(c["arguments"].values())) for c in calls if c["name"] == tool]


def test_the_choices_allow_exactly_the_shown_identifiers(shown):
    choices = reply_choices(TOOL_SPECS, shown, "2024-05-01T10:00:00+00:00")
    assert _arguments(choices, "search_traces") == shown.spans
    assert _arguments(choices, "search_logs") == ["frontend", "cart", "frontend-0", "cart-1"]
    assert {json.loads(c)["arguments"].get("timestamp") for c in choices.calls} == {
        None,  # the span tools take no time
        "2024-05-01T10:00:00+00:00",
    }
    # the answer names shown components at their own level; no node was shown
    assert [json.loads(c) for c in choices.causes] == [
        {"service": "frontend"},
        {"service": "cart"},
        {"pod": "frontend-0"},
        {"pod": "cart-1"},
    ]
    assert choices.answer_open == '{"name": "print_results", "arguments": {"root_causes": ['
    # the same language as GBNF, for servers that take a grammar; llama.cpp accepts it
    text = call_grammar(choices)
    assert text.count('\\"search_traces\\"') == len(shown.spans)
    from llama_cpp import LlamaGrammar

    LlamaGrammar.from_string(text, verbose=False)


def test_an_argument_without_an_identifier_kind_is_refused(shown):
    free = ToolSpec(
        name="free",
        description="x",
        parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": []},
    )
    with pytest.raises(ValueError, match=r"free\.q: no identifier kind"):
        reply_choices([free], shown, "t")


def test_endpoints_get_the_schema_without_our_marks():
    for tool in openai_tools(TOOL_SPECS):
        for schema in tool["function"]["parameters"]["properties"].values():
            assert not any(key.startswith("x-") for key in schema)


def test_calls_already_made_are_left_out(shown, tmp_path):
    from thinkfl.agent.grammar import calls_made

    store = build_store(tmp_path / "m", SPANS, METRICS, LOGS, faults=[fault("f", 1000, "cart")])
    box = Toolbox(store, store.cases()[0])
    steps = run_case(box, ExpertPolicy()).steps[:4]  # two trace searches, cart's logs and metrics
    made = calls_made(steps, TOOL_SPECS)
    assert made == {
        "search_traces": {"root0001", "cart0001"},
        "search_logs": {"cart"},
        "search_fluctuating_metrics": {"cart"},
    }
    choices = reply_choices(TOOL_SPECS, shown, "t", made)
    assert _arguments(choices, "search_traces") == ["call0001", "cat00001"]
    assert _arguments(choices, "search_span") == shown.spans  # another tool: still open
    assert "cart" not in _arguments(choices, "search_logs")
    # every span searched: search_traces is no longer offered, the others still are
    spent = reply_choices(TOOL_SPECS, shown, "t", {"search_traces": set(shown.spans)})
    assert not _arguments(spent, "search_traces") and spent.answer_open
