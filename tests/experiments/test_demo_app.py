"""The web demo: its functions on the shipped toy encoder and on tiny sketch / mask runs, the server
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

from data.images import save_image, save_label_map, to_uint8
from experiments.demo import build_parser
from experiments.demo_app import (
    ALIGNED_LABEL,
    DRAW,
    LABEL_MAP,
    LR_IMAGE,
    MAX_IDENTITIES,
    PHOTO_TO_LR,
    SKETCH_IMAGE,
    Demo,
    DemoError,
    Upload,
    _sketch_is_blank,
    _upload,
    max_steps,
)
from experiments.pipeline import load_pipeline
from tests.conftest import subprocess_env
from tests.experiments.test_pipeline import N_ITERS, make_tiny_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    # the cascade: the aligner every machine has (dlib, the default where installed, is tested in data/)
    demo = Demo.load("toy", examples_dir=tmp_path_factory.mktemp("examples"), detector="cascade")
    yield demo
    demo.close()


def uploads(row):
    """An example row -> (mode, contour Upload, identity Uploads)."""
    mode, contour, *ids = row
    return mode, Upload.of(contour), [Upload.of(p) for p in ids]


def lines(err: pytest.ExceptionInfo) -> list[str]:
    return err.value.lines


def test_examples_are_the_toy_worlds_test_identities(toy):
    assert [row[0] for row in toy.examples.rows] == [PHOTO_TO_LR, PHOTO_TO_LR, LR_IMAGE]
    for mode, contour, *ids in toy.examples.rows:
        assert len(ids) == MAX_IDENTITIES and all(os.path.isfile(p) for p in [contour, *ids])
        # identity photo 1 is another photo of the contour's person; the others are other people
        _, person = toy.read_contour(mode, Upload.of(contour), aligned=True)
        who = [toy.read_identity(Upload.of(p), aligned=True)[2].label for p in ids]
        assert who[0] == person.label and len(set(who)) == MAX_IDENTITIES and who[0].startswith("test person")
    assert Image.open(toy.examples.rows[2][1]).size == (toy.pipe.lr_size,) * 2  # an LR image at the model's LR size


def test_generate_four_faces_as_the_pipeline_does(toy):
    mode, contour, ids = uploads(toy.examples.rows[0])
    out = toy.generate(mode, contour, ids, aligned=True)
    s, n = toy.pipe.output_size, toy.pipe.n_iters
    assert [f.shape for f in out.faces] == [(s, s, 3)] * 4 and all(f.dtype == np.uint8 for f in out.faces)
    assert len(out.steps) == n and all(strip.shape == (s, 5 * s, 3) for strip in out.steps)
    np.testing.assert_array_equal(out.steps[-1][:, s : 2 * s], out.faces[0])  # the last step is the result
    person = toy.read_contour(mode, contour, aligned=True)[1].label
    assert len(out.seen) == 5 and out.seen[0][1] == f"contour: {person}"
    assert out.seen[1][1] == f"identity 1: used as an aligned crop ({person})"
    # the same generation as the API: an LR contour made from the aligned photo, the aligned identity photo
    from data.conditions import lr_downsample

    lr = lr_downsample(toy.pipe.align(contour.path, aligned=True).image, toy.pipe.lr_size)
    api = toy.pipe(lr, [p.path for p in ids], aligned=True)
    for face, expected in zip(out.faces, api.image):
        np.testing.assert_array_equal(face, to_uint8(expected))
    # different identity photos give different faces
    assert all(np.abs(out.faces[a].astype(int) - out.faces[b]).mean() > 1 for a in range(4) for b in range(a))
    assert all(-1 <= v <= 1 for v in out.identity_sim + out.contour_sim)
    assert "test person" in out.table and out.status.startswith("Generated 4 face(s)")


def test_one_identity_steps_and_seed(toy):
    mode, contour, ids = uploads(toy.examples.rows[1])
    fixed = toy.generate(mode, contour, [None, ids[2], None, None], aligned=True, n_iters=2)
    assert len(fixed.faces) == 1 and len(fixed.steps) == 2 and fixed.captions[0].startswith("face 1: IDSIM")
    a = toy.generate(mode, contour, [ids[2]], aligned=True, n_iters=2, seed="7")
    b = toy.generate(mode, contour, [ids[2]], aligned=True, n_iters=2, seed=7)
    np.testing.assert_array_equal(a.faces[0], b.faces[0])
    assert not np.array_equal(a.faces[0], fixed.faces[0]) and "noise seed 7" in a.status
    with pytest.raises(DemoError) as err:
        toy.generate(mode, contour, [ids[0]], aligned=True, n_iters=max_steps(toy.pipe) + 1, seed="x1")
    assert len(lines(err)) == 2 and "refinement steps must be" in lines(err)[0] and "whole number" in lines(err)[1]


def test_bad_inputs_give_one_line_each(toy, tmp_path):
    mode, contour, ids = uploads(toy.examples.rows[0])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    blank = save_image(torch.zeros(3, 200, 200), tmp_path / "wall.png")  # a gray wall: no face
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[16:48, 16:48] = 1
    label_map = save_label_map(labels, tmp_path / "labels.png")
    with pytest.raises(DemoError) as err:
        toy.generate(
            LR_IMAGE,
            Upload.of(label_map),
            [None, Upload.of(tmp_path / "broken.png", "me.png"), Upload.of(blank)],
            aligned=False,
        )
    found = lines(err)
    assert len(found) == 3, found
    assert found[0].startswith("contour (labels.png): this is a label map") and "takes lr contours" in found[0]
    assert found[1].startswith("identity photo 2 (me.png): cannot read this file: not a recognised image")
    assert found[2].startswith("identity photo 3 (wall.png): no face found (cascade detector)")
    assert f"tick '{ALIGNED_LABEL}'" in found[2] and str(tmp_path) not in " ".join(found)
    # toy photos are not found by the cascade either: the page says what to tick
    with pytest.raises(DemoError, match="no face found"):
        toy.generate(mode, contour, ids[:1], aligned=False)
    with pytest.raises(DemoError) as err:
        toy.generate(mode, None, [None] * 4, aligned=True)
    assert lines(err) == [
        "give a contour: a face photo (made into a 8x8 LR contour)",
        "give at least one identity photo (up to 4)",
    ]
    with pytest.raises(DemoError, match="not one of this checkpoint's"):
        toy.generate(LABEL_MAP, contour, ids, aligned=True)


def test_a_real_photo_is_aligned_by_the_cascade(toy):
    insightface = pytest.importorskip("insightface")
    tom = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "Tom_Hanks_54745.png")
    out = toy.generate(PHOTO_TO_LR, Upload.of(tom), [Upload.of(tom)], aligned=False)
    assert out.seen[0][1] == "contour: the contour photo (Tom_Hanks_54745.png)"
    assert out.seen[1][1] == "identity 1: cascade" and out.contour_sim[0] is not None
    assert out.identity_sim[0] == pytest.approx(out.contour_sim[0], abs=1e-5)  # the same photo


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


def test_without_an_idsim_network(tmp_path):
    run, _ = make_tiny_run(tmp_path)
    pipe = load_pipeline(run)
    demo = Demo(pipe, None, "identity similarity unavailable (no such file)")
    save_image(torch.rand(3, 64, 64) * 2 - 1, tmp_path / "id.png")
    save_image(torch.rand(3, 8, 8) * 2 - 1, tmp_path / "lr.png")
    out = demo.generate(LR_IMAGE, Upload.of(tmp_path / "lr.png"), [Upload.of(tmp_path / "id.png")], aligned=True)
    assert out.identity_sim == [None] and out.captions == ["face 1"] and "unavailable" in out.table
    assert "unavailable" in demo.describe() and demo.examples.rows == []


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
def test_page_in_headless_chromium(server, tmp_path):
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
    assert sizes == [(64, 64)] * 4
    page = Image.open(tmp_path / "demo.png")
    assert page.width >= 1000 and page.height > 1000
