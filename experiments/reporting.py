"""A suite's report, offline (HTML and Markdown: tables, loss and validation curves as inline SVG, grids as
base64 PNG) and online (a W&B Report); the library behind ``experiments/report.py``."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from pathlib import Path

from experiments.tables import LABELS, METRICS
from experiments.tracking import RunRecord
from ops.atomic_write import atomic_write_text

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
# what the training loop's validation logs (``val/<metric>``) and the report draws: whether a row converged
VALIDATION_METRICS = ("lpips", "idsim", "identity_following", "fid")


def load_tables(suite_dir: Path) -> list[dict]:
    """Every ``tables/table*.json`` of the suite, in table order."""
    paths = sorted((Path(suite_dir) / "tables").glob("table*.json"))
    if not paths:
        raise FileNotFoundError(f"no tables/table*.json under {suite_dir}; run experiments/reproduce.py first")
    return [json.loads(p.read_text()) for p in paths]


def run_dirs(record: dict) -> list[Path]:
    return [Path(p) for p in record["run_dirs"].split(";") if p]


def loss_curves(run_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """``{key: (steps, values)}`` of ``train/loss`` and the last refinement step's ``val/.../loss``."""
    rows = RunRecord.read_metrics(run_dir)
    val_keys = sorted(
        {k for r in rows for k in r if k.startswith("val/") and k.endswith("/loss")},
        key=lambda k: [int(n) for n in re.findall(r"\d+", k)],
    )
    return _curves(rows, {key: key for key in ["train/loss", *val_keys[-1:]]})


def _curves(rows: list[dict], keys: dict[str, str]) -> dict[str, tuple[list[float], list[float]]]:
    """``{name: (steps, values)}`` of each logged ``keys[name]`` with a finite value; names never logged are
    left out (a NaN would break the chart's polyline)."""
    curves = {}
    for name, key in keys.items():
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if pts:
            curves[name] = ([p[0] for p in pts], [p[1] for p in pts])
    return curves


def validation_curves(run_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """``{metric: (steps, values)}`` of the :data:`VALIDATION_METRICS` the run logged on its validation pairs,
    finite values only (the identity-following rate is NaN where no pair is cross-identity)."""
    return _curves(RunRecord.read_metrics(run_dir), {m: f"val/{m}" for m in VALIDATION_METRICS})


def validation_table(curves: dict[str, tuple[list[float], list[float]]]) -> str:
    """Markdown table of :func:`validation_curves`: a row per validation step, a column per metric."""
    steps = sorted({s for xs, _ in curves.values() for s in xs})
    values = {m: dict(zip(*xy)) for m, xy in curves.items()}
    lines = ["| step | " + " | ".join(LABELS[m] for m in curves) + " |", "|---" * (len(curves) + 1) + "|"]
    for step in steps:
        cells = [_fmt(values[m].get(step), 2 if m == "fid" else 3) for m in curves]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latest_grid(run_dir: Path) -> Path | None:
    grids = sorted((run_dir / "media").glob("val_grid_*.png"))
    return grids[-1] if grids else None


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _ticks(lo: float, hi: float) -> list[float]:
    return [lo + (hi - lo) * i / 4 for i in range(5)]


def svg_line_chart(
    series: dict[str, tuple[list[float], list[float]]], title: str, width: int = 420, height: int = 240
) -> str:
    """An SVG line chart of ``{label: (xs, ys)}`` with axes, ticks and a legend."""
    left, right, top, bottom = 56, 12, 24, 36
    xs = [x for s in series.values() for x in s[0]] or [0, 1]
    ys = [y for s in series.values() for y in s[1]] or [0, 1]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    y0, y1 = (y0 - 0.5, y1 + 0.5) if y0 == y1 else (y0, y1)
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="10" '
        f'font-family="sans-serif"><text x="{width / 2}" y="14" text-anchor="middle" font-size="12">'
        f"{html.escape(title)}</text>",
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        f'fill="none" stroke="#999"/>',
    ]
    for t in _ticks(y0, y1):
        out.append(f'<text x="{left - 4}" y="{sy(t) + 3:.1f}" text-anchor="end">{t:.3g}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{height - bottom + 14}" text-anchor="middle">{t:.0f}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">step</text>')
    for i, (label, (px, py)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(px, py))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        if len(px) == 1:
            out.append(f'<circle cx="{sx(px[0]):.1f}" cy="{sy(py[0]):.1f}" r="2.5" fill="{color}"/>')
        out.append(
            f'<text x="{width - right - 4}" y="{top + 12 + 12 * i}" text-anchor="end" fill="{color}">'
            f"{html.escape(label)}</text>"
        )
    return "\n".join(out + ["</svg>"])


