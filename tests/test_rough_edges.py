"""What a newcomer's first hour hits (hardening issue, items 6-13): one start-trace choice for
a time and a case id, incidents matched to the fault they overlap most, one count and one
wording everywhere, ids never cut, every method in `eval --help`, `serve` on a busy port,
blank JSONL lines, repeated methods, and evidence strengths that read as what they are.

The bad-input lines themselves (non-GGUF model, garbage adapter, empty HF folder, BOM,
30-digit epochs, empty token file) are entries of the corpus in tests/malformed.py."""

from __future__ import annotations

import json
import re
import socket

import pytest
from rich.console import Console
from typer.testing import CliRunner

import thinkfl.cli.data as cli_data
from malformed import DEMO, span, spans_request
from storekit import fault
from test_evidence import FAULT_S
from test_incidents import unlabelled
from thinkfl.cli import app
from thinkfl.evaluate import method_names
from thinkfl.evidence import EvidenceItem, EvidenceKind
from thinkfl.evidence.settings import MetricSettings
from thinkfl.telemetry import TelemetryStore, ingest
from thinkfl.telemetry.incidents import detect_incidents

runner = CliRunner()


def test_an_incident_carries_the_fault_it_overlaps_most_not_an_earlier_one(tmp_path):
    # the incident's window is [FAULT_S - 60, FAULT_S + 360]; "early" (api) happened 250 s
    # before the slow period, inside the matching slack, but its own 180 s are over when
    # the window opens; "net" (db) covers the slow period
    store = unlabelled(
        tmp_path, [fault("early", FAULT_S - 250, "api"), fault("net", FAULT_S, "db")]
    )
    found = detect_incidents(store)
    (incident,) = found.incidents
    assert incident.fault_id == "net" and incident.truth.entity == "db"
    assert found.missed == ["early"]


