"""The telemetry store: Parquet files in one directory, queried with DuckDB.

Layout of a store directory:
    manifest.json     what it holds (written last; a directory without it is no store)
    spans.parquet     sorted by parent_id, so `children(span)` reads one row group
    metrics.parquet   sorted by entity, metric, time
    logs.parquet      sorted by service, pod, time
    entities.parquet  services, pods, nodes with the pod→service and pod→node maps
    faults.json       the labels; cases.json the failure cases built from them

Writers build everything in a hidden sibling directory (`.NAME.tmp-PID-ID`) and rename it
into place, so a crash never leaves a half-written store. Replacing a store (`--force`) moves
the old one aside (`.NAME.old-PID-ID`) for the instant between two renames; `recover()` —
run by the next writer or reader of the same path — removes what a dead process left and,
should a crash have hit that instant, puts a complete store back at the path. Readers only
read Parquet files and may open a store from many threads or processes at once.

Rows are checked as the tables are finished: values no store may hold (non-finite metric
values, times outside 1970..2262, negative durations, a span id repeated with other content,
a fault listed twice) are left out and counted, with reasons, in the manifest.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic

from thinkfl.files import atomic_write_json
from thinkfl.telemetry.errors import StoreError, printable
from thinkfl.telemetry.model import (
    MAX_IDENTIFIER_CHARS,
    MAX_REJECTED_EXAMPLES,
    TABLE_SCHEMAS,
    Entity,
    FailureCase,
    Fault,
    Level,
    Manifest,
    RejectedRows,
    count_rejected,
)

_Record = TypeVar("_Record", bound=pydantic.BaseModel)
MANIFEST = "manifest.json"
FAULTS = "faults.json"
CASES = "cases.json"
BATCHES = "batches"  # a live store's received batches, one folder each (telemetry.live)
CALL_GRAPH = "call_graph.json"  # optional: [source, target, weight] edges an export declared
ROW_GROUP_ROWS = 32_768
FORMAT_VERSION = 1

# Sort order per table: what makes the tool queries fast (row-group pruning on min/max stats).
_SORT_KEYS = {
    "spans": "parent_id NULLS FIRST, start",
    "metrics": "entity, metric, time",
    "logs": "service, pod, time",
    "entities": "level, name",
}
# Exact duplicates (the same span in two overlapping export files) are removed on commit.
_DEDUPLICATE = {"spans": True, "metrics": True, "logs": False, "entities": True}
# The 64-bit-nanosecond range that every consumer of a timestamp can hold, from 1970 on.
EARLIEST_TIME = "1970-01-01"
LATEST_TIME = "2262-04-11"


def out_of_range(column: str) -> str:
    """The reason given for a row whose `column` time is missing or no store may hold."""
    return f"{column} missing or outside {EARLIEST_TIME}..{LATEST_TIME}"


def _impossible_rows(table: str, schema: pa.Schema) -> list[tuple[str, str]]:
    """(reason, SQL condition) marking rows a store may not hold (NULL counts as false)."""
    rules: list[tuple[str, str]] = []
    for field in schema:
        if pa.types.is_timestamp(field.type):
            rules.append(
                (
                    out_of_range(field.name),
                    f"{field.name} IS NULL OR NOT ({field.name} BETWEEN "
                    f"TIMESTAMPTZ '{EARLIEST_TIME}' AND TIMESTAMPTZ '{LATEST_TIME}')",
                )
            )
        elif not field.nullable:
            rules.append((f"{field.name} missing", f"{field.name} IS NULL"))
    rules += _VALUE_RULES.get(table, [])
    return rules


def _identifier_rule(columns: Sequence[str]) -> tuple[str, str]:
    """Identifiers too long, or holding control characters (NUL, newline): never stored."""
    condition = " OR ".join(
        f"length({c}) > {MAX_IDENTIFIER_CHARS} OR regexp_matches({c}, '[\\x00-\\x1f\\x7f]')"
        for c in columns
    )
    return (
        f"{'/'.join(columns)} over {MAX_IDENTIFIER_CHARS} characters or with control characters",
        condition,
    )


_VALUE_RULES: dict[str, list[tuple[str, str]]] = {
    "spans": [
        ("negative duration", "duration_us < 0"),
        ("empty trace_id or span_id", "trace_id = '' OR span_id = ''"),
        _identifier_rule(["trace_id", "span_id", "parent_id", "service", "pod", "node"]),
    ],
    "metrics": [
        ("non-finite value (NaN or infinity)", "NOT isfinite(value)"),
        _identifier_rule(["entity"]),
    ],
    "logs": [_identifier_rule(["service", "pod", "node", "trace_id", "span_id"])],
}
_IMPOSSIBLE = {
    name: _impossible_rows(name, schema)
    for name, schema in TABLE_SCHEMAS.items()
    if name != "entities"
}
# A key that names one row: a second row with the same key and other content is refused
# (the earliest, then longest, is kept).
_UNIQUE_KEY = {"spans": ("trace_id, span_id", "start, duration_us DESC, service, operation")}
MAX_EXAMPLES = MAX_REJECTED_EXAMPLES
MAX_NAME_BYTES = 255  # a file name's limit on Linux file systems

CRASH_ENV = "THINKFL_CRASH_AT"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def possible_rows(
    con: duckdb.DuckDBPyConnection, table: str, source: str
) -> tuple[str, list[RejectedRows]]:
    """SQL of the rows of `source` (a table expression) that a store may hold, and the
    others counted by reason with a few examples."""
    rules = _IMPOSSIBLE.get(table, [])
    if not rules:
        return f"SELECT * FROM {source}", []
    counts = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE coalesce({cond}, false))" for _r, cond in rules)
        + f" FROM {source}"
    ).fetchall()[0]
    rejected = []
    for (reason, cond), count in zip(rules, counts, strict=True):
        if count:
            sample = con.sql(f"SELECT * FROM {source} WHERE {cond} LIMIT {MAX_EXAMPLES}")
            examples = [
                json.dumps(row, default=str, ensure_ascii=False)[:200]
                for row in sample.to_arrow_table().to_pylist()
            ]
            rejected.append(
                RejectedRows(table=table, reason=reason, count=count, examples=examples)
            )
    kept = " AND ".join(f"NOT coalesce({cond}, false)" for _r, cond in rules)
    return f"SELECT * FROM {source} WHERE {kept}", rejected


def crash_point(name: str) -> None:
    """Fault injection for the crash tests: with THINKFL_CRASH_AT=name the process ends here
    at once, as a kill -9 would (no cleanup, no finally blocks)."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out: Path) -> list[tuple[str, int, Path]]:
    """(kind, pid, path) of the hidden folders dead writers of `out` left: 'tmp' or 'old'."""
    if not out.parent.is_dir():
        return []
    found = []
    for path in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        match = _LEFTOVER.match(path.name)
        if match and match["name"] == out.name and not _alive(int(match["pid"])):
            found.append((match["kind"], int(match["pid"]), path))
    return sorted(found)


