"""Checked CSV reading on DuckDB: required columns, typed values, malformed rows accounted for.

Real telemetry exports contain the odd spliced or half-written row (the Nezha day has two in
one log file). Such a row in the middle of a file is skipped and reported (file:line) up to
a limit; a row that cannot be cast to its column's type, a missing column, an empty file, or a
file that ends in the middle of a row (truncated) fails the ingest with a message that names
the file, the line or column and the fix.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from thinkfl.telemetry.errors import IngestError

INTEGER_TYPES = {"BIGINT", "INTEGER", "UBIGINT", "HUGEINT"}
_STRUCTURAL_ERRORS = {"UNQUOTED VALUE", "TOO MANY COLUMNS", "MISSING COLUMNS", "INVALID STATE"}
# The longest row read (bytes). Real exports carry multi-megabyte log lines (stack traces,
# dumped payloads); a longer row is reported as malformed, never dropped silently.
MAX_ROW_BYTES = 64 * 1024 * 1024


@dataclass
class BadRowBudget:
    """Malformed rows skipped so far across an ingest, and how many are tolerated."""

    limit: int = 100
    skipped: list[str] = field(default_factory=list)

    def skip(self, path: Path, line: int, reason: str) -> None:
        self.skipped.append(f"{path}:{line}: {reason}")
        if len(self.skipped) > self.limit:
            raise IngestError(
                path,
                f"line {line}",
                f"more than {self.limit} malformed rows in this ingest ({reason})",
                "repair the export, or raise the limit with --max-bad-rows if losing "
                "these rows is acceptable",
            )


BYTE_ORDER_MARK = "\ufeff"


def read_header(path: Path) -> list[str]:
    """The header row of a CSV file; fails clearly for a missing or empty file."""
    if not path.is_file():
        raise IngestError(path, "", "file not found", "check the path")
    csv.field_size_limit(MAX_ROW_BYTES)
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        try:
            header = next(csv.reader(handle), None)
        except csv.Error as error:
            raise IngestError(
                path, "line 1", f"unreadable header ({error})", "re-export it"
            ) from None
    if not header:
        raise IngestError(path, "line 1", "the file is empty (no header row)", "re-export it")
    if header[0].startswith(BYTE_ORDER_MARK):
        raise IngestError(
            path,
            "line 1",
            "the header starts with a UTF-8 byte-order mark (BOM, bytes EF BB BF), which "
            f"would become part of the column name {header[0].lstrip(BYTE_ORDER_MARK)!r}",
            "save the file as UTF-8 without a BOM (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)",
        )
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise IngestError(
            path,
            "header",
            f"column name(s) {', '.join(map(repr, repeated))} appear more than once",
            "give every column its own name",
        )
    return names


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        data = handle.read()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def read_csv_checked(
    path: Path,
    required: Mapping[str, str],
    budget: BadRowBudget,
    optional: Mapping[str, str] | None = None,
    what: str = "this layout",
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Read the named columns of a CSV file with DuckDB, typed as given (DuckDB type names).

    Returns only the required and present optional columns, in that order.
    """
    header = read_header(path)
    missing = [name for name in required if name not in header]
    if missing:
        raise IngestError(
            path,
            "header",
            f"missing column(s) {', '.join(missing)} (found: {', '.join(header)})",
            f"{what} needs the columns {', '.join(required)}",
        )
    types = dict(required)
    types.update({k: v for k, v in (optional or {}).items() if k in header})
    # Every column is declared (unused ones as text), so DuckDB does not sniff: its sniffer
    # gives up on files with a malformed row instead of rejecting that row.
    declared = {name: types.get(name, "VARCHAR") for name in header}
    columns_sql = (
        "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in declared.items()) + "}"
    )
    selected = ", ".join('"' + name.replace('"', '""') + '"' for name in types)
    own = con is None
    con = duckdb.connect() if con is None else con
    try:
        con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")
        table = con.sql(
            f"SELECT {selected} FROM read_csv({_sql_string(str(path))}, header = true, "
            f"auto_detect = false, delim = ',', quote = '\"', escape = '\"', columns = {columns_sql}, "
            f"max_line_size = {MAX_ROW_BYTES}, store_rejects = true)"
        ).to_arrow_table()
        rejects = con.execute(
            "SELECT line, any_value(column_name), list(DISTINCT error_type::VARCHAR), "
            "any_value(error_message) FROM reject_errors GROUP BY line ORDER BY line"
        ).fetchall()
    except duckdb.Error as error:
        raise IngestError(path, "", f"not readable as CSV ({error})", "check the file") from error
    finally:
        if own:
            con.close()
    if rejects:
        _account_rejects(path, rejects, types, budget)
    return table


# An epoch time has 10 digits in seconds, 13 in ms, 16 in µs, 19 in ns (this century).
EPOCH_DIGITS_MAX = 19
_UNCONVERTIBLE = re.compile(r'Could not convert string "([^"]*)"')


def _cast_error(
    path: Path, line: int, column: str, column_type: str | None, message: str
) -> IngestError:
    """A value that does not fit its column's type, with the number-too-long case named."""
    value = _UNCONVERTIBLE.search(message)
    digits = value.group(1).strip().lstrip("-") if value else ""
    if column_type in INTEGER_TYPES and digits.isdigit() and len(digits) > EPOCH_DIGITS_MAX:
        return IngestError(
            path,
            f"line {line}, column '{column}'",
            f"a {len(digits)}-digit number, too long for any epoch time (seconds have 10 "
            "digits, ms 13, µs 16, ns 19) and for a 64-bit integer",
            f"write '{column}' as an epoch time in the unit this layout documents",
        )
    return IngestError(
        path,
        f"line {line}, column '{column}'",
        f"value is not a valid {column_type or 'value'} ({message})",
        f"write '{column}' as {column_type or 'the documented type'} on every row",
    )


def _account_rejects(
    path: Path, rejects: list[tuple[Any, ...]], types: Mapping[str, str], budget: BadRowBudget
) -> None:
    last_line = _count_lines(path)
    for line, column, error_types, message in rejects:
        if "LINE SIZE OVER MAXIMUM" in error_types:
            budget.skip(path, line, f"row longer than {MAX_ROW_BYTES // 2**20} MB")
            continue
        structural = set(error_types) & _STRUCTURAL_ERRORS
        # A bad value in a well-formed row is a data error; in a spliced row it is noise.
        if "CAST" in error_types and not structural:
            raise _cast_error(path, line, column, types.get(column), message)
        if line >= last_line:
            raise IngestError(
                path,
                f"line {line}",
                "the file ends in the middle of a row (truncated?)",
                "re-copy or re-export the file completely",
            )
        if not structural:
            raise IngestError(path, f"line {line}", message, "repair the row")
        budget.skip(path, line, "/".join(sorted(structural)).lower())
