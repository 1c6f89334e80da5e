"""Atomic file writes: readers see the old file or the whole new one, never a part (a crash leaves no
half-written file, only at worst a hidden temporary one beside it).

``atomic_path(path)`` yields a temporary path in the same folder (so ``os.replace`` is a rename on one
file system) that keeps ``path``'s suffix, since some writers add theirs when it is missing (numpy's
``savez`` appends ``.npz``); any writer that takes a file name writes there. On a normal exit the file
is flushed to disk and renamed onto ``path``; on an exception it is removed and ``path`` is untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: writer(tmp)`` puts what ``writer`` wrote at ``p`` atomically; the
    parent folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
