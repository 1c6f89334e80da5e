"""The web demo's page (experiments.demo_app): its upload handling on tiny sketch / mask runs, the server
driven over HTTP by gradio_client (the real CLI in a subprocess), and the page in headless Chromium."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from data.images import save_image
from experiments.demo import build_parser
from experiments.demo_app import _sketch_is_blank, _upload
from experiments.demo_backend import DRAW, LABEL_MAP, SKETCH_IMAGE, Demo, DemoError, Upload
from tests.conftest import subprocess_env
from tests.experiments.test_pipeline import N_ITERS, make_tiny_run

from .conftest import uploads

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mask_and_sketch_checkpoints(tmp_path):
    run, _ = make_tiny_run(tmp_path, "mask")
    demo = Demo.load(run, examples_dir=tmp_path / "mask_examples")
    assert demo.modes == (LABEL_MAP,) and all(row[0] == LABEL_MAP for row in demo.examples.rows)
    mode, contour, ids = uploads(demo.examples.rows[0])
    out = demo.generate(mode, contour, ids[:2], aligned=True)
    assert len(out.steps) == N_ITERS and out.contour_sim[0] is not None  # the example's person is known
    assert out.seen[0][1].startswith("contour: test person")
    with pytest.raises(
        DemoError,
        match=r"contour \(person\d+_photo1.png\): cannot read this file: .*"
        r"this checkpoint takes label maps",
    ):
        demo.generate(mode, ids[0], ids[:1], aligned=True)  # a colour photo is not a label map

    run, _ = make_tiny_run(tmp_path, "sketch")
    demo = Demo.load(run, examples_dir=tmp_path / "sketch_examples")
    assert demo.modes == (SKETCH_IMAGE, DRAW)
    mode, contour, ids = uploads(demo.examples.rows[0])
    assert demo.generate(mode, contour, ids, aligned=True).contour_sim[0] is not None
    # a canvas drawing: black strokes on a transparent layer (what Gradio's Sketchpad composites)
    ink = np.zeros((256, 256, 4), np.uint8)
    ink[100:104, 40:220, 3] = 255
    Image.fromarray(ink).save(tmp_path / "composite.png")
    drawn = _upload(
        {
            "background": None,
            "layers": [],
            "composite": {"path": str(tmp_path / "composite.png"), "orig_name": "composite.png"},
        }
    )
    assert not _sketch_is_blank(drawn) and _sketch_is_blank(
        Upload.of(save_image(torch.ones(3, 8, 8), tmp_path / "white.png"))
    )
    out = demo.generate(DRAW, drawn, ids[:1], aligned=True)
    assert out.contour_sim == [None] and out.seen[0][1] == "contour"  # a drawing shows no known person


def test_cli_defaults_bind_this_machine_only():
    args = build_parser().parse_args([])
    assert (args.checkpoint, args.host, args.port, args.share) == ("toy", "127.0.0.1", 7860, False)


# ---- the server, over HTTP ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m experiments.demo --checkpoint toy`` on a free 127.0.0.1 port: (url, the process)."""
    pytest.importorskip("gradio", reason="the demo needs gradio: pip install -e '.[demo]'")
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.demo", "--checkpoint", "toy", "--port", str(port), "--threads", "1"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env({"PYTHONUNBUFFERED": "1"}),
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300  # about 15 s on an idle machine
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                pytest.fail(f"the demo server did not come up on {url}:\n{log.read()[-3000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def png_array(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_server_generates_over_http(server, toy):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    assert client.config["analytics_enabled"] is False
    mode, contour, *ids = toy.examples.rows[0]
    status, faces, step, strip, table, seen = client.predict(
        mode, handle_file(contour), None, *map(handle_file, ids), True, toy.pipe.n_iters, "", api_name="/generate"
    )
    s, n = toy.pipe.output_size, toy.pipe.n_iters
    assert status.startswith("Generated 4 face(s)"), status
    images = [png_array(f["image"]) for f in faces]
    assert [im.shape for im in images] == [(s, s, 3)] * 4 and faces[0]["caption"].startswith("face 1: IDSIM")
    assert all(np.abs(images[a].astype(int) - images[b]).mean() > 1 for a in range(4) for b in range(a))
    local = toy.generate(*uploads(toy.examples.rows[0]), aligned=True)
    for image, face in zip(images, local.faces):  # the server's PNGs are the generated faces, losslessly
        np.testing.assert_array_equal(image, face)
    assert step["maximum"] == n and step["value"] == n and png_array(strip).shape == (s, 5 * s, 3)
    assert "test person" in table and len(seen) == 5 and "aligned crop" in seen[1]["caption"]
    first = png_array(client.predict(1, api_name="/show_step"))
    assert first.shape == (s, 5 * s, 3) and not np.array_equal(first, png_array(strip))


def test_server_reports_bad_input_in_the_page(server, toy, tmp_path):
    from gradio_client import Client, handle_file

    (tmp_path / "notes.png").write_text("not an image")
    client = Client(server, verbose=False)
    mode, contour, *ids = toy.examples.rows[0]
    status, faces, *_ = client.predict(
        mode,
        handle_file(contour),
        None,
        handle_file(tmp_path / "notes.png"),
        None,
        None,
        None,
        True,
        toy.pipe.n_iters,
        "",
        api_name="/generate",
    )
    assert status.startswith("**Cannot generate:**") and faces == []
    assert "identity photo 1 (notes.png): cannot read this file" in status and "Traceback" not in status


@pytest.mark.slow
def test_page_in_headless_chromium(server, toy, tmp_path):
    pytest.importorskip("selenium", reason="the browser test needs selenium (in the dev extra)")
    from experiments import demo_screenshot as browser

    try:
        browser.find_browser()
    except browser.BrowserMissing as err:
        pytest.skip(str(err))
    driver = browser.open_browser()
    try:
        status = browser.run_example(driver, server, row=0)
        sizes = browser.face_sizes(driver)
        png = browser.page_png(driver)
    finally:
        driver.quit()
    (tmp_path / "demo.png").write_bytes(png)
    assert status.startswith("Generated 4 face(s)"), status
    assert sizes == [(toy.pipe.output_size,) * 2] * 4
    page = Image.open(tmp_path / "demo.png")
    assert page.width >= 1000 and page.height > 1000
