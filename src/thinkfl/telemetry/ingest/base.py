"""What every ingest adapter shares: the context it writes into and the SQL helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from thinkfl.telemetry.errors import IngestError
from thinkfl.telemetry.ingest.csvread import EPOCH_DIGITS_MAX, BadRowBudget, read_csv_checked
from thinkfl.telemetry.model import Fault, GroundTruth, Level, service_of_pod
from thinkfl.telemetry.store import StoreWriter


@dataclass
class IngestContext:
    """Where an adapter puts rows, how many bad rows it may skip, and how it reports progress.

    One DuckDB connection serves the whole ingest: opening one costs ~15 ms, which adds up
    over hundreds of files.
    """

    writer: StoreWriter
    budget: BadRowBudget = field(default_factory=BadRowBudget)
    advance: Callable[[str], None] = lambda _description: None
    con: duckdb.DuckDBPyConnection = field(default_factory=duckdb.connect)
    skipped_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def transform(self, sql: str, **tables: pa.Table) -> pa.Table:
        """Run DuckDB SQL over Arrow tables given by name; returns Arrow."""
        try:
            for name, table in tables.items():
                self.con.register(name, table)
            return self.con.sql(sql).to_arrow_table()
        finally:
            for name in tables:
                self.con.unregister(name)

    def check_epoch_column(self, file: Path, raw: pa.Table, column: str, unit: str) -> None:
        """Refuse a file whose `column` (epoch in `unit`) reads as before 2000 or after
        tomorrow, naming the unit its values look like (seconds written for nanoseconds)."""
        low, high = (
            self.transform(
                f"SELECT min({column}) AS low, max({column}) AS high FROM raw WHERE {column} > 0",
                raw=raw,
            )
            .to_pylist()[0]
            .values()
        )
        for value in (low, high):
            found = None if value is None else implausible_time(int(value), unit)
            if found:
                raise IngestError(file, f"column '{column}'", f"{value} {found[0]}", found[1])

    def read_csv(
        self,
        path: Path,
        required: Mapping[str, str],
        optional: Mapping[str, str] | None = None,
        what: str = "this layout",
    ) -> pa.Table:
        """`read_csv_checked` on this ingest's connection and bad-row budget."""
        return read_csv_checked(path, required, self.budget, optional, what, con=self.con)


# Telemetry of a system someone investigates today: times before this, or later than now plus
# the slack, are a unit mistake (seconds given for nanoseconds), refused with the unit named.
PLAUSIBLE_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
EPOCH_UNITS = {"seconds": 10**9, "milliseconds": 10**6, "microseconds": 10**3, "nanoseconds": 1}


class ImplausibleTime(ValueError):
    """An epoch value that reads as a time before 2000 or after tomorrow in its unit."""

    def __init__(self, field: str, value: int, unit: str) -> None:
        self.field, self.value = field, value
        self.problem, self.fix = implausible_time(value, unit) or ("negative", f"write {unit}")
        super().__init__(f"'{field}' {value}: {self.problem}. Fix: {self.fix}")


