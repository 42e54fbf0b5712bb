"""Ingest throughput on the real Nezha day (../shared/data/nezha-trainticket).

    python bench/bench_ingest.py [--repeat 3]

Prints rows/s and source MB/s, and, as a reference run in the same process, the time pandas
takes only to read the same CSV files into frames (what the authors' tool server does at
start-up, without any validation, typing or sorting).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from thinkfl.telemetry import ingest
from thinkfl.telemetry.ingest.nezha import NezhaAdapter

SRC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nezha-trainticket"


def pandas_reference(files: list[Path]) -> float:
    start = time.perf_counter()
    for file in files:
        pd.read_csv(
            file, on_bad_lines="skip", engine="python" if "log" in file.parent.name else "c"
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not SRC.exists():
        raise SystemExit(f"needs the real data at {SRC}")
    files = NezhaAdapter().files(SRC)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    times, counts = [], {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = ingest("nezha", SRC, Path(tmp) / "store")
            times.append(time.perf_counter() - start)
            counts = result.counts
    rows = counts["spans"] + counts["metrics"] + counts["logs"]
    best, median = min(times), statistics.median(times)
    reference = pandas_reference(files)
    print(
        f"source: {len(files)} files, {megabytes:.1f} MB; stored rows: {rows:,} "
        f"({counts['spans']:,} spans, {counts['metrics']:,} metric samples, {counts['logs']:,} logs)"
    )
    print(f"thinkfl ingest: median {median:.2f} s, best {best:.2f} s over {args.repeat} runs")
    print(
        f"  throughput (median): {rows / median:,.0f} rows/s, {counts['spans'] / median:,.0f} spans/s, "
        f"{megabytes / median:.1f} MB/s"
    )
    print(
        f"pandas read_csv of the same files (reference, no typing/sorting/store): {reference:.2f} s"
    )
    print(f"  ratio thinkfl ingest / pandas read: {median / reference:.2f}x")


if __name__ == "__main__":
    main()
