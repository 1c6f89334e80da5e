"""The web demo's page (Gradio) on a :class:`experiments.demo_backend.Demo`, for ``experiments/demo.py`` (the
command) and ``experiments/benchmark.py demo`` / ``experiments/figure.py demo-screenshot``, which serve it
in-process: :func:`build_app` lays out the page, :func:`launch` serves it.
"""

from __future__ import annotations

import os
from pathlib import Path

from experiments.demo_backend import ALIGNED_LABEL, DRAW, MAX_IDENTITIES, Demo, DemoError, Upload, max_steps

# Set before gradio is imported: it reads the variable at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# The step strip fills the page's width (Gradio shows an image at most at its own size: scale-down).
PAGE_CSS = (
    "#step_view button, #step_view .image-frame { width: 100%; } "
    "#step_view img { width: 100% !important; height: auto !important; object-fit: contain !important; }"
)


def _upload(value) -> Upload | None:
    """A raw Gradio file value (``preprocess=False``: {"path", "orig_name", ...}) -> an Upload."""
    if not value:
        return None
    if isinstance(value, dict) and "composite" in value:  # a Sketchpad: the flattened drawing
        value = value.get("composite")
        if not value:
            return None
    if isinstance(value, (str, Path)):
        return Upload.of(value)
    path = value.get("path")
    return Upload.of(path, value.get("orig_name")) if path else None


def _sketch_is_blank(upload: Upload | None) -> bool:
    from data.align import load_rgb

    return upload is None or bool((load_rgb(upload.path) > 250).all())


def build_app(demo: Demo):
    """The page as Gradio Blocks (not launched). Its API endpoint ``/generate`` takes (mode, contour,
    sketch, identity photo 1..4, aligned, steps, seed) and returns (status, faces, step slider, step
    image, similarity table, what the encoder sees); ``/show_step`` takes a step and returns its image."""
    import gradio as gr

    pipe, n_max = demo.pipe, max_steps(demo.pipe)

    def on_mode(mode):
        return (gr.Image(visible=mode != DRAW, label=demo.contour_label(mode)), gr.Sketchpad(visible=mode == DRAW))

    def on_generate(mode, contour, sketch, *rest):
        ids, (aligned, n_iters, seed) = rest[:MAX_IDENTITIES], rest[MAX_IDENTITIES:]
        source = _upload(sketch) if mode == DRAW else _upload(contour)
        if mode == DRAW and _sketch_is_blank(source):
            source = None
        try:
            out = demo.generate(mode, source, [_upload(v) for v in ids], bool(aligned), n_iters=n_iters, seed=seed)
        except DemoError as err:
            return (
                "**Cannot generate:**\n" + "\n".join(f"- {line}" for line in err.lines),
                [],
                gr.skip(),
                None,
                "",
                [],
                [],
            )
        n = len(out.steps)
        return (
            out.status,
            list(zip(out.faces, out.captions)),
            gr.Slider(minimum=1, maximum=n, value=n, step=1),
            out.steps[-1],
            out.table,
            out.seen,
            out.steps,
        )

    def on_step(t, strips):
        return strips[int(min(max(t, 1), len(strips))) - 1] if strips else None

    with gr.Blocks(title="ideface: identity-guided face generation", analytics_enabled=False) as app:
        gr.Markdown(
            "## Identity-guided face generation\nOne contour and one to four identity photos give one face "
            "per identity photo. " + demo.describe()
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                mode = gr.Radio(list(demo.modes), value=demo.modes[0], label="contour input", elem_id="mode")
                contour = gr.Image(
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    label=demo.contour_label(demo.modes[0]),
                    height=200,
                    elem_id="contour",
                )
                sketch = gr.Sketchpad(
                    visible=False,
                    label="draw the contour",
                    canvas_size=(256, 256),
                    brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=4),
                    elem_id="sketch",
                )
            with gr.Column(scale=4):
                with gr.Row():
                    ids = [
                        gr.Image(
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "clipboard"],
                            label=f"identity photo {k + 1}",
                            height=150,
                            elem_id=f"identity{k + 1}",
                        )
                        for k in range(MAX_IDENTITIES)
                    ]
                with gr.Row():
                    aligned = gr.Checkbox(
                        value=demo.rendered, label=ALIGNED_LABEL, info=f"Otherwise: {demo.aligner()}.", scale=2
                    )
                    steps = gr.Slider(
                        1, n_max, value=pipe.n_iters, step=1, label="refinement steps", interactive=n_max > 1, scale=1
                    )
                    seed = gr.Textbox(
                        value="", label="noise seed", placeholder="empty: the generator's fixed noise", scale=1
                    )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
        if demo.examples.rows:
            gr.Examples(
                demo.examples.rows,
                inputs=[mode, contour, *ids],
                elem_id="examples",
                label="Examples: the world's test people (identity photo 1 is the contour's person)",
            )
        status = gr.Markdown(elem_id="status")
        faces = gr.Gallery(
            label="one face per identity photo",
            columns=MAX_IDENTITIES,
            format="png",
            object_fit="contain",
            height=340,
            allow_preview=False,
            elem_id="faces",
        )
        step = gr.Slider(
            1, max(pipe.n_iters, 2), value=pipe.n_iters, step=1, label="refinement step to show", elem_id="step"
        )
        step_view = gr.Image(
            label="at this step: contour | one face per identity photo",
            format="png",
            interactive=False,
            height=None,
            elem_id="step_view",
        )
        with gr.Row():
            with gr.Column(scale=1):
                table = gr.Markdown(elem_id="table")
            with gr.Column(scale=1):
                seen = gr.Gallery(
                    label="what the encoder sees: the contour and the aligned identity photos",
                    columns=MAX_IDENTITIES + 1,
                    format="png",
                    height=180,
                    allow_preview=False,
                    elem_id="seen",
                )
        strips = gr.State([])
        mode.change(on_mode, mode, [contour, sketch], api_visibility="private")
        button.click(
            on_generate,
            [mode, contour, sketch, *ids, aligned, steps, seed],
            [status, faces, step, step_view, table, seen, strips],
            preprocess=False,
            api_name="generate",
        )
        step.change(on_step, [step, strips], step_view, api_name="show_step")
    return app


def launch(
    app, demo: Demo, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False, block: bool = True
) -> str:
    """Serve the page (one generation at a time); returns its local URL once it is up (``block=False``)
    or when the server stops. ``port=None`` takes the first free port from 7860 on."""
    app.queue(default_concurrency_limit=1)
    folder = demo.examples.folder
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=share,
        show_error=False,
        prevent_thread_lock=not block,
        quiet=not block,
        css=PAGE_CSS,
        allowed_paths=[str(folder)] if folder else None,
        footer_links=["api", "settings"],
    )
    return url
