"""The paper's tables: their suite files, the metric columns, each row's figures over seeds, and the
files and ``wandb.Table`` they are written to.

A suite file (``ablations/tables/table<n>.yaml``) lists rows (name, presets, optional overrides with
``{seed}``, the paper's numbers); :func:`load_suite` reads one. ``experiments.reproduction`` trains and
evaluates the rows; :func:`write_tables` writes ``table<n>-<protocol>.{md,csv,json}``, which
``experiments.reporting`` and ``notebooks/reproduce_tables.ipynb`` read.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.config import ABLATION_DIR
from experiments.config_schema import ConfigError
from experiments.tracking import wandb_mode
from ops.atomic_write import atomic_write_text

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


TABLE_DIR = ABLATION_DIR / "tables"  # the suite files of the paper's tables, beside the presets they name


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
