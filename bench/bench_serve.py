"""`thinkfl serve` under load, against the batch `thinkfl ingest` rate in the same run.

    python bench/bench_serve.py [--spans 60000] [--seconds 60] [--clients 50]

1. Rate: the same OTLP/JSON spans through `ingest otlp` (one batch job) and posted to a
   running server (batches of 500 spans, 4 concurrent senders); spans per second each.
2. Load: `--clients` threads for `--seconds` on loopback, half posting OTLP batches of 50
   spans, half reading the report page of one investigation; p50/p99 latency per kind,
   errors, and spans acknowledged against spans stored (counted after the server stops).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from thinkfl.telemetry import TelemetryStore, ingest

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
T0 = 1_700_000_000_000_000_000


def request(first: int, count: int) -> dict:
    """OTLP/JSON with `count` spans: traces of 5 spans (an entry and 4 children)."""
    spans = []
    for n in range(first, first + count):
        trace, position = divmod(n, 5)
        start = T0 + trace * 2_000_000_000 + position * 1_000_000
        spans.append(
            {
                "traceId": f"{trace:032x}",
                "spanId": f"{n:016x}",
                "parentSpanId": "" if position == 0 else f"{trace * 5:016x}",
                "name": "GET /" if position == 0 else f"call-{position}",
                "kind": 2 if position == 0 else 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + (9 - position) * 1_000_000),
            }
        )
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}


def start_server(store: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "thinkfl", "serve", "--store", str(store), "--port", str(port)],
        env={**os.environ, "THINKFL_API_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def rate(spans: int, work: Path, port: int) -> tuple[float, float]:
    source = work / "otlp"
    source.mkdir()
    batch = 500
    bodies = [json.dumps(request(first, batch)) for first in range(0, spans, batch)]
    (source / "spans.jsonl").write_text("\n".join(bodies) + "\n")
    began = time.perf_counter()
    ingest("otlp", source, work / "batch-store")
    batch_rate = spans / (time.perf_counter() - began)
    server = start_server(work / "live-rate", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=60) as client:
            began = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                codes = list(
                    pool.map(lambda b: client.post("/v1/traces", content=b).status_code, bodies)
                )
            served_rate = spans / (time.perf_counter() - began)
    finally:
        server.terminate()
        server.wait()
    assert set(codes) == {200}, set(codes)
    return batch_rate, served_rate


def load(work: Path, port: int, seconds: float, clients: int) -> None:
    store = work / "live-load"
    server = start_server(store, port)
    url = f"http://127.0.0.1:{port}"
    latencies: dict[str, list[float]] = {"write": [], "read": []}
    errors: dict[str, int] = {"write": 0, "read": 0}
    acknowledged = [0]
    lock = threading.Lock()
    counter = iter(range(10, 10**9))  # batches of 50 spans after the 500 seeded ones
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            seeded = client.post("/v1/traces", content=json.dumps(request(0, 500)))
            assert seeded.status_code == 200
            made = client.post("/v1/investigations", json={"at": "2023-11-14T22:13:20Z"}).json()
            for _ in range(600):
                status = client.get(f"/v1/investigations/{made['id']}").json()["status"]
                if status in ("done", "failed"):
                    break
                time.sleep(0.1)
        deadline = time.monotonic() + seconds

        def client_loop(kind: str) -> None:
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
                while time.monotonic() < deadline:
                    began = time.perf_counter()
                    try:
                        if kind == "write":
                            with lock:
                                first = next(counter) * 50
                            answer = client.post(
                                "/v1/traces", content=json.dumps(request(first, 50))
                            )
                        else:
                            answer = client.get(f"/investigations/{made['id']}")
                        ok = answer.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        latencies[kind].append(time.perf_counter() - began)
                        if not ok:
                            errors[kind] += 1
                        elif kind == "write":
                            acknowledged[0] += 50

        kinds = ["write" if i % 2 == 0 else "read" for i in range(clients)]
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in kinds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait()
    stored = TelemetryStore.open(store).query("SELECT count(*) n FROM spans").to_pylist()[0]["n"]
    stored -= 500  # the seeded batch
    print(
        f"\nload: {clients} clients ({clients // 2} OTLP writers, "
        f"{clients - clients // 2} report readers), {seconds:.0f} s"
    )
    for kind, values in latencies.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        print(
            f"  {kind:<6} {len(values):>7} requests  p50 {statistics.median(values) * 1000:7.1f} ms  "
            f"p99 {p99 * 1000:7.1f} ms  errors {errors[kind]}"
        )
    print(
        f"  spans acknowledged {acknowledged[0]:,}, stored {stored:,} (lost: {acknowledged[0] - stored:,})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--port", type=int, default=18_431)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        batch_rate, served_rate = rate(args.spans, work, args.port)
        print(f"rate: {args.spans:,} spans")
        print(f"  thinkfl ingest otlp (batch)      {batch_rate:>10,.0f} spans/s   1.00x")
        print(
            f"  thinkfl serve, POST /v1/traces   {served_rate:>10,.0f} spans/s   "
            f"{served_rate / batch_rate:.2f}x"
        )
        load(work, args.port, args.seconds, args.clients)


if __name__ == "__main__":
    main()
