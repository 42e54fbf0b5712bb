"""Writing files so that a reader never sees half of one: write beside, then rename.

Every layer writes through these (stores, evidence caches, results, models, adapters,
report pages); a crash or an exception leaves the old file (or none) and no temporary.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# A file name made from data keeps this many characters of the identifier, then its hash.
SAFE_NAME_PREFIX_CHARS = 48
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.@+=-]+")


class SpecialFileError(OSError):
    """A write target that exists and is not a regular file (a device, a FIFO, a socket)."""


def safe_file_name(identifier: str, suffix: str = "") -> str:
    """A file name for an identifier that comes from data (a case id, a pod, an alert name):
    a sanitized, bounded prefix plus a hash of the whole identifier, so `../`, `/`, NUL or
    200 KB of text never become a path, and two identifiers never share a file.

    >>> safe_file_name("cart-1", ".json")
    'cart-1-c4f39ab857.json'
    >>> safe_file_name("x/../../outside")
    'x_.._.._outside-caea68833e'
    """
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    prefix = _UNSAFE_NAME_CHARACTERS.sub("_", identifier[:SAFE_NAME_PREFIX_CHARS]).lstrip(".")
    return f"{prefix or 'id'}-{digest}{suffix}"


def refuse_special_file(path: Path) -> None:
    """Raise SpecialFileError when `path` exists and is neither a regular file nor a folder:
    renaming over a device node (as root, /dev/full) or a FIFO would destroy it."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SpecialFileError(
            errno.EEXIST,
            "exists and is not a regular file (a device, FIFO or socket); nothing was written",
            str(path),
        )


def open_append(path: Path) -> TextIO:
    """`path` opened to append text (JSON lines), after refusing a special file: opening a
    FIFO waits for a reader forever, and a device swallows or refuses what is written."""
    refuse_special_file(path)
    return Path(path).open("a", encoding="utf-8")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write a file or a folder into; renamed over `path`
    when the block succeeds (atomic on one file system), removed when it fails. A target that
    exists and is a special file is refused before anything is written."""
    path = Path(path)
    refuse_special_file(path)
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
