"""Reproduce a suite: train each row x seed that is missing, evaluate every row on each test protocol,
write the tables (the library behind ``experiments/reproduce.py``, whose docstring gives the rules of
reuse: finished runs are not trained again, results are reused only for this checkpoint, manifest and
evaluation settings). With ``jobs=N`` the runs go first through N worker processes (:func:`run_tasks`);
the tables are then assembled by the same sequential pass, which finds every run done."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from data.pairs import PAIRING_MODES
from experiments.config import load_config, read_saved_config, run_name
from experiments.config_schema import ConfigError
from experiments.tables import (
    PROTOCOLS,
    RowResult,
    Suite,
    load_suite,
    log_to_wandb,
    suite_paths,
    table_records,
    write_tables,
)
from models.build import EVAL_ONLY


def row_tokens(suite: Suite, row: dict, seed: int, overrides: list[str]) -> list[str]:
    """The row's config tokens: world, its presets, the suite's condition and group, the user's tokens, the
    seed."""
    return [
        f"world={suite.world}",
        *row["presets"],
        f"data.condition={suite.condition}",
        f"wandb.group={suite.name}",
        *[t.replace("{seed}", str(seed)) for t in row.get("overrides", [])],
        *overrides,
        f"seed={seed}",
    ]


def row_config(suite: Suite, row: dict, seed: int, overrides: list[str]) -> DictConfig:
    """The row's config (:func:`row_tokens`)."""
    return load_config(row_tokens(suite, row, seed, overrides))


def check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """A run folder that a run of another training config started is refused (run names leave
    hyperparameters out, so a changed value would otherwise land in, and be reported from, the same folder)."""
    from experiments.provenance import config_difference
    from experiments.runlock import RunFolderError

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    differ = config_difference(read_saved_config(saved), cfg)
    if differ:
        raise RunFolderError(
            f"{run_dir} holds a run of another config (differs in {', '.join(differ[:5])}); "
            "choose a new output_dir= for this one, or delete that folder"
        )


def run_row_seed(cfg: DictConfig, log: list[str]) -> tuple[Path, dict]:
    """Train (or skip/resume) and evaluate (or skip) one run on ``cfg.data.test_pairing``'s test pairs;
    returns its folder and results. A run counts as finished by its completion record; results.json is
    reused only when it was computed from this checkpoint, manifest and evaluation settings."""
    from experiments.evaluation import Runner, eval_dir, evaluate, load_eval_config
    from experiments.provenance import completed_run, evaluation_settings, results_match, results_provenance
    from experiments.train import run_dir_of, train
    from experiments.world import build_dataset

    run_dir = run_dir_of(cfg)
    if cfg.model.kind in EVAL_ONLY:
        eval_cfg, ckpt = cfg, None
    else:
        check_same_run(run_dir, cfg)
        unfinished = completed_run(run_dir, cfg.train.max_steps)
        if unfinished is None:
            log.append(f"skip-train {run_dir.name}")
        else:
            log.append(f"train {run_dir.name}")
            train(OmegaConf.merge(cfg, {"resume": "auto"}))
        # The finished run's saved config, with this invocation's eval settings on top.
        eval_cfg, ckpt = load_eval_config([f"checkpoint={run_dir}"])
        eval_cfg = OmegaConf.merge(
            eval_cfg,
            {
                "eval": cfg.eval,
                "wandb": cfg.wandb,
                "data": {"test_pairing": cfg.data.test_pairing},
                "train": {"cpu_threads": cfg.train.cpu_threads},  # this invocation's CPU share, not the run's
            },
        )
    out_dir = eval_dir(eval_cfg, ckpt or run_dir)
    if (out_dir / "results.json").is_file():
        previous = json.loads((out_dir / "results.json").read_text())
        expected = results_provenance(
            Runner.checkpoint_sha256(ckpt), build_dataset(eval_cfg, "test").manifest.hash, evaluation_settings(eval_cfg)
        )
        stale = results_match(previous, expected)
        if stale is None:
            log.append(f"skip-eval {run_dir.name} {cfg.data.test_pairing}")
            return run_dir, previous
        log.append(f"re-eval {run_dir.name} {cfg.data.test_pairing} ({out_dir / 'results.json'}: {stale})")
    else:
        log.append(f"eval {run_dir.name} {cfg.data.test_pairing}")
    return run_dir, evaluate(eval_cfg, ckpt, out_dir=out_dir)


