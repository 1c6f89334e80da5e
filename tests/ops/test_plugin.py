"""The CUDA plugin's machinery: implementation choice, fallback warning, cache key, build lock, real build."""

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import ops
from ops import plugin

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_plugin_state(monkeypatch):
    monkeypatch.setattr(plugin, "_plugin", None)
    monkeypatch.setattr(plugin, "_failed", None)
    monkeypatch.setattr(plugin, "_impl", plugin._impl)


def test_impl_selection(fresh_plugin_state):
    for name in plugin.IMPLS:
        ops.set_impl(name)
        assert ops.get_impl() == name
    with pytest.raises(ValueError, match="ref"):
        ops.set_impl("fast")
    plugin._impl = "gpu"  # as if IDEFACE_OPS=gpu
    with pytest.raises(ValueError, match="IDEFACE_OPS"):
        ops.get_impl()


def test_env_var_sets_the_default():
    code = "import ops; print(ops.get_impl())"
    env = {**os.environ, "IDEFACE_OPS": "ref"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ref", out.stderr


def test_cpu_tensors_never_build(fresh_plugin_state, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("the plugin must not be built for CPU tensors")

    monkeypatch.setattr(plugin, "build", no_build)
    for name in plugin.IMPLS:
        ops.set_impl(name)
        assert plugin.plugin_for(torch.zeros(1)) is None
        ops.fused_leaky_relu(torch.randn(2, 3), torch.zeros(3))


def test_failed_build_warns_once_then_falls_back(fresh_plugin_state, monkeypatch, tmp_path):
    """A real failing build: an empty cache root that is a file, so creating the build folder fails."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setenv("IDEFACE_OPS_CACHE", str(blocker))
    with pytest.warns(RuntimeWarning, match="reference"):
        assert plugin.load() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plugin.load() is None  # no second warning, no second attempt
    with pytest.raises(RuntimeError, match="IDEFACE_OPS=cuda"):
        plugin.load(strict=True)


def test_cache_key_tracks_sources_and_arch(monkeypatch, tmp_path):
    base = plugin.source_digest()
    assert base == plugin.source_digest() and len(base) == 16
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "1.0+fake")
    assert plugin.source_digest() != base
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    copy = tmp_path / "cuda"
    shutil.copytree(plugin.CUDA_DIR, copy)
    (copy / "bias_act.cu").write_text((copy / "bias_act.cu").read_text() + "\n// edited\n")
    monkeypatch.setattr(plugin, "CUDA_DIR", copy)
    assert plugin.source_digest() != base


def test_build_lock_times_out_and_is_released_by_a_dead_holder(tmp_path, monkeypatch):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(lock)!r}, "a"); fcntl.flock(f, fcntl.LOCK_EX); print("held", flush=True); time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("IDEFACE_OPS_LOCK_TIMEOUT", "1")
        with pytest.raises(TimeoutError, match="delete it"):
            with plugin._exclusive(lock):
                pass
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.setenv("IDEFACE_OPS_LOCK_TIMEOUT", "0")  # a lock still held would raise at the first poll
    with plugin._exclusive(lock):  # the kernel dropped the dead process's lock
        pass


def _can_compile():
    nvcc = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"
    return torch.version.cuda is not None and nvcc.is_file() and shutil.which("ninja") is not None


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("IDEFACE_TEST_CUDA_BUILD") != "1",
    reason="compiling the plugin takes ~2-10 min on a small CPU; set IDEFACE_TEST_CUDA_BUILD=1",
)
@pytest.mark.skipif(not _can_compile(), reason="needs nvcc (CUDA_HOME), ninja and a CUDA build of torch")
def test_plugin_compiles_and_is_cached(tmp_path):
    """Compile the real sources (no GPU needed) in a private cache, then load the cached binary."""
    env = {
        **os.environ,
        "CUDA_HOME": os.environ.get("CUDA_HOME", "/usr/local/cuda"),
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0"),
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "torch_extensions"),
        "IDEFACE_OPS_CACHE": str(tmp_path / "c"),
    }
    code = (
        "import time; from ops import plugin; t = time.time(); m = plugin.build(); "
        "print(m.__file__, hasattr(m, 'bias_lrelu') and hasattr(m, 'upfirdn2d'), time.time() - t)"
    )
    first = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    path, has_ops, _ = first.stdout.split()
    name = Path(path).stem
    assert has_ops == "True" and name.startswith("ideface_ops_")
    assert not list((tmp_path / "c").glob(".tmp-*"))  # the build folder was renamed into place
    built = tmp_path / "c" / name / f"{name}.so"
    stamp = built.stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert Path(second.stdout.split()[0]) == built and built.stat().st_mtime_ns == stamp  # loaded, not rebuilt
