"""Generate labelled failure cases into a store, case by case (memory stays bounded).

Each case gets its own time slot: `normal_s` of fault-free traffic (the baselines the tools
and case extraction need), then `fault_s` with one injected fault, then a gap. Spans,
metrics and logs of a slot are written to the store before the next slot is generated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from thinkfl.simulate.faults import LEVEL_OF, NODE_METRICS, ActiveFault, FaultType, PodEffect
from thinkfl.simulate.logs import EXCEPTION_LOG, MIX, LogRole, render
from thinkfl.simulate.topology import System, make_system
from thinkfl.telemetry import Entity, Fault, GroundTruth, Level, StoreWriter
from thinkfl.telemetry.cases import CaseRules, seal
from thinkfl.telemetry.model import LOG_SCHEMA, METRIC_SCHEMA, SPAN_SCHEMA, Manifest


class Difficulty(BaseModel):
    """Every knob of the simulated behaviour; the presets below differ in the first six."""

    noise: float = Field(0.05, ge=0, description="relative metric noise (sd)")
    latency_sigma: float = Field(0.3, ge=0, description="lognormal sigma of service times")
    severity: tuple[float, float] = Field(
        (2.0, 6.0), description="range of a fault's strength (its effect factor)"
    )
    background_error_rate: float = Field(0.002, ge=0, description="innocent transient errors")
    red_herrings: int = Field(1, ge=0, description="innocent pods whose metrics move in the window")
    slow_upstream: bool = Field(False, description="an innocent service that is always slow")
    # how failures propagate and show in logs
    callee_failure_spreads: float = Field(
        0.6, ge=0, le=1, description="chance a failed call fails its caller"
    )
    wrong_response_fails: float = Field(
        0.3, ge=0, le=1, description="chance a caller fails on a callee's wrong answer"
    )
    exception_logged: float = Field(
        0.5, ge=0, le=1, description="chance a thrown exception writes its log line"
    )
    exception_fails: float = Field(
        0.5, ge=0, le=1, description="chance a thrown exception fails the request"
    )
    fault_log_shown: float = Field(
        0.4, ge=0, le=1, description="chance each of a fault's own log lines is written"
    )
    downstream_failure_logged: float = Field(
        0.5, ge=0, le=1, description="chance a request failed below logs 'returning 500'"
    )
    max_retries: int = Field(2, ge=0, description="retries of a lost packet before giving up")
    retry_wait_ms: float = Field(200.0, ge=0, description="wait before each retry")
    retries_exhausted_fail: float = Field(
        0.5, ge=0, le=1, description="chance a call fails after its last retry"
    )
    gc_pause_log: float = Field(
        0.05, ge=0, le=1, description="chance per metric step of an innocent 'slow GC pause'"
    )
    pinned_floor: float = Field(
        0.93, ge=0, le=1, description="a saturated utilisation lies between this and 1"
    )
    red_herring_s: float = Field(120.0, gt=0, description="how long a red herring lasts")
    red_herring_factor: tuple[float, float] = Field(
        (2.5, 5.0), description="range of a red herring's metric factor"
    )


class RedHerring(BaseModel):
    """An innocent pod's metric that moves in the window (a decoy for the investigator)."""

    pod: str
    metric: str
    start: float
    end: float
    factor: float


PRESETS: dict[str, Difficulty] = {
    "easy": Difficulty(
        noise=0.02,
        latency_sigma=0.2,
        severity=(6.0, 10.0),
        background_error_rate=0.0,
        red_herrings=0,
    ),
    "realistic": Difficulty(),
    "hard": Difficulty(
        noise=0.1,
        latency_sigma=0.45,
        severity=(1.5, 3.5),
        background_error_rate=0.01,
        red_herrings=3,
        slow_upstream=True,
    ),
}


class SimulationSettings(BaseModel):
    system: str = "boutique"
    difficulty: Difficulty = Field(default_factory=Difficulty)
    request_rate: float = Field(0.3, gt=0, description="entry requests per second")
    normal_s: float = Field(1200.0, ge=300, description="fault-free traffic before each fault")
    fault_s: float = Field(300.0, gt=0)
    gap_s: float = Field(60.0, ge=0)
    metric_step_s: float = Field(30.0, gt=0)
    timeout_ms: float = Field(3000.0, gt=0)
    max_spans_per_request: int = Field(80, ge=4)
    fault_types: list[FaultType] = Field(default_factory=lambda: list(FaultType))
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)


