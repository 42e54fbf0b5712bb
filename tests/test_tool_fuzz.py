"""Tools never raise and stay bounded, whatever a model sends (hypothesis over the argument
space: right and wrong names, types, deep nesting, huge strings, absurd timestamps)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_tools import LOGS, METRICS, SPANS, build_store, fault
from thinkfl.tools import TOOLS, Toolbox
from thinkfl.tools.base import ToolLimits

LIMITS = ToolLimits()
NAMES = ["root0001", "call0001", "cat00001", "cart", "front", "nope", "", "0" * 64]
ARGUMENT_KEYS = ["parent_span_id", "service_name", "timestamp", "root_causes", "severity", "x"]
TIMESTAMPS = ["0001-01-01", "9999-12-31T23:59:59", "1e300", "-99999999999", "nan", "2024-05-01"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES + TIMESTAMPS),
    st.text(max_size=50),
    st.integers(1, 200_000).map(lambda n: "x" * n),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.sampled_from(["service", "pod", "node", "k"]), inner, max_size=3),
    ),
    max_leaves=20,
)
arguments = st.one_of(
    st.dictionaries(st.sampled_from(ARGUMENT_KEYS), values, max_size=4),
    values,
)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    store = build_store(
        tmp_path_factory.mktemp("fuzz") / "s",
        SPANS,
        METRICS,
        LOGS,
        faults=[fault("f", 1000, "cart")],
    )
    return Toolbox(store, store.cases()[0])


def nested(depth: int) -> object:
    value: object = "root0001"
    for _ in range(depth):
        value = [value]
    return value


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from([*TOOLS, "nope", ""]), given_arguments=arguments)
def test_any_call_gives_a_bounded_observation(box, name, given_arguments):
    observation = box.call(name, given_arguments)
    assert len(observation.text) <= LIMITS.max_observation_chars + 40
    assert len(json.dumps(observation.data, default=str)) < 120_000


def test_huge_and_deep_arguments_are_cut_not_echoed(box):
    huge = "p" * 1_000_000
    refused = box.call("search_traces", {"parent_span_id": huge})
    assert not refused.ok and len(refused.text) <= LIMITS.max_observation_chars + 40
    many = [{"service": "s" * 1000} for _ in range(20_000)]  # 20 MB of names
    printed = box.call("print_results", {"root_causes": many})
    assert len(printed.text) <= LIMITS.max_observation_chars + 40
    assert len(printed.data["ranking"]) <= LIMITS.max_data_items
    assert all(
        len(name) <= LIMITS.max_data_chars for r in printed.data["ranking"] for name in r.values()
    )
    deep = box.call("print_results", {"root_causes": nested(5000)})
    assert not deep.ok
