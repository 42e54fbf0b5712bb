"""Tool declarations and their implementation over one store and one failure case."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from thinkfl.evidence import Evidence, EvidenceItem, EvidenceKind, evidence_for
from thinkfl.telemetry import Entity, FailureCase, Level, TelemetryStore

LOG_KINDS = {EvidenceKind.LOG_DROP, EvidenceKind.LOG_RISE}
METRIC_KINDS = {EvidenceKind.SATURATION, EvidenceKind.METRIC_SHIFT}


class ToolLimits(BaseModel):
    """Budgets and windows of the tools (defaults follow the authors' server where sane)."""

    max_rows: int = Field(15, ge=1, description="rows per observation before it is cut")
    sigma: float = Field(3.0, gt=0, description="n of the n-sigma fluctuation test")
    baseline_before_s: float = Field(1200.0, description="baseline starts this long before t")
    baseline_gap_s: float = Field(300.0, description="baseline ends this long before t")
    current_before_s: float = Field(60.0, description="tested window starts before t")
    current_after_s: float = Field(300.0, description="tested window ends after t")
    log_window_s: float = Field(60.0, description="logs within +- this of t")
    log_baseline_windows: int = Field(5, ge=1, description="windows before, for usual rates")
    max_evidence_rows: int = Field(4, ge=1, description="evidence items shown per observation")
    error_rows: int = Field(3, ge=1, description="error/warning patterns shown by search_logs")


class Observation(BaseModel):
    """What a tool call returns to the agent: text for the model, data for programs."""

    tool: str
    text: str
    ok: bool = True
    truncated: bool = False
    data: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(BaseModel):
    """A tool as declared to a model (OpenAI `tools` style JSON schema)."""

    name: str
    description: str
    parameters: dict[str, Any]


def _schema(properties: dict[str, dict], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_STRING = {"type": "string"}
# the metric and log tools take the same arguments: a component and a time
_ENTITY_AT_TIME = _schema(
    {"service_name": _STRING, "timestamp": _STRING}, ["service_name", "timestamp"]
)
TOOL_SPECS: list[ToolSpec] = [
    ToolSpec(
        name="search_traces",
        description="List the direct child spans (calls) of a span: id, service/pod, "
        "operation, start, duration, status; slowest and failing first.",
        parameters=_schema({"parent_span_id": _STRING}, ["parent_span_id"]),
    ),
    ToolSpec(
        name="search_span",
        description="Show one span: its service, pod, node, operation, timing and status.",
        parameters=_schema({"span_id": _STRING}, ["span_id"]),
    ),
    ToolSpec(
        name="search_fluctuating_metrics",
        description="Metrics of a service (its pods and their nodes), a pod or a node that "
        "deviate from their normal level around a time (n-sigma test), strongest first.",
        parameters=_ENTITY_AT_TIME,
    ),
    ToolSpec(
        name="search_logs",
        description="Error and warning logs of a service, pod or node around a time, "
        "grouped by message pattern, most unusual first.",
        parameters=_ENTITY_AT_TIME,
    ),
    ToolSpec(
        name="print_results",
        description="Finish: give the ranked root causes, most likely first, at least three, "
        'each {"service": name} or {"pod": name} or {"node": name}.',
        parameters=_schema(
            {"root_causes": {"type": "array", "items": {"type": "object"}}}, ["root_causes"]
        ),
    ),
]


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 text, or epoch seconds/ms/µs/ns (number or digits); None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not math.isfinite(number):
        return None
    for limit, scale in ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6)):
        if abs(number) < limit:
            return datetime.fromtimestamp(number / scale, UTC)
    return datetime.fromtimestamp(number / 1e9, UTC)


_VOLATILE = re.compile(r"\b[0-9a-f]{12,}\b|\b\d+(\.\d+)?\b|[0-9a-f]{8}-[0-9a-f-]{27}")


def log_pattern(message: str) -> str:
    """A message with ids and numbers masked, so repeats group together."""
    return _VOLATILE.sub("<*>", message)[:160]


