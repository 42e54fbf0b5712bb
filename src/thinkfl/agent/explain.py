"""Why an answer: the observation lines behind a candidate, most telling first. Shared by
the command line's answer table and the report page."""

from __future__ import annotations

from thinkfl.agent.trajectory import Trajectory
from thinkfl.evidence import EvidenceKind

EVIDENCE_ROWS = ("RISE", "DROP", "SATURATED", "SHIFT", *(kind.value for kind in EvidenceKind))


def _telling(line: str, name: str) -> int:
    """How directly an observation line speaks of `name` (lower is better): an evidence item
    about it, a trace row of it with evidence flags, a row about it, a line naming it."""
    words = line.split()
    if len(words) > 1 and words[0] in EVIDENCE_ROWS and words[1] == name:
        return 0
    if len(words) > 1 and words[1] == name and "| evidence" in line:
        return 1
    if name in words[:2]:
        return 2
    return 3


def evidence_lines(trajectory: Trajectory, name: str, limit: int = 2) -> list[str]:
    """Up to `limit` observation lines that mention a candidate, most telling first."""
    lines = [
        line.strip()
        for step in trajectory.steps
        if step.tool != "print_results"
        for line in step.observation.splitlines()[1:]
        if name in line and not line.lstrip().startswith("evidence score:")
    ]
    lines.sort(key=lambda line: _telling(line, name))  # stable: first seen first within a tier
    return lines[:limit]
