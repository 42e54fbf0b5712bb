"""The report page of one investigation: one self-contained HTML file (no CDN, nothing
fetched at run time), served by `thinkfl serve` and written by `thinkfl report` and
`thinkfl localize --html`.

It shows the entry trace as a collapsible call tree with the path the investigator searched
highlighted and each hop's evidence beside it, the ranked causes with their evidence, the
tool-call timeline, the model and the time spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from thinkfl.agent import Trajectory
from thinkfl.agent.explain import evidence_lines
from thinkfl.files import atomic_write
from thinkfl.telemetry import FailureCase, TelemetryStore
from thinkfl.tools import Toolbox

MAX_TREE_SPANS = 400  # spans drawn; a wider trace says how many were left out
MAX_CHILDREN = 40  # children drawn per span, slowest and failing first


@dataclass
class Hop:
    """One span of the entry trace as the page draws it."""

    span_id: str
    service: str
    place: str
    operation: str
    duration_ms: float
    ratio: float | None
    status: str
    offset_ms: float
    width_pct: float
    left_pct: float
    on_path: bool
    evidence: list[str]
    score: float
    children: list[Hop] = field(default_factory=list)
    hidden_children: int = 0


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.files("thinkfl.serve") / "templates"))
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def _searched(trajectory: Trajectory) -> set[str]:
    """Span ids the investigator looked at (searched below, or asked about)."""
    found = set()
    for step in trajectory.steps:
        for key in ("parent_span_id", "span_id"):
            value = step.arguments.get(key)
            if isinstance(value, str):
                found.add(value)
    return found


def _tree(box: Toolbox, trajectory: Trajectory) -> tuple[Hop | None, int]:
    spans = box.entry_trace
    root = spans.get(box.case.entry_span_id)
    if root is None:
        return None, 0
    searched = _searched(trajectory)
    baselines = box.store.operation_baselines()
    origin = root["start"]
    total_us = max(root["duration_us"], 1)
    drawn = 0

    def hop(span: dict[str, Any], depth: int, seen: set[str]) -> Hop:
        nonlocal drawn
        drawn += 1
        level, name = box.store.place(span["service"], span.get("pod"))
        score, items = box.score(level, name)
        normal = baselines.get((span["service"], span["operation"]))
        offset_us = (span["start"] - origin).total_seconds() * 1e6
        node = Hop(
            span_id=span["span_id"],
            service=span["service"],
            place=name,
            operation=span["operation"],
            duration_ms=span["duration_us"] / 1000,
            ratio=span["duration_us"] / normal if normal else None,
            status=span["status"],
            offset_ms=offset_us / 1000,
            left_pct=max(0.0, min(100.0, 100 * offset_us / total_us)),
            width_pct=max(0.5, min(100.0, 100 * span["duration_us"] / total_us)),
            on_path=span["span_id"] in searched,
            evidence=[item.short() for item in items[:3]],
            score=score,
        )
        children = [c for c in box.children_of(span["span_id"]) if c["span_id"] not in seen]
        children.sort(key=lambda c: (c["status"] != "error", -c["duration_us"]))
        for child in children[:MAX_CHILDREN]:
            if drawn >= MAX_TREE_SPANS or depth > 64:
                node.hidden_children += 1
                continue
            node.children.append(hop(child, depth + 1, seen | {child["span_id"]}))
        node.hidden_children += max(0, len(children) - MAX_CHILDREN)
        return node

    return hop(root, 0, {root["span_id"]}), len(spans)


def render_report(
    store: TelemetryStore,
    case: FailureCase,
    trajectory: Trajectory,
    title: str = "ThinkFL investigation",
    generated: datetime | None = None,
) -> str:
    """The report page as one HTML document."""
    box = Toolbox(store, case)
    tree, trace_spans = _tree(box, trajectory)
    causes = [
        {
            "rank": rank,
            "level": level,
            "name": name,
            "known": name in box.entities,
            "evidence": evidence_lines(trajectory, name, 3),
            "truth": bool(case.truth and name in (case.truth.entity, case.truth.service)),
        }
        for rank, (level, name) in enumerate(
            ((c.level.value, c.name) for c in trajectory.ranking), start=1
        )
    ]
    steps = [
        {
            "n": n,
            "tool": step.tool,
            "arguments": ", ".join(f"{k}={v!r}"[:80] for k, v in step.arguments.items()),
            "ok": step.ok,
            "seconds": step.seconds,
            "lines": step.observation.splitlines()[:6],
        }
        for n, step in enumerate(trajectory.steps, start=1)
    ]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            case=case,
            trajectory=trajectory,
            root=tree,
            trace_spans=trace_spans,
            max_tree_spans=MAX_TREE_SPANS,
            causes=causes,
            steps=steps,
            generated=generated or datetime.now().astimezone(),
            css=(resources.files("thinkfl.serve") / "static" / "report.css").read_text("utf-8"),
            js=(resources.files("thinkfl.serve") / "static" / "report.js").read_text("utf-8"),
        )
    )


def write_report(html: str, out: Path) -> Path:
    """Write the page (temp file, then rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, html)