class Toolbox:
    """The tools for one case: times are shown relative to the case's entry span."""

    def __init__(self, store: TelemetryStore, case: FailureCase, limits: ToolLimits | None = None):
        self.store = store
        self.case = case
        self.limits = limits or ToolLimits()
        self.origin = case.entry_start
        self.entities = store.entities()
        self._evidence: Evidence | None = None
        self._subtrees: dict[str, dict[tuple[str, str], str]] | None = None
        self._services: dict[str, str] | None = None
        self._handlers: dict[str, Callable[..., Observation]] = {
            "search_traces": self.search_traces,
            "search_span": self.search_span,
            "search_fluctuating_metrics": self.search_fluctuating_metrics,
            "search_logs": self.search_logs,
            "print_results": self.print_results,
        }

    # --- evidence ------------------------------------------------------------------------
    @property
    def evidence(self) -> Evidence:
        """The case's label-free evidence (computed once, cached in the store)."""
        if self._evidence is None:
            self._evidence = evidence_for(self.store, self.case)
        return self._evidence

    def _score(self, level: str, name: str) -> tuple[float, list[EvidenceItem]]:
        found = self.evidence.score_of(level, name)
        return (found.score, found.items) if found else (0.0, [])

    def _service_of(self, span_id: str) -> str:
        if not span_id:
            return ""
        if self._services is None:
            spans = self.store.trace(self.case.entry_trace_id).to_pylist()
            self._services = {row["span_id"]: row["service"] for row in spans}
        return self._services.get(span_id, "")

    def _subtree_places(self, span_id: str) -> dict[tuple[str, str], str]:
        """The components a span's descendants in the entry trace ran on (itself excluded)."""
        if self._subtrees is None:
            spans = self.store.trace(self.case.entry_trace_id).to_pylist()
            self._subtrees = _descendant_places(spans, self.store.place)
        return self._subtrees.get(span_id, {})

    def _flags(self, span: dict) -> dict[str, Any]:
        """Evidence of a span's own component, and the strongest below it in this trace."""
        level, name = self.store.place(span["service"], span["pod"])
        here, items = self._score(level, name)
        lifted, lifted_items = self._score(Level.SERVICE.value, span["service"])
        if lifted > here:  # every pod of the service shows it: the service is the component
            level, name, here, items = Level.SERVICE.value, span["service"], lifted, lifted_items
        below = max(
            (
                (self._score(lv, nm)[0], nm, lv, first, self._service_of(first))
                for (lv, nm), first in self._subtree_places(span["span_id"]).items()
                if (lv, nm) != (level, name)
            ),
            default=(0.0, "", "", "", ""),
        )
        kinds = sorted({i.kind.value for i in items})
        return {
            "service": span["service"],
            "level": level,
            "name": name,
            "here": round(here, 2),
            "kinds": kinds,
            "below": round(below[0], 2),
            "below_at": below[1],
            "below_level": below[2],
            "below_span": below[3],
            "below_service": below[4],
        }

    def _items_of(self, entity: Entity, kinds: set[EvidenceKind]) -> list[EvidenceItem]:
        """Evidence items of kinds about an entity and what it covers, strongest first."""
        names = set(self._covered(entity))
        items = [
            item
            for score in self.evidence.rank()
            if score.entity in names
            for item in score.items
            if item.kind in kinds
        ]
        return sorted(items, key=lambda i: -i.strength)[: self.limits.max_evidence_rows]

    @staticmethod
    def _item_row(item: EvidenceItem) -> str:
        label = {
            EvidenceKind.LOG_DROP: "DROP",
            EvidenceKind.LOG_RISE: "RISE",
            EvidenceKind.SATURATION: "SATURATED",
            EvidenceKind.METRIC_SHIFT: "SHIFT",
        }.get(item.kind, item.kind.value)
        return f"  {label} {item.entity} {item.short().split(' ', 1)[1]} (x{item.strength:.1f})"

    def _component_scores(self, entity: Entity) -> list[dict[str, Any]]:
        """The fused evidence of an entity and what it covers (its pods, their nodes),
        strongest first: what the ranking of an answer should follow."""
        names = set(self._covered(entity))
        found = [
            {
                "level": score.level,
                "name": score.entity,
                "score": round(score.score, 2),
                "kinds": sorted({i.kind.value for i in score.items}),
                "service": self._owner(score.level, score.entity),
            }
            for score in self.evidence.rank()
            if score.entity in names
        ]
        return found[: self.limits.max_evidence_rows]

    def _owner(self, level: str, name: str) -> str | None:
        if level == Level.SERVICE.value:
            return name
        entity = self.entities.get(name)
        return entity.service if entity is not None and entity.service else None

    def _evidence_block(self, entity: Entity, kinds: set[EvidenceKind], what: str) -> str:
        scores = self._component_scores(entity)
        lines = []
        if scores:
            lines.append(
                "evidence score: "
                + "; ".join(
                    f"{s['name']} {s['score']:.1f} ({', '.join(s['kinds'])})" for s in scores
                )
            )
        items = self._items_of(entity, kinds)
        if not items:
            lines.append(f"no {what} of {entity.name} in the case window (against its normal).")
            return "\n".join(lines)
        lines.append(f"{what} of {entity.name} in the case window, now vs normal:")
        return "\n".join([*lines, *(self._item_row(i) for i in items)])

    @staticmethod
    def _flag_text(flags: dict[str, Any]) -> str:
        parts = []
        if flags["here"] > 0:
            parts.append(f"evidence {flags['here']:.1f} ({', '.join(flags['kinds'])})")
        if flags["below"] > flags["here"]:
            parts.append(
                f"deeper: {flags['below_at']} {flags['below']:.1f} at span {flags['below_span']}"
            )
        return ("  | " + "; ".join(parts)) if parts else ""

    # --- dispatch ------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any] | None) -> Observation:
        handler = self._handlers.get(name)
        if handler is None:
            return self._refuse(name, f"unknown tool '{name}'. Tools: {', '.join(self._handlers)}")
        spec = next(s for s in TOOL_SPECS if s.name == name)
        arguments = arguments if isinstance(arguments, dict) else {}
        missing = [k for k in spec.parameters["required"] if k not in arguments]
        if missing:
            wanted = ", ".join(spec.parameters["properties"])
            return self._refuse(name, f"{name} needs {', '.join(missing)} (arguments: {wanted})")
        known = {k: v for k, v in arguments.items() if k in spec.parameters["properties"]}
        observation = handler(**known)
        if observation.ok and "service_name" in known:
            entity = self.entities.get(str(known["service_name"]).strip())
            if entity is not None:  # the component looked at, for the route term
                observation.data["entity"] = {entity.level.value: entity.name}
        return observation

    def _refuse(self, tool: str, text: str) -> Observation:
        return Observation(tool=tool, text=text, ok=False)

    def _rel(self, when: datetime) -> str:
        return f"{(when - self.origin).total_seconds():+.3f}s"

    def _cut(
        self, rows: list[str], total: int, what: str, limit: int | None = None
    ) -> tuple[str, bool]:
        shown = rows[: limit or self.limits.max_rows]
        cut = total > len(shown)
        if cut:
            shown.append(f"... {total - len(shown)} more {what} not shown")
        return "\n".join(shown), cut

    # --- traces ----------------------------------------------------------------------------
    def _resolve_span(self, span_id: Any) -> tuple[dict | None, str]:
        text = str(span_id or "").strip().lower()
        if not text:
            return None, "give a span id"
        span = self.store.span(text)
        if span is not None:
            return span, ""
        trace = self.store.trace(self.case.entry_trace_id).to_pylist()
        matches = [s for s in trace if s["span_id"].startswith(text)]
        if len(matches) == 1:
            return matches[0], ""
        ids = ", ".join(s["span_id"][:8] for s in trace[:10])
        if matches:
            return None, f"span id '{text}' is ambiguous in this trace; give more characters"
        return (
            None,
            f"no span '{text}'. The entry span is {self.case.entry_span_id}; spans of this trace include {ids}",
        )

    def _normal_us(self, span: dict) -> float | None:
        return self.store.operation_baselines().get((span["service"], span["operation"]))

    def _place(self, span: dict) -> str:
        """Where a span ran, never truncated (see TelemetryStore.place)."""
        return self.store.place(span["service"], span["pod"])[1]

    def _span_rows(self, spans: list[dict]) -> list[str]:
        width = max(len(self._place(s)) for s in spans)
        return [self._span_row(s, width) + self._flag_text(self._flags(s)) for s in spans]

    def _span_row(self, span: dict, width: int = 0) -> str:
        normal = self._normal_us(span)
        ratio = (
            f"{span['duration_us'] / max(normal, 1):>6.1f}x normal" if normal else "      ? normal"
        )
        return (
            f"{span['span_id']}  {self._place(span):<{width}}  {span['operation'][:40]:<40} "
            f"start {self._rel(span['start'])}  {span['duration_us'] / 1000:>9.1f} ms {ratio}  "
            f"{span['status']}"
        )

    @staticmethod
    def _where(span: dict) -> dict[str, str]:
        """The components a span ran on, for the route term: service, and pod/node when known."""
        return {k: span[k] for k in ("service", "pod", "node") if span.get(k)}

    def _row_data(self, span: dict) -> dict:
        row = {k: span[k] for k in ("span_id", "service", "pod", "node", "duration_us", "status")}
        row["normal_us"] = self._normal_us(span)
        row.update(self._flags(span))
        return row

    def search_traces(self, parent_span_id: Any = None) -> Observation:
        parent, problem = self._resolve_span(parent_span_id)
        if parent is None:
            return self._refuse("search_traces", problem)
        children = self.store.children(parent["span_id"]).to_pylist()
        if not children:
            text = (
                f"span {parent['span_id']} ({parent['service']}) has no child spans: it is a leaf."
            )
            return Observation(
                tool="search_traces",
                text=text,
                data={
                    "where": self._where(parent),
                    "parent": parent["span_id"],
                    "parent_duration_us": parent["duration_us"],
                    "parent_normal_us": self._normal_us(parent),
                    "children": [],
                    "rows": [],
                },
            )
        flags = {s["span_id"]: self._flags(s) for s in children}
        children.sort(
            key=lambda s: (
                s["status"] != "error",
                -max(flags[s["span_id"]]["here"], flags[s["span_id"]]["below"]),
                -s["duration_us"],
            )
        )
        rows = self._span_rows(children)
        body, cut = self._cut(rows, len(rows), "child spans")
        head = (
            f"{len(children)} child spans of {parent['span_id']} ({parent['service']}, "
            f"{parent['duration_us'] / 1000:.1f} ms), failing, strongest evidence and slowest first:"
        )
        return Observation(
            tool="search_traces",
            text=f"{head}\n{body}",
            truncated=cut,
            data={
                "where": self._where(parent),
                "parent": parent["span_id"],
                "parent_flags": self._flags(parent),
                "parent_duration_us": parent["duration_us"],
                "children": [s["span_id"] for s in children],
                "rows": [self._row_data(s) for s in children],
                "parent_normal_us": self._normal_us(parent),
            },
        )

    def search_span(self, span_id: Any = None) -> Observation:
        span, problem = self._resolve_span(span_id)
        if span is None:
            return self._refuse("search_span", problem)
        text = (
            f"span {span['span_id']} parent {span['parent_id'] or '-'} service {span['service']} "
            f"pod {span['pod'] or '-'} node {span['node'] or '-'}\n{self._span_row(span)}"
        )
        return Observation(
            tool="search_span",
            text=text,
            data={"span": span["span_id"], "where": self._where(span)},
        )

    # --- entities ----------------------------------------------------------------------------
    def _resolve_entity(self, name: Any) -> tuple[Entity | None, str]:
        text = str(name or "").strip()
        entity = self.entities.get(text)
        if entity is not None:
            return entity, ""
        services = sorted(e.name for e in self.entities.values() if e.level == Level.SERVICE)
        near = [s for s in services if text and (text in s or s in text)]
        hint = f" Did you mean: {', '.join(near[:5])}?" if near else ""
        return None, (
            f"no service, pod or node named '{text}'.{hint} Services: {', '.join(services[:30])}"
        )

    def _level_of(self, name: str) -> str:
        entity = self.entities.get(name)
        return entity.level.value if entity else "unknown"

    def _covered(self, entity: Entity) -> list[str]:
        """A service covers itself, its pods and their nodes; a pod its node; a node itself."""
        if entity.level == Level.SERVICE:
            pods = [
                e
                for e in self.entities.values()
                if e.level == Level.POD and e.service == entity.name
            ]
            nodes = sorted({p.node for p in pods if p.node})
            return [entity.name, *sorted(p.name for p in pods), *nodes]
        if entity.level == Level.POD:
            return [entity.name] + ([entity.node] if entity.node else [])
        return [entity.name]

    def _time(self, tool: str, value: Any) -> tuple[datetime | None, Observation | None]:
        when = parse_timestamp(value)
        if when is None:
            example = self.case.entry_start.isoformat()
            return None, self._refuse(
                tool, f"cannot read timestamp '{value}'. Use ISO 8601 ({example}) or epoch seconds"
            )
        return when, None

    # --- metrics ---------------------------------------------------------------------------
    def search_fluctuating_metrics(
        self, service_name: Any = None, timestamp: Any = None
    ) -> Observation:
        tool = "search_fluctuating_metrics"
        entity, problem = self._resolve_entity(service_name)
        if entity is None:
            return self._refuse(tool, problem)
        when, refusal = self._time(tool, timestamp)
        if refusal:
            return refusal
        lim = self.limits
        names = self._covered(entity)
        rows = self.store.query(
            """SELECT entity, metric,
                   avg(value) FILTER (WHERE time < $3) AS mu,
                   coalesce(stddev_pop(value) FILTER (WHERE time < $3), 0) AS sd,
                   count(*) FILTER (WHERE time < $3) AS n_base,
                   avg(value) FILTER (WHERE time >= $4) AS cur,
                   max(value) FILTER (WHERE time >= $4) AS hi,
                   min(value) FILTER (WHERE time >= $4) AS lo
               FROM metrics WHERE entity IN (SELECT unnest($1)) AND time BETWEEN $2 AND $5
                 AND (time < $3 OR time >= $4)
               GROUP BY entity, metric""",
            [
                names,
                when - timedelta(seconds=lim.baseline_before_s),
                when - timedelta(seconds=lim.baseline_gap_s),
                when - timedelta(seconds=lim.current_before_s),
                when + timedelta(seconds=lim.current_after_s),
            ],
        ).to_pylist()
        found = []
        for row in rows:
            if row["cur"] is None or row["mu"] is None or row["n_base"] < 2:
                continue
            # a flat baseline still needs a real move: its spread is floored at 5% of its level
            floor = 1e-9 + 0.05 * abs(row["mu"])
            sd = max(row["sd"], floor)
            z = max(abs(row["hi"] - row["mu"]), abs(row["lo"] - row["mu"])) / sd
            if z > lim.sigma:
                found.append((z, row))
        found.sort(key=lambda item: (-item[0], item[1]["entity"], item[1]["metric"]))
        block = self._evidence_block(entity, METRIC_KINDS, "metric evidence")
        evidence_data = [i.model_dump(mode="json") for i in self._items_of(entity, METRIC_KINDS)]
        if not found:
            text = (
                f"no metric of {', '.join(names)} deviates beyond {lim.sigma:g} sigma "
                f"around {self._rel(when)}"
            )
            covered = [(name, self._level_of(name)) for name in names]
            return Observation(
                tool=tool,
                text=f"{block}\n{text}",
                data={
                    "fluctuating": [],
                    "covered": covered,
                    "evidence": evidence_data,
                    "scores": self._component_scores(entity),
                },
            )
        width = max(len(r["entity"]) for _z, r in found)
        lines = [
            f"{r['entity']:<{width}}  {r['metric'][:34]:<34} normal {r['mu']:>10.3g} ±{r['sd']:<9.3g} "
            f"now {r['cur']:>10.3g} (range {r['lo']:.3g}..{r['hi']:.3g})  {z:5.1f} sigma"
            for z, r in found
        ]
        body, cut = self._cut(lines, len(lines), "fluctuating metrics")
        head = (
            f"{len(found)} fluctuating metrics of {entity.level.value} {entity.name} "
            f"around {self._rel(when)}, strongest first:"
        )
        return Observation(
            tool=tool,
            text=f"{block}\n{head}\n{body}",
            truncated=cut,
            data={
                "evidence": evidence_data,
                "scores": self._component_scores(entity),
                "fluctuating": [
                    (r["entity"], r["metric"], round(z, 3), self._level_of(r["entity"]))
                    for z, r in found
                ],
                "covered": [(name, self._level_of(name)) for name in names],
            },
        )

    # --- logs ------------------------------------------------------------------------------
    def search_logs(self, service_name: Any = None, timestamp: Any = None) -> Observation:
        tool = "search_logs"
        entity, problem = self._resolve_entity(service_name)
        if entity is None:
            return self._refuse(tool, problem)
        when, refusal = self._time(tool, timestamp)
        if refusal:
            return refusal
        window = timedelta(seconds=self.limits.log_window_s)
        records = self._severe_logs(entity, when - window, when + window)
        # the same-length windows just before (end exclusive, so no record is counted twice)
        span = 2 * window * self.limits.log_baseline_windows
        before = self._severe_logs(
            entity, when - window - span, when - window - timedelta(microseconds=1)
        )
        usual: dict[tuple[str, str], int] = {}
        for record in before:
            key = (record["severity"], log_pattern(record["message"]))
            usual[key] = usual.get(key, 0) + 1
        groups: dict[tuple[str, str], list[dict]] = {}
        for record in records:
            groups.setdefault((record["severity"], log_pattern(record["message"])), []).append(
                record
            )
        scale = self.limits.log_baseline_windows
        rank = {"fatal": 0, "error": 1, "warn": 2}
        block = self._evidence_block(entity, LOG_KINDS, "log shifts")
        shifts = [i.model_dump(mode="json") for i in self._items_of(entity, LOG_KINDS)]

        def surprise(key: tuple[str, str], items: list[dict]) -> float:
            """How far above its usual rate a pattern is (usual counts per window, +1 smoothed)."""
            return len(items) / (usual.get(key, 0) / scale + 1)

        ordered = sorted(
            groups.items(), key=lambda kv: (-surprise(*kv), rank[kv[0][0]], -len(kv[1]), kv[0][1])
        )
        if not ordered:
            text = (
                f"no warning or error logs of {entity.level.value} {entity.name} within "
                f"±{self.limits.log_window_s:g}s of {self._rel(when)}"
            )
            return Observation(
                tool=tool,
                text=f"{block}\n{text}",
                data={"patterns": [], "shifts": shifts, "scores": self._component_scores(entity)},
            )
        lines = [
            f"{sev.upper():<5} x{len(items):<4} usual {usual.get((sev, pattern), 0) / scale:<5.1f} "
            f"first {self._rel(items[0]['time'])} {(items[0]['pod'] or items[0]['service'])}: "
            f"{items[0]['message'][:200]}"
            for (sev, pattern), items in ordered
        ]
        body, cut = self._cut(lines, len(lines), "log patterns", self.limits.error_rows)
        head = (
            f"{len(records)} warning/error logs ({len(ordered)} patterns) of {entity.level.value} "
            f"{entity.name} within ±{self.limits.log_window_s:g}s of {self._rel(when)}, most "
            f"unusual first (usual = count per window over the {scale} windows before):"
        )
        return Observation(
            tool=tool,
            text=f"{block}\n{head}\n{body}",
            truncated=cut,
            data={
                "shifts": shifts,
                "scores": self._component_scores(entity),
                "patterns": [
                    (sev, pattern, len(items), usual.get((sev, pattern), 0) / scale)
                    for (sev, pattern), items in ordered
                ],
            },
        )

    def _severe_logs(self, entity: Entity, start: datetime, end: datetime) -> list[dict]:
        return [
            r
            for r in self.store.logs(entity.name, entity.level, start, end).to_pylist()
            if r["severity"] in ("warn", "error", "fatal")
        ]

    # --- the answer ------------------------------------------------------------------------
    def _valid_names_hint(self) -> str:
        spans = self.store.trace(self.case.entry_trace_id).to_pylist()
        services = sorted({s["service"] for s in spans})
        pods = sorted({s["pod"] for s in spans if s["pod"]})
        nodes = sorted({s["node"] for s in spans if s["node"]})
        hint = f"Services in this trace: {', '.join(services[:20])}"
        if pods:
            hint += f"; pods: {', '.join(pods[:20])}"
        if nodes:
            hint += f"; nodes: {', '.join(nodes[:10])}"
        return hint

    def print_results(self, root_causes: Any = None) -> Observation:
        tool = "print_results"
        if not isinstance(root_causes, list):
            return self._refuse(
                tool, 'root_causes must be a list like [{"service": "cartservice"}, ...]'
            )
        ranking: list[dict[str, str]] = []
        problems: list[str] = []
        for index, item in enumerate(root_causes):
            keys = [k for k in ("service", "pod", "node") if isinstance(item, dict) and k in item]
            if len(keys) != 1 or len(item) != 1:
                problems.append(f"item {index + 1} must have exactly one of service, pod, node")
                continue
            level, name = keys[0], str(item[keys[0]]).strip()
            entity = self.entities.get(name)
            if entity is None or entity.level.value != level:
                problems.append(f"item {index + 1}: no {level} named '{name}'")
            ranking.append({level: name})
        text = "results: " + ", ".join(f"{k}={v}" for r in ranking for k, v in r.items())
        if problems:
            text += "\nproblems: " + "; ".join(problems) + ". " + self._valid_names_hint()
        return Observation(
            tool=tool, text=text, ok=not problems, data={"ranking": ranking, "problems": problems}
        )


