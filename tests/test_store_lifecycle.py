"""Store life cycle: a writer killed at any step leaves either the old or the new complete
store at --out, the next run cleans what the dead one left, and a damaged store is named.

The kills are real (`os._exit(137)` at a named point inside the writer, as kill -9 would:
no cleanup runs), injected with THINKFL_CRASH_AT in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import leftovers
from thinkfl.telemetry import StoreError, TelemetryStore

DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"
WRITE_POINTS = ["staged", "tables_finished", "manifest_written"]
REPLACE_POINTS = [*WRITE_POINTS, "old_moved_aside", "new_in_place"]
OLD_MARK = "old-store-mark"


def ingest(out: Path, *extra: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("THINKFL_CRASH_AT", None)
    if crash_at:
        env["THINKFL_CRASH_AT"] = crash_at
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "thinkfl",
            "ingest",
            "aiops2022",
            str(DEMO),
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def complete(out: Path) -> TelemetryStore:
    store = TelemetryStore.open(out)
    assert store.manifest.counts["spans"] > 0
    assert store.query("SELECT count(*) n FROM spans").to_pylist() == [
        {"n": store.manifest.counts["spans"]}
    ]
    assert store.cases()
    return store


def test_a_first_ingest_killed_at_any_step_leaves_no_store_and_is_cleaned_next_time(tmp_path):
    out = tmp_path / "store"
    for point in WRITE_POINTS:
        killed = ingest(out, crash_at=point)
        assert killed.returncode == 137, killed.stderr
        assert not out.exists()
    assert leftovers(tmp_path)  # what the dead runs left...
    done = ingest(out)
    assert done.returncode == 0, done.stderr
    assert leftovers(tmp_path) == []  # ...is gone after the next run on the same --out
    complete(out)


def test_force_killed_at_any_step_leaves_the_old_or_the_new_store(tmp_path):
    out = tmp_path / "store"
    assert ingest(out).returncode == 0
    (out / OLD_MARK).write_text("1")
    outcomes = {}
    for point in REPLACE_POINTS:
        killed = ingest(out, "--force", crash_at=point)
        assert killed.returncode == 137, killed.stderr
        complete(out)  # opening recovers a store moved aside by a kill between two renames
        outcomes[point] = "old" if (out / OLD_MARK).exists() else "new"
        if outcomes[point] == "new":
            (out / OLD_MARK).write_text("1")  # the next round tells old from new again
    # Up to the manifest the old store stays; once the new one is complete it wins.
    assert outcomes == {
        "staged": "old",
        "tables_finished": "old",
        "manifest_written": "old",
        "old_moved_aside": "new",
        "new_in_place": "new",
    }
    assert ingest(out, "--force").returncode == 0
    assert leftovers(tmp_path) == []
    assert not (out / OLD_MARK).exists()


def test_a_live_writer_is_not_cleaned_up(tmp_path):
    """Only folders of dead processes are removed: one named after a live pid stays."""
    live = tmp_path / f".store.tmp-{os.getppid()}-0123abcd"
    live.mkdir()
    assert ingest(tmp_path / "store").returncode == 0
    assert live.is_dir()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (
            lambda s: (s / "manifest.json").write_text('{"format_version": 1, "sour'),
            "manifest.json: damaged",
        ),
        (lambda s: (s / "cases.json").write_text("[{"), "cases.json: damaged"),
        (lambda s: (s / "spans.parquet").write_bytes(b"PAR1 truncated"), "spans.parquet: damaged"),
    ],
)
def test_a_damaged_store_names_the_damaged_file(tmp_path, damage, says):
    out = tmp_path / "store"
    assert ingest(out).returncode == 0
    damage(out)
    with pytest.raises(StoreError, match=says) as raised:
        TelemetryStore.open(out).cases()
    assert "Fix: ingest the store again" in str(raised.value)
    shown = subprocess.run(
        [sys.executable, "-m", "thinkfl", "cases", str(out)], capture_output=True, text=True
    )
    assert shown.returncode == 2
    assert shown.stderr.count("\n") == 1 and says in shown.stderr
    assert json.loads((out / "faults.json").read_text())  # nothing else was touched
