"""Reproduce the paper's tables: train what is missing, evaluate every row, write the tables.

Usage::

    python experiments/reproduce.py table=all                       # both tables, toy world, seed 0
    python experiments/reproduce.py table=2 seeds=[0,1,2]          # mean and spread over 3 seeds
    python experiments/reproduce.py table=2 protocols=[random]     # one test protocol (default: both)
    python experiments/reproduce.py table=1 world=celebahq data.root=/data/celebahq output_dir=runs/paper
    python experiments/reproduce.py table=path/to/suite.yaml train.max_steps=50

``table=`` names ``ablations/tables/table<n>.yaml`` (``1``, ``2``, ``all``) or a suite file's path. A suite
file lists rows (name, presets, optional overrides with ``{seed}``, the paper's numbers); every
other token is a preset or dotted override applied to every row (``world=``, ``output_dir=``, ...).

Each row x seed is one run folder ``<output_dir>/<run name>``: a run whose completion record says it
finished ``train.max_steps`` steps and exported the ``final/encoder.safetensors`` found is not trained again,
an unfinished one resumes from its latest checkpoint (a folder started with another training config is
refused), and ``eval/<test pairing>/results.json`` is reused only when its checkpoint sha256, manifest sha256
and evaluation settings are this evaluation's; PULSE rows (model.kind pulse) have nothing to train and are
only evaluated. Every row is evaluated on the same test
manifest (``data.manifest_seed``), checked by its hash. The tables go to
``<output_dir>/tables/table<n>-<protocol>.{md,csv,json}`` (one per test protocol of ``protocols=``,
by default ``random``, the paper's cross-identity pairs, and ``same_identity``) and, unless W&B is
disabled, to a ``wandb.Table`` in a run of its own (job_type ``reproduce``, group = the suite).

Everything runs in this one process (fine on a CPU: the toy suite). On several GPUs, train each row
with ``accelerate launch experiments/run.py <row presets> seed=<s> output_dir=<same>`` first; this
command then finds the finished runs and only evaluates and tabulates.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# this checkout's packages when run as a script (its sys.path[0] is experiments/), as run.py does
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from data.pairs import PAIRING_MODES  # noqa: E402
from experiments.config import ConfigError, load_config  # noqa: E402
from experiments.tracking import wandb_mode  # noqa: E402
from ops.atomic_write import atomic_write_text  # noqa: E402

# Test protocols tabulated by default: the paper's cross-identity reading first (data.test_pairing).
PROTOCOLS = ("random", "same_identity")
PROTOCOL_TITLES = {
    "random": "cross-identity (identity photos of other people; the paper's protocol)",
    "same_identity": "same identity (other photos of the contour's person)",
    "self": "self (the target photo as identity image)",
}

METRICS = ("lpips", "idsim", "idsim_identity_person", "idsim_contour_person", "identity_following", "fid")
LABELS = {
    "lpips": "LPIPS (lower)",
    "idsim": "IDSIM (higher)",
    "idsim_identity_person": "IDSIM to identity person",
    "idsim_contour_person": "IDSIM to contour person",
    "identity_following": "identity-following rate",
    "fid": "FID (lower)",
    "dlib_same_person": "dlib same person (higher)",
}
# The dlib judge (eval.dlib_judge, on in the celebahq world): a column when every row has it; the paper has none.
JUDGE_METRICS = ("dlib_same_person",)


@dataclass
class Suite:
    """One table: its rows as read from a suite yaml."""

    number: str
    title: str
    world: str
    condition: str
    seeds: list[int]
    rows: list[dict]
    path: Path

    @property
    def name(self) -> str:
        """The W&B group of every run of the suite, e.g. ``ide-toy-lr``."""
        return f"ide-{self.world}-{self.condition}"


@dataclass
class RowResult:
    """A row's per-seed results.json dicts and run folders."""

    name: str
    paper: dict[str, float]
    results: list[dict] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    wandb_ids: list[str] = field(default_factory=list)

    def stat(self, metric: str) -> dict:
        """Mean, spread (sample std over seeds, 0 for one seed) and the mean of the seeds' 95% bounds."""
        figures = [r["metrics"].get(metric) or {"value": None, "ci": None} for r in self.results]
        values = [f["value"] for f in figures if f["value"] is not None]
        cis = [f["ci"] for f in figures if f["ci"]]
        paper = self.paper.get(metric)
        if not values:  # e.g. the identity-following rate of same-person test pairs: undefined
            return {"mean": None, "std": None, "ci": None, "paper": paper, "diff": None, "n_seeds": 0}
        mean = statistics.fmean(values)
        ci = [statistics.fmean(c[0] for c in cis), statistics.fmean(c[1] for c in cis)] if cis else None
        return {
            "mean": mean,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "ci": ci,
            "paper": paper,
            "diff": None if paper is None else mean - paper,
            "n_seeds": len(values),
        }


TABLE_DIR = REPO_ROOT / "ablations" / "tables"  # the suite files of the paper's tables, beside the presets they name


