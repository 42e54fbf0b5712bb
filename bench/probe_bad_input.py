"""The hardening probe: every bad input we know of, tried against the real CLI and server, and
a table of what happened (inputs tried -> clear error / accepted correctly / wrong).

    python bench/probe_bad_input.py [--bomb-mb 1024]

Groups: the malformed-input corpus of tests/malformed.py (each entry's exact line and exit
code); hostile identifiers (`../`, `/`, NUL, 200 KB) through every path that names a file
(evidence cache, alerts, the API, cases.json under the CLI); special files as output targets
(a FIFO, a symlink to one); damaged stores (wrong columns, rows missing, cases/faults files
missing or corrupt) under `cases` and `localize`; and request bodies (gzip bombs, invalid
and truncated gzip) against a `thinkfl serve` child process, whose peak RSS is read from
/proc before and after. Goals (hardening issue): 0 writes outside a store, 0 special files
replaced, 0 exit-0 answers from damaged stores, 0 internal errors, RSS growth <= 50 MB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from machine import cpu_line

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from malformed import CORPUS, DEMO  # noqa: E402
from test_hardening import files_outside  # noqa: E402
from test_serve import AUTH as SERVER_AUTH  # noqa: E402
from test_serve import Server  # noqa: E402
from thinkfl.agent import ExpertPolicy  # noqa: E402
from thinkfl.cli import app  # noqa: E402
from thinkfl.evidence import evidence_for  # noqa: E402
from thinkfl.serve.app import ServeSettings, create_app  # noqa: E402
from thinkfl.telemetry import TelemetryStore, ingest  # noqa: E402

CLEAR, ACCEPTED, WRONG = "clear error", "accepted correctly", "wrong"
HOSTILE_IDS = ["x/../../../../outside", "../../escape", "a\x00b", "/abs/path", "z" * 200_000]
runner = CliRunner()


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, Counter[str]] = {}
        self.wrong: list[str] = []
        self.measures: Counter[str] = Counter()

    def add(self, group: str, outcome: str, what: str) -> None:
        self.rows.setdefault(group, Counter())[outcome] += 1
        if outcome == WRONG:
            self.wrong.append(f"{group}: {what}")


def one_clear_line(result) -> bool:
    said = result.stderr
    return result.exit_code == 2 and said.count("\n") == 1 and "Traceback" not in said


def demo_store(folder: Path) -> Path:
    ingest("aiops2022", DEMO, folder / "store")
    return folder / "store"


def probe_corpus(tally: Tally, work: Path) -> None:
    store = demo_store(work / "corpus")
    case = TelemetryStore.open(store).cases()[0].case_id
    for index, entry in enumerate(CORPUS):
        folder = work / f"entry-{index}"
        folder.mkdir()
        argv, expected = entry.resolved(folder, store, case)
        result = runner.invoke(app, argv)
        said = result.stderr.strip()
        right = result.exit_code == entry.exit_code and said.splitlines()[-1:] == [expected]
        tally.add("malformed inputs (corpus)", CLEAR if right else WRONG, entry.name)
        if "internal error" in said:
            tally.measures["internal errors for user mistakes"] += 1


def probe_hostile_ids(tally: Tally, work: Path) -> None:
    store = demo_store(work / "ids")
    opened = TelemetryStore.open(store)
    case = opened.cases()[0]
    before = files_outside(work, store)
    for hostile in HOSTILE_IDS:  # the evidence cache names a file after the case id
        evidence_for(opened, case.model_construct(**{**dict(case), "case_id": hostile}))
        tally.add("hostile ids", ACCEPTED, "evidence cache")
    alert = json.loads((TESTS / "data" / "alertmanager-v4.json").read_text())
    with TestClient(create_app(ServeSettings(store=store, token="t"), ExpertPolicy)) as client:
        auth = {"Authorization": "Bearer t"}
        for hostile in HOSTILE_IDS:
            for item in alert["alerts"]:
                item["labels"]["alertname"] = hostile
                item["fingerprint"] = hostile[:100]
                item["startsAt"] = case.entry_start.isoformat()
                item["labels"].pop("service", None)
            answer = client.post("/v1/alerts", json=alert, headers=auth)
            tally.add(
                "hostile ids", ACCEPTED if answer.status_code in (200, 202) else WRONG, "alert"
            )
            refused = client.post("/v1/investigations", json={"case_id": hostile}, headers=auth)
            tally.add("hostile ids", CLEAR if refused.status_code == 400 else WRONG, "API case_id")
    cases = json.loads((store / "cases.json").read_text())
    for hostile in HOSTILE_IDS[:4]:
        damaged = [dict(cases[0], case_id=hostile)]
        (store / "cases.json").write_text(json.dumps(damaged))
        result = runner.invoke(app, ["localize", str(store), "--case", hostile])
        tally.add("hostile ids", CLEAR if one_clear_line(result) else WRONG, "cases.json + CLI")
    (store / "cases.json").write_text(json.dumps(cases))
    tally.measures["writes outside a store"] += len(files_outside(work, store) - before)


def probe_special_files(tally: Tally, work: Path) -> None:
    store = demo_store(work / "special")
    case = TelemetryStore.open(store).cases()[0].case_id
    fifo = work / "pipe"
    os.mkfifo(fifo)
    link = work / "link"
    link.symlink_to(fifo)
    for target in (fifo, link):
        for argv in (
            ["report", str(store), "--case", case, "--out", str(target)],
            ["localize", str(store), "--case", case, "--html", str(target)],
            ["localize", str(store), "--case", case, "--save", str(target)],
        ):
            result = runner.invoke(app, argv)
            kept = fifo.is_fifo() and (target == fifo or target.is_symlink())
            tally.add(
                "special output targets",
                CLEAR if one_clear_line(result) and kept else WRONG,
                argv[0],
            )
            tally.measures["special files replaced"] += not kept


def _damages() -> dict[str, Callable[[Path], None]]:
    def wrong_columns(store: Path) -> None:
        pq.write_table(pa.table({"x": [1]}), store / "spans.parquet")

    def rows_missing(store: Path) -> None:
        logs = pq.read_table(store / "logs.parquet")
        pq.write_table(logs.slice(0, logs.num_rows - 1), store / "logs.parquet")

    def truncated(store: Path) -> None:
        data = (store / "metrics.parquet").read_bytes()
        (store / "metrics.parquet").write_bytes(data[: len(data) // 2])

    return {
        "spans.parquet with other columns": wrong_columns,
        "logs.parquet one row short": rows_missing,
        "metrics.parquet cut in half": truncated,
        "cases.json missing": lambda s: (s / "cases.json").unlink(),
        "faults.json missing": lambda s: (s / "faults.json").unlink(),
        "cases.json not JSON": lambda s: (s / "cases.json").write_text("{oops"),
        "manifest.json missing": lambda s: (s / "manifest.json").unlink(),
    }


def probe_damaged_stores(tally: Tally, work: Path) -> None:
    for index, (name, damage) in enumerate(_damages().items()):
        store = demo_store(work / f"damaged-{index}")
        case = TelemetryStore.open(store).cases()[0].case_id
        damage(store)
        for argv in (["cases", str(store)], ["localize", str(store), "--case", case]):
            result = runner.invoke(app, argv)
            tally.add(
                "damaged stores", CLEAR if one_clear_line(result) else WRONG, f"{name}: {argv[0]}"
            )
            tally.measures["exit-0 answers from damaged stores"] += result.exit_code == 0


def _bomb(inflated_bytes: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(inflated_bytes >> 20)) + packer.flush()


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


def probe_bodies(tally: Tally, work: Path, bomb_mb: int) -> None:
    server = Server(work / "live")
    try:
        headers = {**SERVER_AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=300) as client:
            client.post("/v1/traces", content=gzip.compress(b"{}"))
            before = _peak_rss_kib(server.process.pid)
            bodies = {
                f"gzip bomb ({bomb_mb} MB inflated)": (_bomb(bomb_mb << 20), 413),
                "invalid gzip": (b"\x1f\x8b\x08garbage", 400),
                "gzip cut short": (gzip.compress(b"{" * 10_000)[:-20], 400),
                "not gzip at all": (b"plain text", 400),
            }
            for name, (body, status) in bodies.items():
                for path in (
                    "/v1/traces",
                    "/v1/metrics",
                    "/v1/logs",
                    "/v1/alerts",
                    "/v1/investigations",
                ):
                    answer = client.post(path, content=body)
                    tally.add(
                        "request bodies",
                        CLEAR if answer.status_code == status else WRONG,
                        f"{name} {path}",
                    )
            grown = (_peak_rss_kib(server.process.pid) - before) / 1024
            tally.measures["server RSS growth, MB (max 50)"] = round(grown)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bomb-mb", type=int, default=1024, help="what the gzip bomb inflates to")
    args = parser.parse_args()
    print(cpu_line())
    tally = Tally()
    tally.measures.update(
        {
            "writes outside a store": 0,
            "special files replaced": 0,
            "exit-0 answers from damaged stores": 0,
            "internal errors for user mistakes": 0,
        }
    )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for step in (probe_corpus, probe_hostile_ids, probe_special_files, probe_damaged_stores):
            folder = work / step.__name__
            folder.mkdir()
            step(tally, folder)
        (work / "bodies").mkdir()
        probe_bodies(tally, work / "bodies", args.bomb_mb)
    print(f"| group | tried | {CLEAR} | {ACCEPTED} | {WRONG} |")
    print("|---|---:|---:|---:|---:|")
    total: Counter[str] = Counter()
    for group, counts in tally.rows.items():
        total.update(counts)
        tried = sum(counts.values())
        print(f"| {group} | {tried} | {counts[CLEAR]} | {counts[ACCEPTED]} | {counts[WRONG]} |")
    print(
        f"| **all** | {sum(total.values())} | {total[CLEAR]} | {total[ACCEPTED]} | {total[WRONG]} |"
    )
    print()
    for name, value in tally.measures.items():
        print(f"- {name}: {value}")
    for line in tally.wrong:
        print(f"WRONG {line}")


if __name__ == "__main__":
    main()
