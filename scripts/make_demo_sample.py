"""Write the bundled demo incident: a small synthetic Online Boutique day in the AIOps-2022 layout.

Synthetic (not real data): 20 minutes of traffic, one pod-level CPU fault on cartservice-1 at
10:12 for 5 minutes. Deterministic (seeded). Run from the repository root:

    python scripts/make_demo_sample.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path("src/thinkfl/data/demo-aiops2022")
START = 1647770400  # 2022-03-20 10:00:00 UTC
FAULT_AT, FAULT_END = START + 12 * 60, START + 17 * 60
CULPRIT = "cartservice-1"
PLACEMENT = {
    "frontend-0": "node-1", "frontend-1": "node-2", "frontend-2": "node-3",
    "cartservice-0": "node-4", "cartservice-1": "node-6", "cartservice-2": "node-5",
    "productcatalogservice-0": "node-1", "productcatalogservice-1": "node-3",
    "currencyservice-0": "node-2", "currencyservice-1": "node-4",
    "recommendationservice-0": "node-5", "recommendationservice-1": "node-6",
    "redis-cart-0": "node-2",
}


def replicas(service: str) -> list[str]:
    return [pod for pod in PLACEMENT if pod.rsplit("-", 1)[0] == service]


class Sample:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.spans: list[list] = []
        self.logs: list[list] = []
        self.ids = 0

    def new_id(self) -> str:
        self.ids += 1
        return f"{self.rng.getrandbits(40):010x}{self.ids:06x}"

    def call(self, trace: str, parent: str, pod: str, op: str, start_ms: float, base_us: float,
             children: list[tuple[str, str, float]] = ()) -> float:
        """Add a span (and its callees); returns its duration in µs."""
        span_id = self.new_id()
        slow = pod == CULPRIT and FAULT_AT * 1000 <= start_ms < FAULT_END * 1000
        own = self.rng.lognormvariate(0, 0.25) * base_us * (25 if slow else 1)
        offset_ms, total = 0.3, own
        for child_service, child_op, child_base in children:
            child_pod = self.rng.choice(replicas(child_service))
            took = self.call(trace, span_id, child_pod, child_op, start_ms + offset_ms, child_base)
            offset_ms += took / 1000 + 0.2
            total += took
        status = "0"
        if slow and self.rng.random() < 0.3:
            status = "2"
            self.logs.append([self.new_id(), int(start_ms / 1000), pod,
                              "log_cartservice-service_application",
                              "severity: error, message: GetCart failed: CPU throttled, deadline exceeded"])
        self.spans.append([int(start_ms), pod, span_id, trace, int(total), "rpc", status, op, parent])
        return total

    def request(self, at_s: float) -> None:
        trace = self.new_id() + self.new_id()
        front = self.rng.choice(replicas("frontend"))
        start_ms = at_s * 1000
        took = self.call(trace, "", front, "hipstershop.Frontend/Recv.", start_ms, 2000, [
            ("productcatalogservice", "hipstershop.ProductCatalogService/GetProduct", 3000),
            ("cartservice", "hipstershop.CartService/GetCart", 4000),
            ("currencyservice", "hipstershop.CurrencyService/Convert", 1500),
            ("recommendationservice", "hipstershop.RecommendationService/ListRecommendations", 5000),
        ])
        self.spans[-1][5] = "http"
        severity = "warn" if took > 200_000 else "info"
        message = "request complete" if severity == "info" else "slow request: cart call took long"
        self.logs.append([self.new_id(), int(at_s), front, "log_frontend-service_application",
                          f"severity: {severity}, message: {message}"])


def metrics(rng: random.Random) -> tuple[list[list], list[list], list[list]]:
    container, node, service = [], [], []
    for minute in range(20):
        t = START + minute * 60
        faulty = FAULT_AT <= t < FAULT_END
        for pod, host in PLACEMENT.items():
            cpu = 0.95 if faulty and pod == CULPRIT else rng.gauss(0.12, 0.02)
            container.append([t, f"{host}.{pod}", "container_cpu_usage_seconds", round(cpu, 4)])
            container.append([t, f"{host}.{pod}", "container_memory_usage_MB",
                              round(rng.gauss(180, 5), 2)])
        for host in sorted(set(PLACEMENT.values())):
            busy = 71.0 if faulty and host == "node-6" else rng.gauss(30, 3)
            node.append([t, host, "system.cpu.pct_usage", round(busy, 2)])
        mrt = 95.0 if faulty else rng.gauss(6, 0.5)
        service.append(["cartservice-grpc", t, 10.0, 99.0 if faulty else 100.0, round(mrt, 2), 10])
    return container, node, service


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    sample = Sample()
    t = float(START)
    while t < START + 20 * 60:
        sample.request(t)
        t += sample.rng.uniform(4, 8)
    container, node, service = metrics(sample.rng)
    write_csv(OUT / "trace/all/trace_jaeger-span.csv",
              ["timestamp", "cmdb_id", "span_id", "trace_id", "duration", "type", "status_code",
               "operation_name", "parent_span"], sorted(sample.spans))
    write_csv(OUT / "log/all/logs.csv", ["log_id", "timestamp", "cmdb_id", "log_name", "value"],
              sorted(sample.logs, key=lambda row: row[1]))
    write_csv(OUT / "metric/container/kpi_container.csv",
              ["timestamp", "cmdb_id", "kpi_name", "value"], container)
    write_csv(OUT / "metric/node/kpi_node.csv", ["timestamp", "cmdb_id", "kpi_name", "value"], node)
    write_csv(OUT / "metric/service/metric_service.csv",
              ["service", "timestamp", "rr", "sr", "mrt", "count"], service)
    write_csv(OUT / "groundtruth.csv", ["timestamp", "level", "cmdb_id", "failure_type"],
              [[FAULT_AT, "pod", CULPRIT, "k8s容器cpu负载"]])
    (OUT / "README.md").write_text(
        "Synthetic demo incident (not real data), AIOps-2022 layout: Online Boutique, 20 minutes,\n"
        "one CPU fault on pod cartservice-1 at 2022-03-20 10:12 UTC. Made by\n"
        "scripts/make_demo_sample.py (seeded, deterministic).\n", encoding="utf-8")


if __name__ == "__main__":
    main()
