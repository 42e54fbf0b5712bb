"""The compact rendering of a tool's typed result, for a trained small model: only what decides
the next step (the strongest rows with their evidence, rounded numbers, no headers, no
padding), in a few tokens when there is nothing. The long text of the same result stays for
people (`localize` output, the report page, the trajectory's steps).

One result, two renderings: each renderer reads the tool's result model (the `data` of its
`Observation`), never the long text; a tool without a compact renderer, and a refused call,
keep their long text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from thinkfl.evidence import EvidenceItem
from thinkfl.evidence.model import short_number
from thinkfl.tools.base import ComponentScore, Observation
from thinkfl.tools.logs import LogFindings
from thinkfl.tools.metrics import MetricFindings
from thinkfl.tools.traces import SpanRow, TraceChildren


class CompactLimits(BaseModel):
    """How much a compact observation shows; each list is cut to its strongest rows."""

    span_rows: int = Field(4, ge=1, description="child spans of a search_traces result")
    scores: int = Field(3, ge=1, description="component scores at the top of a result")
    evidence_rows: int = Field(3, ge=1, description="evidence items (shifts, log changes)")
    sigma_rows: int = Field(2, ge=0, description="n-sigma metric rows after the evidence")
    log_patterns: int = Field(2, ge=0, description="warning/error log patterns")
    pattern_chars: int = Field(70, ge=10, description="characters of a log pattern shown")
    subject_chars: int = Field(40, ge=10, description="characters of a metric or log subject")


def number(value: float) -> str:
    """`short_number` without a trailing ".0": 0.042, 3.7, 19, 27.8, 4322."""
    return short_number(value).removesuffix(".0")


def _scores(scores: list[ComponentScore], limits: CompactLimits) -> str:
    shown = ", ".join(f"{s.name} {s.score:.1f}" for s in scores[: limits.scores])
    return f"scores: {shown}" if shown else "scores: none"


def _item(item: EvidenceItem, limits: CompactLimits) -> str:
    """kind entity subject now vs normal [unit] sSTRENGTH (a trailing + when capped)."""
    unit = f" {item.unit.strip()}" if item.unit.strip() else ""
    return (
        f"{item.kind.value} {item.entity} {item.subject[: limits.subject_chars]} "
        f"{number(item.observed)} vs {number(item.normal)}{unit} "
        f"s{item.strength:.1f}{'+' if item.capped else ''}"
    )


def _span(row: SpanRow) -> str:
    ratio = f" {number(row.duration_us / row.normal_us)}x" if row.normal_us else ""
    status = " ERROR" if row.status == "error" else ""
    where = row.name or row.service
    text = f"{row.handle or row.span_id} {where} {row.duration_us / 1000:.0f}ms{ratio}{status}"
    if row.here > 0:
        text += f" ev {row.here:.1f} {'+'.join(row.kinds)}"
    if row.below > row.here:
        text += f" below {row.below_at} {row.below:.1f} at {row.below_handle or row.below_span}"
    return text


def traces(data: dict[str, Any], limits: CompactLimits) -> str:
    result = TraceChildren.model_validate(data)
    service, parent = result.where.get("service", ""), result.parent_handle or result.parent
    if not result.rows:
        return f"{parent} {service}: leaf, no calls"
    lines = [f"{parent} {service} {result.parent_duration_us / 1000:.0f}ms calls:"]
    lines += [_span(row) for row in result.rows[: limits.span_rows]]
    if len(result.rows) > limits.span_rows:
        lines.append(f"+{len(result.rows) - limits.span_rows} more")
    return "\n".join(lines)


def metrics(data: dict[str, Any], limits: CompactLimits) -> str:
    result = MetricFindings.model_validate(data)
    lines = [_scores(result.scores, limits)]
    shown = result.evidence[: limits.evidence_rows]
    lines += [_item(item, limits) for item in shown]
    already = {(item.entity, item.subject) for item in shown}  # no series twice
    lines += [
        f"{entity} {metric[: limits.subject_chars]} {sigma:.1f}sigma"
        for entity, metric, sigma, _level in result.fluctuating
        if (entity, metric) not in already
    ][: limits.sigma_rows]
    if len(lines) == 1:
        lines.append("no metric shift")
    return "\n".join(lines)


def logs(data: dict[str, Any], limits: CompactLimits) -> str:
    result = LogFindings.model_validate(data)
    lines = [_scores(result.scores, limits)]
    lines += [_item(item, limits) for item in result.shifts[: limits.evidence_rows]]
    lines += [
        f"{severity.upper()} x{count} usual {number(usual)}: {pattern[: limits.pattern_chars]}"
        for severity, pattern, count, usual in result.patterns[: limits.log_patterns]
    ]
    if len(lines) == 1:
        lines.append("no log shift, no warning or error")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[dict[str, Any], CompactLimits], str]] = {
    "search_traces": traces,
    "search_fluctuating_metrics": metrics,
    "search_logs": logs,
}


def compact_text(observation: Observation, limits: CompactLimits | None = None) -> str:
    """The observation for a trained small model: its compact rendering where its tool has
    one and the call succeeded, else its long text."""
    render = RENDERERS.get(observation.tool)
    if render is None or not observation.ok or not observation.data:
        return observation.text
    return render(observation.data, limits or CompactLimits())
