"""Tool semantics on a hand-built store, with exact expected outputs."""

from __future__ import annotations

import pytest

from conftest import items
from storekit import at, build_store, fault, span
from thinkfl.telemetry import candidates
from thinkfl.tools import Toolbox, log_pattern, parse_timestamp

SPANS = (
    [span(f"h{i}", None, "frontend", 10 * i, 100_000, trace=f"h{i}", op="GET /") for i in range(25)]
    + [
        # normal history of "GET cart": 19 ms, so the 1900 ms call below is 100x normal
        span(f"g{i}", f"h{i}", "frontend", 10 * i, 19_000, trace=f"h{i}", op="GET cart")
        for i in range(4)
    ]
    + [
        span(
            "root0001", None, "frontend", 1010, 2_000_000, trace="t", pod="frontend-0", op="GET /"
        ),
        span(
            "call0001",
            "root0001",
            "frontend",
            1010.01,
            1_900_000,
            trace="t",
            pod="frontend-0",
            op="GET cart",
        ),
        span(
            "cart0001",
            "call0001",
            "cart",
            1010.02,
            1_850_000,
            status="error",
            trace="t",
            pod="cart-1",
            op="GetCart",
        ),
        span(
            "cat00001",
            "root0001",
            "frontend",
            1010.01,
            30_000,
            trace="t",
            pod="frontend-0",
            op="GET catalog",
        ),
    ]
)


def metric(entity, name, minute, value, level="pod"):
    return {
        "level": level,
        "entity": entity,
        "metric": name,
        "time": at(minute * 60),
        "value": value,
    }


# Baseline minutes 0..11 alternate 10/12 (mean 11, sd 1); minute 17 (t = 1020 s) jumps.
METRICS = (
    [metric("cart-1", "cpu", m, 10.0 + 2 * (m % 2)) for m in range(12)]
    + [metric("cart-1", "cpu", 17, 95.0)]
    + [metric("cart-0", "cpu", m, 10.0 + 2 * (m % 2)) for m in range(12)]
    + [metric("cart-0", "cpu", 17, 12.0)]
    + [metric("cart-10", "cpu", m, 5.0) for m in range(12)]
    + [metric("cart-10", "cpu", 17, 500.0)]
    + [metric("n6", "disk", m, 1.0, "node") for m in range(12)]
    + [metric("n6", "disk", 17, 1.5, "node")]
)
LOGS = [
    {
        "time": at(1011 + i),
        "service": "cart",
        "pod": "cart-1",
        "node": "n6",
        "severity": "error",
        "message": f"redis timeout after {300 + i} ms",
        "trace_id": None,
        "span_id": None,
    }
    for i in range(3)
] + [
    {
        "time": at(1012),
        "service": "cart",
        "pod": "cart-1",
        "node": "n6",
        "severity": "info",
        "message": "GetCart ok",
        "trace_id": None,
        "span_id": None,
    },
    {
        "time": at(1013),
        "service": "cart",
        "pod": "cart-0",
        "node": "n5",
        "severity": "warn",
        "message": "slow GC pause",
        "trace_id": None,
        "span_id": None,
    },
]


@pytest.fixture()
def box(tmp_path):
    store = build_store(tmp_path / "s", SPANS, METRICS, LOGS, faults=[fault("f", 1000, "cart")])
    (case,) = store.cases()
    assert case.entry_span_id == "root0001"
    return Toolbox(store, case)


def test_search_traces_lists_children_failing_and_slowest_first(box):
    obs = box.call("search_traces", {"parent_span_id": "root0001"})
    assert obs.ok and obs.data["children"] == ["call0001", "cat00001"]
    assert obs.text.splitlines() == [
        "2 child spans of root0001 (frontend, 2000.0 ms), failing, strongest evidence and slowest first:",
        "call0001  frontend  "
        + "GET cart".ljust(40)
        + " start +0.010s     1900.0 ms  100.0x normal  ok  | deeper: cart-1 0.5 at span cart0001",
        "cat00001  frontend  "
        + "GET catalog".ljust(40)
        + " start +0.010s       30.0 ms    1.0x normal  ok",
    ]
    # cart-1's cpu (95 against a median of 11, MAD 1) is a metric shift of capped strength 4:
    # fused 0.4 x log2(1 + 4) = 0.93, halved (0.46) as nothing in its spans or logs
    # corroborates it; shown on the call whose subtree reaches cart-1.
    assert obs.data["rows"][0]["below_at"] == "cart-1" and obs.data["rows"][0]["here"] == 0
    deeper = box.call("search_traces", {"parent_span_id": "call"})  # a unique prefix in this trace
    assert deeper.data["children"] == ["cart0001"] and "error" in deeper.text
    leaf = box.call("search_traces", {"parent_span_id": "cart0001"})
    assert leaf.ok and "leaf" in leaf.text


