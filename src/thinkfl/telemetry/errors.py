"""Errors that name the file, the place in it and the fix."""

from __future__ import annotations

from pathlib import Path


class TelemetryError(Exception):
    """Base of every telemetry error; its message is meant for the user as is."""


class IngestError(TelemetryError):
    """Bad input: says which file, which row or column, what was found and what was expected."""

    def __init__(self, path: Path | str, where: str, problem: str, fix: str) -> None:
        self.path = str(path)
        self.where = where
        self.problem = problem
        self.fix = fix
        location = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{location}: {problem}. Fix: {fix}")


class StoreError(TelemetryError):
    """A store that is missing, incomplete or of another format version."""
