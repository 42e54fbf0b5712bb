"""The command line: ingest, cases, info, and what a user sees on error."""

from __future__ import annotations

import json

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