def test_bad_arguments_give_helpful_observations(box):
    unknown = box.call("search_traces", {"parent_span_id": "zzz"})
    assert not unknown.ok and "entry span is root0001" in unknown.text
    missing = box.call("search_traces", {})
    assert not missing.ok and "needs parent_span_id" in missing.text
    tool = box.call("search_everything", {"q": 1})
    assert not tool.ok and "search_traces" in tool.text
    entity = box.call("search_logs", {"service_name": "carts", "timestamp": "1714557600"})
    assert not entity.ok and "Did you mean: cart" in entity.text
    when = box.call("search_logs", {"service_name": "cart", "timestamp": "yesterday"})
    assert not when.ok and "cannot read timestamp 'yesterday'" in when.text


def test_one_registry_declares_prompts_checks_and_dispatches(box):
    from thinkfl.agent.protocol import system_prompt
    from thinkfl.tools import TOOL_SPECS, TOOLS
    from thinkfl.tools.answer import Answer
    from thinkfl.tools.traces import TraceChildren

    assert [spec.name for spec in TOOL_SPECS] == list(TOOLS)
    logs = next(spec for spec in TOOL_SPECS if spec.name == "search_logs")
    # the schema is generated from the argument model: names, types, descriptions, required
    assert logs.parameters["required"] == ["service_name"]  # the time defaults to the failure
    assert logs.parameters["properties"]["service_name"]["type"] == "string"
    assert "exactly as shown" in logs.parameters["properties"]["service_name"]["description"]
    answer = next(spec for spec in TOOL_SPECS if spec.name == "print_results")
    assert answer.parameters["properties"]["root_causes"]["type"] == "array"
    prompt = system_prompt()
    assert "- search_logs(service_name, timestamp):" in prompt
    # an epoch number is read as text; a list where text is wanted is refused by the model
    number = box.call("search_logs", {"service_name": "cart", "timestamp": at(1012).timestamp()})
    assert number.ok
    wrong = box.call("search_traces", {"parent_span_id": ["root0001"]})
    assert not wrong.ok and "parent_span_id" in wrong.text and "string" in wrong.text
    # results are typed: the data validates against the tool's result model
    children = TraceChildren.model_validate(
        box.call("search_traces", {"parent_span_id": "root"}).data
    )
    assert children.rows[0].span_id == "call0001" and children.rows[0].below_at == "cart-1"
    printed = box.call("print_results", {"root_causes": [{"pod": "cart-1"}]})
    assert items(Answer.model_validate(printed.data).ranking) == [{"pod": "cart-1"}]


def test_fluctuating_metrics_cover_a_service_its_pods_and_nodes(box):
    obs = box.call(
        "search_fluctuating_metrics", {"service_name": "cart", "timestamp": at(1020).isoformat()}
    )
    # cart-1 cpu: |95 - 11| / 1 = 84 sigma; n6 disk: flat baseline 1.0 -> floor 0.05 -> 10 sigma;
    # cart-0 cpu 12 is 1 sigma (not listed); cart-10 is another service's pod (never matched).
    assert obs.data["fluctuating"] == [("cart-1", "cpu", 84.0, "pod"), ("n6", "disk", 10.0, "node")]
    assert "cart-10" not in obs.text
    pod = box.call(
        "search_fluctuating_metrics", {"service_name": "cart-0", "timestamp": at(1020).isoformat()}
    )
    assert pod.data["fluctuating"] == []  # cart-0 runs on no known node, and its cpu is normal


def test_logs_are_grouped_by_pattern_most_severe_first(box):
    obs = box.call("search_logs", {"service_name": "cart", "timestamp": at(1012).timestamp()})
    # nothing logged before the window: both patterns are new (usual 0), errors first
    assert obs.data["patterns"] == [
        ("error", "redis timeout after <*> ms", 3, 0.0),
        ("warn", "slow GC pause", 1, 0.0),
    ]
    # first the fused scores of what cart covers: its pod's cpu shift (see above) and its
    # node's; then, with no baseline lines of cart at all (no normal mix), no shift claimed
    assert obs.text.splitlines()[0] == (
        "evidence score: cart-1 0.5 (metric_shift); n6 0.3 (metric_shift)"
    )
    assert [(s["name"], s["service"]) for s in obs.data["scores"]] == [
        ("cart-1", "cart"),
        ("n6", None),
    ]
    assert obs.text.splitlines()[1] == (
        "no log shifts of cart in the case window (against its normal)."
    )
    assert obs.text.splitlines()[3].startswith(
        "ERROR x3    usual 0.0   first +1.000s cart-1: redis timeout after 300 ms"
    )
    node = box.call("search_logs", {"service_name": "n5", "timestamp": at(1012).timestamp()})
    assert node.data["patterns"] == [("warn", "slow GC pause", 1, 0.0)]


