"""The Recursion-of-Thought loop: budgets, forced print, repeats, rethink, failures, the expert."""

from __future__ import annotations

import json
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import items
from storekit import build_store, fault, span
from test_tools import LOGS, METRICS, SPANS
from thinkfl.agent import (
    Budget,
    ExpertPolicy,
    Reply,
    Turn,
    TurnDone,
    load_jsonl,
    run_case,
    save_jsonl,
)
from thinkfl.agent.protocol import FORCE_PRINT, NO_CALL, REPEATED, RETHINK, ToolCall
from thinkfl.telemetry import TelemetryStore
from thinkfl.telemetry.model import SPAN_SCHEMA
from thinkfl.tools import Toolbox


def call(name: str, **arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


class Scripted:
    """A test double: replies from a list; in print-only turns, from `final`."""

    native_tools = False

    def __init__(self, replies: list[str], final: str = "", name: str = "scripted") -> None:
        self.replies, self.final, self.name, self.turns = list(replies), final, name, []

    def respond(self, turn: Turn) -> Reply:
        self.turns.append(turn)
        if [t.name for t in turn.tools] == ["print_results"]:
            return Reply(text=self.final, prompt_tokens=10, completion_tokens=5)
        text = self.replies.pop(0) if self.replies else "hmm"
        return Reply(text=text, prompt_tokens=10, completion_tokens=5)


@pytest.fixture()
def box(tmp_path):
    store = build_store(tmp_path / "s", SPANS, METRICS, LOGS, faults=[fault("f", 1000, "cart")])
    return Toolbox(store, store.cases()[0])


PRINT = call("print_results", root_causes=[{"service": "cart"}, {"pod": "cart-1"}, {"node": "n6"}])


def test_a_printed_answer_ends_the_case(box):
    policy = Scripted([call("search_traces", parent_span_id="root0001"), PRINT])
    trajectory = run_case(box, policy)
    assert trajectory.finish == "printed"
    assert items(trajectory.ranking) == [{"service": "cart"}, {"pod": "cart-1"}, {"node": "n6"}]
    assert [s.tool for s in trajectory.steps] == ["search_traces", "print_results"]
    assert (trajectory.turns, trajectory.prompt_tokens, trajectory.completion_tokens) == (2, 20, 10)
    roles = [(m.role, m.is_observation) for m in trajectory.messages]
    assert roles == [
        ("system", False),
        ("user", False),
        ("assistant", False),
        ("user", True),
        ("assistant", False),
        ("user", True),
    ]
    assert trajectory.messages[3].content.startswith(
        "<tool_response>\nsearch_traces: 2 child spans"
    )


def test_each_reply_is_announced_as_it_happens(box):
    policy = Scripted([call("search_traces", parent_span_id="root0001"), PRINT])
    heard: list[TurnDone] = []
    trajectory = run_case(box, policy, on_turn=heard.append)
    assert [t.turn for t in heard] == [1, 2]
    assert [t.text for t in heard] == [call("search_traces", parent_span_id="root0001"), PRINT]
    assert all(t.prompt_tokens == 10 and t.completion_tokens == 5 for t in heard)
    assert all(0 <= t.prompt_seconds <= t.seconds for t in heard)
    assert len(heard) == trajectory.turns == len(trajectory.steps)


def test_spent_depth_forces_one_print_and_repeats_are_flagged(box):
    same = call("search_traces", parent_span_id="root0001")
    policy = Scripted([same, same, same, same], final=PRINT)
    trajectory = run_case(box, policy, Budget(max_depth=3))
    assert trajectory.finish == "forced"
    assert [s.repeated for s in trajectory.steps] == [False, True, True, False]
    assert trajectory.steps[1].observation == (
        f"{REPEATED} Spans seen but not searched yet: call0001 (frontend), cat00001 (frontend)"
    )
    # the nudge lists what the observations pointed at (as in the fallback test below)
    assert trajectory.messages[-3].content == (
        f"{FORCE_PRINT} Strongest in your observations so far: "
        '{"pod": "cart-1"}, {"service": "cart"}, {"service": "frontend"}.'
    )
    assert [t.name for t in policy.turns[-1].tools] == ["print_results"]


def test_replies_without_a_call_are_nudged_until_the_hard_cap(box):
    policy = Scripted(["I am thinking"] * 10, final="still thinking")
    trajectory = run_case(box, policy, Budget(hard_cap=4, fallback_answer=False))
    assert trajectory.finish == "no_answer" and trajectory.ranking == []
    assert trajectory.turns == 5  # 4 exploring turns + the forced one
    assert trajectory.replies_without_call == 5
    assert trajectory.valid_call_share() == 0.0
    assert sum(m.content == NO_CALL for m in trajectory.messages) == 4


def test_a_model_that_never_prints_still_gets_a_ranking_from_what_it_was_shown(box):
    explore = [call("search_traces", parent_span_id="root0001")] + ["I am thinking"] * 10
    trajectory = run_case(box, Scripted(explore, final="still thinking"), Budget(hard_cap=4))
    assert trajectory.finish == "fallback"
    # the entry's children flagged "deeper: cart-1 0.5" (see test_tools): cart-1 and its
    # service first, then the services of the spans listed (frontend), the entry's service
    assert items(trajectory.ranking) == [
        {"pod": "cart-1"},
        {"service": "cart"},
        {"service": "frontend"},
    ]
    # nothing seen at all: the entry service is all the loop can name
    blind = run_case(box, Scripted([], final="still thinking"), Budget(hard_cap=2))
    assert (blind.finish, items(blind.ranking)) == ("fallback", [{"service": "frontend"}])


def test_an_answer_with_unknown_names_goes_back_while_exploring(box):
    wrong = call("print_results", root_causes=[{"service": "GetCart"}])
    trajectory = run_case(box, Scripted([wrong, PRINT]))
    assert trajectory.finish == "printed" and trajectory.ranking[0].as_item() == {"service": "cart"}
    first = trajectory.steps[0]
    assert not first.ok and "no service named 'GetCart'" in first.observation
    assert "Services in this trace: cart, frontend" in first.observation


def test_the_forced_answer_is_taken_as_it_is(box):
    wrong = call("print_results", root_causes=[{"service": "GetCart"}])
    trajectory = run_case(box, Scripted(["thinking"], final=wrong), Budget(hard_cap=1))
    assert trajectory.finish == "forced" and items(trajectory.ranking) == [{"service": "GetCart"}]


def test_rethink_asks_once_before_an_early_print(box):
    policy = Scripted([PRINT, PRINT])
    trajectory = run_case(box, policy, Budget(rethink=True, rethink_min_calls=2))
    assert trajectory.finish == "printed"
    assert sum(m.content == RETHINK for m in trajectory.messages) == 1
    assert [s.tool for s in trajectory.steps] == ["print_results"]


def test_a_broken_backend_ends_the_case_with_its_error(box):
    class Broken(Scripted):
        def respond(self, turn):
            raise ConnectionError("endpoint unreachable")

    trajectory = run_case(box, Broken([]))
    assert trajectory.finish == "error"
    assert trajectory.error == "ConnectionError: endpoint unreachable"


def test_expert_follows_the_evidence_and_ranks_by_it(box):
    trajectory = run_case(box, ExpertPolicy())
    # the entry's only slow call shows "deeper: cart-1 ... at span cart0001" (cart-1's cpu is
    # a metric shift): the expert jumps straight there instead of walking call0001 first
    assert trajectory.finish == "printed"
    assert [
        (s.tool, s.arguments.get("parent_span_id") or s.arguments.get("service_name"))
        for s in trajectory.explored
    ] == [
        ("search_traces", "root0001"),
        ("search_traces", "cart0001"),
        ("search_logs", "cart"),
        ("search_fluctuating_metrics", "cart"),
        ("search_logs", "frontend"),
        ("search_fluctuating_metrics", "frontend"),
    ]
    # cart-1's cpu stands out and its sibling cart-0's does not: a pod-level fault, pod first
    assert items(trajectory.ranking) == [
        {"pod": "cart-1"},
        {"service": "cart"},
        {"node": "n6"},
        {"service": "frontend"},
    ]


def test_trajectories_round_trip_through_jsonl(box, tmp_path):
    first = run_case(box, ExpertPolicy())
    save_jsonl([first, first], tmp_path / "t.jsonl")
    loaded = list(load_jsonl(tmp_path / "t.jsonl"))
    # tuples in step data come back as lists: compare the JSON form, which is the contract
    assert len(loaded) == 2 and loaded[0].model_dump(mode="json") == first.model_dump(mode="json")


def test_expert_answers_even_when_no_call_explains_the_entry(tmp_path):
    # the entry spends its time itself: neither child carries half of its excess
    spans = [
        span(f"h{i}", None, "web", 10 * i, 100_000, trace=f"h{i}", op="GET /") for i in range(25)
    ]
    spans += [
        span("root", None, "web", 1010, 900_000, trace="t", op="GET /"),
        span("k1", "root", "auth", 1010.1, 10_000, trace="t", op="check"),
        span("k2", "root", "cache", 1010.2, 30_000, trace="t", op="get"),
        span("k0", "h0", "cache", 0.1, 10_000, trace="h0", op="get"),  # cache normally 10 ms
    ]
    store = build_store(tmp_path / "s", spans, faults=[fault("f", 1000, "web")])
    trajectory = run_case(Toolbox(store, store.cases()[0]), ExpertPolicy())
    assert trajectory.finish == "printed"
    # the entry service first, then its callees by how slowed they are (cache 3x, auth 1x)
    assert items(trajectory.ranking[:3]) == [
        {"service": "web"},
        {"service": "cache"},
        {"service": "auth"},
    ]


class _Stuck:
    """A backend that never answers (a hung HTTP call, a wedged GPU)."""

    name = "stuck"
    native_tools = False

    def __init__(self) -> None:
        self.release = threading.Event()

    def respond(self, turn):
        self.release.wait(30)
        return Reply(text="")


class _Looping:
    """A model that keeps asking for the same two spans of a cyclic trace."""

    name = "looping"
    native_tools = False

    def __init__(self, tokens_per_reply: int = 10) -> None:
        self.turn = 0
        self.tokens = tokens_per_reply

    def respond(self, turn):
        self.turn += 1
        span_id = ["a", "b", "s", "root"][self.turn % 4]
        call = ToolCall(name="search_traces", arguments={"parent_span_id": span_id})
        return Reply(text="", tool_calls=[call], prompt_tokens=self.tokens)


def cyclic_store(path, loop: str):
    """A store whose entry trace holds a loop below the entry: a span listed as its own
    child, or A -> B -> A. Ingest now refuses a span id repeated with other content (so no
    new store holds such a loop); the rows are written behind the writer's back, as an older
    store or another writer could have them."""
    spans = [
        span(f"h{i}", None, "web", 10 * i, 100_000, trace=f"h{i}", op="GET /") for i in range(25)
    ]
    spans += [
        span("root", None, "web", 1010, 900_000, trace="t", op="GET /"),
        span("a", "root", "auth", 1010.1, 800_000, trace="t", op="check", status="error"),
    ]
    if loop == "self":
        spans.append(span("s", "s", "cache", 1010.2, 700_000, trace="t", op="get", status="error"))
        spans.append(span("s", "a", "cache", 1010.2, 700_000, trace="t", op="get", status="error"))
    else:
        spans.append(span("b", "a", "cache", 1010.2, 700_000, trace="t", op="get", status="error"))
        spans.append(span("a", "b", "auth", 1010.3, 600_000, trace="t", op="check", status="error"))
    build_store(path, spans, faults=[fault("f", 1000, "web")])
    pq.write_table(pa.Table.from_pylist(spans, schema=SPAN_SCHEMA), path / "spans.parquet")
    return TelemetryStore.open(path)


@pytest.mark.parametrize(
    ("make_policy", "budget", "finish"),
    [
        (_Stuck, Budget(wall_clock_s=0.5), "wall_clock"),
        (_Looping, Budget(max_depth=4), "fallback"),
        (lambda: _Looping(tokens_per_reply=5_000), Budget(max_total_tokens=12_000), "fallback"),
        (ExpertPolicy, Budget(), "printed"),
    ],
    ids=["wall-clock", "depth", "tokens", "expert"],
)
@pytest.mark.parametrize("loop", ["self", "pair"])
def test_every_budget_stops_a_loop_reachable_from_the_entry(
    tmp_path, make_policy, budget, finish, loop
):
    policy = make_policy()
    store = cyclic_store(tmp_path / "s", loop)
    began = time.monotonic()
    trajectory = run_case(Toolbox(store, store.cases()[0]), policy, budget)
    assert time.monotonic() - began < 10
    assert trajectory.finish == finish
    assert len(trajectory.explored) <= 10
    if isinstance(policy, _Stuck):
        policy.release.set()
        assert trajectory.turns == 0 and trajectory.error is None
    else:
        assert trajectory.ranking  # what it saw still ranks