def reproduce_suite(suite: Suite, overrides: list[str], log: list[str]) -> list[RowResult]:
    rows = []
    manifests = {}
    for row in suite.rows:
        res = RowResult(name=row["name"], paper={k: float(v) for k, v in row.get("paper", {}).items()})
        for seed in suite.seeds:
            cfg = row_config(suite, row, seed, overrides)
            run_dir, results = run_row_seed(cfg, log)
            manifests[f"{row['name']} s{seed}"] = results["manifest_sha256"]
            res.results.append(results)
            res.run_dirs.append(str(run_dir))
            wid = (
                results.get("wandb_id")
                if cfg.model.kind in EVAL_ONLY
                else json.loads((run_dir / "summary.json").read_text()).get("wandb_id")
            )
            if wid:
                res.wandb_ids.append(wid)
        rows.append(res)
    if len(set(manifests.values())) > 1:
        raise RuntimeError(
            f"{suite.title}: rows were evaluated on different test manifests {manifests}; "
            f"delete their eval/ folders and rerun with one data.manifest_seed"
        )
    return rows


def plan_tasks(suites: list[Suite], protocols: list[str], overrides: list[str]) -> list[list[DictConfig]]:
    """The suites' work as independent tasks, each a list of :func:`run_row_seed` configs, resolved here: a
    worker that starts an hour later runs what was planned, not the config files as they are by then (an
    edited file then stops the tabulation with the run folder's "another config" error instead of killing a
    worker mid-schedule).

    A trained run is one task: it trains once (a row shared by two suites, once), then evaluates each
    protocol. An evaluation-only row (``EVAL_ONLY``: PULSE, the trivial answers) is a task per protocol,
    each with a folder of its own. Evaluation-only tasks come first (PULSE's take about half a trained
    row), then the trained runs, the most refinement steps first, so the shortest end the schedule."""
    tasks: dict[str, tuple[float, dict[str, DictConfig]]] = {}
    for suite in suites:
        for protocol in protocols:
            for row in suite.rows:
                for seed in suite.seeds:
                    cfg = row_config(suite, row, seed, [*overrides, f"data.test_pairing={protocol}"])
                    eval_only = cfg.model.kind in EVAL_ONLY
                    key = f"{run_name(cfg)} {protocol}" if eval_only else run_name(cfg)
                    cost = float("inf") if eval_only else cfg.train.max_steps * cfg.model.n_iters
                    tasks.setdefault(key, (cost, {}))[1].setdefault(protocol, cfg)  # the first suite's
    return [list(work.values()) for _, work in sorted(tasks.values(), key=lambda t: -t[0])]


def _run_task(configs: list[DictConfig], conn) -> None:
    """A worker process (:func:`run_tasks`): run one task's runs, send ``(log lines, None, None)`` or, when
    it fails, ``(None, the error, its traceback)``."""
    try:
        log: list[str] = []
        for cfg in configs:
            run_row_seed(cfg, log)
        outcome = (log, None, None)
    except BaseException as err:  # whatever ends the task is the parent's to report
        outcome = (None, err, traceback.format_exc())
    try:
        conn.send(outcome)
    except Exception:  # an error object that does not pickle: its words and traceback still do
        conn.send((None, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}"), outcome[2]))
    conn.close()


def run_tasks(tasks: list[list[DictConfig]], jobs: int, log: list[str], work=_run_task) -> None:
    """Run ``tasks`` (:func:`plan_tasks`) in order on ``jobs`` worker processes at a time, each task in a fresh
    spawned process (not a daemon: a run may start data-loader workers), appending their log lines; prints
    a line as each task ends. The first task that fails, or whose process dies, stops the others (their runs
    resume from their last checkpoint next time) and its error is raised here, the worker's traceback as its
    cause. ``work(task, connection)`` is what a worker runs (:func:`_run_task`)."""
    ctx = multiprocessing.get_context("spawn")
    pending, running = list(tasks), {}
    start = time.monotonic()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=work, args=(pending.pop(0), send))
                proc.start()
                send.close()  # the worker holds the only send end: its death reads as EOF here
                running[receive] = proc
            for receive in multiprocessing.connection.wait(list(running)):
                proc = running.pop(receive)
                try:
                    lines, error, trace = receive.recv()
                except EOFError:  # it died before it could report
                    lines, error, trace = None, None, None
                proc.join()
                receive.close()
                if lines is None and error is None:
                    error = RuntimeError(f"a worker (pid {proc.pid}) died (exit code {proc.exitcode}) mid-task")
                if error is not None:
                    raise error from (RuntimeError(f"in the worker (pid {proc.pid}):\n{trace}") if trace else None)
                log.extend(lines)
                minutes = (time.monotonic() - start) / 60
                done = len(tasks) - len(pending) - len(running)
                print(
                    f"[{done}/{len(tasks)} tasks, {minutes:.1f} min] " + "; ".join(lines), file=sys.stderr, flush=True
                )
    finally:
        for proc in running.values():
            proc.terminate()
            proc.join()


