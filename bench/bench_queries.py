"""Latency of the three tool queries on a large store, against the authors' way in the same run.

    python bench/bench_queries.py [--traces 500000] [--queries 300]

Builds a synthetic store of >= 5 M spans (500 k traces x 10 spans) and >= 10 M metric samples
(500 pods x 20 metrics x 1,000 minutes) plus 2 M log records, then times, for random
arguments: children of a span, one entity's metrics in a 20-minute window, one service's
logs in a 2-minute window. The reference is what the authors' tool server does: boolean
filters over pandas frames held in memory (loading them is not timed). Same arguments,
same process; ratios are reference / thinkfl.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from thinkfl.telemetry import Level, StoreWriter, TelemetryStore
from thinkfl.telemetry.model import Manifest

BASE = datetime(2024, 1, 1, tzinfo=UTC)
SPANS_PER_TRACE = 10


def build(out: Path, traces: int, pods: int, metrics: int, minutes: int, logs: int) -> None:
    con = duckdb.connect()
    base = "TIMESTAMPTZ '2024-01-01 00:00:00+00'"
    chunk = 100_000
    with StoreWriter(out) as writer:
        for first in range(0, traces, chunk):
            writer.add(
                "spans",
                con.sql(f"""
                SELECT printf('%032x', t) AS trace_id, printf('%016x', t * 16 + s) AS span_id,
                       CASE WHEN s = 0 THEN NULL ELSE printf('%016x', t * 16 + (s - 1) // 2) END
                           AS parent_id,
                       'svc-' || ((t * 7 + s * 13) % 40) AS service,
                       'svc-' || ((t * 7 + s * 13) % 40) || '-' || (t % 3) AS pod,
                       'node-' || (t % 12) AS node, 'op-' || s AS operation,
                       {base} + to_microseconds(t * 1000 + s * 10) AS start,
                       (1000 + (t * 31 + s * 17) % 50000)::BIGINT AS duration_us,
                       'ok' AS status, 'server' AS kind
                FROM range({first}, {min(first + chunk, traces)}) a(t),
                     range({SPANS_PER_TRACE}) b(s)""").to_arrow_table(),
            )
        for first in range(0, pods, 50):
            writer.add(
                "metrics",
                con.sql(f"""
                SELECT 'pod' AS level, 'pod-' || p AS entity, 'metric-' || m AS metric,
                       {base} + to_minutes(i) AS time, sin(i / 7.0 + p + m) * 10 + 50 AS value
                FROM range({first}, {min(first + 50, pods)}) a(p), range({metrics}) b(m),
                     range({minutes}) c(i)""").to_arrow_table(),
            )
        for first in range(0, logs, 500_000):
            writer.add(
                "logs",
                con.sql(f"""
                SELECT {base} + to_milliseconds(i * 30) AS time, 'svc-' || (i % 40) AS service,
                       'svc-' || (i % 40) || '-' || (i % 3) AS pod, 'node-' || (i % 12) AS node,
                       CASE WHEN i % 50 = 0 THEN 'error' ELSE 'info' END AS severity,
                       'request ' || i || ' handled' AS message,
                       NULL::VARCHAR AS trace_id, NULL::VARCHAR AS span_id
                FROM range({first}, {min(first + 500_000, logs)}) a(i)""").to_arrow_table(),
            )
        writer.publish(Manifest(source_format="bench", source="synthetic"))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def timed(function, arguments) -> list[float]:
    times = []
    for args in arguments:
        start = time.perf_counter()
        function(*args)
        times.append((time.perf_counter() - start) * 1000)
    return times


def store_arguments() -> argparse.ArgumentParser:
    """The size of the synthetic store (shared by bench_tools.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=500_000)
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=1_000)
    parser.add_argument("--logs", type=int, default=2_000_000)
    return parser


def main() -> None:
    parser = store_arguments()
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--reference-queries", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "store"
        start = time.perf_counter()
        build(out, args.traces, args.pods, args.metrics, args.minutes, args.logs)
        print(f"built store in {time.perf_counter() - start:.1f} s")
        store = TelemetryStore.open(out)
        counts = store.query(
            "SELECT (SELECT count(*) FROM spans) s, (SELECT count(*) FROM metrics) m, "
            "(SELECT count(*) FROM logs) l"
        ).to_pylist()[0]
        print(f"store: {counts['s']:,} spans, {counts['m']:,} metric samples, {counts['l']:,} logs")

        def span_args(n):
            return [
                (f"{rng.randrange(args.traces) * 16 + rng.randrange(5):016x}",) for _ in range(n)
            ]

        def metric_args(n):
            out_args = []
            for _ in range(n):
                t0 = BASE + timedelta(minutes=rng.randrange(args.minutes - 20))
                out_args.append((f"pod-{rng.randrange(args.pods)}", t0, t0 + timedelta(minutes=20)))
            return out_args

        def log_args(n):
            out_args = []
            span_s = args.logs * 0.03
            for _ in range(n):
                t0 = BASE + timedelta(seconds=rng.uniform(0, span_s - 120))
                out_args.append((f"svc-{rng.randrange(40)}", t0, t0 + timedelta(minutes=2)))
            return out_args

        ours = {
            "children(span)": timed(store.children, span_args(args.queries)),
            "metrics(entity, 20 min)": timed(store.metrics, metric_args(args.queries)),
            "logs(service, 2 min)": timed(
                lambda s, a, b: store.logs(s, Level.SERVICE, a, b), log_args(args.queries)
            ),
        }
        # The reference: the authors' tool server keeps pandas frames and filters with masks.
        start = time.perf_counter()
        spans = store.query(
            "SELECT span_id, parent_id, service, operation, start, duration_us FROM spans"
        ).to_pandas()
        metrics = store.query("SELECT entity, metric, time, value FROM metrics").to_pandas()
        logs = store.query("SELECT time, service, message FROM logs").to_pandas()
        print(f"reference frames loaded in {time.perf_counter() - start:.1f} s (not timed below)")
        reference = {
            "children(span)": timed(
                lambda s: spans[spans["parent_id"] == s], span_args(args.reference_queries)
            ),
            "metrics(entity, 20 min)": timed(
                lambda e, a, b: metrics[
                    (metrics["entity"] == e) & (metrics["time"] >= a) & (metrics["time"] <= b)
                ],
                metric_args(args.reference_queries),
            ),
            "logs(service, 2 min)": timed(
                lambda s, a, b: logs[
                    (logs["service"] == s) & (logs["time"] >= a) & (logs["time"] <= b)
                ],
                log_args(args.reference_queries),
            ),
        }
        print(
            f"\n{'query':<26}{'thinkfl p50':>12}{'p99':>9}{'pandas p50':>12}{'p99':>9}{'p50 ratio':>11}"
        )
        for name, times in ours.items():
            ref = reference[name]
            print(
                f"{name:<26}{statistics.median(times):>10.2f}ms{percentile(times, 99):>7.2f}ms"
                f"{statistics.median(ref):>10.1f}ms{percentile(ref, 99):>7.1f}ms"
                f"{statistics.median(ref) / statistics.median(times):>10.1f}x"
            )
        store.close()


if __name__ == "__main__":
    main()
