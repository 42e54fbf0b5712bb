"""The reply grammar: derived from the tool declarations, identifiers limited to those shown."""

from __future__ import annotations

import re

import pytest

from storekit import build_store, fault
from test_tools import LOGS, METRICS, SPANS
from thinkfl.agent import ExpertPolicy, run_case
from thinkfl.agent.grammar import call_grammar
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
    # entry span, the root's two children, cart0001 (searched) and where each ran; no node
    # has been shown yet (the trace rows of this store carry none)
    assert shown.spans == ["root0001", "call0001", "cat00001", "cart0001"]
    assert shown.names == {"service": ["frontend", "cart"], "pod": ["frontend-0", "cart-1"]}


def test_the_grammar_allows_exactly_the_shown_identifiers(shown):
    text = call_grammar(TOOL_SPECS, shown, "2024-05-01T10:00:00+00:00")
    rules = dict(line.split(" ::= ", 1) for line in text.splitlines())
    quoted = re.compile(r'"\\"(.*?)\\""')
    assert quoted.findall(rules["span-search-traces"]) == shown.spans
    assert quoted.findall(rules["component-search-logs"]) == [
        "frontend",
        "cart",
        "frontend-0",
        "cart-1",
    ]
    assert quoted.findall(rules["pod-name"]) == ["frontend-0", "cart-1"]
    assert "node-name" not in rules and "node" not in rules["cause"]  # nothing to name there
    assert quoted.findall(rules["time"]) == ["2024-05-01T10:00:00+00:00"]
    # one rule per declared tool, the call wrapped in the protocol's tags
    assert rules["root"].startswith('"<tool_call>" (call-search-traces | call-search-span')
    from llama_cpp import LlamaGrammar

    LlamaGrammar.from_string(text, verbose=False)  # llama.cpp accepts it


def test_an_argument_without_an_identifier_kind_is_refused(shown):
    free = ToolSpec(
        name="free",
        description="x",
        parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": []},
    )
    with pytest.raises(ValueError, match=r"free\.q: no identifier kind"):
        call_grammar([free], shown, "t")


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
    rules = dict(
        line.split(" ::= ", 1) for line in call_grammar(TOOL_SPECS, shown, "t", made).splitlines()
    )
    quoted = re.compile(r'"\\"(.*?)\\""')
    assert quoted.findall(rules["span-search-traces"]) == ["call0001", "cat00001"]
    assert quoted.findall(rules["span-search-span"]) == shown.spans  # another tool: still open
    assert "cart" not in quoted.findall(rules["component-search-logs"])
    # every span searched: search_traces is no longer offered, the others still are
    spent = {"search_traces": set(shown.spans)}
    root = call_grammar(TOOL_SPECS, shown, "t", spent).splitlines()[0]
    assert "call-search-traces" not in root and "call-print-results" in root
