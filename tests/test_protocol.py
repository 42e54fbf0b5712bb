"""The lenient tool-call parser, fuzzed over the ways small models write calls."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from thinkfl.agent import parse_tool_calls

NAMES = st.sampled_from(["search_traces", "search_logs", "print_results", "search_span"])
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{}<>\"'\\"),
    max_size=30,
)
VALUES = st.one_of(
    st.text(alphabet="abcdef0123456789-_ .:", max_size=20),
    st.integers(-(10**6), 10**6),
    st.lists(
        st.fixed_dictionaries({"service": st.text(alphabet="abc-", min_size=1, max_size=8)}),
        max_size=3,
    ),
)
ARGUMENTS = st.dictionaries(
    st.sampled_from(["parent_span_id", "service_name", "timestamp", "root_causes"]),
    VALUES,
    max_size=3,
)


def python_repr(value) -> str:
    return repr(value)


STYLES = {
    "tagged": lambda n, a: f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>",
    "no_closing_tag": lambda n, a: f"<tool_call>{json.dumps({'name': n, 'arguments': a})}",
    "single_quotes": lambda n, a: (
        f"<tool_call>{python_repr({'name': n, 'arguments': a})}</tool_call>"
    ),
    "arguments_as_string": lambda n, a: (
        f"<tool_call>{json.dumps({'name': n, 'arguments': json.dumps(a)})}</tool_call>"
    ),
    "fenced": lambda n, a: f"```json\n{json.dumps({'name': n, 'arguments': a}, indent=2)}\n```",
    "bare": lambda n, a: json.dumps({"name": n, "arguments": a}),
    "openai_function": lambda n, a: json.dumps(
        {"function": {"name": n, "arguments": json.dumps(a)}}
    ),
    "fenced_inside_tag": lambda n, a: (
        f"<tool_call>\n```json\n{json.dumps({'name': n, 'arguments': a})}\n```\n</tool_call>"
    ),
}


@settings(max_examples=300, deadline=None)
@given(NAMES, ARGUMENTS, st.sampled_from(sorted(STYLES)), TEXT, TEXT)
def test_every_style_parses_to_the_same_call(name, arguments, style, before, after):
    text = f"{before}\n{STYLES[style](name, arguments)}\n{after}"
    calls = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in calls][:1] == [(name, arguments)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text):
    for call in parse_tool_calls(text):
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)


def test_examples_seen_from_small_models():
    assert parse_tool_calls("I think we should look deeper.") == []
    two = parse_tool_calls(
        '<tool_call>{"name": "search_traces", "arguments": {"parent_span_id": "a"}}</tool_call>'
        '<tool_call>{"name": "search_logs", "arguments": {"service_name": "cart"}}</tool_call>'
    )
    assert [c.name for c in two] == ["search_traces", "search_logs"]
    nested = parse_tool_calls(
        'Let me print. <tool_call>{"name": "print_results", "arguments": '
        '{"root_causes": [{"service": "a"}, {"pod": "b-1"}]}}'
    )
    assert nested[0].arguments == {"root_causes": [{"service": "a"}, {"pod": "b-1"}]}
    assert (
        parse_tool_calls('<tool_call>{"name": "x", "arguments": "not json"}</tool_call>')[
            0
        ].arguments
        == {}
    )
    assert (
        parse_tool_calls('{"tool": "search_span", "parameters": {"span_id": "s"}}')[0].name
        == "search_span"
    )


@given(st.integers(1, 20_000), st.sampled_from(["[", '{"a": ', '{"name": "x", "arguments": ']))
@settings(max_examples=30, deadline=None)
def test_deeply_nested_replies_never_raise(depth, opener):
    closer = {"[": "]"}.get(opener, "}")
    text = opener * depth + "1" + closer * depth
    calls = parse_tool_calls(f"<tool_call>{text}</tool_call>") + parse_tool_calls(text)
    # a call survives only with arguments of a nesting the tools could take
    assert all(not c.arguments or depth < 20 for c in calls)


def test_a_call_with_absurdly_nested_arguments_is_no_call():
    deep = {
        "name": "search_logs",
        "arguments": {"service_name": [[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]},
    }
    assert parse_tool_calls(json.dumps(deep)) == []
    shallow = {"name": "search_logs", "arguments": {"service_name": [["x"]]}}
    assert parse_tool_calls(json.dumps(shallow))[0].arguments == {"service_name": [["x"]]}
