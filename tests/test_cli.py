"""The command line: ingest, cases, info, and what a user sees on error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write
from test_ingest_aiops2022 import aiops_dir  # noqa: F401 - pytest fixture
from thinkfl.cli import app

runner = CliRunner()


def test_ingest_then_cases_json(aiops_dir, tmp_path):  # noqa: F811
    out = tmp_path / "store"
    result = runner.invoke(app, ["ingest", "aiops2022", str(aiops_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 spans" in result.output and "2 cases" in result.output
    listed = runner.invoke(app, ["cases", str(out), "--json"])
    cases = json.loads(listed.stdout)
    assert [c["truth"]["entity"] for c in cases] == ["cartservice-1", "node-6"]
    again = runner.invoke(app, ["cases", str(out), "--json", "--latency-factor", "1.5"])
    assert [c["anomaly"] for c in json.loads(again.stdout)] == ["strong", "strong"]
    info = runner.invoke(app, ["info", str(out)])
    assert "aiops2022" in info.output and "spans" in info.output


def test_errors_are_one_clear_line_and_exit_2(tmp_path):
    write(tmp_path / "src" / "trace" / "all" / "t.csv", "timestamp,cmdb_id\n1,a\n")
    result = runner.invoke(
        app, ["ingest", "aiops2022", str(tmp_path / "src"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "missing column(s)" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
    missing = runner.invoke(app, ["cases", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no such store" in missing.output


DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"


def test_localize_streams_the_investigation_and_ranks_with_evidence(tmp_path):
    out = tmp_path / "demo"
    assert runner.invoke(app, ["ingest", "aiops2022", str(DEMO), "--out", str(out)]).exit_code == 0
    case = json.loads(runner.invoke(app, ["cases", str(out), "--json"]).stdout)[0]["case_id"]
    shown = runner.invoke(
        app, ["localize", str(out), "--case", case, "--save", str(tmp_path / "t.jsonl")]
    )
    assert shown.exit_code == 0, shown.output
    assert "→ search_traces(parent_span_id=" in shown.output
    assert "root causes (printed" in shown.output
    first = next(line for line in shown.output.splitlines() if line.strip().startswith("1 "))
    assert "pod" in first and "cartservice-1" in first
    assert (tmp_path / "t.jsonl").read_text().count("\n") == 1
    as_json = runner.invoke(app, ["localize", str(out), "--case", case, "--json"])
    trajectory = json.loads(as_json.stdout)
    assert (
        trajectory["ranking"][0] == {"level": "pod", "name": "cartservice-1"}
        and trajectory["finish"] == "printed"
    )
    # the evidence cell of an answer starts with the evidence item about it, not any line
    from thinkfl.agent import Trajectory
    from thinkfl.agent.explain import evidence_lines

    lines = evidence_lines(Trajectory.model_validate(trajectory), "cartservice-1")
    assert lines[0].startswith("SHIFT cartservice-1 container_cpu_usage_seconds"), lines


def test_verbose_localize_reports_every_turn(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKFL_VERBOSE", "0")  # --verbose sets it; restored after the test
    out = tmp_path / "demo"
    assert runner.invoke(app, ["ingest", "aiops2022", str(DEMO), "--out", str(out)]).exit_code == 0
    case = json.loads(runner.invoke(app, ["cases", str(out), "--json"]).stdout)[0]["case_id"]
    quiet = runner.invoke(app, ["localize", str(out), "--case", case])
    assert quiet.exit_code == 0 and "turn 1: read" not in quiet.output
    shown = runner.invoke(
        app, ["--verbose", "localize", str(out), "--case", case, "--save", str(tmp_path / "t")]
    )
    assert shown.exit_code == 0, shown.output
    turns = json.loads((tmp_path / "t").read_text())["turns"]
    lines = [line for line in shown.output.splitlines() if line.startswith("turn ")]
    assert turns >= 2 and len(lines) == turns, shown.output
    assert [line.split(":")[0] for line in lines] == [f"turn {n}" for n in range(1, turns + 1)]
    assert all(" tokens, wrote " in line and line.endswith(" s") for line in lines)


def test_localize_errors_are_clear(tmp_path):
    out = tmp_path / "demo"
    runner.invoke(app, ["ingest", "aiops2022", str(DEMO), "--out", str(out)])
    unknown = runner.invoke(app, ["localize", str(out), "--case", "nope"])
    assert unknown.exit_code == 2 and "no case 'nope'" in unknown.output
    case = json.loads(runner.invoke(app, ["cases", str(out), "--json"]).stdout)[0]["case_id"]
    openai = runner.invoke(app, ["localize", str(out), "--case", case, "--policy", "openai"])
    assert openai.exit_code == 2 and "--base-url" in openai.output
    model = runner.invoke(
        app, ["localize", str(out), "--case", case, "--policy", "local", "--model", "x.gguf"]
    )
    assert model.exit_code == 2 and "no model 'x.gguf'" in model.output


def test_models_list_names_the_offline_models():
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0
    assert "qwen2.5-coder-0.5b" in listed.output and "smollm2-135m" in listed.output


def test_an_answer_naming_no_known_entity_is_marked(tmp_path, monkeypatch):
    import thinkfl.cli.investigate as cli
    from thinkfl.agent import Trajectory

    out = tmp_path / "demo"
    runner.invoke(app, ["ingest", "aiops2022", str(DEMO), "--out", str(out)])
    case = json.loads(runner.invoke(app, ["cases", str(out), "--json"]).stdout)[0]["case_id"]
    invented = Trajectory(
        case_id=case,
        policy="x",
        ranking=[{"service": "GetCart"}, {"pod": "cartservice-1"}],
        finish="forced",
    )
    monkeypatch.setattr(cli, "run_case", lambda *args, **kwargs: invented)
    shown = runner.invoke(app, ["localize", str(out), "--case", case])
    lines = [line for line in shown.output.splitlines() if line.strip()[:1] in {"1", "2"}]
    assert "not a known service of this system" in lines[0]
    assert "not a known" not in lines[1]


def test_eval_writes_the_table_jsonl_and_plots(tmp_path):
    out = tmp_path / "demo"
    runner.invoke(app, ["ingest", "aiops2022", str(DEMO), "--out", str(out)])
    results = tmp_path / "results"
    shown = runner.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(out),
            "-p",
            "expert",
            "-p",
            "tracerca",
            "-p",
            "random",
            "--out",
            str(results),
        ],
    )
    assert shown.exit_code == 0, shown.output
    names = {p.name for p in results.iterdir()}
    assert {
        "expert.jsonl",
        "tracerca.jsonl",
        "random.jsonl",
        "summary.json",
        "summary.md",
        "recall_at_k.png",
        "latency.png",
    } <= names
    summary = json.loads((results / "summary.json").read_text())
    assert summary["expert"]["strict"]["R@1"] == 1.0 and summary["expert"]["cases"] == 1
    unknown = runner.invoke(
        app, ["eval", "--dataset", str(out), "-p", "oracle", "--out", str(results)]
    )
    assert unknown.exit_code == 2 and "unknown method(s) ['oracle']" in unknown.output


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["cases", "STORE", "--latency-factor", "-1"], "must be > 1"),
        (["cases", "STORE", "--latency-factor", "nan"], "must be a finite number"),
        (["cases", "STORE", "--after-s", "0"], "must be > 0"),
        (["cases", "STORE", "--before-s", "-5"], "must be >= 0"),
        (["eval", "--dataset", "STORE", "-p", "expert", "--cases", "-1", "--out", "O"], "--cases"),
        (
            ["eval", "--dataset", "STORE", "-p", "expert", "--workers", "0", "--out", "O"],
            "--workers",
        ),
        (["simulate", "easy", "--cases", "-5", "--out", "O"], "--cases"),
        (["simulate", "easy", "--request-rate", "0", "--out", "O"], "must be > 0"),
        (["localize", "STORE", "--case", "x", "--max-depth", "0"], "--max-depth"),
        (["ingest", "otlp", "SRC", "--out", "O", "--max-bad-rows", "-1"], "--max-bad-rows"),
    ],
)
def test_out_of_range_options_are_refused_with_exit_2(tmp_path, arguments, says):
    paths = {"STORE": str(tmp_path / "s"), "O": str(tmp_path / "o"), "SRC": str(tmp_path)}
    result = runner.invoke(app, [paths.get(a, a) for a in arguments])
    flat = " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert result.exit_code == 2 and says in flat, result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_localize_exits_1_when_the_model_endpoint_refuses(tmp_path, aiops_dir):  # noqa: F811
    out = tmp_path / "store"
    runner.invoke(app, ["ingest", "aiops2022", str(aiops_dir), "--out", str(out)])
    case = json.loads(runner.invoke(app, ["cases", str(out), "--json"]).stdout)[0]["case_id"]
    result = runner.invoke(
        app,
        [
            "localize",
            str(out),
            "--case",
            case,
            "--policy",
            "openai",
            "--model",
            "x",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "the investigation stopped: EndpointError" in result.output