def recover(out: Path) -> list[str]:
    """Clean up after a writer of `out` that died; returns what was done, for the log.

    A `--force` killed between moving the old store aside and renaming the new one in leaves
    no store at `out`: the new one is put there when it is complete (its manifest is written
    before the renames), else the old one comes back. Every other leftover is removed (a first
    ingest killed before its rename leaves no store, as if it had not run).
    """
    out = Path(out)
    done: list[str] = []
    leftovers = _leftovers(out)
    if not out.exists():
        for _kind, pid, retired in (item for item in leftovers if item[0] == "old"):
            new = [p for kind, q, p in leftovers if kind == "tmp" and q == pid]
            complete = [p for p in new if (p / MANIFEST).is_file()]
            chosen = complete[0] if complete else retired
            os.replace(chosen, out)
            done.append(f"restored the {'new' if complete else 'old'} store at {out}")
            break
    for _kind, _pid, path in leftovers:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name}, left by a crashed run")
    return done


def sql_literal(value: object) -> str:
    """A value (a path, a name) as a quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_nullable(True) for field in schema])


class StoreWriter:
    """Builds a store in a temporary directory; `publish()` renames it into place.

    Use as a context manager: leaving the block with an exception removes every trace of
    the unfinished store.
    """

    def __init__(self, out: Path, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.recovered = recover(self.out)
        if self.out.exists() and not overwrite:
            raise StoreError(
                f"{self.out}: already exists. Fix: choose another --out or pass --force"
            )
        if self.out.exists() and not (self.out / MANIFEST).is_file():
            raise StoreError(
                f"{self.out}: exists and is not a ThinkFL store; refusing to replace it. "
                "Fix: choose another --out"
            )
        self.path = self._sibling("tmp")
        self._refuse_unwritable_place()
        self._staging = self.path / "staging"
        self._parts: dict[str, int] = {name: 0 for name in TABLE_SCHEMAS}
        self._faults: list[Fault] = []
        self._call_edges: dict[tuple[str, str], float] = {}
        self._tables_finished = False
        self.rejected: list[RejectedRows] = []

    def _refuse_unwritable_place(self) -> None:
        """A clear error before any work for an --out that cannot be created."""
        for above in self.out.parents:
            if above.exists():
                if not above.is_dir():
                    raise StoreError(
                        f"{above}: is a file, so no store can be made below it. "
                        "Fix: choose another --out"
                    )
                break
        if len(self.path.name) > MAX_NAME_BYTES:
            raise StoreError(
                f"{self.out}: the name is {len(self.out.name)} characters; the store is built "
                f"beside it under a longer hidden name that must fit in {MAX_NAME_BYTES}. "
                "Fix: choose a shorter --out"
            )

    def _sibling(self, kind: str) -> Path:
        return self.out.parent / f".{self.out.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> StoreWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def add(self, table_name: str, table: pa.Table) -> None:
        """Stage rows for one table; they are checked against the canonical schema."""
        if self._tables_finished:
            raise StoreError("rows added after finish_tables()")
        schema = TABLE_SCHEMAS[table_name]
        missing = [name for name in schema.names if name not in table.column_names]
        if missing:
            raise StoreError(f"{table_name}: rows lack the column(s) {missing}")
        # Staged as nullable: a row missing a required value is counted as impossible when
        # the table is finished, not refused here with the whole batch.
        table = table.select(schema.names).cast(_nullable(schema))
        if table.num_rows == 0:
            return
        self._parts[table_name] += 1
        part = self._staging / f"{table_name}-{self._parts[table_name]:06d}.parquet"
        pq.write_table(table, part)
        crash_point("staged")

    def add_entities(self, entities: Iterable[Entity]) -> None:
        rows = [entity.model_dump(mode="json") for entity in entities]
        self.add("entities", pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["entities"]))

    def add_faults(self, faults: Iterable[Fault]) -> None:
        self._faults.extend(faults)

    def reject_row(self, table: str, reason: str, example: str) -> None:
        """Count a row an adapter could not even represent (e.g. a time past year 9999)."""
        self._count_rejected(table, reason, 1, [example])

    def _count_rejected(self, table: str, reason: str, count: int, examples: list[str]) -> None:
        count_rejected(self.rejected, table, reason, count, examples)

    def add_call_edges(self, edges: Iterable[tuple[str, str, float | None]]) -> None:
        """Service call-graph edges (caller, callee, weight) declared by an export."""
        for source, target, weight in edges:
            self._call_edges[(source, target)] = float(weight or 0.0)

    def call_graph_services(self) -> set[str]:
        return {name for edge in self._call_edges for name in edge}

    def finish_tables(self) -> dict[str, int]:
        """Sort, de-duplicate and write the final Parquet files; returns row counts."""
        counts: dict[str, int] = {}
        con = duckdb.connect()
        try:
            con.execute("SET preserve_insertion_order = false")
            for name, schema in TABLE_SCHEMAS.items():
                counts[name] = self._finish_table(con, name, schema)
        finally:
            con.close()
        shutil.rmtree(self._staging)
        faults = self._unique_faults()
        atomic_write_json(self.path / FAULTS, [f.model_dump(mode="json") for f in faults])
        if self._call_edges:
            edges = [[s, t, w] for (s, t), w in sorted(self._call_edges.items())]
            atomic_write_json(self.path / CALL_GRAPH, edges)
        counts["faults"] = len(faults)
        self._tables_finished = True
        crash_point("tables_finished")
        return counts

    def _unique_faults(self) -> list[Fault]:
        """The faults, each id once (the first listed); repeats are reported."""
        kept: dict[str, Fault] = {}
        repeats: list[str] = []
        for fault in self._faults:
            if fault.fault_id in kept:
                repeats.append(fault.fault_id)
            else:
                kept[fault.fault_id] = fault
        if repeats:
            self._count_rejected(
                "faults", "fault listed more than once (the first is kept)", len(repeats), repeats
            )
        return list(kept.values())

    def _valid_rows(self, con: duckdb.DuckDBPyConnection, name: str, source: str) -> str:
        """SQL of the rows of `source` that a store may hold; the others are counted."""
        kept, rejected = possible_rows(con, name, source)
        for item in rejected:
            self._count_rejected(item.table, item.reason, item.count, item.examples)
        return kept

    def _finish_table(self, con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> int:
        target = self.path / f"{name}.parquet"
        if name == "entities":
            return self._finish_entities(con, target)
        if self._parts[name] == 0:
            pq.write_table(schema.empty_table(), target)
            return 0
        source = f"read_parquet({sql_literal(self._staging / f'{name}-*.parquet')})"
        rows = self._valid_rows(con, name, source)
        if _DEDUPLICATE[name]:
            rows = f"SELECT DISTINCT * FROM ({rows})"
        if name in _UNIQUE_KEY:
            rows = self._one_row_per_key(con, name, rows)
        con.execute(
            f"COPY ({rows} ORDER BY {_SORT_KEYS[name]}) TO {sql_literal(target)} "
            f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, COMPRESSION zstd)"
        )
        return int(pq.ParquetFile(target).metadata.num_rows)

    def _one_row_per_key(self, con: duckdb.DuckDBPyConnection, name: str, rows: str) -> str:
        key, order = _UNIQUE_KEY[name]
        repeated = f"SELECT {key} FROM ({rows}) GROUP BY ALL HAVING count(*) > 1"
        extra = con.execute(
            f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM ({rows}) GROUP BY {key} "
            "HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if not extra:
            return rows
        sample = con.sql(
            f"SELECT * FROM ({rows}) WHERE ({key}) IN ({repeated}) ORDER BY {key}, {order} "
            f"LIMIT {MAX_EXAMPLES}"
        ).to_arrow_table()
        self._count_rejected(
            name,
            f"same ({key}) as another row with other content (the earliest is kept)",
            int(extra),
            [json.dumps(row, default=str, ensure_ascii=False) for row in sample.to_pylist()],
        )
        return f"SELECT * FROM ({rows}) QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1"

    def _finish_entities(self, con: duckdb.DuckDBPyConnection, target: Path) -> int:
        """Entities given by the adapter, completed with every name the data mentions.

        Runs after spans, metrics and logs are final. Where sources disagree on a pod's
        service or node, the adapter's explicit entity wins, then the smallest name.
        """
        final = {
            n: f"read_parquet({sql_literal(self.path / f'{n}.parquet')})"
            for n in ("spans", "logs", "metrics")
        }
        explicit = (
            f"SELECT *, 0 AS rank FROM read_parquet({sql_literal(self._staging / 'entities-*.parquet')})"
            if self._parts["entities"]
            else "SELECT NULL::VARCHAR AS level, NULL::VARCHAR AS name, NULL::VARCHAR AS service, "
            "NULL::VARCHAR AS node, 0 AS rank WHERE false"
        )
        con.execute(
            f"""COPY (
            WITH given AS ({explicit}),
            mentioned AS (
                SELECT * FROM given
                UNION ALL SELECT 'service', service, service, NULL, 0 FROM given
                    WHERE service IS NOT NULL GROUP BY ALL
                UNION ALL SELECT 'pod', pod, service, node, 1 FROM {final["spans"]}
                    WHERE pod IS NOT NULL GROUP BY ALL
                UNION ALL SELECT 'pod', pod, service, node, 1 FROM {final["logs"]}
                    WHERE pod IS NOT NULL GROUP BY ALL
                UNION ALL SELECT 'service', service, service, NULL, 1
                    FROM {final["spans"]} GROUP BY ALL
                UNION ALL SELECT 'service', service, service, NULL, 1
                    FROM {final["logs"]} GROUP BY ALL
                UNION ALL SELECT level, entity, CASE WHEN level = 'service' THEN entity END,
                    CASE WHEN level = 'node' THEN entity END, 2
                    FROM {final["metrics"]} GROUP BY ALL
                UNION ALL SELECT 'node', node, NULL, node, 1 FROM {final["spans"]}
                    WHERE node IS NOT NULL GROUP BY ALL
                UNION ALL SELECT 'node', node, NULL, node, 1 FROM {final["logs"]}
                    WHERE node IS NOT NULL GROUP BY ALL
            )
            SELECT level, name,
                   arg_min(service, rank) FILTER (WHERE service IS NOT NULL) AS service,
                   arg_min(node, rank) FILTER (WHERE node IS NOT NULL) AS node
            FROM mentioned WHERE name IS NOT NULL
            GROUP BY level, name ORDER BY {_SORT_KEYS["entities"]}
            ) TO {sql_literal(target)} (FORMAT parquet)"""
        )
        return int(pq.ParquetFile(target).metadata.num_rows)

    def write_cases(self, cases: Sequence[FailureCase]) -> None:
        atomic_write_json(self.path / CASES, [c.model_dump(mode="json") for c in cases])

    def publish(self, manifest: Manifest) -> Path:
        """Write the manifest and move the finished store to its place (atomic rename)."""
        if not self._tables_finished:
            self.finish_tables()
        manifest = manifest.model_copy(
            update={"rejected_rows": manifest.rejected_rows or self.rejected}
        )
        atomic_write_json(self.path / MANIFEST, manifest.model_dump(mode="json"))
        crash_point("manifest_written")
        if self.out.exists():
            retired = self._sibling("old")
            os.replace(self.out, retired)
            crash_point("old_moved_aside")
            os.replace(self.path, self.out)
            crash_point("new_in_place")
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.path, self.out)
        return self.out


def _read_manifest(file: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(file.read_bytes())
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        first = str(error).splitlines()
        reason = first[2].strip() if len(first) > 2 else (first[0] if first else "unreadable")
        raise StoreError(f"{file}: damaged ({reason}). Fix: ingest the store again") from None


def _check_parquet(file: Path, schema: pa.Schema, expected_rows: int | None) -> int:
    """A cheap footer read: a truncated or overwritten table file, one with other columns or
    types, or one whose row count is not the manifest's is named here, not met later by a
    tool. Returns the file's row count."""
    try:
        metadata = pq.read_metadata(file)
        found = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{file}: damaged ({error}). Fix: ingest the store again") from None
    problems = []
    for field in schema:
        index = found.get_field_index(field.name)
        if index < 0:
            problems.append(f"column '{field.name}' missing")
        elif not found.field(index).type.equals(field.type):
            problems.append(
                f"column '{field.name}' is {found.field(index).type}, expected {field.type}"
            )
    if problems:
        raise StoreError(
            f"{file}: damaged ({'; '.join(problems[:3])}). Fix: ingest the store again"
        )
    if expected_rows is not None and metadata.num_rows != expected_rows:
        raise StoreError(
            f"{file}: damaged ({metadata.num_rows:,} rows, the manifest says {expected_rows:,}). "
            "Fix: ingest the store again"
        )
    return int(metadata.num_rows)


