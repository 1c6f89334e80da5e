"""``inference`` and ``demo``: images/s of ``load_pipeline`` and the evaluation loop; seconds per Generate click
of the web demo."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from functools import partial

import torch

from .registry import DEVICE_ARGS, arg, environment, interleaved, run_row, setup, subcommand, timed


@subcommand(
    "inference",
    "images/s of load_pipeline(checkpoint) and of the evaluation loop on the toy test pairs",
    arg("--checkpoint", default="toy", help="a run folder, or toy (the shipped toy encoder)"),
    arg("--batch", type=int, default=50, help="pairs per call (the toy eval batch)"),
    arg("--pairs", type=int, default=100, help="test pairs timed per iteration"),
    arg("--iters", type=int, default=3, help="timed passes over the pairs"),
    arg("--warmup", type=int, default=1),
    *DEVICE_ARGS,
)
def inference(args) -> dict:
    """``pipeline``: ``load_pipeline(checkpoint).run_tensors`` (every refinement step, no grad) over the
    first ``--pairs`` toy test pairs in batches of ``--batch``; ``evaluation``: the evaluation loop's work
    on them, the same outputs plus ``MetricSuite.per_pair`` (LPIPS, IDSIM, FID features). The pairs are
    rendered beforehand: the renderer's cost is the data's, not the loop's. Only APIs older checkouts share,
    so ``trees`` can time one against this."""
    from experiments.config import load_config
    from experiments.pipeline import load_pipeline
    from experiments.world import build_dataset
    from metrics.suite import MetricSuite

    device = setup(args)
    cfg = load_config(["world=toy"])
    test_set = build_dataset(cfg, "test")
    items = [test_set[i] for i in range(min(args.pairs, len(test_set)))]
    batches = [
        {
            k: torch.stack([it[k] for it in items[i : i + args.batch]]).to(device)
            for k in ("contour", "identity", "target")
        }
        for i in range(0, len(items), args.batch)
    ]
    pipe = load_pipeline(args.checkpoint, device=device)
    suite = MetricSuite.from_config(cfg, device)

    def pipeline():
        for b in batches:
            pipe.run_tensors(b["contour"], b["identity"])

    def evaluation():
        for b in batches:
            suite.per_pair(pipe.run_tensors(b["contour"], b["identity"]).image, b["target"], b["identity"])

    seconds = interleaved({"pipeline": pipeline, "evaluation": evaluation}, device, args.iters, args.warmup)
    n = len(items)
    return {
        "benchmark": "inference",
        **environment(device),
        "checkpoint": args.checkpoint,
        "pairs": n,
        "batch": args.batch,
        "iters": args.iters,
        "results": [
            {"loop": name, "images_per_s": round(n / t, 2), "seconds_per_pass": round(t, 3)}
            for name, t in seconds.items()
        ],
    }


@subcommand(
    "demo",
    "the web demo (experiments/demo.py): seconds per Generate click of one contour and four identity photos",
    arg("--checkpoint", default="toy", help="a toy-world checkpoint (the examples are its test identities)"),
    arg("--iters", type=int, default=5, help="timed calls of each"),
    arg("--warmup", type=int, default=1),
    arg("--no-server", action="store_true", help="skip the round trip through a local server (gradio_client)"),
    *DEVICE_ARGS,
)
def demo(args) -> dict:
    """The first toy example (an LR contour made from a photo, four identity photos). Rows: ``pipeline``
    (the encoder and generator alone, prepared tensors), ``click`` (``Demo.generate``: reading and
    aligning the files, generation, IDSIM, the display images) and ``round_trip`` (the page's
    ``/generate`` endpoint through gradio_client on 127.0.0.1: uploads, the click, downloads). Each row
    gives wall seconds and the process's CPU seconds per call (the CPU figure is what a busy machine
    does not change; the server's CPU time is in the same process)."""
    from experiments.demo_backend import Demo, Upload

    device = setup(args)
    d = Demo.load(args.checkpoint, device=device)
    if not d.examples.rows:
        raise SystemExit(f"benchmark demo: {args.checkpoint} is not a toy-world checkpoint (no examples to run)")
    mode, contour, *ids = d.examples.rows[0]
    click = partial(d.generate, mode, Upload.of(contour), [Upload.of(p) for p in ids], aligned=True)
    c, _ = d.read_contour(mode, Upload.of(contour), aligned=True)
    identity = torch.stack([d.read_identity(Upload.of(p), aligned=True)[0] for p in ids])
    calls = {"pipeline": partial(d.pipe.run_tensors, c[None].expand(len(ids), -1, -1, -1), identity), "click": click}
    app = None
    if not args.no_server:
        app, calls["round_trip"] = _demo_round_trip(d, mode, contour, ids)
    results = []
    try:
        for name, fn in calls.items():
            row = {"row": name, "faces": len(ids), "n_iters": d.pipe.n_iters}
            results.append(run_row(row, device, partial(_wall_and_cpu, fn, device, args.iters, args.warmup)))
    finally:
        if app is not None:
            with contextlib.redirect_stdout(sys.stderr):  # gradio says goodbye on stdout, which is for the JSON
                app.close()
        d.close()
    return {
        "benchmark": "demo",
        "checkpoint": str(args.checkpoint),
        **environment(device),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "results": results,
    }


def _wall_and_cpu(fn, device: torch.device, iters: int, warmup: int) -> dict:
    cpu = time.process_time()
    wall = timed(fn, device, iters, warmup)
    cpu = (time.process_time() - cpu) / (iters + warmup)  # warm-up calls cost the same once warm
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)}


def _demo_round_trip(d, mode: str, contour: str, ids: list[str]):
    """Launch the demo page on a free 127.0.0.1 port; (the app, a function making one /generate call)."""
    from gradio_client import Client, handle_file

    from experiments.demo_app import build_app, launch

    app = build_app(d)
    with contextlib.redirect_stdout(sys.stderr):
        url = launch(app, d, port=None, block=False)
    client = Client(url, verbose=False)
    files = [handle_file(contour), None, *map(handle_file, ids)]
    return app, partial(client.predict, mode, *files, True, d.pipe.n_iters, "", api_name="/generate")