def test_a_detected_incident_of_a_labelled_store_is_localized_by_its_id(tmp_path):
    store = unlabelled(tmp_path, [fault("net", FAULT_S, "db")])
    listed = runner.invoke(app, ["cases", str(store.path), "--detect", "--json"])
    (incident,) = json.loads(listed.stdout)
    assert incident["case_id"] == "incident-20240501-102000"
    shown = runner.invoke(app, ["localize", str(store.path), "-c", incident["case_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["ranking"][0] == {"level": "service", "name": "db"}
    unknown = runner.invoke(app, ["localize", str(store.path), "-c", "incident-20240501-000000"])
    assert unknown.exit_code == 2
    assert "no case or detected incident 'incident-20240501-000000'" in unknown.stderr
    assert "--detect" in unknown.stderr


def test_a_time_and_a_case_id_start_from_the_same_entry_trace(tmp_path):
    store = unlabelled(tmp_path, [fault("net", FAULT_S, "db")])
    (case,) = TelemetryStore.open(store.path).cases()
    by_id = runner.invoke(app, ["localize", str(store.path), "-c", case.case_id, "--json"])
    by_time = runner.invoke(
        app, ["localize", str(store.path), "--at", case.inject_time.isoformat(), "--json"]
    )
    assert by_id.exit_code == by_time.exit_code == 0, by_time.output
    first, second = json.loads(by_id.stdout), json.loads(by_time.stdout)
    assert first["ranking"] == second["ranking"]
    assert first["steps"][0]["observation"] == second["steps"][0]["observation"]


def test_one_count_and_one_wording_in_ingest_info_and_cases(tmp_path):
    from thinkfl.telemetry.incidents import cases_phrase

    source = tmp_path / "unlabelled"
    source.mkdir()
    for part in ("trace", "log", "metric"):
        (source / part).symlink_to(DEMO / part)
    out = tmp_path / "store"
    ingested = runner.invoke(app, ["ingest", "aiops2022", str(source), "--out", str(out)])
    assert ingested.exit_code == 0, ingested.output
    assert "no labels: 1 incident found in the telemetry itself" in ingested.stdout
    assert re.search(r"stored \S+: .*, 0 faults, 1 incident$", ingested.stdout, re.M)
    info = runner.invoke(app, ["info", str(out)])
    assert "\n  1 incident\n" in info.stdout
    listed = runner.invoke(app, ["cases", str(out)])
    assert listed.stdout.startswith(f"# 1 incident in {out}\n")
    labelled = tmp_path / "labelled"
    runner.invoke(app, ["ingest", "aiops2022", str(DEMO), "--out", str(labelled)])
    assert "\n  1 case\n" in runner.invoke(app, ["info", str(labelled)]).stdout
    store = TelemetryStore.open(labelled)
    incident = store.cases()[0].model_copy(update={"case_id": "incident-x"})
    assert cases_phrase([*store.cases(), incident]) == "2 cases (1 of them detected incidents)"


def test_piped_cases_are_plain_and_whole_and_a_narrow_terminal_never_cuts_an_id(
    tmp_path, monkeypatch
):
    out = tmp_path / "store"
    ingest("aiops2022", DEMO, out)
    (case,) = TelemetryStore.open(out).cases()
    piped = runner.invoke(app, ["cases", str(out)])
    header, row = piped.stdout.splitlines()[1:3]
    assert header.split("\t")[0] == "case" and len(header.split("\t")) == 7
    assert row.split("\t")[:4] == [
        case.case_id,
        f"pod: {case.truth.entity}",
        case.truth.fault_type,
        case.entry_span_id,  # in full, not its first 16 characters
    ]
    narrow = Console(width=60, force_terminal=True, record=True, color_system=None)
    monkeypatch.setattr(cli_data, "console", narrow)
    assert runner.invoke(app, ["cases", str(out)]).exit_code == 0
    assert case.case_id in narrow.export_text()


def test_eval_help_lists_every_method_it_accepts():
    shown = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    words = set(re.findall(r"[a-z][a-z-]+", shown.stdout))
    assert set(method_names()) <= words, set(method_names()) - words


def test_eval_runs_a_method_given_twice_once(tmp_path, monkeypatch):
    import thinkfl.evaluate as evaluate

    out = tmp_path / "store"
    ingest("aiops2022", DEMO, out)
    results = tmp_path / "results"
    runs: list[str] = []
    real_run = evaluate.run_method

    def counted(method, *args, **kwargs):
        runs.append(method)
        return real_run(method, *args, **kwargs)

    monkeypatch.setattr(evaluate, "run_method", counted)
    argv = ["eval", "-d", str(out), "-p", "n-sigma", "-p", "baro", "-p", "n-sigma"]
    shown = runner.invoke(app, [*argv, "--out", str(results)])
    assert shown.exit_code == 0, shown.output
    assert runs == ["n-sigma", "baro"]
    assert len((results / "n-sigma.jsonl").read_text().splitlines()) == 1
    assert list(json.loads((results / "summary.json").read_text())) == ["n-sigma", "baro"]


def test_serve_on_a_port_in_use_is_one_line_and_creates_nothing(tmp_path):
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        shown = runner.invoke(
            app, ["serve", "--store", str(tmp_path / "store"), "--port", str(port)]
        )
    finally:
        busy.close()
    assert shown.exit_code == 2
    assert shown.stderr == (
        f"error: --host 127.0.0.1 --port {port}: cannot listen (Address already in use). "
        "Fix: stop the process using it, or choose another --port\n"
    )
    assert shown.stdout == "" and not (tmp_path / "store").exists()


def test_blank_lines_in_json_lines_are_skipped(tmp_path):
    first = json.dumps(spans_request(span()))
    second = json.dumps(spans_request(span(spanId="b7ad6b7169203332")))
    src = tmp_path / "src"
    src.mkdir()
    (src / "export.jsonl").write_text(f"\n{first}\n\n  \n{second}\n\n", encoding="utf-8")
    result = ingest("otlp", src, tmp_path / "store")
    assert result.counts["spans"] == 2


def test_a_capped_strength_says_so_and_is_not_read_as_a_ratio(tmp_path):
    from thinkfl.evidence.metrics import _deviation

    settings = MetricSettings()
    row = {"metric": "cpu", "entity": "p", "centre": 1.0, "mad": 0.1, "hi": 47.0, "lo": 1.0}
    capped = _deviation("pod", "p", row, settings)
    assert capped is not None and capped.capped and capped.strength == settings.max_strength
    assert capped.strength_text() == f"strength {settings.max_strength:.1f} capped"
    row_mild = row | {"hi": 2.0}  # z = 1.0 / 0.148 = 6.7 sigma: strength 1.35
    mild = _deviation("pod", "p", row_mild, settings)
    assert mild is not None and not mild.capped
    assert mild.strength_text() == f"strength {mild.strength:.1f}"
    item = EvidenceItem(
        level="pod", entity="p", kind=EvidenceKind.LOG_DROP, subject="s", observed=0,
        normal=4, strength=2.5,
    )  # fmt: skip
    assert item.strength_text() == "strength 2.5"


@pytest.fixture
def demo_metrics_observation(tmp_path) -> str:
    from thinkfl.tools import Toolbox

    out = tmp_path / "store"
    ingest("aiops2022", DEMO, out)
    store = TelemetryStore.open(out)
    case = store.cases()[0]
    box = Toolbox(store, case)
    entity = case.truth.entity
    obs = box.call(
        "search_fluctuating_metrics",
        {"service_name": entity, "timestamp": case.inject_time.isoformat()},
    )
    return obs.text


def test_every_n_sigma_line_can_be_checked_by_hand(demo_metrics_observation):
    line = re.compile(r"normal (\S+) ±([^,( ]+)(?: \(5% floor\))?, peak (\S+): (\S+) sigma$")
    checked = 0
    for text in demo_metrics_observation.splitlines():
        found = line.search(text)
        if not found:
            continue
        normal, spread, peak, sigma = map(float, found.groups())
        # the printed numbers carry 3 significant digits: 1% relative error each way
        assert abs(peak - normal) / spread == pytest.approx(sigma, rel=0.02), text
        checked += 1
    assert checked >= 1, demo_metrics_observation


def test_a_reader_that_leaves_early_gets_no_error(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "store"
    ingest("aiops2022", DEMO, out)
    # `thinkfl cases STORE | head -1` where head has already left: a pipe with no reader
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        shown = subprocess.run(
            [sys.executable, "-m", "thinkfl", "cases", str(out)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert shown.stderr == "" and shown.returncode == 1