def _table_sql(path: Path, name: str, live: bool) -> str:
    """A table of the store: its Parquet file, and in a live store every batch's file too
    (the glob is expanded at each query, so a batch renamed into place is seen at once)."""
    base = sql_literal((path / f"{name}.parquet").as_posix())
    if not live:
        return f"SELECT * FROM read_parquet({base})"
    if name != "entities":
        batches = sql_literal((path / BATCHES / "*" / f"{name}.parquet").as_posix())
        return f"SELECT * FROM read_parquet([{base}, {batches}])"
    received = {
        table: f"read_parquet({sql_literal((path / BATCHES / '*' / f'{table}.parquet').as_posix())})"
        for table in ("spans", "logs", "metrics")
    }
    return f"""SELECT level, name, min(service) AS service, min(node) AS node FROM (
        SELECT level, name, service, node FROM read_parquet({base})
        UNION ALL SELECT 'service', service, service, NULL FROM {received["spans"]}
        UNION ALL SELECT 'service', service, service, NULL FROM {received["logs"]}
        UNION ALL SELECT 'pod', pod, service, node FROM {received["spans"]} WHERE pod IS NOT NULL
        UNION ALL SELECT 'pod', pod, service, node FROM {received["logs"]} WHERE pod IS NOT NULL
        UNION ALL SELECT 'node', node, NULL, node FROM {received["spans"]} WHERE node IS NOT NULL
        UNION ALL SELECT 'node', node, NULL, node FROM {received["logs"]} WHERE node IS NOT NULL
        UNION ALL SELECT level, entity, CASE WHEN level = 'service' THEN entity END,
            CASE WHEN level = 'node' THEN entity END FROM {received["metrics"]}
    ) WHERE name IS NOT NULL GROUP BY level, name"""


