"""Fault types, each at its natural level, and the effects they leave.

An `ActiveFault` answers, for a pod at a time, how its own processing time, its incoming
network, its failures, its metrics and its logs change. Effects are local to the culprit;
the request generator propagates them the way real ones travel: latency and errors surface
upstream along the calls, network faults show on the caller's side of a call, and healthy
siblings stay healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from thinkfl.simulate.logs import LogRole
from thinkfl.simulate.topology import System
from thinkfl.telemetry import Level


class FaultType(StrEnum):
    CPU_CONTENTION = "cpu_contention"
    MEMORY_EXHAUSTION = "memory_exhaustion"
    DISK_IO = "disk_io"
    NETWORK_DELAY = "network_delay"
    PACKET_LOSS = "packet_loss"
    POD_RESTART = "pod_restart"
    NODE_CPU = "node_cpu"
    NODE_MEMORY = "node_memory"
    NODE_DISK = "node_disk"
    CODE_EXCEPTION = "code_exception"
    WRONG_RETURN = "wrong_return"


LEVEL_OF: dict[FaultType, Level] = {
    FaultType.CPU_CONTENTION: Level.POD,
    FaultType.MEMORY_EXHAUSTION: Level.POD,
    FaultType.DISK_IO: Level.POD,
    FaultType.NETWORK_DELAY: Level.POD,
    FaultType.PACKET_LOSS: Level.POD,
    FaultType.POD_RESTART: Level.POD,
    FaultType.NODE_CPU: Level.NODE,
    FaultType.NODE_MEMORY: Level.NODE,
    FaultType.NODE_DISK: Level.NODE,
    FaultType.CODE_EXCEPTION: Level.SERVICE,
    FaultType.WRONG_RETURN: Level.SERVICE,
}


@dataclass
class PodEffect:
    """How a fault changes one pod while it is active (1.0 / 0.0 = no change)."""

    own_time: float = 1.0  # multiplier on the pod's own processing time
    incoming_delay_ms: float = 0.0  # added on the caller's side of every call into the pod
    loss_rate: float = 0.0  # share of calls into the pod that need a retry
    failure_rate: float = 0.0  # share of the pod's requests that fail
    wrong_result: bool = False  # answers succeed but are wrong (callers notice)
    metrics: dict[str, float] = field(default_factory=dict)  # metric -> multiplier
    saturated: tuple[str, ...] = ()  # utilisation metrics pinned at their limit
    logs: list[tuple[str, str]] = field(default_factory=list)  # (severity, message)
    exception_rate: float = 0.0  # share of requests that throw: later lines vanish, half fail
    log_rates: dict[LogRole, float] = field(default_factory=dict)  # role -> rate while active


@dataclass
class ActiveFault:
    fault_type: FaultType
    target: str  # pod, node or service name, at the type's level
    start: float  # seconds
    end: float
    severity: float  # 1 = mild .. 10 = severe

    @property
    def level(self) -> Level:
        return LEVEL_OF[self.fault_type]

    def culprit_pods(self, system: System) -> list[str]:
        if self.level == Level.POD:
            return [self.target]
        if self.level == Level.NODE:
            return sorted(p for p, n in system.node_of.items() if n == self.target)
        return list(system.pods[self.target])

    def effect(self, pod: str, system: System, at: float) -> PodEffect | None:
        if not (self.start <= at < self.end) or pod not in self.culprit_pods(system):
            return None
        s = self.severity
        t = self.fault_type
        if t == FaultType.CPU_CONTENTION:
            return PodEffect(
                own_time=1 + s,
                metrics={"latency_p95_ms": 1 + s},
                saturated=("cpu_usage_percent",),
            )
        if t == FaultType.MEMORY_EXHAUSTION:
            return PodEffect(
                own_time=1 + s / 4,
                failure_rate=0.02 * s,
                metrics={"latency_p95_ms": 1 + s / 4},
                saturated=("memory_usage_percent",),
                logs=[("error", "java.lang.OutOfMemoryError: Java heap space")],
            )
        if t == FaultType.DISK_IO:
            return PodEffect(
                own_time=1 + s / 2,
                metrics={"disk_io_ms": 3 + s, "latency_p95_ms": 1 + s / 2},
                logs=[("warn", "slow disk write: fsync took long")],
            )
        if t == FaultType.NETWORK_DELAY:
            return PodEffect(incoming_delay_ms=40.0 * s, metrics={"network_rtt_ms": 1 + s * 4})
        if t == FaultType.PACKET_LOSS:
            return PodEffect(loss_rate=min(0.08 * s, 0.8), metrics={"tcp_retransmits": 2 + s * 3})
        if t == FaultType.POD_RESTART:
            return PodEffect(
                failure_rate=0.5,
                own_time=0.3,
                metrics={"restarts": 1 + s, "cpu_usage_percent": 0.3, "memory_usage_percent": 0.4},
                logs=[("error", "container restarted: liveness probe failed")],
            )
        if t == FaultType.NODE_CPU:
            return PodEffect(own_time=1 + s / 2, saturated=("node_cpu_usage_percent",))
        if t == FaultType.NODE_MEMORY:
            return PodEffect(
                own_time=1 + s / 6,
                failure_rate=0.01 * s,
                saturated=("node_memory_usage_percent",),
            )
        if t == FaultType.NODE_DISK:
            return PodEffect(own_time=1 + s / 3, metrics={"node_disk_io_ms": 3 + s})
        if t == FaultType.CODE_EXCEPTION:
            return PodEffect(
                exception_rate=min(0.15 * s, 0.95),
                metrics={"error_rate": 5 + s * 5},
            )
        return PodEffect(wrong_result=True, log_rates={LogRole.RARE_ERROR: min(0.1 * s, 0.6)})


# Node-level metric names are read off the node, not the pod.
NODE_METRICS = {"node_cpu_usage_percent", "node_memory_usage_percent", "node_disk_io_ms"}