def suite_paths(table: str) -> list[Path]:
    if table == "all":
        return sorted(TABLE_DIR.glob("table*.yaml"))
    path = Path(table).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"table={table}: no such suite file")
        return [path]
    path = TABLE_DIR / f"table{table}.yaml"
    if not path.is_file():
        avail = ", ".join(p.stem.removeprefix("table") for p in sorted(TABLE_DIR.glob("table*.yaml")))
        raise ConfigError(f"table={table}: no {path}; use one of {avail}, all, or a suite yaml's path")
    return [path]


def load_suite(path: Path, seeds: list[int] | None = None) -> Suite:
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    missing = [k for k in ("rows", "world", "condition") if k not in node]
    if missing or not node.get("rows"):
        raise ConfigError(
            f"{path}: a suite needs 'world', 'condition' and a non-empty 'rows' list "
            f"(missing: {', '.join(missing) or 'rows'})"
        )
    for row in node["rows"]:
        if "name" not in row or "presets" not in row:
            raise ConfigError(f"{path}: every row needs 'name' and 'presets'; got {row}")
    return Suite(
        number=str(node.get("table", path.stem.removeprefix("table"))),
        title=node.get("title", path.stem),
        world=node["world"],
        condition=node["condition"],
        seeds=list(seeds or node.get("seeds", [0])),
        rows=node["rows"],
        path=path,
    )


def row_config(suite: Suite, row: dict, seed: int, overrides: list[str]) -> DictConfig:
    """The row's config: world, its presets, the suite's condition and group, the user's tokens, the seed."""
    row_tokens = [t.replace("{seed}", str(seed)) for t in row.get("overrides", [])]
    tokens = [
        f"world={suite.world}",
        *row["presets"],
        f"data.condition={suite.condition}",
        f"wandb.group={suite.name}",
        *row_tokens,
        *overrides,
        f"seed={seed}",
    ]
    return load_config(tokens)


def check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """A run folder that a run of another training config started is refused (run names leave
    hyperparameters out, so a changed value would otherwise land in, and be reported from, the same folder)."""
    from experiments.provenance import config_difference
    from experiments.runlock import RunFolderError

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    differ = config_difference(OmegaConf.load(saved), cfg)
    if differ:
        raise RunFolderError(
            f"{run_dir} holds a run of another config (differs in {', '.join(differ[:5])}); "
            "choose a new output_dir= for this one, or delete that folder"
        )


def run_row_seed(cfg: DictConfig, log: list[str]) -> tuple[Path, dict]:
    """Train (or skip/resume) and evaluate (or skip) one run on ``cfg.data.test_pairing``'s test pairs;
    returns its folder and results. A run counts as finished by its completion record; results.json is
    reused only when it was computed from this checkpoint, manifest and evaluation settings."""
    from experiments.evaluate import Runner, eval_dir, evaluate, load_eval_config
    from experiments.provenance import completed_run, evaluation_settings, results_match, results_provenance
    from experiments.train import run_dir_of, train
    from experiments.world import build_dataset

    run_dir = run_dir_of(cfg)
    if cfg.model.kind == "pulse":
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
            eval_cfg, {"eval": cfg.eval, "wandb": cfg.wandb, "data": {"test_pairing": cfg.data.test_pairing}}
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
                if cfg.model.kind == "pulse"
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


def table_metrics(rows: list[RowResult]) -> tuple[str, ...]:
    """METRICS, plus the JUDGE_METRICS every row's every seed has."""
    extra = tuple(m for m in JUDGE_METRICS if all(m in res["metrics"] for r in rows for res in r.results))
    return METRICS + extra


