"""The context the tools share for one case: the store, the case, its evidence, and the
helpers that resolve names and render rows. `Toolbox.call` validates a call's arguments
with the tool's argument model and dispatches through the registry; it never raises for
bad arguments (an unknown tool, span, entity or timestamp yields an observation that says
what is valid)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from thinkfl.evidence import Evidence, EvidenceItem, EvidenceKind, evidence_for
from thinkfl.telemetry import Entity, FailureCase, Level, TelemetryStore
from thinkfl.telemetry.errors import printable
from thinkfl.tools.base import ComponentScore, Observation, ToolLimits, parse_timestamp
from thinkfl.tools.registry import SPECS, TOOLS

log = logging.getLogger("thinkfl.tools")
# Failures of the store underneath a tool (a damaged or unreadable file), not of the call's
# arguments: the investigation cannot be trusted and says so (`Toolbox.store_failures`).
STORE_FAILURES = (duckdb.Error, OSError, pa.ArrowException)


def _bounded_data(value: Any, limits: ToolLimits, depth: int = 0) -> Any:
    """`value` with every list cut to `max_data_items` and every string to `max_data_chars`
    (nesting below 8 levels is dropped): what programs read stays as small as the text."""
    if depth > 8:
        return None
    if isinstance(value, str):
        return value[: limits.max_data_chars]
    if isinstance(value, dict):
        return {
            str(k)[: limits.max_data_chars]: _bounded_data(v, limits, depth + 1)
            for k, v in list(value.items())[: limits.max_data_items]
        }
    if isinstance(value, list | tuple):
        cut = [_bounded_data(v, limits, depth + 1) for v in value[: limits.max_data_items]]
        return tuple(cut) if isinstance(value, tuple) else cut
    return value


# A span handle keeps at least this many characters of the id (unique in its trace).
HANDLE_MIN_CHARS = 6


def unique_prefixes(ids: list[str], least: int) -> dict[str, str]:
    """Each id's shortest prefix of at least `least` characters that no other id starts with
    (the whole id when it is a prefix of another).

    >>> unique_prefixes(["abcdef01", "abcdef02", "99887766"], 4)
    {'99887766': '9988', 'abcdef01': 'abcdef01', 'abcdef02': 'abcdef02'}
    """
    ordered = sorted(set(ids))
    shortest: dict[str, str] = {}
    for index, current in enumerate(ordered):
        shared = 0
        for neighbour in ordered[max(index - 1, 0) : index] + ordered[index + 1 : index + 2]:
            common = 0
            for a, b in zip(current, neighbour, strict=False):
                if a != b:
                    break
                common += 1
            shared = max(shared, common)
        shortest[current] = current[: max(least, shared + 1)]
    return shortest


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
        self._trace: dict[str, dict[str, Any]] | None = None
        self._handles: dict[str, str] | None = None
        self._kids: dict[str, list[dict[str, Any]]] = {}
        self.store_failures: list[str] = []  # one line per call the store failed underneath

    @property
    def entry_trace(self) -> dict[str, dict[str, Any]]:
        """The spans of the case's entry trace by id, in start order (read once: the tools
        answer from it without scanning the store)."""
        if self._trace is None:
            spans = self.store.trace(self.case.entry_trace_id).to_pylist()
            self._trace = {row["span_id"]: row for row in spans}
            for row in spans:
                if row["parent_id"]:
                    self._kids.setdefault(row["parent_id"], []).append(row)
        return self._trace

    def handle(self, span_id: str) -> str:
        """A short handle for a span of the entry trace: the shortest prefix of its id, at
        least `HANDLE_MIN_CHARS`, that no other span of the trace starts with (a call may
        name a span by it: `resolve_span` takes a unique prefix). Other ids stay whole."""
        if self._handles is None:
            self._handles = unique_prefixes(list(self.entry_trace), HANDLE_MIN_CHARS)
        return self._handles.get(span_id, span_id)

    def children_of(self, span_id: str) -> list[dict[str, Any]]:
        """Direct children in start order: from the entry trace when the span is in it."""
        if span_id in self.entry_trace:
            return list(self._kids.get(span_id, []))
        rows: list[dict[str, Any]] = self.store.children(span_id).to_pylist()
        return rows

    # --- dispatch ------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any] | None) -> Observation:
        """Run one call; never raises, and the observation is bounded in text and data."""
        name = str(name)[:100]  # a model may send anything as a name
        try:
            observation = self._dispatch(name, arguments)
        except Exception as error:  # the contract: a model's call never ends the case
            log.exception("tool %s failed on %r", name, arguments)
            if isinstance(error, STORE_FAILURES):
                self.store_failures.append(
                    f"{self.store.path}: {name} failed reading the store "
                    f"({type(error).__name__}: {printable(str(error), 200)})"
                )
            observation = self.refuse(
                name, f"{name} failed on these arguments ({type(error).__name__})"
            )
        return self._bounded(observation)

    def _bounded(self, observation: Observation) -> Observation:
        limits = self.limits
        text = observation.text
        if len(text) > limits.max_observation_chars:
            cut = len(text) - limits.max_observation_chars
            text = text[: limits.max_observation_chars] + f" …({cut} characters cut)"
            observation.truncated = True
        observation.text = text
        observation.data = _bounded_data(observation.data, limits)
        return observation

    def _dispatch(self, name: str, arguments: dict[str, Any] | None) -> Observation:
        tool = TOOLS.get(name)
        if tool is None:
            return self.refuse(name, f"unknown tool '{name}'. Tools: {', '.join(TOOLS)}")
        arguments = arguments if isinstance(arguments, dict) else {}
        declared = SPECS[name].parameters
        missing = [k for k in declared["required"] if k not in arguments]
        if missing:
            wanted = ", ".join(declared["properties"])
            return self.refuse(name, f"{name} needs {', '.join(missing)} (arguments: {wanted})")
        try:
            parsed = tool.Arguments.model_validate(arguments)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            return self.refuse(name, f"{name}: {problems}")
        observation = tool.run(self, parsed)
        service_name = getattr(parsed, "service_name", None)
        if observation.ok and service_name is not None:
            entity = self.entities.get(str(service_name).strip())
            if entity is not None:  # the component looked at, for the route term
                observation.data["entity"] = {entity.level.value: entity.name}
        return observation

    # --- evidence ------------------------------------------------------------------------
    @property
    def evidence(self) -> Evidence:
        """The case's label-free evidence (computed once, cached in the store)."""
        if self._evidence is None:
            self._evidence = evidence_for(self.store, self.case)
        return self._evidence

    def score(self, level: str, name: str) -> tuple[float, list[EvidenceItem]]:
        found = self.evidence.score_of(level, name)
        return (found.score, found.items) if found else (0.0, [])

    def service_of(self, span_id: str) -> str:
        span = self.entry_trace.get(span_id) if span_id else None
        return span["service"] if span else ""

    def subtree_places(self, span_id: str) -> dict[tuple[str, str], str]:
        """The components a span's descendants in the entry trace ran on (itself excluded)."""
        if self._subtrees is None:
            self._subtrees = _descendant_places(list(self.entry_trace.values()), self.store.place)
        return self._subtrees.get(span_id, {})

    def flags(self, span: dict[str, Any]) -> dict[str, Any]:
        """Evidence of a span's own component, and the strongest below it in this trace."""
        level, name = self.store.place(span["service"], span["pod"])
        here, items = self.score(level, name)
        lifted, lifted_items = self.score(Level.SERVICE.value, span["service"])
        if lifted > here:  # every pod of the service shows it: the service is the component
            level, name, here, items = Level.SERVICE.value, span["service"], lifted, lifted_items
        below = max(
            (
                (self.score(lv, nm)[0], nm, lv, first, self.service_of(first))
                for (lv, nm), first in self.subtree_places(span["span_id"]).items()
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
            "below_handle": self.handle(below[3]) if below[3] else "",
            "below_service": below[4],
        }

    def items_of(self, entity: Entity, kinds: AbstractSet[EvidenceKind]) -> list[EvidenceItem]:
        """Evidence items of kinds about an entity and what it covers, strongest first."""
        names = set(self.covered(entity))
        items = [
            item
            for score in self.evidence.rank()
            if score.entity in names
            for item in score.items
            if item.kind in kinds
        ]
        return sorted(items, key=lambda i: -i.strength)[: self.limits.max_evidence_rows]

    @staticmethod
    def item_row(item: EvidenceItem) -> str:
        label = {
            EvidenceKind.LOG_DROP: "DROP",
            EvidenceKind.LOG_RISE: "RISE",
            EvidenceKind.SATURATION: "SATURATED",
            EvidenceKind.METRIC_SHIFT: "SHIFT",
        }.get(item.kind, item.kind.value)
        return f"  {label} {item.entity} {item.short().split(' ', 1)[1]} ({item.strength_text()})"

    def component_scores(self, entity: Entity) -> list[ComponentScore]:
        """The fused evidence of an entity and what it covers (its pods, their nodes),
        strongest first: what the ranking of an answer should follow."""
        names = set(self.covered(entity))
        found = [
            ComponentScore(
                level=score.level,
                name=score.entity,
                score=round(score.score, 2),
                kinds=sorted({i.kind.value for i in score.items}),
                service=self.owner(score.level, score.entity),
            )
            for score in self.evidence.rank()
            if score.entity in names
        ]
        return found[: self.limits.max_evidence_rows]

    def owner(self, level: str, name: str) -> str | None:
        if level == Level.SERVICE.value:
            return name
        entity = self.entities.get(name)
        return entity.service if entity is not None and entity.service else None

    def evidence_view(
        self, entity: Entity, kinds: AbstractSet[EvidenceKind], what: str
    ) -> tuple[str, list[ComponentScore], list[EvidenceItem]]:
        """The evidence an observation about `entity` starts with: its text (the scores of
        what it covers, then the items of `kinds`), the scores and the items."""
        scores = self.component_scores(entity)
        items = self.items_of(entity, kinds)
        return self._evidence_text(entity, what, scores, items), scores, items

    def _evidence_text(
        self, entity: Entity, what: str, scores: list[ComponentScore], items: list[EvidenceItem]
    ) -> str:
        lines = []
        if scores:
            lines.append(
                "evidence score: "
                + "; ".join(f"{s.name} {s.score:.1f} ({', '.join(s.kinds)})" for s in scores)
            )
        if not items:
            lines.append(f"no {what} of {entity.name} in the case window (against its normal).")
            return "\n".join(lines)
        lines.append(f"{what} of {entity.name} in the case window, now vs normal:")
        return "\n".join([*lines, *(self.item_row(i) for i in items)])

    @staticmethod
    def flag_text(flags: dict[str, Any]) -> str:
        parts = []
        if flags["here"] > 0:
            parts.append(f"evidence {flags['here']:.1f} ({', '.join(flags['kinds'])})")
        if flags["below"] > flags["here"]:
            parts.append(
                f"deeper: {flags['below_at']} {flags['below']:.1f} at span {flags['below_span']}"
            )
        return ("  | " + "; ".join(parts)) if parts else ""

    def refuse(self, tool: str, text: str) -> Observation:
        return Observation(tool=tool, text=text, ok=False)

    def rel(self, when: datetime) -> str:
        return f"{(when - self.origin).total_seconds():+.3f}s"

    def cut(
        self, rows: list[str], total: int, what: str, limit: int | None = None
    ) -> tuple[str, bool]:
        shown = rows[: limit or self.limits.max_rows]
        was_cut = total > len(shown)
        if was_cut:
            shown.append(f"... {total - len(shown)} more {what} not shown")
        return "\n".join(shown), was_cut

    # --- traces ----------------------------------------------------------------------------
    def resolve_span(self, span_id: Any) -> tuple[dict[str, Any] | None, str]:
        text = str(span_id or "").strip().lower()
        if not text:
            return None, "give a span id"
        span = self.entry_trace.get(text) or self.store.span(text)
        if span is not None:
            return span, ""
        trace = list(self.entry_trace.values())
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

    def normal_us(self, span: dict[str, Any]) -> float | None:
        return self.store.operation_baselines().get((span["service"], span["operation"]))

    def place(self, span: dict[str, Any]) -> str:
        """Where a span ran, never truncated (see TelemetryStore.place)."""
        return self.store.place(span["service"], span["pod"])[1]

    def span_rows(self, spans: list[dict[str, Any]]) -> list[str]:
        width = max(len(self.place(s)) for s in spans)
        return [self.span_row(s, width) + self.flag_text(self.flags(s)) for s in spans]

    def span_row(self, span: dict[str, Any], width: int = 0) -> str:
        normal = self.normal_us(span)
        ratio = (
            f"{span['duration_us'] / max(normal, 1):>6.1f}x normal" if normal else "      ? normal"
        )
        return (
            f"{span['span_id']}  {self.place(span):<{width}}  {span['operation'][:40]:<40} "
            f"start {self.rel(span['start'])}  {span['duration_us'] / 1000:>9.1f} ms {ratio}  "
            f"{span['status']}"
        )

    @staticmethod
    def where(span: dict[str, Any]) -> dict[str, str]:
        """The components a span ran on, for the route term: service, and pod/node when known."""
        return {k: span[k] for k in ("service", "pod", "node") if span.get(k)}

    def row_data(self, span: dict[str, Any]) -> dict[str, Any]:
        row = {k: span[k] for k in ("span_id", "service", "pod", "node", "duration_us", "status")}
        row["handle"] = self.handle(span["span_id"])
        row["normal_us"] = self.normal_us(span)
        row.update(self.flags(span))
        return row

    # --- entities ----------------------------------------------------------------------------
    def resolve_entity(self, name: Any) -> tuple[Entity | None, str]:
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

    def level_of(self, name: str) -> str:
        entity = self.entities.get(name)
        return entity.level.value if entity else "unknown"

    def covered(self, entity: Entity) -> list[str]:
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

    def entity_at(
        self, tool: str, name: str, timestamp: str | None
    ) -> tuple[Entity, datetime] | Observation:
        """The entity and time a call asks about (no time: the question's failure time), or
        the refusal that says what is valid."""
        entity, problem = self.resolve_entity(name)
        if entity is None:
            return self.refuse(tool, problem)
        if timestamp is None:
            return entity, self.case.entry_start
        when, refusal = self.read_time(tool, timestamp)
        if refusal is not None or when is None:
            return refusal or self.refuse(tool, "unreadable timestamp")
        return entity, when

    def read_time(self, tool: str, value: Any) -> tuple[datetime | None, Observation | None]:
        when = parse_timestamp(value)
        example = self.case.entry_start.isoformat()
        if when is None:
            return None, self.refuse(
                tool, f"cannot read timestamp '{value}'. Use ISO 8601 ({example}) or epoch seconds"
            )
        days = abs((when - self.case.entry_start).total_seconds()) / 86400
        if days * 86400 > self.limits.max_time_offset_s:
            return None, self.refuse(
                tool, f"timestamp '{value}' is {days:,.0f} days from the failure; use {example}"
            )
        return when, None

    def severe_logs(self, entity: Entity, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.store.logs(
            entity.name, entity.level, start, end, ("warn", "error", "fatal")
        ).to_pylist()
        return rows

    def valid_names_hint(self) -> str:
        spans = list(self.entry_trace.values())
        services = sorted({s["service"] for s in spans})
        pods = sorted({s["pod"] for s in spans if s["pod"]})
        nodes = sorted({s["node"] for s in spans if s["node"]})
        hint = f"Services in this trace: {', '.join(services[:20])}"
        if pods:
            hint += f"; pods: {', '.join(pods[:20])}"
        if nodes:
            hint += f"; nodes: {', '.join(nodes[:10])}"
        return hint


def _descendant_places(
    spans: list[dict[str, Any]], place: Callable[[str, str | None], tuple[str, str]]
) -> dict[str, dict[tuple[str, str], str]]:
    """Per span, the components its descendants ran on, each with its shallowest span there.
    Children are done before their parents (an iterative post-order, safe on deep traces
    and on loops in parent links)."""
    kids: dict[str | None, list[dict[str, Any]]] = {}
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
