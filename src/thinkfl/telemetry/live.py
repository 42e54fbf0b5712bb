"""A live store: telemetry received while `thinkfl serve` runs, appended in batches.

    STORE/batches/<sequence>-<id>/spans.parquet, metrics.parquet, logs.parquet

Each batch is written in a hidden folder, its files and the folder synced to disk, then
renamed into place: readers (`TelemetryStore`, whose views expand the batch glob at every
query) see a whole batch or none of it, and a crash loses at most the batch being written,
which was never acknowledged. The store's own tables (from an ingest, or empty for a new live
store) stay as they are. Rows are checked by the same rules as an ingest (impossible values
are left out and counted, `store.possible_rows`). Retention drops whole batches by age.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from thinkfl.telemetry.errors import StoreError
from thinkfl.telemetry.model import TABLE_SCHEMAS, Manifest, RejectedRows
from thinkfl.telemetry.store import (
    BATCHES,
    MANIFEST,
    StoreWriter,
    TelemetryStore,
    crash_point,
    possible_rows,
    sql_literal,
)

RECEIVED = ("spans", "metrics", "logs")
LIVE_FORMAT = "live"


@dataclass
class BatchResult:
    """What one append kept and refused."""

    batch: str | None
    kept: dict[str, int] = field(default_factory=dict)
    rejected: list[RejectedRows] = field(default_factory=list)


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LiveStore:
    """Appends batches to a store; many readers may open it meanwhile. One writer process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not (self.path / MANIFEST).is_file():
            self._create()
        self.batches = self.path / BATCHES
        self.batches.mkdir(exist_ok=True)
        for leftover in self.batches.glob(".tmp-*"):  # a batch a crash interrupted
            shutil.rmtree(leftover, ignore_errors=True)
        self._seed()
        self._lock = threading.Lock()
        self._sequence = self._last_sequence()

    def _create(self) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise StoreError(
                f"{self.path}: exists and is not a ThinkFL store. Fix: choose another --store"
            )
        if self.path.exists():
            self.path.rmdir()
        with StoreWriter(self.path) as writer:
            writer.publish(Manifest(source_format=LIVE_FORMAT, source="thinkfl serve"))

    def _seed(self) -> None:
        """An empty first batch, so the batch glob always matches a file of every table."""
        seed = self.batches / "000000000000-seed"
        if not seed.is_dir():
            self._write_batch(seed.name, {n: TABLE_SCHEMAS[n].empty_table() for n in RECEIVED})

    def _last_sequence(self) -> int:
        numbers = [
            int(p.name.split("-", 1)[0]) for p in self.batches.iterdir() if p.name[0].isdigit()
        ]
        return max(numbers, default=0)

    def append(self, tables: dict[str, pa.Table]) -> BatchResult:
        """Check and write one batch (spans, metrics and/or logs); durable when it returns."""
        checked: dict[str, pa.Table] = {}
        rejected: list[RejectedRows] = []
        con = duckdb.connect()
        try:
            for name in RECEIVED:
                table = tables.get(name)
                schema = TABLE_SCHEMAS[name]
                if table is None or table.num_rows == 0:
                    checked[name] = schema.empty_table()
                    continue
                con.register("incoming", table.select(schema.names))
                kept, refused = possible_rows(con, name, "incoming")
                checked[name] = con.sql(kept).to_arrow_table().cast(schema)
                rejected += refused
                con.unregister("incoming")
        finally:
            con.close()
        kept_rows = {name: table.num_rows for name, table in checked.items()}
        if not any(kept_rows.values()):
            return BatchResult(batch=None, kept=kept_rows, rejected=rejected)
        with self._lock:
            self._sequence += 1
            name = f"{self._sequence:012d}-{uuid.uuid4().hex[:8]}"
            self._write_batch(name, checked)
        return BatchResult(batch=name, kept=kept_rows, rejected=rejected)

    def _write_batch(self, name: str, tables: dict[str, pa.Table]) -> None:
        temporary = self.batches / f".tmp-{name}"
        temporary.mkdir()
        try:
            for table_name, table in tables.items():
                file = temporary / f"{table_name}.parquet"
                pq.write_table(table, file, compression="zstd")
                _sync(file)
            _sync(temporary)
            crash_point("batch_written")
            os.replace(temporary, self.batches / name)
            _sync(self.batches)
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)

    def retain(self, hours: float, now: float | None = None) -> list[str]:
        """Drop the batches written more than `hours` ago (never the seed); their names."""
        cutoff = (now or time.time()) - hours * 3600
        dropped = []
        for batch in sorted(self.batches.iterdir()):
            if batch.name.startswith((".", "000000000000-")):
                continue
            if batch.stat().st_mtime < cutoff:
                retired = self.batches / f".tmp-retired-{batch.name}"
                os.replace(batch, retired)  # out of the glob at once, then removed
                shutil.rmtree(retired, ignore_errors=True)
                dropped.append(batch.name)
        return dropped

    def open(self) -> TelemetryStore:
        """A reader over the store as it is now (and as it grows)."""
        return TelemetryStore.open(self.path)

    def received(self) -> dict[str, int]:
        """Rows received so far, per table (batches only)."""
        store = self.open()
        try:
            return {
                name: store.con.sql(
                    f"SELECT count(*) FROM read_parquet({sql_literal(self.batches / '*' / f'{name}.parquet')})"
                ).fetchall()[0][0]
                for name in RECEIVED
            }
        finally:
            store.close()
