"""Evaluation of a method over the test manifest: LPIPS, FID and IDSIM with 95% intervals.

The command is ``experiments/evaluate.py`` (``checkpoint=<run dir>`` or ``method=pulse``, then dotted
overrides); ``experiments/run.py`` calls :func:`evaluate_run` after training and
``experiments/reproduce.py`` calls :func:`evaluate` per table row.

The pairs of the test manifest are cut into fixed chunks of ``eval.batch_size``; process ``r`` of
``P`` evaluates chunks ``r, r + P, ...``. Each chunk's per-pair values (LPIPS, IDSIM, FID features'
running sums) are saved atomically under ``<eval dir>/chunks/`` with the key of what they were
computed from (checkpoint sha256, manifest sha256, per-pair settings: ``experiments.provenance``), so an
interrupted evaluation resumes where it stopped, a chunk of another checkpoint or setting is recomputed,
and every pair is counted exactly once whatever the number of processes (this file-based merge stands
in for ``gather_for_metrics``: it is what makes resuming possible).
``eval.max_pairs`` keeps the first ``ceil(max_pairs / n_per_contour)`` contours with all their pairs,
so a subset still bootstraps over whole contours. Chunks end at contour boundaries.

With ``eval.dlib_judge`` (the celebahq world) a second identity judge of another network family adds
``dlib_distance`` (mean dlib descriptor distance, lower is closer) and ``dlib_same_person`` (the rate of
pairs under dlib's 0.6 same-person threshold) to ``results.json`` and the table (``metrics.dlib_idsim``).

Intervals (95%): LPIPS, IDSIM and the dlib columns, percentile bootstrap over contours; FID, delete-one-block jackknife
over ``eval.fid_blocks`` blocks of consecutive chunks (see ``metrics.fid.fid_with_interval``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

from experiments.config import load_config, read_saved_config, run_name, to_container
from experiments.config_schema import ConfigError, validate
from experiments.errors import check_output_dir
from experiments.provenance import chunk_key, evaluation_settings, results_provenance
from experiments.runlock import RunLock
from experiments.tracking import provenance, wandb_mode
from models.answers import ANSWERS, answer
from ops.atomic_write import atomic_path, atomic_write_text

# Per-pair figures with a bootstrap interval over contours; NaN entries (undefined for that pair) are left out.
PAIR_METRICS = ("lpips", "idsim", "idsim_identity_person", "idsim_contour_person", "identity_following")


def load_eval_config(argv: list[str]) -> tuple[DictConfig, Path | None]:
    """``checkpoint=<run dir>`` reads that run's saved config; other tokens apply on top."""
    ckpt = next((a.split("=", 1)[1] for a in argv if a.startswith("checkpoint=")), None)
    rest = [a for a in argv if not a.startswith("checkpoint=")]
    if ckpt is None:
        return load_config(rest), None
    run_dir = Path(ckpt).expanduser()
    if run_dir.name == "final":
        run_dir = run_dir.parent
    cfg_path = run_dir / "final" / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(
            f"checkpoint={ckpt}: {cfg_path} not found; pass a finished run folder "
            f"(one that has final/encoder.safetensors and final/config.yaml)"
        )
    bad = [a for a in rest if "." not in a.split("=", 1)[0] or "=" not in a]
    if bad:
        raise ConfigError(f"with checkpoint= only dotted overrides (e.g. eval.max_pairs=100) apply; got {bad}")
    cfg = read_saved_config(cfg_path)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(rest))
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override in {rest}: {str(err).splitlines()[0]}") from None
    validate(cfg)
    return cfg, run_dir


def _contour_end(contours: list[str], start: int, size: int) -> int:
    """End of the range from ``start`` holding at least ``size`` pairs (or the rest), whole contours only."""
    end = min(start + max(size, 1), len(contours))
    while end < len(contours) and contours[end] == contours[end - 1]:
        end += 1
    return end


def select_pairs(contours: list[str], max_pairs: int | None) -> int:
    """How many leading manifest pairs to evaluate: at least ``max_pairs``, whole contours only
    (``contours`` is the manifest's contour key per pair, grouped)."""
    return len(contours) if max_pairs is None else _contour_end(contours, 0, max_pairs)


