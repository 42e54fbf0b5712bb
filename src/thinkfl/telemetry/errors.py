"""Errors that name the file, the place in it and the fix."""

from __future__ import annotations

import re
from pathlib import Path

# Control characters (and the replacement character of undecodable bytes) in a message would
# garble a terminal: they are shown escaped. Messages are cut at this length.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
MAX_PROBLEM_CHARS = 300


def printable(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """`text` safe for one terminal line: control characters escaped, newlines as spaces, cut."""
    flat = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    flat = " ".join(flat.split("\n"))
    return flat if len(flat) <= limit else flat[:limit] + "…"


class TelemetryError(Exception):
    """Base of every telemetry error; its message is meant for the user as is."""


class IngestError(TelemetryError):
    """Bad input: says which file, which row or column, what was found and what was expected."""

    def __init__(self, path: Path | str, where: str, problem: str, fix: str) -> None:
        self.path = printable(str(path))
        self.where = printable(where)
        self.problem = printable(problem)
        self.fix = fix
        location = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{location}: {self.problem}. Fix: {fix}")


class StoreError(TelemetryError):
    """A store that is missing, incomplete or of another format version."""
