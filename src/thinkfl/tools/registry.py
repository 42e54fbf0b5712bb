"""The one registry of tools: it drives the prompt's tool list, the grader's format check
and the dispatch of `Toolbox.call`. Order is the order the prompt shows."""

from __future__ import annotations

from thinkfl.tools.answer import PrintResults
from thinkfl.tools.base import Tool, ToolSpec
from thinkfl.tools.logs import SearchLogs
from thinkfl.tools.metrics import SearchFluctuatingMetrics
from thinkfl.tools.traces import SearchSpan, SearchTraces

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        SearchTraces(),
        SearchSpan(),
        SearchFluctuatingMetrics(),
        SearchLogs(),
        PrintResults(),
    )
}
TOOL_SPECS: list[ToolSpec] = [tool.spec() for tool in TOOLS.values()]
# generated once: Toolbox.call checks required arguments against these
SPECS: dict[str, ToolSpec] = {spec.name: spec for spec in TOOL_SPECS}
