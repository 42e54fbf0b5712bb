"""Writing files so that a reader never sees half of one: write beside, then rename.

Every layer writes through these (stores, evidence caches, results, models, adapters,
report pages); a crash or an exception leaves the old file (or none) and no temporary.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write a file or a folder into; renamed over `path`
    when the block succeeds (atomic on one file system), removed when it fails."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def atomic_write_json(path: Path, payload: object) -> Path:
    """JSON (indented, anything unknown as text) written atomically."""
    return atomic_write(path, json.dumps(payload, indent=1, default=str))