POD_METRICS = {  # metric -> (low, high) of a pod's normal level
    "cpu_usage_percent": (8.0, 35.0),  # of the pod's CPU limit
    "memory_usage_percent": (20.0, 55.0),  # of the pod's memory limit
    "network_rx_kbps": (50.0, 400.0),
    "disk_io_ms": (1.0, 4.0),
    "latency_p95_ms": (0.0, 0.0),
    "error_rate": (0.1, 0.5),
    "restarts": (0.0, 0.0),
    "tcp_retransmits": (0.5, 2.0),
    "network_rtt_ms": (0.3, 0.8),
}
NODE_LEVELS = {
    "node_cpu_usage_percent": (25.0, 45.0),
    "node_memory_usage_percent": (40.0, 60.0),
    "node_disk_io_ms": (2.0, 5.0),
}


class _Slot:
    """One case: its fault, traffic, metrics and logs."""

    def __init__(
        self,
        system: System,
        settings: SimulationSettings,
        rng: random.Random,
        t0: float,
        fault: ActiveFault,
        base: dict[str, Any],
        slow_service: str | None,
    ) -> None:
        self.system, self.settings, self.rng, self.t0, self.fault = system, settings, rng, t0, fault
        self.base, self.slow_service = base, slow_service
        self.spans: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.budget = 0
        self.herrings: list[RedHerring] = []

    # --- ids and time --------------------------------------------------------------------
    def new_id(self, bits: int = 64) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def when(self, seconds: float) -> datetime:
        return self.settings.start + timedelta(seconds=seconds)

    def effect(self, pod: str, at: float) -> PodEffect:
        return self.fault.effect(pod, self.system, at) or PodEffect()

    def log(
        self, at: float, pod: str, severity: str, message: str, trace: str | None, span: str | None
    ) -> None:
        self.logs.append(
            {
                "time": self.when(at),
                "service": self.system.service_of(pod),
                "pod": pod,
                "node": self.system.node_of[pod],
                "severity": severity,
                "message": message,
                "trace_id": trace,
                "span_id": span,
            }
        )

    # --- requests ------------------------------------------------------------------------
    def serve(
        self, service: str, pod: str, start: float, trace: str, parent: str | None, depth: int
    ) -> tuple[float, bool, bool]:
        """Add the server span of `service` on `pod` and its calls; (ms, failed, wrong)."""
        d = self.settings.difficulty
        spec = self.system.services[service]
        effect = self.effect(pod, start)
        base_ms = spec.base_ms * (5.0 if service == self.slow_service else 1.0)
        own = base_ms * math.exp(self.rng.gauss(0, d.latency_sigma)) * effect.own_time
        span_id = self.new_id()
        self.budget += 1
        cursor = start + own * 0.3 / 1000
        failed = False
        wrong_seen = False
        parallel_end = cursor
        for call in spec.calls:
            if depth >= 8 or self.budget >= self.settings.max_spans_per_request:
                break
            if self.rng.random() > call.probability:
                continue
            began = parallel_end if not call.parallel else cursor
            took, callee_failed, callee_wrong = self.call(
                pod, call.callee, call.operation, began, trace, span_id, depth
            )
            end = began + took / 1000
            if call.parallel:
                parallel_end = max(parallel_end, end)
            else:
                parallel_end = end
                cursor = end
            if callee_failed and self.rng.random() < d.callee_failure_spreads:
                failed = True
            if callee_wrong:
                wrong_seen = True
                self.log(
                    end,
                    pod,
                    "error",
                    f"unexpected response from {call.callee}: validation failed",
                    trace,
                    span_id,
                )
                if self.rng.random() < d.wrong_response_fails:
                    failed = True
        total_ms = (max(parallel_end, cursor) - start) * 1000 + own * 0.7
        if self.rng.random() < effect.failure_rate:
            failed = True
        threw = self.rng.random() < effect.exception_rate
        if threw:
            if self.rng.random() < d.exception_logged:
                self.log(start + own / 1000, pod, "error", EXCEPTION_LOG, trace, span_id)
            failed = failed or self.rng.random() < d.exception_fails
        self.log_mix(service, pod, start, total_ms, effect, threw, trace, span_id)
        for severity, message in effect.logs:
            if self.rng.random() < d.fault_log_shown:
                self.log(start + own / 1000, pod, severity, message, trace, span_id)
        if failed and not effect.failure_rate and self.rng.random() < d.downstream_failure_logged:
            self.log(
                start + total_ms / 1000,
                pod,
                "warn",
                "request failed downstream; returning 500",
                trace,
                span_id,
            )
        if self.rng.random() < d.background_error_rate:
            self.log(
                start, pod, "error", "transient error: connection reset by peer", trace, span_id
            )
        self.spans.append(
            {
                "trace_id": trace,
                "span_id": span_id,
                "parent_id": parent,
                "service": service,
                "pod": pod,
                "node": self.system.node_of[pod],
                "operation": spec.operation,
                "start": self.when(start),
                "duration_us": int(total_ms * 1000),
                "status": "error" if failed else "ok",
                "kind": "server",
            }
        )
        return total_ms, failed, effect.wrong_result and not wrong_seen

    def log_mix(
        self,
        service: str,
        pod: str,
        start: float,
        total_ms: float,
        effect: PodEffect,
        threw: bool,
        trace: str,
        span_id: str,
    ) -> None:
        """The service's normal lines for one request, as the active fault changes them."""
        operation = self.system.services[service].operation
        for entry in MIX:
            if threw and entry.role in (LogRole.COMPLETION, LogRole.HOUSEKEEPING):
                continue
            rate = effect.log_rates.get(entry.role, entry.rate)
            if self.rng.random() >= rate:
                continue
            at = start if entry.role == LogRole.ARRIVAL else start + total_ms / 1000
            message = render(service, operation, entry, self.rng)
            self.log(at, pod, entry.severity, message, trace, span_id)

    def call(
        self,
        caller_pod: str,
        callee: str,
        operation: str,
        start: float,
        trace: str,
        parent: str,
        depth: int,
    ) -> tuple[float, bool, bool]:
        """A client span on the caller's pod around the callee's server span."""
        callee_pod = self.rng.choice(self.system.pods[callee])
        effect = self.effect(callee_pod, start)
        network_ms = 0.4 + effect.incoming_delay_ms * (0.8 + 0.4 * self.rng.random())
        retries = 0
        d = self.settings.difficulty
        while retries < d.max_retries and self.rng.random() < effect.loss_rate:
            retries += 1
        client_id = self.new_id()
        self.budget += 1
        wait_ms = network_ms + retries * d.retry_wait_ms
        took, failed, wrong = self.serve(
            callee, callee_pod, start + wait_ms / 1000, trace, client_id, depth + 1
        )
        duration = took + wait_ms
        if duration > self.settings.timeout_ms:
            duration, failed = self.settings.timeout_ms, True
        if retries == d.max_retries and self.rng.random() < d.retries_exhausted_fail:
            failed = True
        self.spans.append(
            {
                "trace_id": trace,
                "span_id": client_id,
                "parent_id": parent,
                "service": self.system.service_of(caller_pod),
                "pod": caller_pod,
                "node": self.system.node_of[caller_pod],
                "operation": operation,
                "start": self.when(start),
                "duration_us": int(duration * 1000),
                "status": "error" if failed else "ok",
                "kind": "client",
            }
        )
        return duration, failed, wrong

    def traffic(self, until: float) -> None:
        t = self.t0
        entry = self.system.entry
        while True:
            t += self.rng.expovariate(self.settings.request_rate)
            if t >= until:
                return
            self.budget = 0
            trace = self.new_id(128)
            pod = self.rng.choice(self.system.pods[entry])
            took, failed, _ = self.serve(entry, pod, t, trace, None, 0)
            self.log(
                t + took / 1000,
                pod,
                "error" if failed else "info",
                f"GET / {'500' if failed else '200'} in {took:.0f} ms",
                trace,
                None,
            )

    # --- metrics -------------------------------------------------------------------------
    def sample_metrics(self, until: float) -> None:
        d = self.settings.difficulty
        step = self.settings.metric_step_s
        t = self.t0
        while t < until:
            node_mult: dict[str, dict[str, float]] = {}
            node_pinned: dict[str, set[str]] = {}
            for service, pods in self.system.pods.items():
                for pod in pods:
                    effect = self.effect(pod, t)
                    for metric, level in self.base[pod].items():
                        if (
                            level == 0.0
                        ):  # a count normally zero (restarts): the effect is the count
                            value = effect.metrics.get(metric, 0.0)
                        elif metric in effect.saturated:
                            value = self.pinned()
                        else:
                            value = (
                                level
                                * (1 + d.noise * self.rng.gauss(0, 1))
                                * effect.metrics.get(metric, 1.0)
                                * self.herring(pod, metric, t)
                            )
                        self.metrics.append(
                            {
                                "level": "pod",
                                "entity": pod,
                                "metric": metric,
                                "time": self.when(t),
                                "value": bounded(metric, value),
                            }
                        )
                    for metric, factor in effect.metrics.items():
                        if metric in NODE_METRICS:
                            node_mult.setdefault(self.system.node_of[pod], {})[metric] = factor
                    for metric in effect.saturated:
                        if metric in NODE_METRICS:
                            node_pinned.setdefault(self.system.node_of[pod], set()).add(metric)
                errors = [self.effect(p, t).failure_rate for p in pods]
                slow = [self.effect(p, t).own_time for p in pods]
                spec = self.system.services[service]
                self.metrics.append(
                    {
                        "level": "service",
                        "entity": service,
                        "metric": "latency_p95_ms",
                        "time": self.when(t),
                        "value": 2
                        * spec.base_ms
                        * sum(slow)
                        / len(slow)
                        * (1 + d.noise * self.rng.gauss(0, 1)),
                    }
                )
                self.metrics.append(
                    {
                        "level": "service",
                        "entity": service,
                        "metric": "error_rate",
                        "time": self.when(t),
                        "value": max(
                            0.0,
                            100 * sum(errors) / len(errors)
                            + 0.2 * (1 + d.noise * self.rng.gauss(0, 1)),
                        ),
                    }
                )
            for node in self.system.nodes:
                for metric, level in self.base[node].items():
                    value = (
                        level
                        * (1 + d.noise * self.rng.gauss(0, 1))
                        * node_mult.get(node, {}).get(metric, 1.0)
                    )
                    if metric in node_pinned.get(node, ()):
                        value = self.pinned()
                    self.metrics.append(
                        {
                            "level": "node",
                            "entity": node,
                            "metric": metric,
                            "time": self.when(t),
                            "value": bounded(metric, value),
                        }
                    )
            if self.rng.random() < self.settings.difficulty.gc_pause_log:
                pod = self.rng.choice(sorted(self.system.node_of))
                self.log(t, pod, "warn", "slow GC pause", None, None)
            t += step

    def pinned(self) -> float:
        """A utilisation held at its limit: just under 100 %."""
        return 100.0 * self.rng.uniform(self.settings.difficulty.pinned_floor, 1.0)

    def herring(self, pod: str, metric: str, at: float) -> float:
        for herring in self.herrings:
            if (
                herring.pod == pod
                and herring.metric == metric
                and herring.start <= at < herring.end
            ):
                return herring.factor
        return 1.0