def parse_args(argv: list[str]) -> tuple[str, list[int] | None, list[str], int, list[str]]:
    """(table, seeds or None, test protocols, jobs, the other tokens)."""
    table, seeds, protocols, jobs, rest = None, None, list(PROTOCOLS), 1, []
    for token in argv:
        key, _, value = token.partition("=")
        if key == "table":
            table = value
        elif key == "jobs":
            if not (value.isdigit() and int(value) >= 1):
                raise ConfigError(f"jobs={value}: expected the number of worker processes, an integer >= 1")
            jobs = int(value)
        elif key == "protocols":
            protocols = [str(p) for p in OmegaConf.from_dotlist([f"p={value}"]).p] if value.startswith("[") else [value]
            bad = [p for p in protocols if p not in PAIRING_MODES]
            if bad or not protocols:
                raise ConfigError(
                    f"protocols={value}: expected a list of test pairings from "
                    f"{', '.join(PAIRING_MODES)}, e.g. [random,same_identity]"
                )
        elif key == "seeds":
            parsed = OmegaConf.from_dotlist([f"s={value}"]).s if value.startswith("[") else [value]
            try:
                seeds = [int(s) for s in parsed]
            except (TypeError, ValueError):
                raise ConfigError(f"seeds={value}: expected a list of integers such as [0,1,2]") from None
        else:
            rest.append(token)
    if table is None:
        raise ConfigError("say which table: table=1, table=2, table=all or table=<suite yaml>")
    return table, seeds, protocols, jobs, rest


def reproduce(argv: list[str]) -> dict:
    """Run the suites of ``argv`` (see module docstring); returns {"tables": paths, "log": actions, ...}."""
    table, seeds, protocols, jobs, overrides = parse_args(argv)
    suites = [load_suite(p, seeds) for p in suite_paths(table)]
    # A world= token replaces the suites' world (layering one world preset over another would
    # keep the first one's sizes).
    worlds = [t.split("=", 1)[1] for t in overrides if t.startswith("world=")]
    overrides = [t for t in overrides if not t.startswith("world=")]
    for suite in suites:
        suite.world = worlds[-1] if worlds else suite.world
    base = load_config([f"world={suites[0].world}", *overrides])
    from experiments.errors import check_output_dir

    out_dir = check_output_dir(Path(base.output_dir).expanduser() / "tables", "output_dir")
    log: list[str] = []
    if jobs > 1:
        # each worker's share of this machine's cores; a train.cpu_threads= of the user's comes later and wins
        threads = max(1, len(os.sched_getaffinity(0)) // jobs)
        run_tasks(plan_tasks(suites, protocols, [f"train.cpu_threads={threads}", *overrides]), jobs, log)
    tabulation_log: list[str] = []
    written, records, tabulated = {}, [], []
    for suite in suites:
        for protocol in protocols:  # the runs are trained once; each protocol evaluates them on its pairs
            rows = reproduce_suite(suite, [*overrides, f"data.test_pairing={protocol}"], tabulation_log)
            written[f"{suite.number}-{protocol}"] = write_tables(suite, rows, out_dir, protocol)
            records.append(table_records(rows))
            tabulated.append((suite, protocol))
    # after the workers, the sequential pass only finds their work done (skip-*), unless a run changed between
    log += [e for e in tabulation_log if not e.startswith("skip-")] if jobs > 1 else tabulation_log
    wandb_id = log_to_wandb(tabulated, records, base, out_dir)
    return {
        "tables": written,
        "log": log,
        "wandb_id": wandb_id,
        "trained": [e.split(" ", 1)[1] for e in log if e.startswith("train ")],
        "skipped": [e.split(" ", 1)[1] for e in log if e.startswith("skip-train ")],
    }
