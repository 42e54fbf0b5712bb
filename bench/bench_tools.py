"""Latency of the agent's tools on a large store with the case's evidence cached, against the
authors' way (pandas masks over frames in memory) for the same lookups, in the same run.

    python bench/bench_tools.py [--traces 500000] [--calls 300]

Builds the synthetic store of bench_queries.py (>= 5 M spans, 10 M metric samples, 2 M logs),
makes one failure case on a trace in the middle of it, computes the case's evidence once
(timed: derived tables, detectors, fusion), then times tool calls as the agent makes them:
`search_traces` on random spans of the case's trace, `search_logs` and
`search_fluctuating_metrics` on random services around the case. The reference does the
underlying lookup of each call with boolean masks over pandas frames (loading them is not
timed). Ratios are reference p50 / thinkfl p50.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench_queries import BASE, SPANS_PER_TRACE, build, percentile, store_arguments, timed
from thinkfl.evidence import evidence_for
from thinkfl.telemetry import FailureCase, GroundTruth, Level, TelemetryStore
from thinkfl.telemetry.model import EntryAnomaly, SpanStatus
from thinkfl.tools import Toolbox


def bench_case(store: TelemetryStore, trace: int) -> FailureCase:
    entry = store.span(f"{trace * 16:016x}")
    assert entry is not None, "the synthetic trace is missing"
    return FailureCase(
        case_id="bench",
        fault_id="bench",
        truth=GroundTruth(level=Level.SERVICE, entity=entry["service"], fault_type="bench"),
        inject_time=entry["start"],
        window_start=entry["start"] - timedelta(minutes=2),
        window_end=entry["start"] + timedelta(minutes=5),
        entry_trace_id=entry["trace_id"],
        entry_span_id=entry["span_id"],
        entry_service=entry["service"],
        entry_operation=entry["operation"],
        entry_start=entry["start"],
        entry_duration_us=entry["duration_us"],
        entry_status=SpanStatus(entry["status"]),
        anomaly=EntryAnomaly.WEAK,
        latency_ratio=1.0,
        anomalous_traces=1,
    )


def main() -> None:
    parser = store_arguments()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--reference-calls", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "store"
        start = time.perf_counter()
        build(out, args.traces, args.pods, args.metrics, args.minutes, args.logs)
        print(f"built store in {time.perf_counter() - start:.1f} s")
        store = TelemetryStore.open(out)
        case = bench_case(store, args.traces // 2)
        start = time.perf_counter()
        evidence_for(store, case)
        print(f"evidence of the case computed and cached in {time.perf_counter() - start:.1f} s")
        box = Toolbox(store, case)
        spans = [f"{(args.traces // 2) * 16 + s:016x}" for s in range(SPANS_PER_TRACE)]
        when = case.entry_start.isoformat()
        services = [f"svc-{i}" for i in range(40)]
        start = time.perf_counter()
        box.call("search_traces", {"parent_span_id": case.entry_span_id})
        print(
            f"first tool call of the case (reads its trace) {1000 * (time.perf_counter() - start):.1f} ms"
        )

        def calls(tool: str, n: int) -> list[tuple]:
            if tool == "search_traces":
                return [(tool, {"parent_span_id": rng.choice(spans)}) for _ in range(n)]
            return [
                (tool, {"service_name": rng.choice(services), "timestamp": when}) for _ in range(n)
            ]

        tools = ("search_traces", "search_logs", "search_fluctuating_metrics")
        ours = {tool: timed(box.call, calls(tool, args.calls)) for tool in tools}
        start = time.perf_counter()
        frames = {
            "spans": store.query(
                "SELECT span_id, parent_id, service, start FROM spans"
            ).to_pandas(),
            "logs": store.query("SELECT time, service, severity, message FROM logs").to_pandas(),
            "metrics": store.query("SELECT entity, metric, time, value FROM metrics").to_pandas(),
        }
        print(f"reference frames loaded in {time.perf_counter() - start:.1f} s (not timed below)")
        t = case.entry_start
        span_frame, log_frame, metric_frame = frames["spans"], frames["logs"], frames["metrics"]
        reference = {
            "search_traces": timed(
                lambda _tool, a: span_frame[span_frame["parent_id"] == a["parent_span_id"]],
                calls("search_traces", args.reference_calls),
            ),
            "search_logs": timed(
                lambda _tool, a: log_frame[
                    (log_frame["service"] == a["service_name"])
                    & (log_frame["time"] >= t - timedelta(minutes=11))
                    & (log_frame["time"] <= t + timedelta(minutes=1))
                ],
                calls("search_logs", args.reference_calls),
            ),
            "search_fluctuating_metrics": timed(
                lambda _tool, a: metric_frame[
                    metric_frame["entity"].str.startswith(a["service_name"])
                    & (metric_frame["time"] >= t - timedelta(minutes=20))
                    & (metric_frame["time"] <= t + timedelta(minutes=5))
                ],
                calls("search_fluctuating_metrics", args.reference_calls),
            ),
        }
        print(
            f"\n{'tool (evidence cached)':<28}{'thinkfl p50':>12}{'p99':>9}{'pandas p50':>12}{'p50 ratio':>11}"
        )
        for name, times in ours.items():
            ref = reference[name]
            print(
                f"{name:<28}{statistics.median(times):>10.2f}ms{percentile(times, 99):>7.2f}ms"
                f"{statistics.median(ref):>10.1f}ms"
                f"{statistics.median(ref) / statistics.median(times):>10.1f}x"
            )
        print(f"(store base time {BASE.isoformat()}; case at {case.entry_start.isoformat()})")
        store.close()


if __name__ == "__main__":
    main()