class TelemetryStore:
    """Read access to a store. Safe to share between threads (one DuckDB cursor per thread)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._root = duckdb.connect()
        self.live = (path / BATCHES).is_dir()
        for name in TABLE_SCHEMAS:
            self._root.execute(f"CREATE VIEW {name} AS {_table_sql(path, name, self.live)}")
        self._local = threading.local()
        self._entities: dict[str, Entity] | None = None
        self._baselines: dict[tuple[str, str], float] | None = None
        self._replicas: dict[str, int] | None = None

    @classmethod
    def open(cls, path: Path | str) -> TelemetryStore:
        path = Path(path)
        if not (path / MANIFEST).is_file():
            recover(path)  # a crashed `--force` may have left the store beside its place
        if not path.is_dir():
            raise StoreError(f"{path}: no such store. Fix: create one with `thinkfl ingest`")
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise StoreError(
                f"{path}: not a ThinkFL store (no {MANIFEST}; an interrupted write leaves none). "
                "Fix: ingest again"
            )
        manifest = _read_manifest(manifest_file)
        if manifest.format_version != FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format {manifest.format_version}, this ThinkFL reads "
                f"{FORMAT_VERSION}. Fix: ingest again with this version"
            )
        missing = [n for n in TABLE_SCHEMAS if not (path / f"{n}.parquet").is_file()]
        if missing:
            raise StoreError(f"{path}: incomplete store, missing {missing}. Fix: ingest again")
        live = (path / BATCHES).is_dir()  # batches arrive beside the counted base tables
        for name, schema in TABLE_SCHEMAS.items():
            expected = None if live else manifest.counts.get(name)
            _check_parquet(path / f"{name}.parquet", schema, expected)
        labels = [FAULTS, CASES] if "cases" in manifest.counts and not live else []
        absent = [name for name in labels if not (path / name).is_file()]
        if absent:
            raise StoreError(
                f"{path}: damaged (missing {', '.join(absent)}; the manifest counts "
                f"{manifest.counts.get('cases', 0)} cases). Fix: ingest the store again"
            )
        return cls(path, manifest)

    def table_rows(self) -> dict[str, int]:
        """Rows of each table as the files hold them (Parquet metadata; batches included)."""
        counts = {}
        for name in TABLE_SCHEMAS:
            files = [self.path / f"{name}.parquet"]
            if self.live:
                files += sorted((self.path / BATCHES).glob(f"[!.]*/{name}.parquet"))
            counts[name] = sum(pq.read_metadata(f).num_rows for f in files if f.is_file())
        return counts

    @classmethod
    def open_unpublished(cls, path: Path) -> TelemetryStore:
        """Read a store that a StoreWriter has finished but not yet published (no manifest)."""
        return cls(Path(path), Manifest(source_format="unpublished", source=str(path)))

    def data_version(self) -> str:
        """Changes whenever the data does: '' for a published store (immutable), the newest
        batch's name for a live one (derived files are keyed by it)."""
        if not self.live:
            return ""
        names = [p.name for p in (self.path / BATCHES).iterdir() if not p.name.startswith(".")]
        return max(names, default="")

    def time_range(self) -> tuple[datetime, datetime] | None:
        """First and last timestamp of any span, metric sample or log record."""
        # fetchall: a fetchone() would leave the cursor's result unfinished (DuckDB 2)
        low, high = self.con.sql(
            "SELECT min(t0), max(t1) FROM ("
            "SELECT min(start) t0, max(start) t1 FROM spans UNION ALL "
            "SELECT min(time), max(time) FROM metrics UNION ALL "
            "SELECT min(time), max(time) FROM logs)"
        ).fetchall()[0]
        return (low, high) if low is not None else None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's DuckDB cursor over the store's views."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._root.cursor()
            self._local.cursor = cursor
        return cursor

    def query(self, sql: str, params: Sequence[object] | None = None) -> pa.Table:
        """Run SQL over the views `spans`, `metrics`, `logs`, `entities`; returns Arrow."""
        return self.con.sql(sql, params=list(params or [])).to_arrow_table()

    # --- the fast paths the tools use -------------------------------------------------
    def span(self, span_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM spans WHERE span_id = ? LIMIT 1", [span_id]).to_pylist()
        return rows[0] if rows else None

    def children(self, span_id: str) -> pa.Table:
        """Direct child spans of a span, in start order."""
        return self.query("SELECT * FROM spans WHERE parent_id = ? ORDER BY start", [span_id])

    def trace(self, trace_id: str) -> pa.Table:
        return self.query("SELECT * FROM spans WHERE trace_id = ? ORDER BY start", [trace_id])

    def metrics(self, entities: str | Sequence[str], start: datetime, end: datetime) -> pa.Table:
        """Metric samples of one or more entities (exact names) with start <= time <= end."""
        names = [entities] if isinstance(entities, str) else list(entities)
        return self.query(
            "SELECT * FROM metrics WHERE entity IN (SELECT unnest(?)) AND time BETWEEN ? AND ? "
            "ORDER BY entity, metric, time",
            [names, start, end],
        )

    def logs(
        self,
        entity: str,
        level: Level,
        start: datetime,
        end: datetime,
        severities: Sequence[str] | None = None,
    ) -> pa.Table:
        """Log records of a service, a pod or a node (exact name) in a time window, of the
        given severities (all when None)."""
        column = {Level.SERVICE: "service", Level.POD: "pod", Level.NODE: "node"}[Level(level)]
        if severities is None:
            return self.query(
                f"SELECT * FROM logs WHERE {column} = ? AND time BETWEEN ? AND ? ORDER BY time",
                [entity, start, end],
            )
        return self.query(
            f"SELECT * FROM logs WHERE {column} = ? AND time BETWEEN ? AND ? "
            "AND severity IN (SELECT unnest(?)) ORDER BY time",
            [entity, start, end, list(severities)],
        )

    def entry_spans(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Entry (root) spans, optionally within a window."""
        sql = "SELECT * FROM spans WHERE parent_id IS NULL"
        params: list[object] = []
        if start is not None and end is not None:
            sql += " AND start BETWEEN ? AND ?"
            params = [start, end]
        return self.query(sql + " ORDER BY start", params)

    def operation_baselines(self) -> dict[tuple[str, str], float]:
        """Median duration (µs) of every (service, operation) over the whole store, computed once.

        Faults are rare against the whole store, so the median is a fair "normal"; tools show
        each span's duration against it.
        """
        if self._baselines is None:
            rows = self.con.execute(
                "SELECT service, operation, median(duration_us) FROM spans GROUP BY ALL"
            ).fetchall()
            self._baselines = {(service, op): float(m) for service, op, m in rows}
        return self._baselines

    # --- small records ----------------------------------------------------------------
    def entities(self) -> dict[str, Entity]:
        """Every known entity by name."""
        if self._entities is None:
            rows = self.query("SELECT * FROM entities").to_pylist()
            self._entities = {row["name"]: Entity.model_validate(row) for row in rows}
        return self._entities

    def replicas(self) -> dict[str, int]:
        """Pods per service, counted once."""
        if self._replicas is None:
            counts: dict[str, int] = {}
            for entity in self.entities().values():
                if entity.level == Level.POD and entity.service:
                    counts[entity.service] = counts.get(entity.service, 0) + 1
            self._replicas = counts
        return self._replicas

    def place(self, service: str, pod: str | None) -> tuple[str, str]:
        """How a component is named to users and rankings: the pod when its service has
        several pods, else the service. (level, name)."""
        if pod and self.replicas().get(service, 0) > 1:
            return Level.POD.value, pod
        return Level.SERVICE.value, service

    def faults(self) -> list[Fault]:
        return self._read_records(FAULTS, Fault)

    def cases(self) -> list[FailureCase]:
        return self._read_records(CASES, FailureCase)

    def _read_records(self, name: str, model: type[_Record]) -> list[_Record]:
        """The records of a JSON list file; one that does not validate names its place."""
        records = []
        for index, item in enumerate(self._read_json(name)):
            try:
                records.append(model.model_validate(item))
            except pydantic.ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "value"
                raise StoreError(
                    f"{self.path / name}: [{index}].{where}: {printable(first['msg'], 160)}. "
                    "Fix: correct that entry or ingest the store again"
                ) from None
        return records

    def case(self, case_id: str) -> FailureCase:
        for case in self.cases():
            if case.case_id == case_id:
                return case
        known = ", ".join(c.case_id for c in self.cases()[:10])
        raise StoreError(f"{self.path}: no case '{case_id}'. Known cases include: {known}")

    def call_graph(self) -> list[tuple[str, str, float]]:
        """The service call graph the export declared (caller, callee, weight); [] if none."""
        return [(str(s), str(t), float(w)) for s, t, w in self._read_json(CALL_GRAPH)]

    def save_cases(self, cases: Sequence[FailureCase]) -> None:
        atomic_write_json(self.path / CASES, [c.model_dump(mode="json") for c in cases])

    def _read_json(self, name: str) -> list[Any]:
        file = self.path / name
        if not file.is_file():
            return []
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StoreError(f"{file}: damaged ({error}). Fix: ingest the store again") from None
        if not isinstance(loaded, list):
            raise StoreError(f"{file}: damaged (not a JSON list). Fix: ingest the store again")
        return loaded

    def close(self) -> None:
        self._root.close()