def table_records(rows: list[RowResult]) -> list[dict]:
    """One flat dict per row: the CSV/W&B columns."""
    out = []
    metrics = table_metrics(rows)
    for r in rows:
        rec = {"row": r.name, "seeds": len(r.results), "n_pairs": r.results[0]["n_pairs"]}
        for m in metrics:
            s = r.stat(m)
            rec.update(
                {
                    f"{m}_mean": s["mean"],
                    f"{m}_std": s["std"],
                    f"{m}_ci_low": s["ci"][0] if s["ci"] else None,
                    f"{m}_ci_high": s["ci"][1] if s["ci"] else None,
                    f"{m}_paper": s["paper"],
                    f"{m}_diff": s["diff"],
                }
            )
        rec["wandb_ids"] = ";".join(r.wandb_ids)
        rec["run_dirs"] = ";".join(r.run_dirs)
        out.append(rec)
    return out


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def format_markdown(suite: Suite, records: list[dict], protocol: str) -> str:
    """The table as Markdown: ours (mean ± spread) [95% CI] | paper | difference, per metric."""
    metrics = [m for m in LABELS if f"{m}_mean" in records[0]]
    head = ["row"] + [LABELS[m] for m in metrics] + ["W&B run"]
    lines = [
        f"## {suite.title}, test pairs: {PROTOCOL_TITLES.get(protocol, protocol)}",
        "",
        f"World `{suite.world}`, contour `{suite.condition}`, test pairing `{protocol}`, seeds {suite.seeds}, "
        f"{records[0]['n_pairs']} test pairs per run. Each cell: ours mean ± spread over seeds "
        f"[mean 95% interval: bootstrap over contours; FID: jackknife over contour blocks] / paper / "
        f"ours − paper.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for rec in records:
        cells = [rec["row"]]
        for m in metrics:
            d = 2 if m == "fid" else 4
            ci = (
                f" [{_num(rec[f'{m}_ci_low'], d)}, {_num(rec[f'{m}_ci_high'], d)}]"
                if rec[f"{m}_ci_low"] is not None
                else ""
            )
            cells.append(
                f"{_num(rec[f'{m}_mean'], d)} ± {_num(rec[f'{m}_std'], d)}{ci} / "
                f"{_num(rec[f'{m}_paper'], d)} / {_num(rec[f'{m}_diff'], d)}"
            )
        cells.append(rec["wandb_ids"] or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def write_tables(suite: Suite, rows: list[RowResult], out_dir: Path, protocol: str) -> dict[str, Path]:
    """``<out_dir>/table<n>-<protocol>.{md,csv,json}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = table_records(rows)
    stem = out_dir / f"table{suite.number}-{protocol}"
    paths = {"md": stem.with_suffix(".md"), "csv": stem.with_suffix(".csv"), "json": stem.with_suffix(".json")}
    atomic_write_text(paths["md"], format_markdown(suite, records, protocol))
    atomic_write_text(paths["csv"], format_csv(records))
    atomic_write_text(
        paths["json"],
        json.dumps(
            {
                "table": suite.number,
                "title": suite.title,
                "suite": suite.name,
                "world": suite.world,
                "condition": suite.condition,
                "test_pairing": protocol,
                "seeds": suite.seeds,
                "suite_file": str(suite.path),
                "manifest_sha256": rows[0].results[0]["manifest_sha256"],
                "records": records,
            },
            indent=2,
        ),
    )
    return paths


def log_to_wandb(
    tabulated: list[tuple[Suite, str]], tables: list[list[dict]], cfg: DictConfig, out_dir: Path
) -> str | None:
    """One W&B run (job_type reproduce) holding every (suite, protocol) table as a wandb.Table; returns its id."""
    mode = wandb_mode(cfg.wandb.mode)
    if mode == "disabled":
        return None
    import wandb

    suites = [s for i, (s, _) in enumerate(tabulated) if all(s is not t for t, _ in tabulated[:i])]
    run = wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        group=suites[0].name,
        job_type="reproduce",
        name=f"reproduce-{'-'.join('table' + s.number for s in suites)}",
        dir=str(out_dir),
        mode=mode,
        config={
            "suites": [str(s.path) for s in suites],
            "seeds": suites[0].seeds,
            "protocols": list(dict.fromkeys(p for _, p in tabulated)),
        },
    )
    for (suite, protocol), records in zip(tabulated, tables):
        columns = list(records[0])
        table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in records])
        run.log({f"table{suite.number}-{protocol}": table})
    run_id = run.id
    run.finish()
    return run_id


def parse_args(argv: list[str]) -> tuple[str, list[int] | None, list[str], list[str]]:
    """(table, seeds or None, test protocols, the other tokens)."""
    table, seeds, protocols, rest = None, None, list(PROTOCOLS), []
    for token in argv:
        key, _, value = token.partition("=")
        if key == "table":
            table = value
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
    return table, seeds, protocols, rest


def reproduce(argv: list[str]) -> dict:
    """Run the suites of ``argv`` (see module docstring); returns {"tables": paths, "log": actions, ...}."""
    table, seeds, protocols, overrides = parse_args(argv)
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
    written, records, tabulated = {}, [], []
    for suite in suites:
        for protocol in protocols:  # the runs are trained once; each protocol evaluates them on its pairs
            rows = reproduce_suite(suite, [*overrides, f"data.test_pairing={protocol}"], log)
            written[f"{suite.number}-{protocol}"] = write_tables(suite, rows, out_dir, protocol)
            records.append(table_records(rows))
            tabulated.append((suite, protocol))
    wandb_id = log_to_wandb(tabulated, records, base, out_dir)
    return {
        "tables": written,
        "log": log,
        "wandb_id": wandb_id,
        "trained": [e.split(" ", 1)[1] for e in log if e.startswith("train ")],
        "skipped": [e.split(" ", 1)[1] for e in log if e.startswith("skip-train ")],
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or "-h" in argv or "--help" in argv:
        print(__doc__.split("Each row")[0].strip())
        return 0 if argv else 2
    from experiments.errors import one_line_errors

    def body() -> int:
        out = reproduce(argv)
        for paths in out["tables"].values():
            print(paths["md"].read_text())
        print("\n".join(out["log"]))
        return 0

    return one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
