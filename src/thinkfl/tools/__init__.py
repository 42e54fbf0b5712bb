"""The agent's tools over a telemetry store: exact semantics, compact bounded text.

Each tool is declared once (`thinkfl.tools.registry.TOOLS`: name, argument model, typed
result); `Toolbox(store, case).call(name, arguments)` always returns an `Observation`, never
raises for bad arguments: an unknown span, entity or timestamp yields an observation that
says what is valid. Semantics: docs/tools.md.
"""

from thinkfl.tools.base import Observation, Tool, ToolLimits, ToolSpec, log_pattern, parse_timestamp
from thinkfl.tools.registry import TOOL_SPECS, TOOLS
from thinkfl.tools.toolbox import Toolbox

__all__ = [
    "TOOLS",
    "TOOL_SPECS",
    "Observation",
    "Tool",
    "ToolLimits",
    "ToolSpec",
    "Toolbox",
    "log_pattern",
    "parse_timestamp",
]
