"""Canonical telemetry model: one shape for spans, metric samples, logs, entities and cases.

Bulk rows (spans, metric samples, log records) live as Arrow tables with the schemas below;
small records (entities, faults, cases) are Pydantic models. Every adapter and the simulator
produce exactly these shapes, and every consumer (tools, grader, baselines) reads only them.
See docs/data-model.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import pyarrow as pa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

TIMESTAMP = pa.timestamp("us", tz="UTC")
# Identifiers from data (trace and span ids, service, pod and node names, case ids) are
# bounded and free of control characters; longer ones are refused at ingest and at the API.
MAX_IDENTIFIER_CHARS = 256
# A case id is what people copy into commands and URLs: no path separators either.
MAX_CASE_ID_CHARS = 200
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def check_case_id(value: str) -> str:
    """A case id as a store may hold it; raises ValueError saying what is wrong.

    >>> check_case_id("nezha-20230129-084304")
    'nezha-20230129-084304'
    """
    if not value or len(value) > MAX_CASE_ID_CHARS:
        raise ValueError(f"a case id has 1 to {MAX_CASE_ID_CHARS} characters, not {len(value)}")
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("a case id may not hold control characters (NUL, newline, ...)")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"a case id may not hold '/' or '\\' or be '.' or '..': {value[:60]!r}")
    return value


CaseId = Annotated[str, AfterValidator(check_case_id)]


class Level(StrEnum):
    """The level at which an entity lives, and at which a fault is labelled."""

    SERVICE = "service"
    POD = "pod"
    NODE = "node"


class SpanStatus(StrEnum):
    UNSET = "unset"  # the source does not say (e.g. Nezha traces carry no status)
    OK = "ok"
    ERROR = "error"


class SpanKind(StrEnum):
    UNSPECIFIED = "unspecified"
    SERVER = "server"
    CLIENT = "client"
    INTERNAL = "internal"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"
    UNKNOWN = "unknown"


SPAN_SCHEMA = pa.schema(
    [
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("span_id", pa.string(), nullable=False),
        pa.field("parent_id", pa.string()),  # null for an entry (root) span
        pa.field("service", pa.string(), nullable=False),
        pa.field("pod", pa.string()),
        pa.field("node", pa.string()),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("start", TIMESTAMP, nullable=False),
        pa.field("duration_us", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # SpanStatus
        pa.field("kind", pa.string(), nullable=False),  # SpanKind
    ]
)

METRIC_SCHEMA = pa.schema(
    [
        pa.field("level", pa.string(), nullable=False),  # Level
        pa.field("entity", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("value", pa.float64(), nullable=False),  # never NaN: adapters drop missing
    ]
)

LOG_SCHEMA = pa.schema(
    [
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("pod", pa.string()),
        pa.field("node", pa.string()),
        pa.field("severity", pa.string(), nullable=False),  # Severity
        pa.field("message", pa.string(), nullable=False),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
    ]
)

ENTITY_SCHEMA = pa.schema(
    [
        pa.field("level", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("service", pa.string()),  # the pod's service (and a service's own name)
        pa.field("node", pa.string()),  # the pod's node, when known
    ]
)

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "spans": SPAN_SCHEMA,
    "metrics": METRIC_SCHEMA,
    "logs": LOG_SCHEMA,
    "entities": ENTITY_SCHEMA,
}


class Entity(BaseModel):
    """A service, a pod or a node, with the explicit pod→service and pod→node maps."""

    model_config = ConfigDict(frozen=True)

    level: Level
    name: str
    service: str | None = None
    node: str | None = None


class Candidate(BaseModel):
    """A root-cause candidate: one component at its level. Rankings are lists of these from
    the answer tool to the grader, the evaluation and the command line; the one-key form
    `{"pod": "cart-1"}` exists only where a model reads or writes JSON."""

    model_config = ConfigDict(frozen=True)

    level: Level
    name: str

    @classmethod
    def parse(cls, item: object) -> Candidate:
        """A candidate from itself, `{"level": ..., "name": ...}` or the one-key `{level: name}`."""
        if isinstance(item, Candidate):
            return item
        if isinstance(item, dict) and set(item) == {"level", "name"}:
            return cls(level=Level(item["level"]), name=str(item["name"]))
        if isinstance(item, dict) and len(item) == 1:
            ((level, name),) = item.items()
            return cls(level=Level(level), name=str(name))
        raise ValueError(f"not a ranking item: {item!r:.80}")

    def as_item(self) -> dict[str, str]:
        """The one-key JSON form a model prints: {"service"|"pod"|"node": name}."""
        return {self.level.value: self.name}

    def __str__(self) -> str:
        return f"{self.level.value}={self.name}"


Ranking = list[Candidate]  # most likely first


def candidates(items: object) -> list[Candidate]:
    """A ranking from candidates or their JSON forms (see Candidate.parse)."""
    return [Candidate.parse(item) for item in (items if isinstance(items, list) else [])]


class GroundTruth(BaseModel):
    """The labelled root cause: exactly one entity at one level, and the fault type."""

    model_config = ConfigDict(frozen=True)

    level: Level
    entity: str
    fault_type: str
    service: str | None = None  # the culprit's service, when the label is a pod
    pod: str | None = None  # the injected pod, kept when the label is lifted to its service


class Fault(BaseModel):
    """One labelled fault as the source data gives it (before any entry trace is chosen)."""

    model_config = ConfigDict(frozen=True)

    fault_id: str
    time: datetime
    truth: GroundTruth


class EntryAnomaly(StrEnum):
    STRONG = "strong"  # passed the configured latency/error thresholds
    WEAK = "weak"  # nothing passed; the most anomalous entry trace was taken anyway


class FailureCase(BaseModel):
    """A fault plus the anomalous entry span the agent starts from."""

    case_id: CaseId
    fault_id: str
    truth: GroundTruth | None = Field(
        None, description="the labelled root cause; None for an incident nobody labelled"
    )
    inject_time: datetime
    window_start: datetime
    window_end: datetime
    entry_trace_id: str
    entry_span_id: str
    entry_service: str
    entry_operation: str
    entry_start: datetime
    entry_duration_us: int
    entry_status: SpanStatus
    anomaly: EntryAnomaly
    latency_ratio: float = Field(
        description="entry duration / fault-free baseline of its operation"
    )
    anomalous_traces: int = Field(
        description="entry traces in the window that passed the thresholds"
    )
    start_component: str | None = Field(
        None,
        description="level:name of the component the entry trace was chosen to pass through "
        "(the strongest label-free evidence); None: the slowest entry trace",
    )


class RejectedRows(BaseModel):
    """Rows an ingest refused to keep, by table and reason (never dropped without a word)."""

    table: str
    reason: str
    count: int
    examples: list[str] = Field(default_factory=list, description="a few of them, shortened")


MAX_REJECTED_EXAMPLES = 3


def count_rejected(
    rejected: list[RejectedRows], table: str, reason: str, count: int, examples: list[str]
) -> None:
    """Add `count` refused rows to the entry for (table, reason), keeping a few short examples."""
    entry = next((r for r in rejected if r.table == table and r.reason == reason), None)
    if entry is None:
        entry = RejectedRows(table=table, reason=reason, count=0)
        rejected.append(entry)
    entry.count += count
    room = max(MAX_REJECTED_EXAMPLES - len(entry.examples), 0)
    entry.examples.extend(example[:200] for example in examples[:room])


class Manifest(BaseModel):
    """What a store holds and where it came from: written last, read first."""

    format_version: int = 1
    source_format: str
    source: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    counts: dict[str, int] = Field(default_factory=dict)
    time_range: tuple[datetime, datetime] | None = None
    skipped_rows: list[str] = Field(
        default_factory=list, description="'file:line: reason' for each malformed row skipped"
    )
    rejected_rows: list[RejectedRows] = Field(
        default_factory=list,
        description="well-formed rows refused for their values (non-finite, impossible time, "
        "negative duration, duplicate id with other content, duplicate fault)",
    )
    skipped_files: list[str] = Field(
        default_factory=list, description="files in a known folder that the format does not read"
    )
    notes: list[str] = Field(
        default_factory=list, description="choices the adapter made about doubtful data"
    )


_REPLICASET_POD = re.compile(r"^(?P<service>.+)-[0-9a-f]{6,10}-[0-9a-z]{5}$")
_STATEFUL_POD = re.compile(r"^(?P<service>.+?)-\d+$")


def service_of_pod(pod: str) -> str:
    """The service a pod belongs to, from Kubernetes naming.

    `ts-contacts-service-866bd68c97-xcqfx` (Deployment: ReplicaSet hash + suffix) gives
    `ts-contacts-service`; `cartservice-2` (numbered replica) gives `cartservice`; a name
    with neither pattern is its own service.
    """
    for pattern in (_REPLICASET_POD, _STATEFUL_POD):
        match = pattern.match(pod)
        if match:
            return match.group("service")
    return pod
