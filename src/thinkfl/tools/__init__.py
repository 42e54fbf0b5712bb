"""The agent's tools over a telemetry store: exact semantics, compact bounded text.

`Toolbox(store, case).call(name, arguments)` always returns an `Observation`, never raises
for bad arguments: an unknown span, entity or timestamp yields an observation that says
what is valid. Semantics: docs/tools.md.
"""

from thinkfl.tools.toolbox import TOOL_SPECS, Observation, Toolbox, ToolLimits, ToolSpec

__all__ = ["TOOL_SPECS", "Observation", "ToolLimits", "ToolSpec", "Toolbox"]