def _as_datetime(nanos: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(nanos / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def implausible_time(value: int, unit: str) -> tuple[str, str] | None:
    """None when `value` (epoch, in `unit`: a key of EPOCH_UNITS) is a plausible time; else
    (problem, fix), the fix naming the unit the value looks like.

    >>> implausible_time(1674981780, "nanoseconds")[1]
    'write nanoseconds since the epoch; the value looks like seconds (multiply by 1000000000)'
    """
    latest = datetime.now(UTC) + FUTURE_SLACK

    def plausible(when: datetime | None) -> bool:
        return when is not None and PLAUSIBLE_SINCE <= when <= latest

    when = _as_datetime(value * EPOCH_UNITS[unit])
    if plausible(when):
        return None
    digits = len(str(abs(value)))
    if when is None and digits > EPOCH_DIGITS_MAX:
        problem = (
            f"a {digits}-digit number, too long for any epoch time (seconds have 10 digits, "
            "ms 13, µs 16, ns 19)"
        )
    elif when is None:
        problem = (
            "reads as before the year 1, before 2000"
            if value < 0
            else ("reads as after the year 9999, after tomorrow")
        )
    else:
        side = "before 2000" if when < PLAUSIBLE_SINCE else "after tomorrow"
        problem = f"reads as {when:%Y-%m-%dT%H:%M:%SZ}, {side}"
    for guess, factor in EPOCH_UNITS.items():
        if guess != unit and plausible(_as_datetime(value * factor)):
            ratio = factor / EPOCH_UNITS[unit]
            scale = f"multiply by {ratio:.0f}" if ratio >= 1 else f"divide by {1 / ratio:.0f}"
            return problem, f"write {unit} since the epoch; the value looks like {guess} ({scale})"
    return problem, f"write {unit} since the epoch (UTC)"


class Adapter(Protocol):
    """An ingest format: lists its input files (for the progress bar), then loads them."""

    name: str
    description: str

    def files(self, src: Path) -> list[Path]: ...

    def load(self, src: Path, ctx: IngestContext) -> None: ...


def require_files(src: Path, pattern: str, what: str, fix: str) -> list[Path]:
    """Files under `src` matching a glob, sorted; fails clearly when there are none."""
    if not src.exists():
        raise IngestError(src, "", "no such file or directory", "check the path")
    found = sorted(p for p in src.glob(pattern) if p.is_file())
    if not found:
        raise IngestError(src, "", f"no {what} found (looked for {pattern})", fix)
    return found


# Epoch µs of 2262-04-11, where 64-bit nanosecond clocks end.
LATEST_EPOCH_US = 9_223_286_400_000_000


def timestamp_sql(epoch_us: str) -> str:
    """SQL of a timestamp from an epoch-µs expression; negative or too large values (and the
    arithmetic that would overflow on them) give NULL, which the store counts as an
    impossible time instead of failing the ingest."""
    value = f"TRY_CAST(({epoch_us}) AS DOUBLE)"
    return (
        f"make_timestamp(CASE WHEN {value} >= 0 AND {value} < {LATEST_EPOCH_US} "
        f"THEN CAST({value} AS BIGINT) END)"
    )


def severity_sql(word_expression: str) -> str:
    """SQL mapping a severity word (`ERROR`, `warning`, `I`...) to a canonical Severity value."""
    word = f"upper(trim(coalesce({word_expression}, '')))"
    return f"""CASE
        WHEN {word} IN ('FATAL', 'CRITICAL', 'CRIT', 'PANIC', 'EMERG', 'ALERT', 'F') THEN 'fatal'
        WHEN {word} IN ('ERROR', 'ERR', 'SEVERE', 'E') THEN 'error'
        WHEN {word} IN ('WARN', 'WARNING', 'W') THEN 'warn'
        WHEN {word} IN ('INFO', 'NOTICE', 'INFORMATION', 'I') THEN 'info'
        WHEN {word} IN ('DEBUG', 'TRACE', 'FINE', 'D') THEN 'debug'
        ELSE 'unknown' END"""


def labelled_fault(
    prefix: str,
    file: Path,
    line: int,
    time: datetime,
    level: str | None,
    entity: str | None,
    fault_type: str | None,
) -> Fault:
    """A Fault from one label row (service, pod or node), with the culprit's service derived."""
    level_name = (level or "").strip().lower()
    if level_name not in {lv.value for lv in Level}:
        raise IngestError(
            file,
            f"line {line}, column 'level'",
            f"unknown level {level!r}",
            "use service, pod or node",
        )
    name = (entity or "").strip()
    if not name:
        raise IngestError(file, f"line {line}", "the label names no entity", "fill it in")
    as_level = Level(level_name)
    service = {Level.SERVICE: name, Level.POD: service_of_pod(name), Level.NODE: None}[as_level]
    return Fault(
        fault_id=f"{prefix}-{time:%Y%m%d-%H%M%S}-{name}",
        time=time,
        truth=GroundTruth(
            level=as_level,
            entity=name,
            fault_type=fault_type or "",
            service=service,
            pod=name if as_level == Level.POD else None,
        ),
    )