def svg_bar_chart(records: list[dict], metric: str, width: int = 420, height: int = 240) -> str:
    """Bars of our mean per row with the 95% interval as whiskers and the paper's value as a tick."""
    left, right, top, bottom = 56, 12, 24, 48
    vals = [
        v
        for r in records
        for k in ("mean", "ci_low", "ci_high", "paper")
        if (v := r.get(f"{metric}_{k}")) not in (None, "")
    ]
    y1 = max((float(v) for v in vals), default=1.0) * 1.1 or 1.0
    sy = lambda y: height - bottom - float(y) / y1 * (height - top - bottom)
    slot = (width - left - right) / len(records)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="10" '
        f'font-family="sans-serif"><text x="{width / 2}" y="14" text-anchor="middle" font-size="12">'
        f"{html.escape(LABELS[metric])}: ours (bar, 95% CI) vs paper (black tick)</text>",
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
    ]
    for t in _ticks(0, y1):
        out.append(f'<text x="{left - 4}" y="{sy(t) + 3:.1f}" text-anchor="end">{t:.3g}</text>')
    for i, r in enumerate(records):
        x = left + i * slot
        if r.get(f"{metric}_mean") in (None, ""):  # undefined for this table (e.g. following, same-person pairs)
            continue
        mean = float(r[f"{metric}_mean"])
        out.append(
            f'<rect x="{x + slot * 0.2:.1f}" y="{sy(mean):.1f}" width="{slot * 0.6:.1f}" '
            f'height="{sy(0) - sy(mean):.1f}" fill="{COLORS[i % len(COLORS)]}" opacity="0.8"/>'
        )
        if r.get(f"{metric}_ci_low") not in (None, ""):
            lo, hi, cx = sy(r[f"{metric}_ci_low"]), sy(r[f"{metric}_ci_high"]), x + slot / 2
            out.append(
                f'<path d="M{cx:.1f},{lo:.1f}V{hi:.1f}M{cx - 4:.1f},{lo:.1f}h8M{cx - 4:.1f},{hi:.1f}h8" '
                f'stroke="black"/>'
            )
        if r.get(f"{metric}_paper") not in (None, ""):
            out.append(
                f'<line x1="{x + slot * 0.1:.1f}" x2="{x + slot * 0.9:.1f}" y1="{sy(r[f"{metric}_paper"]):.1f}" '
                f'y2="{sy(r[f"{metric}_paper"]):.1f}" stroke="black" stroke-width="2.5"/>'
            )
        out.append(
            f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle">'
            f"{html.escape(r['row'])}</text>"
        )
    return "\n".join(out + ["</svg>"])


def _fmt(x, digits: int) -> str:
    return "–" if x in (None, "") else f"{float(x):.{digits}f}"