def bounded(metric: str, value: float) -> float:
    """Metric values are never negative, and a utilisation never exceeds its limit."""
    return min(max(value, 0.0), 100.0) if metric.endswith("_percent") else max(value, 0.0)


def _bases(system: System, rng: random.Random) -> dict[str, dict[str, float]]:
    base: dict[str, dict[str, float]] = {}
    for service, pods in system.pods.items():
        for pod in pods:
            levels = {m: rng.uniform(lo, hi) for m, (lo, hi) in POD_METRICS.items()}
            levels["latency_p95_ms"] = 2 * system.services[service].base_ms
            levels["restarts"] = 0.0
            base[pod] = levels
    for node in system.nodes:
        base[node] = {m: rng.uniform(lo, hi) for m, (lo, hi) in NODE_LEVELS.items()}
    return base


def _pick_fault(
    system: System,
    rng: random.Random,
    fault_type: FaultType,
    start: float,
    end: float,
    severity: tuple[float, float],
) -> ActiveFault:
    level = LEVEL_OF[fault_type]
    if level == Level.NODE:
        target = rng.choice(system.nodes)
    elif level == Level.SERVICE:
        target = rng.choice(sorted(s for s in system.services if s != system.entry))
    else:
        target = rng.choice(sorted(system.node_of))
    return ActiveFault(fault_type, target, start, end, rng.uniform(*severity))


