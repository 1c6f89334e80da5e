"""One line for every user-facing error at the entry points, and output paths checked before any work.

An entry point's ``main`` runs its body through :func:`one_line_errors`: the project's own error types
(a bad config, a missing or unreadable weights file, a bad image, manifest or run folder, ...) and OS
errors about a path the user named become ``error: <one line>`` on stderr and exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written (a file where a folder is wanted, read-only, ...)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The project's error types whose message is written for the user (one line, what to do)."""
    from data.align import FaceNotFoundError
    from data.celebahq.files import MissingDataError
    from data.images import BadImageError
    from data.pairs import ManifestError
    from experiments.checkpointing import ResumeError
    from experiments.config_schema import ConfigError
    from experiments.exports import CheckpointError
    from experiments.runlock import RunFolderError
    from models.weights import (
        MissingWeightsError,
        UnreadableCheckpointError,
        UnsafeCheckpointError,
        WeightsChecksumError,
        WeightsMismatchError,
    )

    return (
        ConfigError,
        CheckpointError,
        MissingWeightsError,
        UnreadableCheckpointError,
        UnsafeCheckpointError,
        WeightsChecksumError,
        WeightsMismatchError,
        BadImageError,
        FaceNotFoundError,
        MissingDataError,
        ManifestError,
        ResumeError,
        RunFolderError,
        OutputPathError,
    )


def is_user_error(err: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """A project error type (or one of ``extra``), or an OS error about a named path."""
    if isinstance(err, (*user_error_types(), *extra)):
        return True
    return isinstance(err, OSError) and getattr(err, "filename", None) is not None


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; an OS error names its path and the reason."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split())


def one_line_errors(body: Callable[[], int | None], extra: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``body``; a user error (see :func:`is_user_error`) prints one line and returns 2."""
    try:
        return body() or 0
    except Exception as err:
        if not is_user_error(err, extra):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path, what: str) -> Path:
    """``path`` is, or can be created as, a writable folder; raises :class:`OutputPathError` otherwise.
    ``what`` names the option (e.g. ``output_dir``). Creates nothing."""
    path = Path(path).expanduser()
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        raise OutputPathError(f"{what}={path}: {existing} is a file, not a folder; choose a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what}={path}: {existing} is not writable; choose a folder you can write to")
    return path


def check_output_file(path, what: str) -> Path:
    """``path`` can be written as a file (its folder is writable, it is not a folder itself)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path} is not writable; choose another file name")
    check_output_dir(path.parent, f"{what}'s folder")
    return path
