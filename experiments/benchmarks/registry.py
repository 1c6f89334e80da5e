"""The subcommand registry and what every benchmark shares: device setup, timing, environment, result rows."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

import experiments
from experiments.device import resolve_device

# The checkout whose packages are measured: this one, or another put first on PYTHONPATH (``trees``).
CODE_ROOT = Path(experiments.__file__).resolve().parent.parent

SUBCOMMANDS: dict[str, tuple] = {}


def arg(*flags, **kwargs):
    """One argparse argument of a subcommand: ``arg("--steps", type=int, default=20)``."""
    return flags, kwargs


# every subcommand runs on one device with a chosen CPU thread count
DEVICE_ARGS = (
    arg("--device", default=None, help="default: cuda if available, else cpu"),
    arg("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"),
)


def subcommand(name: str, help: str, *arguments):
    """Register ``fn(args) -> dict`` as the subcommand ``name`` with the given :func:`arg` arguments."""

    def register(fn):
        SUBCOMMANDS[name] = (fn, help, arguments)
        return fn

    return register


def setup(args) -> torch.device:
    """The device of ``--device`` with ``--threads`` CPU threads set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def environment(device: torch.device) -> dict:
    """What the figures depend on: device, versions, threads."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "code_root": str(CODE_ROOT),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def timed(fn, device: torch.device, iters: int, warmup: int) -> float:
    """Seconds per call of ``fn`` (mean over ``iters`` after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def interleaved(fns: dict, device: torch.device, iters: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each of ``fns`` (name -> callable), timed in turn: round r calls every
    fn once, so the machine's load during a round falls on all of them. The median resists a round that
    another process slowed down."""
    import statistics

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            times[name].append(timed(fn, device, 1, 0))
    return {name: statistics.median(t) for name, t in times.items()}


def memory_row(device: torch.device) -> dict:
    """Peak GPU memory since the last reset, or on the CPU the process's high-water mark so far."""
    if device.type == "cuda":
        return {"peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}
    import resource

    # the CPU has no per-phase peak: rows run in order, so this is the high-water mark up to this row
    return {"process_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def run_row(row: dict, device: torch.device, fn) -> dict:
    """Fill ``row`` with ``fn()``'s figures and memory, or the error (OOM, ...) that stopped it; print it as it
    lands (stderr: stdout is for the JSON document)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        row.update(fn())
        row.update(memory_row(device))
    except (RuntimeError, torch.OutOfMemoryError) as e:
        first_line = (str(e).splitlines() or [""])[0]
        row["error"] = f"{type(e).__name__}: {first_line[:200]}"  # the row records it and the run goes on
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row
