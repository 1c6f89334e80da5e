"""The GPU check's plan and runner: every GPU-only figure of the project, each part a subprocess with its own
time limit cut to what is left of a wall-clock budget. ``experiments/gpu_check.py`` is its command line.

The parts, in this order (most wanted first):

1. ``cuda_tests``: the ``cuda``-marked tests (the first of them builds the CUDA ops plugin);
2. ``cuda_build_test``: the plugin's build-and-cache test, compiling in a private cache;
3. ``generator``: StyleGAN2 images/s, reference vs CUDA ops, fp32 vs bf16, at 256 and 1024;
4. ``train_1024``: the 1024 training step's images/s and peak memory, the paper's batch 8, bf16;
5. ``pulse_vs_encoder``: PULSE vs encoder seconds per image (toy world and 1024);
6. ``toy_training``: a short toy-world training run with its evaluation, on the GPU.
7. ``demo``: the web demo's Generate click of four toy faces on the GPU (pipeline, click, server round trip);
8. ``toy_step`` and ``toy_compile``: the toy training step eager, then with ``train.compile``, each in its own
   process (alternating the two in one process favours the compiled step on a CPU).

Every part's status (ok | failed | timeout | skipped), wall seconds, exit code and figures (the JSON a
benchmark prints, pytest's counts, the run's summary and evaluation) land in one JSON file, rewritten
after each part, so a check cut short still leaves what it measured.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ops.atomic_write import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = str(REPO_ROOT / "experiments" / "benchmark.py")
MIN_PART_S = 20  # a part is not started with less time than this left: it could not finish


@dataclass
class Part:
    """One step of the check: ``cmd`` run in the repository root with ``env`` added; at most ``limit_s``."""

    name: str
    cmd: list[str]
    limit_s: float
    env: dict[str, str] = field(default_factory=dict)
    kind: str = "benchmark"  # benchmark (stdout is one JSON document) | pytest | training


def plan(work_dir: Path, arch: str) -> list[Part]:
    """The check's parts. ``arch``: the GPU's compute capability as TORCH_CUDA_ARCH_LIST wants it ("9.0")."""
    py = sys.executable
    build_env = {
        "TORCH_CUDA_ARCH_LIST": arch,
        "MAX_JOBS": str(os.cpu_count() or 4),
        "IDEFACE_OPS_CACHE": str(work_dir / "ops_cache"),
    }
    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    run_dir = work_dir / "toy_run"
    toy_step = [
        py,
        BENCHMARK,
        "train",
        "--worlds",
        "toy",
        "--rows",
        "pretrained_id",
        "--precisions",
        "fp32",
        "--iters",
        "10",
    ]
    return [
        Part("cuda_tests", [*pytest, "-m", "cuda", "tests"], 200, build_env, "pytest"),
        Part(
            "cuda_build_test",
            [*pytest, "tests/ops/test_plugin.py", "-k", "compiles_and_is_cached"],
            170,
            {**build_env, "IDEFACE_TEST_CUDA_BUILD": "1"},
            "pytest",
        ),
        Part(
            "generator",
            [py, BENCHMARK, "generator", "--sizes", "256", "1024", "--batches", "8", "--iters", "5"],
            90,
            build_env,
        ),
        Part(
            "train_1024",
            [
                py,
                BENCHMARK,
                "train",
                "--worlds",
                "1024",
                "--rows",
                "pretrained_id",
                "--precisions",
                "bf16",
                "--batch",
                "8",
                "--iters",
                "5",
            ],
            90,
            build_env,
        ),
        Part(
            "pulse_vs_encoder",
            [py, BENCHMARK, "pulse-vs-encoder", "--worlds", "toy", "1024", "--batches", "1", "--pulse-steps", "10"],
            90,
            build_env,
        ),
        Part(
            "toy_training",
            [
                py,
                str(REPO_ROOT / "experiments" / "run.py"),
                "ablation=input_latent",
                "train.max_steps=100",
                "eval.max_pairs=200",
                "wandb.mode=disabled",
                f"output_dir={run_dir}",
            ],
            150,
            build_env,
            "training",
        ),
        Part("demo", [py, BENCHMARK, "demo", "--device", "cuda", "--iters", "5"], 60, build_env),
        *[
            Part(name, [*toy_step, "--set", f"train.compile={on}"], limit, build_env)
            for name, on, limit in (("toy_step", "false", 60), ("toy_compile", "true", 150))
        ],
    ]


def figures(part: Part, stdout: str, started: float) -> dict:
    """What a finished part measured: a benchmark's JSON, pytest's counts, a training run's records."""
    if part.kind == "benchmark":
        return json.loads(stdout[stdout.index("{") :])  # the benchmark prints one JSON document last
    if part.kind == "pytest":
        counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", stdout))
        return {"counts": counts, "summary": stdout.strip().splitlines()[-1] if stdout.strip() else ""}
    out = next(a.split("=", 1)[1] for a in part.cmd if a.startswith("output_dir="))
    runs = [p for p in Path(out).glob("*/summary.json") if p.stat().st_mtime >= started]
    if not runs:
        return {}
    run = runs[0].parent
    result = {"run_dir": str(run), "summary": json.loads(runs[0].read_text())}
    evaluation = run / "eval" / "results.json"
    if evaluation.exists():
        result["eval"] = json.loads(evaluation.read_text())
    return result


