"""Every malformed input of the corpus (tests/malformed.py) gets exactly one line on stderr
that names the file, field or argument and a fix, the documented exit code, no traceback,
and leaves no store and no hidden temporary folder behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from malformed import CORPUS, DEMO, Malformed
from thinkfl.cli import app
from thinkfl.telemetry import TelemetryStore, ingest

runner = CliRunner()
_TEMPORARY = re.compile(r"\.tmp-\d+-[0-9a-f]{8}")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("corpus") / "demo"
    ingest("aiops2022", DEMO, out)
    return out, TelemetryStore.open(out).cases()[0].case_id


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CORPUS) >= 40
    assert len({entry.name for entry in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("entry", CORPUS, ids=lambda entry: entry.name)
def test_malformed_input_gets_one_clear_line(entry: Malformed, tmp_path, demo_store):
    store, case = demo_store
    folder = tmp_path / "in"
    folder.mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    argv, expected = entry.resolved(folder, store, case)
    result = runner.invoke(app, argv)
    said = _TEMPORARY.sub(".tmp-<pid>", result.stderr)
    assert result.exit_code == entry.exit_code, said
    assert ("Traceback" not in said and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    assert said.count("\n") == 1, said
    assert said.strip() == expected
    assert not (folder / "store").exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert {p.name for p in tmp_path.iterdir()} == before