def _truth(fault: ActiveFault, system: System) -> GroundTruth:
    if fault.level == Level.POD:
        return GroundTruth(
            level=Level.POD,
            entity=fault.target,
            fault_type=fault.fault_type.value,
            service=system.service_of(fault.target),
            pod=fault.target,
        )
    if fault.level == Level.SERVICE:
        return GroundTruth(
            level=Level.SERVICE,
            entity=fault.target,
            fault_type=fault.fault_type.value,
            service=fault.target,
        )
    return GroundTruth(level=Level.NODE, entity=fault.target, fault_type=fault.fault_type.value)


def simulate(
    out: Path,
    n_cases: int,
    seed: int,
    settings: SimulationSettings | None = None,
    overwrite: bool = False,
    on_case: Callable[[int], None] = lambda _i: None,
) -> Path:
    """Write a store with `n_cases` labelled failure cases; deterministic in `seed`."""
    settings = settings or SimulationSettings()
    rng = random.Random(seed)
    system = make_system(settings.system, seed)
    base = _bases(system, rng)
    types = list(settings.fault_types)
    order = [types[i % len(types)] for i in range(n_cases)]
    rng.shuffle(order)
    slot = settings.normal_s + settings.fault_s + settings.gap_s
    with StoreWriter(Path(out), overwrite=overwrite) as writer:
        writer.add_entities(
            Entity(level=Level.POD, name=pod, service=system.service_of(pod), node=node)
            for pod, node in sorted(system.node_of.items())
        )
        faults: list[Fault] = []
        for index, fault_type in enumerate(order):
            t0 = index * slot
            inject = t0 + settings.normal_s
            fault = _pick_fault(
                system,
                rng,
                fault_type,
                inject,
                inject + settings.fault_s,
                settings.difficulty.severity,
            )
            slow = None
            if settings.difficulty.slow_upstream:
                culprits = {system.service_of(p) for p in fault.culprit_pods(system)}
                innocents = sorted(
                    s for s in system.services if s not in culprits and s != system.entry
                )
                slow = rng.choice(innocents) if innocents else None
            case = _Slot(system, settings, rng, t0, fault, base, slow)
            culprit_pods = set(fault.culprit_pods(system))
            innocent_pods = sorted(p for p in system.node_of if p not in culprit_pods)
            decoy = settings.difficulty
            for _ in range(decoy.red_herrings):
                if not innocent_pods:
                    break
                start = inject + rng.uniform(0, settings.fault_s - decoy.red_herring_s)
                metric = rng.choice(
                    ["cpu_usage_percent", "memory_usage_percent", "network_rx_kbps", "disk_io_ms"]
                )
                pod = rng.choice(innocent_pods)
                case.herrings.append(
                    RedHerring(
                        pod=pod,
                        metric=metric,
                        start=start,
                        end=start + decoy.red_herring_s,
                        factor=rng.uniform(*decoy.red_herring_factor),
                    )
                )
            case.traffic(t0 + settings.normal_s + settings.fault_s)
            case.sample_metrics(t0 + slot)
            writer.add("spans", pa.Table.from_pylist(case.spans, schema=SPAN_SCHEMA))
            writer.add("metrics", pa.Table.from_pylist(case.metrics, schema=METRIC_SCHEMA))
            writer.add("logs", pa.Table.from_pylist(case.logs, schema=LOG_SCHEMA))
            faults.append(
                Fault(
                    fault_id=f"sim-{seed}-{index:05d}-{fault_type.value}",
                    time=settings.start + timedelta(seconds=inject),
                    truth=_truth(fault, system),
                )
            )
            on_case(index)
        writer.add_faults(faults)
        seal(
            writer,
            Manifest(
                source_format="simulate",
                source=f"{settings.system} seed={seed} cases={n_cases} {settings.model_dump_json()}",
            ),
            CaseRules(after_s=settings.fault_s),
        )
        return writer.out
