"""Trace tools: the children of a span with their evidence flags, and one span."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from thinkfl.tools.base import Identifier, Observation, Tool, ToolArguments, identifies

if TYPE_CHECKING:
    from thinkfl.tools.toolbox import Toolbox


class EvidenceFlags(BaseModel):
    """The evidence of a span's own component and the strongest below it in the trace."""

    service: str = ""
    level: str = ""
    name: str = ""
    here: float = 0.0
    kinds: list[str] = Field(default_factory=list)
    below: float = 0.0
    below_at: str = ""
    below_level: str = ""
    below_span: str = ""
    below_handle: str = ""  # the short handle of below_span (Toolbox.handle)
    below_service: str = ""


class SpanRow(EvidenceFlags):
    span_id: str
    handle: str = ""  # a unique prefix of span_id in the trace (Toolbox.handle)
    pod: str | None = None
    node: str | None = None
    duration_us: int
    status: str
    normal_us: float | None = None


class TraceChildren(BaseModel):
    where: dict[str, str]
    parent: str
    parent_handle: str = ""
    parent_flags: EvidenceFlags = Field(default_factory=EvidenceFlags)
    parent_duration_us: int
    parent_normal_us: float | None = None
    children: list[str]
    rows: list[SpanRow]


class SpanDetail(BaseModel):
    span: str
    where: dict[str, str]


class SpanArguments(ToolArguments):
    parent_span_id: str = Field(
        description="a span id of this trace (a unique prefix will do)",
        json_schema_extra=identifies(Identifier.SPAN),
    )


class SearchTraces(Tool):
    name = "search_traces"
    description = (
        "List the direct child spans (calls) of a span: id, service/pod, operation, start, "
        "duration, status and evidence flags; failing, strongest evidence and slowest first."
    )
    Arguments = SpanArguments

    def run(self, box: Toolbox, arguments: SpanArguments) -> Observation:
        parent, problem = box.resolve_span(arguments.parent_span_id)
        if parent is None:
            return box.refuse(self.name, problem)
        children = box.children_of(parent["span_id"])
        result = TraceChildren(
            where=box.where(parent),
            parent=parent["span_id"],
            parent_handle=box.handle(parent["span_id"]),
            parent_duration_us=parent["duration_us"],
            parent_normal_us=box.normal_us(parent),
            children=[],
            rows=[],
        )
        if not children:
            text = (
                f"span {parent['span_id']} ({parent['service']}) has no child spans: it is a leaf."
            )
            return Observation(tool=self.name, text=text, data=result.model_dump())
        flags = {s["span_id"]: box.flags(s) for s in children}
        children.sort(
            key=lambda s: (
                s["status"] != "error",
                -max(flags[s["span_id"]]["here"], flags[s["span_id"]]["below"]),
                -s["duration_us"],
            )
        )
        rows = box.span_rows(children)
        body, cut = box.cut(rows, len(rows), "child spans")
        head = (
            f"{len(children)} child spans of {parent['span_id']} ({parent['service']}, "
            f"{parent['duration_us'] / 1000:.1f} ms), failing, strongest evidence and slowest first:"
        )
        result.parent_flags = EvidenceFlags(**box.flags(parent))
        result.children = [s["span_id"] for s in children]
        result.rows = [SpanRow(**box.row_data(s)) for s in children]
        return Observation(
            tool=self.name, text=f"{head}\n{body}", truncated=cut, data=result.model_dump()
        )


class OneSpanArguments(ToolArguments):
    span_id: str = Field(
        description="a span id of this trace (a unique prefix will do)",
        json_schema_extra=identifies(Identifier.SPAN),
    )


class SearchSpan(Tool):
    name = "search_span"
    description = "Show one span: its service, pod, node, operation, timing and status."
    Arguments = OneSpanArguments

    def run(self, box: Toolbox, arguments: OneSpanArguments) -> Observation:
        span, problem = box.resolve_span(arguments.span_id)
        if span is None:
            return box.refuse(self.name, problem)
        text = (
            f"span {span['span_id']} parent {span['parent_id'] or '-'} service {span['service']} "
            f"pod {span['pod'] or '-'} node {span['node'] or '-'}\n{box.span_row(span)}"
        )
        detail = SpanDetail(span=span["span_id"], where=box.where(span))
        return Observation(tool=self.name, text=text, data=detail.model_dump())
