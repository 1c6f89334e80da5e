"""Lazy, cached, race-safe build of the CUDA plugin (ops/cuda/) and the choice of implementation.

Nothing is compiled at import. The first op called on a CUDA tensor (with the implementation
``auto`` or ``cuda``) builds the plugin once per machine with ``torch.utils.cpp_extension.load``
(ninja) and later processes load the cached binary.

Implementation choice: env ``IDEFACE_OPS=ref|cuda|auto`` (default ``auto``) or ``ops.set_impl(name)``.
``ref`` always uses the pure-PyTorch reference; ``auto`` uses the plugin for CUDA tensors when it
builds and otherwise falls back to the reference with one warning; ``cuda`` is like ``auto`` but a
failed build raises. CPU tensors always take the reference path.

Cache: ``$IDEFACE_OPS_CACHE``, else ``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/ideface/torch_extensions``;
one folder ``ideface_ops_<hash>`` per hash of the sources + torch/CUDA versions + arch list, so an
edited kernel or an upgraded torch never loads a stale binary. Races: a build holds an exclusive
``fcntl.flock`` on ``ideface_ops_<hash>.lock`` (the kernel releases it if the process dies, so a
killed build leaves no stale lock), compiles in a private ``.tmp-*`` folder and renames it into place
atomically, so readers see either no folder or a complete one.

Stale lock / hang / broken cache: waiting for the lock gives up after ``$IDEFACE_OPS_LOCK_TIMEOUT``
seconds (default 1800) and falls back to the reference. On a file system without working ``flock``
(some NFS mounts), or to force a rebuild, delete the cache: ``rm -rf ~/.cache/ideface/torch_extensions``
(or the folder named above); deleting only ``ideface_ops_<hash>.lock`` and ``.tmp-*`` folders is
enough when no other build is running. ``IDEFACE_OPS_VERBOSE=1`` prints the compiler output.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

IMPLS = ("ref", "cuda", "auto")
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
CUDA_DIR = Path(__file__).resolve().parent / "cuda"

_impl = os.environ.get("IDEFACE_OPS", "auto")
_plugin = None  # the loaded module once built
_failed = None  # the build error once a build failed (never retried in this process)


def set_impl(name: str) -> None:
    """Select ``ref``, ``cuda`` or ``auto`` for every later op call in this process."""
    global _impl
    if name not in IMPLS:
        raise ValueError(f"ops implementation must be one of {IMPLS}, got {name!r}")
    _impl = name


def get_impl() -> str:
    if _impl not in IMPLS:
        raise ValueError(f"IDEFACE_OPS must be one of {IMPLS}, got {_impl!r}")
    return _impl


def plugin_for(x: torch.Tensor):
    """The CUDA plugin module if ``x`` should go through it, else None (use the reference)."""
    impl = get_impl()
    if impl == "ref" or not x.is_cuda:
        return None
    return load(strict=impl == "cuda")


def cache_root() -> Path:
    root = os.environ.get("IDEFACE_OPS_CACHE") or os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(root) if root else Path.home() / ".cache" / "ideface" / "torch_extensions"


def source_digest() -> str:
    """Hash of the kernel sources and of everything the binary depends on."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (CUDA_DIR / name).read_bytes())
    extra = (torch.__version__, str(torch.version.cuda), os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
    h.update("|".join(extra).encode())
    return h.hexdigest()[:16]


def load(strict: bool = False):
    """The plugin module, built on first call; None (with one warning) if it cannot be built.

    ``strict``: raise the build error instead of warning and returning None.
    """
    global _plugin, _failed
    if _plugin is None and _failed is None:
        try:
            _plugin = build()
        except Exception as e:  # any compiler or loader failure means "use the reference"
            _failed = e
            warnings.warn(
                f"ideface ops: could not build the CUDA plugin ({type(e).__name__}: {e}); "
                "using the pure-PyTorch reference ops instead (slower, same results). Set "
                "IDEFACE_OPS=ref to silence this; see ops/plugin.py to clear a stale cache.",
                RuntimeWarning,
                stacklevel=3,
            )
    if _failed is not None and strict:
        raise RuntimeError("IDEFACE_OPS=cuda but the CUDA plugin failed to build") from _failed
    return _plugin


def build(root: Path | None = None):
    """Build (or load the cached) plugin under ``root`` (default :func:`cache_root`); the module."""
    root = Path(root) if root is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    name = f"ideface_ops_{source_digest()}"
    final = root / name
    binary = final / f"{name}.so"
    if binary.is_file():
        return _import(name, binary)
    with _exclusive(root / f"{name}.lock"):
        if binary.is_file():  # another process finished while we waited
            return _import(name, binary)
        return _compile(name, root, final)


def _compile(name: str, root: Path, final: Path):
    from torch.utils import cpp_extension

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        for src in SOURCES:
            shutil.copy2(CUDA_DIR / src, tmp / src)
        module = cpp_extension.load(
            name=name,
            sources=[str(tmp / s) for s in SOURCES],
            build_directory=str(tmp),
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            verbose=os.environ.get("IDEFACE_OPS_VERBOSE") == "1",
        )
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return module


def _import(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _exclusive(path: Path):
    """An exclusive advisory lock on ``path``, polled until ``$IDEFACE_OPS_LOCK_TIMEOUT`` seconds."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): torch's own build lock still serialises builds
        yield
        return
    timeout = float(os.environ.get("IDEFACE_OPS_LOCK_TIMEOUT", 1800))
    with open(path, "a") as f:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(
                        f"waited {timeout:.0f}s for the build lock {path}; if no build is "
                        "running, delete it (see ops/plugin.py)"
                    ) from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