def _descendant_places(
    spans: list[dict], place: Callable[[str, str | None], tuple[str, str]]
) -> dict[str, dict[tuple[str, str], str]]:
    """Per span, the components its descendants ran on, each with its shallowest span there.
    Children are done before their parents (an iterative post-order, safe on deep traces
    and on loops in parent links)."""
    kids: dict[str | None, list[dict]] = {}
    for row in spans:
        kids.setdefault(row["parent_id"], []).append(row)
    order: list[str] = []
    visited: set[str] = set()
    for row in spans:
        stack = [(row["span_id"], False)]
        while stack:
            span_id, finished = stack.pop()
            if finished:
                order.append(span_id)
                continue
            if span_id in visited:
                continue
            visited.add(span_id)
            stack.append((span_id, True))
            stack.extend((k["span_id"], False) for k in kids.get(span_id, []))
    memo: dict[str, dict[tuple[str, str], str]] = {}
    for span_id in order:
        places: dict[tuple[str, str], str] = {}
        for kid in kids.get(span_id, []):
            for key, first in memo.get(kid["span_id"], {}).items():
                places.setdefault(key, first)
        for kid in kids.get(span_id, []):  # a child is shallower than its descendants
            places[place(kid["service"], kid["pod"])] = kid["span_id"]
        memo[span_id] = places
    return memo
