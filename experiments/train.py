"""The training loop: Accelerate, W&B, periodic validation and resumable checkpoints.

The loop knows nothing about what a batch does: a :class:`experiments.methods.Method` builds the
trainable module and runs one optimisation step's forward/backward passes. Frozen networks (the
generator, the ArcFace, the perceptual network) are moved to the device by the method, never
``prepare``d. One command runs on one or many processes (``accelerate launch``); the global batch
``train.batch_size`` is split as per-process batch x processes x ``train.grad_accum``.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from experiments.checkpointing import (
    ResumeError,
    TrainerState,
    find_resume,
    list_checkpoints,
    read_state,
    restore_checkpoint,
    save_checkpoint,
)
from experiments.config import run_name, to_container, to_yaml
from experiments.config_schema import ConfigError
from experiments.errors import check_output_dir
from experiments.provenance import completion_record
from experiments.runlock import RunFolderError, RunLock
from experiments.schedule import learning_rate
from experiments.tracking import RunRecord, image_grid, provenance, wandb_mode, wandb_run_info
from experiments.world import reference_images


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir).expanduser() / run_name(cfg)


def make_accelerator(cfg: DictConfig, run_dir: Path) -> Accelerator:
    mode = wandb_mode(cfg.wandb.mode)
    return Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum,
        mixed_precision=cfg.train.mixed_precision,
        log_with=None if mode == "disabled" else "wandb",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def apply_cpu_threads(setting: int | None, accelerator: Accelerator) -> None:
    """Set torch's CPU threads per ``train.cpu_threads`` (see the config) when running on the CPU."""
    if setting is None or accelerator.device.type != "cpu":
        return
    import os

    local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    torch.set_num_threads(setting or max(1, len(os.sched_getaffinity(0)) // local))


def per_process_batch(cfg: DictConfig, num_processes: int) -> int:
    denom = num_processes * cfg.train.grad_accum
    if cfg.train.batch_size % denom:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by processes x grad_accum = "
            f"{num_processes} x {cfg.train.grad_accum}; choose a global batch that is"
        )
    return cfg.train.batch_size // denom


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def check_fresh_start(run_dir: Path, resume: str | None) -> None:
    """A new run needs a folder no run has used (``resume=auto`` with no checkpoint: no finished run, as a
    run killed before its first checkpoint restarts); else :class:`RunFolderError` with the two ways on."""
    ckpts = list_checkpoints(run_dir / "checkpoints")
    finished = (run_dir / "final").exists()
    started = bool(ckpts) or (run_dir / "config.yaml").exists()
    if not (finished or (started and resume is None)):
        return
    what = (
        "a finished run"
        if finished
        else f"a started run (last checkpoint {ckpts[-1].name})"
        if ckpts
        else "a started run (no checkpoint yet)"
    )
    raise RunFolderError(
        f"{run_dir} already holds {what}; pass resume=latest to continue it, or choose a new "
        "output_dir= or run_name= for a new run (run names leave hyperparameters out)"
    )


def export_final(method, model, run_dir: Path) -> None:
    """``method.export`` into ``final.partial/``, then swapped in for ``final/``: a reader sees the old export
    or the new one, never a mix of both."""
    final, partial, old = run_dir / "final", run_dir / "final.partial", run_dir / f"final.old{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    method.export(model, partial)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def train(cfg: DictConfig) -> Path:
    """Train ``cfg``'s method; returns the run directory (same path on every rank). The main process holds
    the run folder's lock (:class:`experiments.runlock.RunLock`) throughout."""
    run_dir = run_dir_of(cfg)
    check_output_dir(run_dir, "output_dir")
    is_main = int(os.environ.get("RANK", "0")) == 0
    with RunLock(run_dir, "training", enabled=is_main):
        return _train(cfg, run_dir, is_main)


def _train(cfg: DictConfig, run_dir: Path, is_main: bool) -> Path:
    from experiments.methods import build_method

    ckpt_root = run_dir / "checkpoints"
    resume_from = find_resume(cfg.resume, ckpt_root)
    if resume_from is None and is_main:
        check_fresh_start(run_dir, cfg.resume)
    state = read_state(resume_from) if resume_from else TrainerState(run_id=uuid.uuid4().hex)
    if state.step > cfg.train.max_steps:
        raise ResumeError(
            f"{resume_from} is at step {state.step}, past train.max_steps={cfg.train.max_steps}; "
            f"resume with train.max_steps>={state.step}, or start a new run (new output_dir=)"
        )
    accelerator = make_accelerator(cfg, run_dir)
    apply_cpu_threads(cfg.train.cpu_threads, accelerator)
    set_seed(cfg.seed)
    batch = per_process_batch(cfg, accelerator.num_processes)

    method = build_method(cfg, accelerator.device)
    train_set = method.world.train_set
    loader = DataLoader(
        train_set,
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    if len(loader) == 0:
        raise ConfigError(f"the training set ({len(train_set)} items) is smaller than one batch ({batch})")
    trainable = method.trainable
    optimizer = torch.optim.Adam([p for p in trainable.parameters() if p.requires_grad], lr=cfg.train.lr)
    trainable, optimizer, loader = accelerator.prepare(trainable, optimizer, loader)
    method.attach(trainable)

    record = RunRecord(run_dir, enabled=accelerator.is_main_process)
    record.start(to_yaml(cfg), resume_step=state.step)
    record.update_summary({"completed": None})  # until this launch's final export is in place
    if accelerator.log_with:
        init = {
            "name": run_name(cfg),
            "dir": str(run_dir),
            "group": cfg.wandb.group,
            "tags": list(cfg.wandb.tags),
            "entity": cfg.wandb.entity,
            "mode": wandb_mode(cfg.wandb.mode),
        }
        if state.wandb_id:
            init.update(id=state.wandb_id, resume="allow")
        accelerator.init_trackers(
            cfg.wandb.project, config={**to_container(cfg), "provenance": provenance()}, init_kwargs={"wandb": init}
        )
    info = wandb_run_info(accelerator) if accelerator.is_main_process else {}
    state.wandb_id = info.get("wandb_id", state.wandb_id)

    def log(values: dict, step: int) -> None:
        accelerator.log(values, step=step)
        record.log(values, step)

    val_batch = method.world.validation_batch(cfg.train.val_batch)
    suite = None
    if cfg.train.val_metric_pairs and accelerator.is_main_process:
        from metrics.suite import MetricSuite

        suite = MetricSuite.from_config(cfg, accelerator.device)
        suite.set_gallery(method.world.test_set.photo_batches())
    # Last, after everything that draws from the global RNGs while it is built (the validation networks'
    # initialisation), so the first resumed step sees the RNG state the checkpoint saved.
    if resume_from:
        restore_checkpoint(accelerator, resume_from, trainable, optimizer)
        accelerator.print(f"resumed from {resume_from} at step {state.step}")
    steps_per_epoch = len(loader)
    bar = tqdm(
        total=cfg.train.max_steps,
        initial=state.step,
        disable=not accelerator.is_main_process,
        desc=run_name(cfg),
        dynamic_ncols=True,
    )
    t_last, images_since = time.perf_counter(), 0
    trainable.train()
    while state.step < cfg.train.max_steps:
        loader.set_epoch(state.epoch)
        train_set.set_epoch(state.epoch)
        epoch_loader = (
            accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        )
        for batch_data in epoch_loader:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(
                    state.step + 1, cfg.train.lr, cfg.train.warmup_steps, cfg.train.lr_decay, cfg.train.max_steps
                )
            with accelerator.accumulate(trainable):
                logs = method.train_step(batch_data, accelerator)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            state.batches_in_epoch += 1
            images_since += batch * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            if state.step % cfg.train.log_every == 0 or state.step == cfg.train.max_steps:
                now = time.perf_counter()
                logs = {f"train/{k}": v for k, v in logs.items()}
                logs.update(
                    {
                        "train/lr": optimizer.param_groups[0]["lr"],
                        "perf/images_per_s": images_since / max(now - t_last, 1e-9),
                        "perf/peak_memory_mb": peak_memory_mb(accelerator.device),
                    }
                )
                t_last, images_since = now, 0
                bar.set_postfix(loss=f"{logs.get('train/loss', float('nan')):.4f}")
                log(logs, state.step)
            if state.step % cfg.train.val_every == 0 or state.step == cfg.train.max_steps:
                validate(method, val_batch, accelerator, record, state.step, suite)
                trainable.train()
            if state.step % cfg.train.ckpt_every == 0 or state.step == cfg.train.max_steps:
                save_checkpoint(accelerator, ckpt_root, state, cfg.train.keep_last)
            if state.step >= cfg.train.max_steps:
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    bar.close()
    accelerator.wait_for_everyone()
    # One float64 checksum of the trainable weights per rank: replicas must agree exactly.
    unwrapped = accelerator.unwrap_model(trainable)
    checksum = torch.stack([p.detach().double().sum() for p in unwrapped.parameters() if p.requires_grad]).sum()
    rank_checksums = accelerator.gather(checksum.to(accelerator.device)[None]).tolist()
    if accelerator.is_main_process:
        export_final(method, unwrapped, run_dir)
        final = (
            {k: v for k, v in RunRecord.read_metrics(run_dir)[-1].items() if k != "step"}
            if record.metrics_path.exists()
            else {}
        )
        record.update_summary(
            {
                "train": final,
                "steps": state.step,
                "epochs_completed": state.epoch,
                "steps_per_epoch": steps_per_epoch,
                **info,
                "processes": accelerator.num_processes,
                "rank_weight_checksums": rank_checksums,
                "provenance": provenance(),
                "run_dir": str(run_dir),
                "run_id": state.run_id,
                "completed": completion_record(run_dir, state.step),
            }
        )
        accelerator.print(f"finished {state.step} steps; run record and final weights in {run_dir}")
    # every rank tears the process group down together: a rank that destroys its gloo group and exits
    # while rank 0 still exports can die in gloo's thread teardown (SIGABRT, seen once under CI load)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


@torch.no_grad()
def validate(method, val_batch: dict, accelerator: Accelerator, record: RunRecord, step: int, suite=None) -> None:
    """Log the fixed held-out batch: contour | identity | each refinement step | target, and its losses;
    with a MetricSuite (main process), also the metrics of :func:`validation_metrics`."""
    method.trainable_module.eval()
    steps, losses = method.validation(val_batch)
    if not accelerator.is_main_process:
        return
    from data.conditions import contour_to_rgb

    contours = contour_to_rgb(val_batch["contour"])
    rows = []
    for i in range(val_batch["target"].shape[0]):
        rows.append([contours[i], val_batch["identity"][i], *[s[i] for s in steps], val_batch["target"][i]])
    grid = image_grid(rows)
    record.save_image("val/grid", grid, step)
    values = {f"val/{k}": v for k, v in losses.items()}
    if suite is not None:
        values.update(validation_metrics(method, suite, method.cfg.train.val_metric_pairs, method.cfg.eval.batch_size))
    if accelerator.log_with:
        import wandb

        values["val/grid"] = wandb.Image(grid, caption="contour | identity | steps 1..N | target")
    accelerator.log(values, step=step)
    record.log({k: v for k, v in values.items() if k != "val/grid"}, step)


def validation_metrics(method, suite, n_pairs: int, batch_size: int) -> dict[str, float]:
    """Mean LPIPS, IDSIM, IDSIM to both people of each pair and the identity-following rate, and the FID of
    the final outputs on the first ``n_pairs`` test pairs: a cheap proxy of evaluate.py's figures (the FID
    of a few samples is biased upwards; compare runs at equal ``n_pairs`` only)."""
    test_set = method.world.test_set
    n = min(n_pairs, len(test_set))
    device = method.model.latent_avg.device
    parts = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        items = [test_set[i] for i in range(start, stop)]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in ("contour", "identity", "target")}
        output = method.outputs(batch["contour"], batch["identity"])
        rows = test_set.manifest.rows[start:stop]
        parts.append(suite.per_pair(output, batch["target"], batch["identity"], rows))
    values = {}
    for key in (k for k in parts[0] if not k.startswith("fid_")):
        column = np.concatenate([p[key] for p in parts])
        if not np.isnan(column).all():  # identity_following: cross pairs only
            values[f"val/{key}"] = float(np.nanmean(column))
    reference = reference_images(method.cfg, method.cfg.eval.fid_reference_size, method.cfg.eval.batch_size)
    return {**values, "val/fid": suite.fid(parts, reference, n_blocks=1)["value"], "val/metric_pairs": n}