def run_part(part: Part, limit_s: float) -> dict:
    """Run ``part`` for at most ``limit_s`` seconds (then kill its process group) -> its record."""
    started = time.time()
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **part.env}  # this checkout's code in every part
    proc = subprocess.Popen(
        part.cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the part's children too (accelerate, pytest workers, compilers)
        stdout, stderr = proc.communicate()
        return {
            "status": "timeout",
            "limit_s": round(limit_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1),
            "stderr_tail": stderr[-2000:],
        }
    record = {
        "status": "ok" if proc.returncode == 0 else "failed",
        "rc": proc.returncode,
        "limit_s": round(limit_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    try:
        record["figures"] = figures(part, stdout, started)
    except (ValueError, StopIteration, OSError) as err:
        record["figures_error"] = f"{type(err).__name__}: {err}"
    if proc.returncode != 0:
        record["stdout_tail"], record["stderr_tail"] = stdout[-2000:], stderr[-2000:]
    return record


def run_check(parts: list[Part], out: Path, budget_s: float, header: dict, min_part_s: float = MIN_PART_S) -> dict:
    """Run ``parts`` in order within ``budget_s`` seconds, rewriting ``out`` after each one; a part is
    skipped when less than ``min_part_s`` is left."""
    t0 = time.perf_counter()
    report = {**header, "budget_s": budget_s, "parts": {}}
    for part in parts:
        left = budget_s - (time.perf_counter() - t0)
        if left < min_part_s:
            report["parts"][part.name] = {"status": "skipped", "reason": f"{left:.0f} s of the budget left"}
        else:
            print(f"[gpu_check] {part.name} (at most {min(part.limit_s, left):.0f} s)", file=sys.stderr, flush=True)
            report["parts"][part.name] = run_part(part, min(part.limit_s, left))
        report["wall_s"] = round(time.perf_counter() - t0, 1)
        write_json(out, report)
    report["all_ok"] = all(p["status"] == "ok" for p in report["parts"].values())
    write_json(out, report)
    return report


def write_json(path: Path, doc: dict) -> None:
    """The report, atomically: a check killed mid-write leaves the previous one."""
    atomic_write_text(path, json.dumps(doc, indent=2))


def cuda_header() -> dict:
    """The GPU and versions; raises RuntimeError (one line) when torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            f"no CUDA device: torch {torch.__version__} (built with CUDA {torch.version.cuda}) sees "
            "none; run the GPU check on a machine with one GPU"
        )
    major, minor = torch.cuda.get_device_capability(0)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "capability": f"{major}.{minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus_visible": torch.cuda.device_count(),
    }