def contour_chunks(contours: list[str], size: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges of about ``size`` pairs that end at contour boundaries
    (``contours``: the manifest's contour key per pair, grouped), so chunks hold whole contours and
    the FID jackknife's blocks of chunks are independent."""
    chunks, start = [], 0
    while start < len(contours):
        chunks.append((start, _contour_end(contours, start, size)))
        start = chunks[-1][1]
    return chunks


def format_table(rows: list[dict]) -> str:
    """Markdown table of results.json dicts: LPIPS, IDSIM, the identity-following figures and FID, with 95%
    intervals (and the dlib judge's same-person rate where any row has it)."""
    dlib = any("dlib_same_person" in r["metrics"] for r in rows)
    lines = [
        "| run | test pairs | pairs | LPIPS (lower) | IDSIM (higher) | IDSIM to identity person | "
        "IDSIM to contour person | identity-following rate | FID (lower) |"
        + (" dlib same person (higher) |" if dlib else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if dlib else ""),
    ]

    def cell(metric: dict | None) -> str:
        if not metric or metric.get("value") is None:
            return "n/a"
        if not metric.get("ci"):
            return f"{metric['value']:.4f}"
        return f"{metric['value']:.4f} [{metric['ci'][0]:.4f}, {metric['ci'][1]:.4f}]"

    for r in rows:
        m = r["metrics"]
        lines.append(
            f"| {r['name']} | {r.get('test_pairing', 'same_identity')} | {r['n_pairs']} | "
            f"{cell(m['lpips'])} | {cell(m['idsim'])} | {cell(m.get('idsim_identity_person'))} | "
            f"{cell(m.get('idsim_contour_person'))} | {cell(m.get('identity_following'))} | "
            f"{cell(m['fid'])} |" + (f" {cell(m.get('dlib_same_person'))} |" if dlib else "")
        )
    return "\n".join(lines)


def eval_dir(cfg: DictConfig, run_dir: Path | None) -> Path:
    """Where an evaluation's chunks and results.json go: ``<run>/eval/<test pairing>/`` (a PULSE row, with no
    run folder: ``<output_dir>/<run name>-eval/<test pairing>/``), so both test protocols sit side by side."""
    base = run_dir / "eval" if run_dir else Path(cfg.output_dir) / f"{run_name(cfg)}-eval"
    return base / cfg.data.test_pairing


class Runner:
    """Produces final outputs (B, 3, S, S) in [-1, 1] from a batch of contour/identity pairs: an encoder's
    (from its run folder), PULSE's, or a trivial answer's (``models.answers``)."""

    def __init__(self, cfg: DictConfig, run_dir: Path | None, device: torch.device):
        self.cfg = cfg
        self.kind = cfg.model.kind
        self.stats: dict[str, list] = {"eps_reached": []}
        self.checkpoint_hash = None
        if self.kind == "pulse":
            from experiments.methods import build_pulse

            if cfg.data.condition != "lr":
                raise ConfigError(
                    f"PULSE is defined for LR contours only (data.condition=lr), not '{cfg.data.condition}'"
                )
            self.pulse = build_pulse(cfg, device)
        elif self.kind in ANSWERS:
            from experiments.world import load_frozen_generator
            from models.inversion import average_image

            self.average = average_image(*load_frozen_generator(cfg, device))
        else:
            from experiments.pipeline import load_pipeline

            if run_dir is None:
                raise ConfigError(
                    "evaluate needs checkpoint=<run dir> for an encoder method (or method=pulse or a trivial answer)"
                )
            self.pipe = load_pipeline(run_dir, device=device)
            self.checkpoint_hash = self.checkpoint_sha256(run_dir)
        self.n_iters = cfg.eval.n_iters or cfg.model.n_iters

    @staticmethod
    def checkpoint_sha256(run_dir: Path | None) -> str | None:
        """sha256 of a run's exported encoder (None for PULSE, which has no run folder)."""
        from models.weights import sha256_of

        return sha256_of(run_dir / "final" / "encoder.safetensors") if run_dir is not None else None

    @torch.no_grad()
    def __call__(
        self, contour: torch.Tensor, identity: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """contour (B, C, s, s), identity (B, 3, s, s) -> outputs; ``target`` (B, 3, S, S), the contour's photo,
        is read by the trivial answers only (copy_target needs it; the others take its size)."""
        if self.kind == "pulse":
            with torch.enable_grad():
                out = self.pulse(contour, identity)
            self.stats["eps_reached"].extend(out.eps_reached.tolist())
            return out.image
        if self.kind in ANSWERS:
            from data.conditions import contour_to_rgb

            if target is None:
                raise ValueError(f"the trivial answer {self.kind} is scored against the contour's photo: pass target")
            return answer(self.kind, contour_to_rgb(contour), identity, target, self.average)
        return self.pipe.run_tensors(contour, identity, n_iters=self.n_iters).image


def evaluate(cfg: DictConfig, run_dir: Path | None = None, out_dir: Path | None = None) -> dict:
    """Evaluate on every process of the current launch; returns results (main process) or {}.

    The main process holds the lock of the run folder (of ``out_dir`` without one) throughout."""
    out_dir = check_output_dir(out_dir or eval_dir(cfg, run_dir), "the evaluation folder")
    is_main = int(os.environ.get("RANK", "0")) == 0
    with RunLock(run_dir or out_dir, "evaluating", enabled=is_main):
        return _evaluate(cfg, run_dir, out_dir)


def _reusable(path: Path, key: str) -> bool:
    """A saved chunk computed from the same checkpoint, manifest and per-pair settings."""
    if not path.exists():
        return False
    try:
        with np.load(path) as chunk:
            return "provenance_key" in chunk and str(chunk["provenance_key"]) == key
    except (OSError, ValueError, EOFError):  # a damaged chunk is recomputed
        return False


def _evaluate(cfg: DictConfig, run_dir: Path | None, out_dir: Path) -> dict:
    from accelerate import Accelerator

    from experiments.train import apply_cpu_threads
    from experiments.world import build_dataset, reference_images
    from metrics.bootstrap import bootstrap_ci
    from metrics.suite import MetricSuite

    mode = wandb_mode(cfg.wandb.mode)
    accelerator = Accelerator(log_with=None if mode == "disabled" else "wandb")
    apply_cpu_threads(cfg.train.cpu_threads, accelerator)
    device = accelerator.device
    name = (run_dir.name if run_dir else run_name(cfg)) + "-eval"
    chunk_dir = out_dir / "chunks"
    if accelerator.is_main_process:
        chunk_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    test_set = build_dataset(cfg, "test")
    manifest = test_set.manifest
    contour_keys = [row.contour for row in manifest.rows]
    group_of = {key: g for g, key in enumerate(dict.fromkeys(contour_keys))}
    n_total = select_pairs(contour_keys, cfg.eval.max_pairs)
    chunks = contour_chunks(contour_keys[:n_total], cfg.eval.batch_size)
    mine = chunks[accelerator.process_index :: accelerator.num_processes]
    runner = Runner(cfg, run_dir, device)
    suite = MetricSuite.from_config(cfg, device)
    suite.set_gallery(test_set.photo_batches())
    settings = evaluation_settings(cfg)
    key = chunk_key(runner.checkpoint_hash, manifest.hash, settings)
    t0, n_done = time.perf_counter(), 0
    for start, stop in tqdm(mine, desc=f"eval {name}", disable=not accelerator.is_local_main_process):
        path = chunk_dir / f"chunk_{start:07d}_{stop:07d}.npz"
        if _reusable(path, key):
            continue
        items = [test_set[i] for i in range(start, stop)]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in ("contour", "identity", "target")}
        output = runner(batch["contour"], batch["identity"], batch["target"])
        values = suite.per_pair(output, batch["target"], batch["identity"], manifest.rows[start:stop])
        values["contour_index"] = np.array([group_of[contour_keys[i]] for i in range(start, stop)])
        values["eps_reached"] = np.array(
            runner.stats["eps_reached"][-len(items) :] if runner.kind == "pulse" else [], dtype=bool
        )
        values["provenance_key"] = np.array(key)
        with atomic_path(path) as tmp:
            np.savez(tmp, **values)
        if cfg.eval.save_images:
            from data.images import save_image

            for i, img in zip(range(start, stop), output.cpu()):
                save_image(img, out_dir / "images" / f"{i:07d}.png")
        n_done += stop - start
    elapsed = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    rates = accelerator.gather(torch.tensor([n_done, elapsed], device=device, dtype=torch.float64))
    if not accelerator.is_main_process:
        accelerator.end_training()
        return {}

    parts = [np.load(chunk_dir / f"chunk_{s:07d}_{e:07d}.npz") for s, e in chunks]
    stale = [s for (s, _), p in zip(chunks, parts) if str(p["provenance_key"]) != key]
    if stale:  # every process recomputes the stale chunks it owns, so this is a bug, not a user error
        raise RuntimeError(f"{chunk_dir}: chunks starting at {stale[:3]} were not recomputed for this evaluation")
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ("contour_index", *PAIR_METRICS)}
    fid = suite.fid(
        parts, reference_images(cfg, cfg.eval.fid_reference_size, cfg.eval.batch_size), n_blocks=cfg.eval.fid_blocks
    )
    metrics = {}
    for key in PAIR_METRICS:
        defined = ~np.isnan(merged[key])
        if defined.any():
            mean, lo, hi = bootstrap_ci(
                merged[key][defined], groups=merged["contour_index"][defined], n_boot=cfg.eval.n_boot, seed=cfg.seed
            )
            metrics[key] = {"value": mean, "ci": [lo, hi], "n_pairs": int(defined.sum())}
        else:
            metrics[key] = {"value": None, "ci": None, "n_pairs": 0}
    if "dlib_distance" in parts[0]:
        from metrics.dlib_idsim import SAME_PERSON_DISTANCE

        distance = np.concatenate([p["dlib_distance"] for p in parts])
        for key, values in (("dlib_distance", distance), ("dlib_same_person", distance < SAME_PERSON_DISTANCE)):
            v = bootstrap_ci(
                values.astype(np.float64), groups=merged["contour_index"], n_boot=cfg.eval.n_boot, seed=cfg.seed
            )
            metrics[key] = {"value": v[0], "ci": [v[1], v[2]]}
    rates = rates.view(-1, 2)
    work = rates[:, 0].sum().item()
    results = {
        "name": name.removesuffix("-eval"),
        "method": cfg.method,
        "ablation": cfg.ablation,
        "world": cfg.world,
        "condition": cfg.data.condition,
        "pairing": cfg.data.pairing,
        "test_pairing": cfg.data.test_pairing,
        "seed": cfg.seed,
        "n_pairs": n_total,
        "n_contours": int(len(np.unique(merged["contour_index"]))),
        "manifest": str(manifest.path) if manifest.path else None,
        "n_per_contour": manifest.n_per_contour,
        **results_provenance(runner.checkpoint_hash, manifest.hash, settings),
        "metrics": {**metrics, "fid": fid},
        "networks": suite.describe(),
        "wall_time_s": time.perf_counter() - t0,
        "images_per_s": work / max(rates[:, 1].max().item(), 1e-9) if work else None,
        "seconds_per_image": rates[:, 1].sum().item() / work if work else None,
        "processes": accelerator.num_processes,
        "provenance": provenance(),
    }
    eps = np.concatenate([p["eps_reached"] for p in parts])
    if runner.kind == "pulse" and eps.size:
        results["pulse_eps_success_rate"] = float(eps.mean())
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    if accelerator.log_with:
        accelerator.init_trackers(
            cfg.wandb.project,
            config=to_container(cfg),
            init_kwargs={
                "wandb": {
                    "name": name,
                    "group": cfg.wandb.group,
                    "job_type": "eval",
                    "dir": str(out_dir),
                    "tags": list(cfg.wandb.tags),
                    "entity": cfg.wandb.entity,
                    "mode": mode,
                }
            },
        )
        flat = {f"eval/{k}": m["value"] for k, m in metrics.items() if m["value"] is not None}
        flat.update({"eval/fid": fid["value"], "eval/n_pairs": n_total})
        accelerator.log(flat)
        from experiments.tracking import wandb_run_info

        results.update(wandb_run_info(accelerator))
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    accelerator.end_training()
    return results


def evaluate_run(run_dir: Path) -> dict:
    cfg, run_dir = load_eval_config([f"checkpoint={run_dir}"])
    return evaluate(cfg, run_dir)
