"""A run folder belongs to one run: an exclusive lock while a process trains or evaluates in it.

The lock is ``fcntl.flock`` on ``<run dir>/.lock``, which holds the holder's pid and command line. The
kernel drops it when the holder exits, however it exits (SIGKILL included), so a crashed run never
leaves a stale lock behind; a second process that tries to take it gets :class:`RunFolderError` naming
the holder's pid. Only the main process of a launch takes it (the other ranks write into the folder
under its protection).
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderError(RuntimeError):
    """A run folder that this process may not use as asked; ``str(err)`` says why and what to do."""


class RunLock:
    """``with RunLock(run_dir, "training"):`` holds ``run_dir``'s lock (creating the folder) or raises
    :class:`RunFolderError`; ``enabled=False`` (non-main ranks) makes it a no-op."""

    def __init__(self, run_dir, purpose: str, enabled: bool = True):
        self.path = Path(run_dir) / LOCK_NAME
        self.purpose = purpose
        self.enabled = enabled
        self._fd: int | None = None

    def acquire(self) -> None:
        if not self.enabled or self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(
                f"run folder {self.path.parent} is in use ({holder}); wait for that process to finish, or "
                f"choose another output_dir= or run_name="
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {self.purpose}: {' '.join(sys.argv)[:300]}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
