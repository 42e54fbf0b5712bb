"""Files the evidence layer keeps beside a store: derived tables and per-case evidence.

A published store is immutable (only cases.json is rewritten), so what is derived from
it is computed once and kept under `STORE/evidence/`, stamped with the store's manifest
time and the layer's revision; a store that cannot be written keeps them in a per-user cache folder instead.
Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import platformdirs
import pyarrow as pa
import pyarrow.parquet as pq

from thinkfl.files import atomic_path
from thinkfl.telemetry import TelemetryStore

FOLDER = "evidence"
# bumped when detectors, derived tables or the fusion change: older files are not reused
REVISION = 11  # 11: gaps next to every cross-service call, wrappers of any kind


def cache_dir(store: TelemetryStore) -> Path:
    """The folder for this store's derived files (created; stale stamps are cleared)."""
    stamp = store.manifest.created.isoformat().replace(":", "-") + f"-r{REVISION}"
    if store.live:  # new batches arrive: derived tables are per data version
        stamp += f"-{store.data_version()}"
    for base in (store.path / FOLDER, _user_cache(store)):
        folder = base / stamp
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{uuid.uuid4().hex[:6]}"
            probe.touch()
            probe.unlink()
        except OSError:
            continue
        return folder
    raise OSError(f"{store.path}: no writable folder for evidence files")


def _user_cache(store: TelemetryStore) -> Path:
    key = hashlib.sha256(str(store.path.resolve()).encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("thinkfl")) / "evidence" / key


def write_atomic(path: Path, data: bytes | pa.Table) -> None:
    """Write bytes or an Arrow table (as Parquet) beside `path`, then rename it over."""
    with atomic_path(path) as temporary:
        if isinstance(data, pa.Table):
            pq.write_table(data, temporary, compression="zstd")
        else:
            temporary.write_bytes(data)
