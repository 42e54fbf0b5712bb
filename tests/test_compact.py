"""Compact dialogues for a trained small model (student issue, item 1): each tool's compact
rendering of its typed result on the hand-built store of test_tools (exact text, checked by
hand against the long form), and a compact investigation that reads those renderings while
its steps keep the long text for people and its answer does not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from storekit import at
from test_tools import box  # noqa: F401 - pytest fixture
from thinkfl.agent import Budget, ExpertPolicy, run_case
from thinkfl.agent.protocol import DialogueStyle, system_prompt
from thinkfl.telemetry import TelemetryStore, ingest
from thinkfl.tools import Toolbox
from thinkfl.tools.compact import CompactLimits, compact_text, number

DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"


def test_numbers_are_short_and_without_exponents():
    assert [number(v) for v in (0, 0.0423, 3.74, 19.0, 27.84, 100.0, 4321.5)] == [
        "0",
        "0.042",
        "3.7",
        "19",
        "27.8",
        "100",
        "4322",
    ]


def test_compact_trace_rows_keep_ids_durations_and_evidence(box):  # noqa: F811
    root = box.call("search_traces", {"parent_span_id": "root0001"})
    # long form: call0001 1900 ms 100x normal, deeper cart-1 0.5 at cart0001; cat00001 30 ms 1x
    # spans are named by handles: the shortest prefix of 6 or more characters unique in the
    # trace (its other spans are h0..h24, g0..g3)
    assert compact_text(root).splitlines() == [
        "root00 frontend 2000ms calls:",
        "call00 frontend 1900ms 100x below cart-1 0.5 at cart00",
        "cat000 frontend 30ms 1x",
    ]
    leaf = box.call("search_traces", {"parent_span_id": "cart00"})  # a handle resolves
    assert compact_text(leaf) == "cart00 cart: leaf, no calls"
    cut = compact_text(root, CompactLimits(span_rows=1)).splitlines()
    assert cut[1:] == ["call00 frontend 1900ms 100x below cart-1 0.5 at cart00", "+1 more"]


def test_handles_are_the_shortest_unique_prefixes():
    from thinkfl.tools.toolbox import unique_prefixes

    ids = ["7c7347c3c726f7e7", "7c7347ff00000000", "79ebad9f6f9a38ae", "s1", "s10"]
    assert unique_prefixes(ids, 6) == {
        "7c7347c3c726f7e7": "7c7347c",  # shares 6 characters with its neighbour
        "7c7347ff00000000": "7c7347f",
        "79ebad9f6f9a38ae": "79ebad",
        "s1": "s1",  # a prefix of another id: whole (an exact id resolves first)
        "s10": "s10",
    }


def test_compact_metrics_show_each_series_once(box):  # noqa: F811
    when = at(1020).isoformat()
    obs = box.call("search_fluctuating_metrics", {"service_name": "cart", "timestamp": when})
    # long form: SHIFT cart-1 cpu 95 vs 11 (capped at 4.0), SHIFT n6 disk 1.5 vs 1.0 (2.0),
    # then the same two series as n-sigma rows (84 and 10 sigma): not repeated here
    assert compact_text(obs).splitlines() == [
        "scores: cart-1 0.5, n6 0.3",
        "metric_shift cart-1 cpu 95 vs 11 s4.0+",
        "metric_shift n6 disk 1.5 vs 1 s2.0",
    ]
    quiet = box.call("search_fluctuating_metrics", {"service_name": "cart-0", "timestamp": when})
    assert compact_text(quiet) == "scores: none\nno metric shift"


def test_compact_logs_show_patterns_with_their_usual_count(box):  # noqa: F811
    when = at(1012).timestamp()
    obs = box.call("search_logs", {"service_name": "cart", "timestamp": when})
    assert compact_text(obs).splitlines() == [
        "scores: cart-1 0.5, n6 0.3",
        "ERROR x3 usual 0: redis timeout after <*> ms",
        "WARN x1 usual 0: slow GC pause",
    ]
    quiet = box.call("search_logs", {"service_name": "frontend", "timestamp": when})
    assert compact_text(quiet) == "scores: none\nno log shift, no warning or error"
    refused = box.call("search_logs", {"service_name": "nobody", "timestamp": when})
    assert not refused.ok and compact_text(refused) == refused.text  # errors stay in full


def test_a_call_without_a_time_asks_about_the_failure_time(box):  # noqa: F811
    at_failure = box.case.entry_start.isoformat()
    for tool in ("search_logs", "search_fluctuating_metrics"):
        timed = box.call(tool, {"service_name": "cart", "timestamp": at_failure})
        untimed = box.call(tool, {"service_name": "cart"})
        assert untimed.ok and untimed.text == timed.text


def test_compact_calls_leave_the_time_out_and_name_spans_by_handles(demo):
    from thinkfl.agent.policy import Turn
    from thinkfl.models.backends import turn_choices_of
    from thinkfl.tools import TOOL_SPECS

    store, case = demo
    full = run_case(Toolbox(store, case), ExpertPolicy())
    compact = run_case(Toolbox(store, case), ExpertPolicy(), Budget(dialogue=DialogueStyle.COMPACT))
    checks = [s for s in compact.steps if s.tool in ("search_logs", "search_fluctuating_metrics")]
    assert checks and all("timestamp" not in s.arguments for s in checks)
    traced = [s.arguments["parent_span_id"] for s in compact.steps if s.tool == "search_traces"]
    # the entry span as the question gives it, then the handles the observations showed
    assert traced[0] == case.entry_span_id and traced[1:]
    assert all(len(handle) < len(case.entry_span_id) for handle in traced[1:])
    timed = turn_choices_of(Turn(case=case, messages=[], steps=full.steps[:2], tools=TOOL_SPECS))
    untimed = turn_choices_of(
        Turn(
            case=case,
            messages=[],
            steps=compact.steps[:2],
            tools=TOOL_SPECS,
            dialogue=DialogueStyle.COMPACT,
        )
    )
    assert any('"timestamp"' in call for call in timed.calls)
    assert untimed.calls and not any('"timestamp"' in call for call in untimed.calls)
    assert len(untimed.calls) == len(timed.calls)  # the same calls, less the time
    # after the entry's children were shown, the grammar offers the next span by its handle
    first = Turn(
        case=case,
        messages=[],
        steps=compact.steps[:1],
        tools=TOOL_SPECS,
        dialogue=DialogueStyle.COMPACT,
    )
    assert f'"parent_span_id": "{traced[1]}"' in "".join(turn_choices_of(first).calls)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[TelemetryStore, object]:
    out = tmp_path_factory.mktemp("compact") / "store"
    ingest("aiops2022", DEMO, out)
    store = TelemetryStore.open(out)
    return store, store.cases()[0]


def test_a_compact_investigation_reads_compact_text_and_answers_the_same(demo):
    store, case = demo
    full = run_case(Toolbox(store, case), ExpertPolicy())
    compact = run_case(Toolbox(store, case), ExpertPolicy(), Budget(dialogue=DialogueStyle.COMPACT))
    assert compact.ranking == full.ranking and compact.finish == full.finish
    assert [s.observation for s in compact.steps] == [s.observation for s in full.steps]
    assert compact.messages[0].content == system_prompt(style=DialogueStyle.COMPACT)
    observations = [m.content for m in compact.messages if m.is_observation]
    assert observations[0].startswith("<tool_response>\nsearch_traces: ")
    assert "child spans of" not in "".join(observations)  # the long header is gone
    size = {
        style: sum(len(m.content) for m in trajectory.messages)
        for style, trajectory in (("full", full), ("compact", compact))
    }
    assert size["compact"] < 0.6 * size["full"], size


def test_demonstrations_of_another_style_are_not_reused(demo, tmp_path):
    from thinkfl.agent import save_jsonl
    from thinkfl.train.config import SFTSettings, TrainError
    from thinkfl.train.sft import collect_demonstrations

    store, case = demo
    path = tmp_path / "demonstrations.jsonl"
    save_jsonl([run_case(Toolbox(store, case), ExpertPolicy())], path)  # written in full
    assert len(collect_demonstrations([], SFTSettings(), path)) == 1
    with pytest.raises(TrainError, match="not of the configured style"):
        collect_demonstrations([], SFTSettings(dialogue=DialogueStyle.COMPACT), path)


def test_localize_and_eval_take_the_dialogue_style(demo, tmp_path):
    import json

    from typer.testing import CliRunner

    from thinkfl.cli import app

    store, case = demo
    runner = CliRunner()
    shown = runner.invoke(
        app, ["localize", str(store.path), "-c", case.case_id, "--dialogue", "compact", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    trajectory = json.loads(shown.stdout)
    assert trajectory["messages"][0]["content"] == system_prompt(style=DialogueStyle.COMPACT)
    out = tmp_path / "results"
    argv = ["eval", "-d", str(store.path), "-p", "expert", "--dialogue", "compact"]
    assert runner.invoke(app, [*argv, "--out", str(out)]).exit_code == 0
    (line,) = (out / "expert.jsonl").read_text().splitlines()
    assert json.loads(line)["messages"][0]["content"].startswith("Find the root cause")