def table_html(table: dict) -> str:
    head = "".join(
        f"<th>{html.escape(LABELS[m])}<br>ours ± spread [95% CI]</th><th>paper</th><th>diff</th>" for m in METRICS
    )
    body = []
    for r in table["records"]:
        cells = [f"<td>{html.escape(r['row'])}</td>"]
        for m in METRICS:
            d = 2 if m == "fid" else 4
            ci = f" [{_fmt(r[f'{m}_ci_low'], d)}, {_fmt(r[f'{m}_ci_high'], d)}]" if r[f"{m}_ci_low"] is not None else ""
            cells += [
                f"<td>{_fmt(r[f'{m}_mean'], d)} ± {_fmt(r[f'{m}_std'], d)}{ci}</td>",
                f"<td>{_fmt(r[f'{m}_paper'], d)}</td>",
                f"<td>{_fmt(r[f'{m}_diff'], d)}</td>",
            ]
        cells.append(f"<td>{html.escape(r['wandb_ids'] or '–')}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr><th>row</th>{head}<th>W&amp;B run</th></tr>\n" + "\n".join(body) + "</table>"


def row_media(record: dict) -> tuple[dict, list[Path]]:
    """A row's loss curves (labelled by run folder) and latest validation grid per run."""
    curves, grids = {}, []
    for d in run_dirs(record):
        for key, xy in loss_curves(d).items():
            curves[f"{d.name}: {key}"] = xy
        if (g := latest_grid(d)) is not None:
            grids.append(g)
    return curves, grids


def write_offline(suite_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` in ``suite_dir``; returns their paths."""
    suite_dir = Path(suite_dir)
    tables = load_tables(suite_dir)
    title = f"IDE reproduction report: {suite_dir.resolve().name}"
    h = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    md = [f"# {title}", ""]
    for t in tables:
        h += [
            f"<h2>{html.escape(t['title'])} ({html.escape(t['test_pairing'])} test pairs)</h2>",
            f"<p>World <code>{t['world']}</code>, contour <code>{t['condition']}</code>, test pairing "
            f"<code>{t['test_pairing']}</code>, seeds {t['seeds']}, "
            f"test manifest sha256 <code>{t['manifest_sha256'][:12]}</code>.</p>",
            table_html(t),
            "<div>" + "".join(svg_bar_chart(t["records"], m) for m in METRICS) + "</div>",
        ]
        md += [(suite_dir / "tables" / f"table{t['table']}-{t['test_pairing']}.md").read_text(), ""]
        for r in t["records"]:
            curves, grids = row_media(r)
            if not curves and not grids:
                continue  # PULSE: nothing trained
            h.append(f"<h3>{html.escape(t['title'].split(':')[0])} / {html.escape(r['row'])}</h3>")
            md += [f"### {t['title'].split(':')[0]} / {r['row']}", ""]
            if curves:
                h.append(svg_line_chart(curves, f"{r['row']}: losses"))
                md += [f"Final train loss: {', '.join(f'{k} {v[1][-1]:.4f}' for k, v in curves.items())}", ""]
            validation = {d.name: validation_curves(d) for d in run_dirs(r)}
            for metric in VALIDATION_METRICS:
                series = {name: c[metric] for name, c in validation.items() if metric in c}
                if series:
                    h.append(svg_line_chart(series, f"{r['row']}: validation {LABELS[metric]}"))
            for name, c in validation.items():
                if c:
                    md += [f"Validation of {name}:", "", validation_table(c), ""]
            for g in grids:
                h.append(
                    f"<p>{html.escape(g.parent.parent.name)} (contour | identity | steps | target)</p>"
                    f"<img alt='{html.escape(g.name)}' src='{png_data_uri(g)}'>"
                )
                md += [f"![{g.parent.parent.name} {g.name}]({png_data_uri(g)})", ""]
    h.append("</body></html>")
    html_path, md_path = suite_dir / "report.html", suite_dir / "report.md"
    atomic_write_text(html_path, "\n".join(h))
    atomic_write_text(md_path, "\n".join(md))
    return html_path, md_path


def build_wandb_report(suite_dir: Path, project: str, entity: str):
    """The W&B Report object (not saved): per table its Markdown table, then per row a panel grid with
    the row's runs (found by run name), their loss curves and validation grids."""
    import wandb_workspaces.reports.v2 as wr

    tables = load_tables(suite_dir)
    blocks = [
        wr.H1(f"IDE reproduction: {Path(suite_dir).resolve().name}"),
        wr.P(
            "Tables 1 and 2 of the IDE paper reproduced with experiments/reproduce.py: ours beside the "
            "paper's numbers, then each row's loss and validation curves and validation grids."
        ),
    ]
    for t in tables:
        table_md = Path(suite_dir) / "tables" / f"table{t['table']}-{t['test_pairing']}.md"
        blocks += [
            wr.H2(f"{t['title']} ({t['test_pairing']} test pairs)"),
            wr.MarkdownBlock(table_md.read_text().split("\n", 2)[2]),
        ]
        for r in t["records"]:
            names = [d.name for d in run_dirs(r) if (d / "metrics.jsonl").is_file()]
            if not names:
                continue
            query = re.sub(r"-s\d*$", "", os.path.commonprefix(names))
            blocks += [
                wr.H3(f"{t['title'].split(':')[0]} / {r['row']}"),
                wr.PanelGrid(
                    runsets=[wr.Runset(entity=entity, project=project, name=r["row"], query=query)],
                    panels=[
                        wr.LinePlot(title="train/loss", x="Step", y=["train/loss"]),
                        *(wr.LinePlot(title=f"val/{m}", x="Step", y=[f"val/{m}"]) for m in VALIDATION_METRICS),
                        wr.MediaBrowser(title="validation grids", media_keys=["val/grid"]),
                    ],
                ),
            ]
    return wr.Report(
        project=project,
        entity=entity,
        title=f"IDE reproduction ({tables[0]['suite']})",
        description="Tables 1 and 2, loss curves and qualitative grids.",
        blocks=blocks,
    )


def suite_project(suite_dir: Path) -> str:
    """The W&B project the suite's runs logged to (from the first run's config.yaml)."""
    from omegaconf import OmegaConf

    for t in load_tables(suite_dir):
        for r in t["records"]:
            for d in run_dirs(r):
                if (d / "config.yaml").is_file():
                    return OmegaConf.load(d / "config.yaml").wandb.project
    return "ideface"
