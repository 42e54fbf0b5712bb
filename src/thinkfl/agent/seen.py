"""What a dialogue has shown so far, read from its steps' typed data: the evidence scores of
components and the spans seen. The expert ranks from it, and so does the loop's last resort
when a model ends without a usable answer (an answer built only from what the tools showed,
never from the labels)."""

from __future__ import annotations

from dataclasses import dataclass, field

from thinkfl.agent.trajectory import Step

Seen = dict[tuple[str, str], tuple[float, str | None]]


def evidence_seen(steps: list[Step]) -> Seen:
    """(level, name) -> (the strongest evidence score shown for that component, its service):
    from the flags of the trace rows and the scores the log and metric observations show for
    a component and what it covers (its pods, their nodes)."""
    shown: list[tuple[float, str | None, str | None, str | None]] = []
    for step in steps:
        if step.tool == "search_traces":
            rows = step.data.get("rows", [])
            shown += [
                (row.get("here", 0.0), row.get("service"), row.get("level"), row.get("name"))
                for row in [*rows, step.data.get("parent_flags", {})]
            ]
            shown += [
                (
                    row.get("below", 0.0),
                    row.get("below_service"),
                    row.get("below_level"),
                    row.get("below_at"),
                )
                for row in rows
            ]
        for row in step.data.get("scores", []):
            shown.append((row["score"], row.get("service"), row["level"], row["name"]))
    best: Seen = {}
    for score, service, level, name in shown:
        if level and name and score > best.get((level, name), (0.0, None))[0]:
            best[(level, name)] = (score, service)
    return best


def ranked_by_evidence(seen: Seen, services: list[str]) -> list[dict[str, str]]:
    """Components by the evidence shown for them (a pod followed by its service), then the
    given services."""
    result: list[dict[str, str]] = []
    for (level, name), (_score, service) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
        for item in ({level: name}, {"service": service} if service else None):
            if item and item not in result:
                result.append(item)
    for service in services:
        if {"service": service} not in result:
            result.append({"service": service})
    return result


def slowed_services(steps: list[Step]) -> list[str]:
    """Services of the spans the trace observations listed, failing first, then by how far
    above their normal duration."""
    rows = [row for s in steps if s.tool == "search_traces" for row in s.data.get("rows", [])]
    rows.sort(
        key=lambda r: (
            r.get("status") != "error",
            -(r["duration_us"] / max(r.get("normal_us") or 1.0, 1.0)),
        )
    )
    services: list[str] = []
    for row in rows:
        if row["service"] not in services:
            services.append(row["service"])
    return services


def answer_from_steps(steps: list[Step], entry_service: str) -> list[dict[str, str]]:
    """The last resort: what the observations pointed at, strongest evidence first, then the
    slowed or failing services seen, then the entry service."""
    return ranked_by_evidence(evidence_seen(steps), [*slowed_services(steps), entry_service])


@dataclass
class ShownIdentifiers:
    """The span ids and component names (by level) a dialogue has shown so far."""

    spans: list[str] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)  # level -> names, first seen first

    def add_span(self, span_id: str | None) -> None:
        if span_id and span_id not in self.spans:
            self.spans.append(span_id)

    def add_name(self, level: str | None, name: str | None) -> None:
        if level in LEVELS and name and name not in self.names.setdefault(level, []):
            self.names[level].append(name)

    @property
    def components(self) -> list[str]:
        return [name for level in LEVELS for name in self.names.get(level, [])]


LEVELS = ("service", "pod", "node")


def span_handles(steps: list[Step]) -> dict[str, str]:
    """Span id -> the short handle the trace observations showed for it (compact dialogues)."""
    handles: dict[str, str] = {}
    for step in steps:
        data = step.data
        if data.get("parent_handle"):
            handles[data["parent"]] = data["parent_handle"]
        for row in data.get("rows", []):
            if row.get("handle"):
                handles[row["span_id"]] = row["handle"]
            if row.get("below_handle"):
                handles[row["below_span"]] = row["below_handle"]
    return handles


def shown_identifiers(
    steps: list[Step], entry_span: str, entry_service: str, handles: bool = False
) -> ShownIdentifiers:
    """What the case's question and the observations named: span ids of traces (their short
    handles when `handles`, as compact observations show them; the entry span as the question
    gives it), and the services, pods and nodes of rows, scores, evidence and covered
    components."""
    shown = ShownIdentifiers()
    shown.add_span(entry_span)
    shown.add_name("service", entry_service)
    short = span_handles(steps) if handles else {}

    def add_span(span_id: str | None) -> None:
        if span_id and span_id != entry_span:
            shown.add_span(short.get(span_id, span_id))

    for step in steps:
        data = step.data
        add_span(data.get("parent"))
        add_span(data.get("span"))
        for row in [*data.get("rows", []), data.get("where", {}), data.get("parent_flags", {})]:
            add_span(row.get("span_id"))
            for level in LEVELS:
                shown.add_name(level, row.get(level))
            # the strongest evidence below a child: its span, component and service
            add_span(row.get("below_span"))
            shown.add_name(row.get("below_level"), row.get("below_at"))
            shown.add_name("service", row.get("below_service"))
        for row in data.get("scores", []):
            shown.add_name(row["level"], row["name"])
        for item in [*data.get("evidence", []), *data.get("shifts", [])]:
            shown.add_name(item["level"], item["entity"])
        for name, level in data.get("covered", []):
            shown.add_name(level, name)
    return shown
