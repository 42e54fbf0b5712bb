"""Every threshold of the evidence layer, named and documented (docs/evidence.md).

No setting names a service, a fault type or a data set: the detectors compare each
component with its own normal behaviour.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from thinkfl.evidence.model import EvidenceKind


class BaselineSettings(BaseModel):
    lookback_s: float = Field(
        3600.0,
        gt=0,
        description="the baseline is clean telemetry up to this long before the window",
    )
    min_minutes: int = Field(
        10,
        ge=1,
        description="fewer clean minutes with spans than this before the window: use all clean "
        "telemetry of the store (after the window too) as the baseline",
    )


class LogSettings(BaseModel):
    code_location_pattern: str = Field(
        r"^\s*([A-Za-z_$][\w.$]*(?:#|\.java:|\.py:|\.go:|:)\d+)\b",
        description="a message starting with a code location (Class#line, file.py:line) is "
        "grouped by that location instead of a mined template",
    )
    drain_similarity: float = Field(0.5, gt=0, le=1, description="Drain3 similarity threshold")
    drain_depth: int = Field(4, ge=3, description="Drain3 parse-tree depth")
    min_baseline_logs: int = Field(
        30, ge=1, description="a component needs this many baseline lines to have a normal mix"
    )
    drop_min_share: float = Field(
        0.01,
        gt=0,
        le=1,
        description="a template must be at least this share of the normal mix to drop",
    )
    drop_min_expected: float = Field(
        4.0, gt=0, description="a drop needs at least this many lines expected in the window"
    )
    drop_max_ratio: float = Field(
        0.5, ge=0, lt=1, description="a drop: seen at most this share of the expected count"
    )
    rise_min_count: int = Field(3, ge=1, description="a rise needs at least this many lines")
    rise_min_ratio: float = Field(
        3.0, gt=1, description="a rise: seen at least this many times (expected + 1)"
    )
    info_rise_weight: float = Field(
        0.5, ge=0, le=1, description="a rising debug/info template counts this much of an error one"
    )
    z_threshold: float = Field(
        2.5, gt=0, description="Poisson z (|seen - expected| / sqrt(expected + 1)) of strength 1"
    )


class TraceSettings(BaseModel):
    min_window_spans: int = Field(3, ge=1, description="spans of an operation needed in the window")
    min_baseline_spans: int = Field(
        5, ge=1, description="spans of an operation needed in the baseline"
    )
    self_time_factor: float = Field(
        1.5, gt=1, description="window median self-time >= this x the normal p95 fires"
    )
    min_self_time_us: float = Field(
        2000.0, gt=0, description="self-times below this are noise: the normal p95 is floored here"
    )
    gap_factor: float = Field(
        2.0, gt=1, description="window median caller->callee gap >= this x the normal p95 fires"
    )
    min_gap_us: float = Field(
        5000.0,
        gt=0,
        description="gaps below this are network noise: the normal p95 is floored here",
    )
    link_min_callers: int = Field(
        2,
        ge=2,
        description="a gap on links without a client span (a server span calling another "
        "service directly) is the callee's when this many callers see it; below, the idle "
        "time stays the caller's self-time",
    )
    tail_min_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="when the median does not fire: this share of the window's calls beyond "
        "factor x the normal p95 (self-time or gap) fires (strength = share / this)",
    )
    tail_normal_share: float = Field(
        0.05, gt=0, lt=1, description="a normal call is beyond the bound at most this often"
    )
    tail_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="... so the share fires only when that many slow calls have a binomial "
        "probability below this (a share of a handful of calls is chance)",
    )
    call_min_expected: float = Field(
        5.0, gt=0, description="a call edge needs this many calls expected (or seen) to change"
    )
    call_drop_max_ratio: float = Field(
        0.3, ge=0, lt=1, description="a vanished edge: at most this share of its expected calls"
    )
    call_rise_ratio: float = Field(
        3.0, gt=1, description="a new or grown edge: at least this x (expected + 1) calls"
    )
    call_z_threshold: float = Field(
        3.0, gt=0, description="Poisson z of a call-count change of strength 1"
    )
    error_min_count: int = Field(3, ge=1, description="own error spans needed in the window")
    error_rate_floor: float = Field(
        0.02, gt=0, le=1, description="normal own-error rate is floored here (strength = ratio)"
    )
    error_factor: float = Field(2.0, gt=1, description="own-error rate >= this x normal fires")


class MetricSettings(BaseModel):
    lookback_s: float = Field(
        1200.0,
        gt=0,
        description="a series is compared with its own past this long before the window",
    )
    min_baseline_samples: int = Field(3, ge=2, description="samples a series needs in its baseline")
    sigma: float = Field(5.0, gt=0, description="robust z of strength 1 (MAD-based)")
    min_relative_change: float = Field(
        0.5, gt=0, description="and the window must differ from the median by this share of it"
    )
    relative_spread_floor: float = Field(
        0.05, gt=0, description="the spread of a flat series is floored at this share of its median"
    )
    utilisation_pattern: str = Field(
        r"(?i)(usage|util|utilization|utilisation).*(rate|%|percent|pct|ratio)",
        description="metric names that are a utilisation against a limit (0-100 or 0-1)",
    )
    saturation_level: float = Field(
        0.9, gt=0, le=1, description="a utilisation at this share of its limit is saturated"
    )
    saturation_normal_max: float = Field(
        0.6, gt=0, le=1, description="... when its normal median is below this share"
    )
    max_strength: float = Field(
        4.0, gt=1, description="deviation strengths are capped here (flat and bursty series)"
    )


class FusionSettings(BaseModel):
    weights: dict[EvidenceKind, float] = Field(
        default_factory=lambda: {
            EvidenceKind.SATURATION: 3.0,
            EvidenceKind.OWN_ERRORS: 1.5,
            EvidenceKind.INCOMING_GAP: 1.5,
            EvidenceKind.SELF_TIME: 1.2,
            EvidenceKind.LOG_DROP: 1.0,
            EvidenceKind.LOG_RISE: 1.0,
            EvidenceKind.CALL_SHIFT: 0.8,
            EvidenceKind.METRIC_SHIFT: 0.4,
        },
        description="how much each kind counts; saturation first, metric shifts (noisy) least",
    )
    support_share: float = Field(
        0.25, ge=0, le=1, description="other kinds add this share of their weighted strength"
    )
    max_items: int = Field(6, ge=1, description="items kept per entity (strongest first)")
    explained_ratio: float = Field(
        0.9,
        gt=0,
        description="a caller is explained by a downstream component scoring this share of it",
    )
    node_min_pods: int = Field(
        2, ge=1, description="pods of different services with evidence that lift their node"
    )
    lift_bonus: float = Field(
        1.1, ge=1, description="a lifted service/node scores this x its strongest part"
    )
    uncorroborated_metric_factor: float = Field(
        0.5,
        ge=0,
        le=1,
        description="metric evidence (saturation, shifts) of a component whose own spans and "
        "logs show nothing (a node: none of its pods) is multiplied by this",
    )
    explained_factor: float = Field(
        0.5, gt=0, le=1, description="... and its score is multiplied by this"
    )


class EvidenceSettings(BaseModel):
    baseline: BaselineSettings = Field(default_factory=BaselineSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    traces: TraceSettings = Field(default_factory=TraceSettings)
    metrics: MetricSettings = Field(default_factory=MetricSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