def test_background_log_patterns_rank_below_new_ones(tmp_path):
    def log(second, severity, message):
        return {
            "time": at(second),
            "service": "cart",
            "pod": "cart-1",
            "node": None,
            "severity": severity,
            "message": message,
            "trace_id": None,
            "span_id": None,
        }

    # "pool busy" errors every 20 s all along (3 per 60 s window); "disk full" only now, twice.
    background = [log(t, "error", "pool busy") for t in range(400, 1121, 20)]
    fresh = [log(1000, "warn", "disk full on /data"), log(1010, "warn", "disk full on /data")]
    store = build_store(tmp_path / "s", SPANS, logs=background + fresh, faults=[fault("f", 1000)])
    box = Toolbox(store, store.cases()[0])
    obs = box.call("search_logs", {"service_name": "cart", "timestamp": at(1000).isoformat()})
    # window [940, 1060]: 7 "pool busy"; the 5 windows before, [340, 940), hold 27 of them
    # (400..920 every 20 s): usual 5.4 per window. The 2 "disk full" are new: listed first.
    assert obs.data["patterns"] == [
        ("warn", "disk full on /data", 2, 0.0),
        ("error", "pool busy", 7, 5.4),
    ]


def test_print_results_checks_shape_and_names(box):
    good = box.call(
        "print_results", {"root_causes": [{"pod": "cart-1"}, {"service": "cart"}, {"node": "n6"}]}
    )
    assert good.ok and items(candidates(good.data["ranking"])) == [
        {"pod": "cart-1"},
        {"service": "cart"},
        {"node": "n6"},
    ]
    bad = box.call(
        "print_results", {"root_causes": [{"service": "cart-1"}, {"pod": "x", "node": "y"}]}
    )
    assert not bad.ok
    assert bad.data["problems"] == [
        "item 1: no service named 'cart-1'",
        "item 2 must have exactly one of service, pod, node",
    ]


def test_rows_are_bounded_and_say_so(tmp_path):
    fan = [span("r", None, "web", 0, 9_000_000, trace="x")] + [
        span(f"c{i:02d}", "r", "svc", 0.1, 1000 + i, trace="x") for i in range(40)
    ]
    store = build_store(tmp_path / "s", fan, faults=[fault("f", 0, "svc")])
    obs = Toolbox(store, store.cases()[0]).call("search_traces", {"parent_span_id": "r"})
    lines = obs.text.splitlines()
    assert obs.truncated and len(lines) == 1 + 15 + 1
    assert lines[-1] == "... 25 more child spans not shown"
    assert lines[1].startswith("c39")  # slowest first


def test_timestamp_and_pattern_helpers():
    assert parse_timestamp("2024-05-01T10:00:00Z") == at(0)
    assert parse_timestamp(at(0).timestamp() * 1000) == at(0)
    assert parse_timestamp("nan") is None and parse_timestamp(None) is None
    assert (
        log_pattern("user 4d2a46c7-71cb-4cf1-b5bb-b68406d9da6f took 35 ms")
        == "user <*> took <*> ms"
    )


def test_the_entry_trace_is_read_once_and_answers_span_lookups(box, monkeypatch):
    box.call("search_traces", {"parent_span_id": "root0001"})

    def no_scan(*_args, **_kwargs):
        raise AssertionError("the store was scanned for a span of the entry trace")

    monkeypatch.setattr(box.store, "children", no_scan)
    monkeypatch.setattr(box.store, "span", no_scan)
    monkeypatch.setattr(box.store, "trace", no_scan)
    deeper = box.call("search_traces", {"parent_span_id": "call0001"})
    assert deeper.ok and deeper.data["children"] == ["cart0001"]
    assert box.call("search_span", {"span_id": "cart0001"}).ok


@pytest.mark.parametrize(
    ("timestamp", "says"),
    [
        ("0001-01-01", "days from the failure"),
        ("9999-12-31T23:59:59", "days from the failure"),
        (1e300, "cannot read timestamp"),
        ("-99999999999", "cannot read timestamp"),
        (float("nan"), "cannot read timestamp"),
    ],
)
def test_extreme_timestamps_are_refused_with_the_failure_time(box, timestamp, says):
    for tool in ("search_logs", "search_fluctuating_metrics"):
        obs = box.call(tool, {"service_name": "cart", "timestamp": timestamp})
        assert not obs.ok and says in obs.text and box.case.entry_start.isoformat() in obs.text
