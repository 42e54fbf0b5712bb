"""The telemetry store: Parquet files in one directory, queried with DuckDB.

Layout of a store directory:
    manifest.json     what it holds (written last; a directory without it is no store)
    spans.parquet     sorted by parent_id, so `children(span)` reads one row group
    metrics.parquet   sorted by entity, metric, time
    logs.parquet      sorted by service, pod, time
    entities.parquet  services, pods, nodes with the pod→service and pod→node maps
    faults.json       the labels; cases.json the failure cases built from them

Writers build everything in a hidden sibling directory and rename it into place, so a
crash never leaves a half-written store. Readers only read Parquet files and may open a
store from many threads or processes at once.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from thinkfl.telemetry.errors import StoreError
from thinkfl.telemetry.model import (
    TABLE_SCHEMAS,
    Entity,
    FailureCase,
    Fault,
    Level,
    Manifest,
)

MANIFEST = "manifest.json"
FAULTS = "faults.json"
CASES = "cases.json"
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


def sql_literal(value: object) -> str:
    """A value (a path, a name) as a quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON next to `path` and rename it over, so readers never see half a file."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    os.replace(temporary, path)


class StoreWriter:
    """Builds a store in a temporary directory; `publish()` renames it into place.

    Use as a context manager: leaving the block with an exception removes every trace of
    the unfinished store.
    """

    def __init__(self, out: Path, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        if self.out.exists() and not overwrite:
            raise StoreError(
                f"{self.out}: already exists. Fix: choose another --out or pass --force"
            )
        if self.out.exists() and not (self.out / MANIFEST).is_file():
            raise StoreError(
                f"{self.out}: exists and is not a ThinkFL store; refusing to replace it. "
                "Fix: choose another --out"
            )
        self.path = self.out.parent / f".{self.out.name}.tmp-{uuid.uuid4().hex[:8]}"
        self._staging = self.path / "staging"
        self._parts: dict[str, int] = {name: 0 for name in TABLE_SCHEMAS}
        self._faults: list[Fault] = []
        self._tables_finished = False

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
        table = table.select(schema.names).cast(schema)
        if table.num_rows == 0:
            return
        self._parts[table_name] += 1
        part = self._staging / f"{table_name}-{self._parts[table_name]:06d}.parquet"
        pq.write_table(table, part)

    def add_entities(self, entities: Iterable[Entity]) -> None:
        rows = [entity.model_dump(mode="json") for entity in entities]
        self.add("entities", pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["entities"]))

    def add_faults(self, faults: Iterable[Fault]) -> None:
        self._faults.extend(faults)

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
        write_json_atomic(self.path / FAULTS, [f.model_dump(mode="json") for f in self._faults])
        counts["faults"] = len(self._faults)
        self._tables_finished = True
        return counts

    def _finish_table(self, con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> int:
        target = self.path / f"{name}.parquet"
        if name == "entities":
            return self._finish_entities(con, target)
        if self._parts[name] == 0:
            pq.write_table(schema.empty_table(), target)
            return 0
        source = f"read_parquet({sql_literal(self._staging / f'{name}-*.parquet')})"
        select = "SELECT DISTINCT *" if _DEDUPLICATE[name] else "SELECT *"
        con.execute(
            f"COPY ({select} FROM {source} ORDER BY {_SORT_KEYS[name]}) TO {sql_literal(target)} "
            f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, COMPRESSION zstd)"
        )
        return pq.ParquetFile(target).metadata.num_rows

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
        return pq.ParquetFile(target).metadata.num_rows

    def write_cases(self, cases: Sequence[FailureCase]) -> None:
        write_json_atomic(self.path / CASES, [c.model_dump(mode="json") for c in cases])

    def publish(self, manifest: Manifest) -> Path:
        """Write the manifest and move the finished store to its place (atomic rename)."""
        if not self._tables_finished:
            self.finish_tables()
        write_json_atomic(self.path / MANIFEST, manifest.model_dump(mode="json"))
        if self.out.exists():
            retired = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, retired)
            os.replace(self.path, self.out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.path, self.out)
        return self.out


class TelemetryStore:
    """Read access to a store. Safe to share between threads (one DuckDB cursor per thread)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._root = duckdb.connect()
        for name in TABLE_SCHEMAS:
            file = sql_literal((path / f"{name}.parquet").as_posix())
            self._root.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({file})")
        self._local = threading.local()
        self._entities: dict[str, Entity] | None = None
        self._baselines: dict[tuple[str, str], float] | None = None
        self._replicas: dict[str, int] | None = None

    @classmethod
    def open(cls, path: Path | str) -> TelemetryStore:
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"{path}: no such store. Fix: create one with `thinkfl ingest`")
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise StoreError(
                f"{path}: not a ThinkFL store (no {MANIFEST}; an interrupted write leaves none). "
                "Fix: ingest again"
            )
        manifest = Manifest.model_validate_json(manifest_file.read_text(encoding="utf-8"))
        if manifest.format_version != FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format {manifest.format_version}, this ThinkFL reads "
                f"{FORMAT_VERSION}. Fix: ingest again with this version"
            )
        missing = [n for n in TABLE_SCHEMAS if not (path / f"{n}.parquet").is_file()]
        if missing:
            raise StoreError(f"{path}: incomplete store, missing {missing}. Fix: ingest again")
        return cls(path, manifest)

    @classmethod
    def open_unpublished(cls, path: Path) -> TelemetryStore:
        """Read a store that a StoreWriter has finished but not yet published (no manifest)."""
        return cls(Path(path), Manifest(source_format="unpublished", source=str(path)))

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
    def span(self, span_id: str) -> dict | None:
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
        return [Fault.model_validate(item) for item in self._read_json(FAULTS)]

    def cases(self) -> list[FailureCase]:
        return [FailureCase.model_validate(item) for item in self._read_json(CASES)]

    def case(self, case_id: str) -> FailureCase:
        for case in self.cases():
            if case.case_id == case_id:
                return case
        known = ", ".join(c.case_id for c in self.cases()[:10])
        raise StoreError(f"{self.path}: no case '{case_id}'. Known cases include: {known}")

    def save_cases(self, cases: Sequence[FailureCase]) -> None:
        write_json_atomic(self.path / CASES, [c.model_dump(mode="json") for c in cases])

    def _read_json(self, name: str) -> list:
        file = self.path / name
        if not file.is_file():
            return []
        return json.loads(file.read_text(encoding="utf-8"))

    def close(self) -> None:
        self._root.close()
