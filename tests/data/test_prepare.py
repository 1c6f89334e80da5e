"""`ideface-prepare celebahq`: cached label maps and sketches, resumability, bad-file list;
`ideface-prepare align`: raw photos aligned into a folder."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from data.celebahq.dataset import CelebAHQ
from data.celebahq.files import CelebAHQIndex, PreparedCache, build_label_map, build_sketch, load_photo
from data.images import load_image, load_label_map
from data.pairs import manifest_hash, read_manifest
from data.prepare import prepare_celebahq
from experiments.prepare import main

S = 32


def _outputs(out):
    return sorted(p for p in out.rglob("*") if p.is_file())


def test_prepare_builds_everything_once_and_resumes(mini_celebahq, tmp_path):
    out = tmp_path / "prepared"
    first = prepare_celebahq(mini_celebahq.root, out, size=S, progress=False)
    assert (first.built_labels, first.built_sketches, first.skipped) == (40, 40, 0) and first.bad == []
    index, cache = CelebAHQIndex(mini_celebahq.root), PreparedCache(out)
    for rec in index.records[::7]:
        assert torch.equal(load_label_map(cache.labels(S, rec.idx), 19), build_label_map(index, rec.idx, S))
        sketch = build_sketch(load_photo(index, rec.idx), S)
        assert (load_image(cache.sketch(S, rec.idx), channels=1) - sketch).abs().max() <= 1 / 127.5 + 1e-6
    assert cache.read_bad_files() == []
    modes = ("same_identity", "self", "random")
    assert set(first.manifests) == {f"{s}/{m}" for s in ("val", "test") for m in modes}
    for path, digest, status in first.manifests.values():
        assert status == "written" and manifest_hash(path) == digest
    test_rows = read_manifest(first.manifests["test/same_identity"][0])
    assert len(test_rows) == 150 and "paper: 2,842" in first.text()

    stamps = {p: p.stat().st_mtime_ns for p in _outputs(out) if p.name != "bad_files.tsv"}
    second = prepare_celebahq(mini_celebahq.root, out, size=S, progress=False)
    assert (second.built_labels, second.built_sketches, second.skipped) == (0, 0, 40)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten
    assert all(status == "unchanged" for _, _, status in second.manifests.values())
    assert {k: v[1] for k, v in second.manifests.items()} == {k: v[1] for k, v in first.manifests.items()}

    # an interrupted run: some outputs missing, a temporary file left behind
    lost = [cache.labels(S, r.idx) for r in index.records[:5]]
    lost += [cache.sketch(S, r.idx) for r in index.records[3:6]]
    for p in lost:
        p.unlink()
    (cache.labels(S, 0).parent / ".0.png.123.tmp").write_bytes(b"half")
    third = prepare_celebahq(mini_celebahq.root, out, size=S, progress=False)
    assert (third.built_labels, third.built_sketches, third.skipped) == (5, 3, 34)
    assert all(p.is_file() for p in lost)

    # the dataset reads the prepared manifest: the same pairs and hash as prepare reported
    ds = CelebAHQ(mini_celebahq.root, "test", "mask", input_size=S, cache_dir=out)
    assert ds.manifest.hash == first.manifests["test/same_identity"][1]


def test_parallel_workers_write_the_same_files(mini_celebahq, tmp_path):
    kw = dict(size=S, modes=("same_identity",), progress=False)
    prepare_celebahq(mini_celebahq.root, tmp_path / "one", **kw)
    report = prepare_celebahq(mini_celebahq.root, tmp_path / "two", workers=2, **kw)
    assert (report.built_labels, report.built_sketches) == (40, 40)
    one, two = _outputs(tmp_path / "one"), _outputs(tmp_path / "two")
    assert [p.relative_to(tmp_path / "one") for p in one] == [p.relative_to(tmp_path / "two") for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))


def test_every_bad_file_is_listed_and_left_out(damaged_celebahq, tmp_path):
    out = tmp_path / "prepared"
    report = prepare_celebahq(damaged_celebahq.tree.root, out, size=S, progress=False)
    bad = damaged_celebahq.bad
    expected = {
        (bad["corrupt"], "image"),
        (bad["truncated"], "image"),
        (bad["empty"], "image"),
        (bad["missing_image"], "image"),
        (bad["not_square"], "image"),
        (bad["missing_masks"], "mask"),
    }
    assert {(b.idx, b.kind) for b in report.bad} == expected
    assert not {b.idx for b in report.bad} & set(damaged_celebahq.converted.values())  # converted, not bad
    text = report.text()
    for idx, _ in expected:
        assert f"{idx}" in text
    assert "6 bad files" in text and "empty file" in text and "truncated" in text and "64x48" in text
    listed = PreparedCache(out).read_bad_files()
    assert [(b.idx, b.kind) for b in listed] == [(b.idx, b.kind) for b in report.bad]

    # the dataset leaves out exactly the listed images, loudly
    with pytest.warns(UserWarning, match="5 images left out"):
        train = CelebAHQ(damaged_celebahq.tree.root, "train", "lr", input_size=S, lr_size=8, cache_dir=out)
    assert len(train) == 15 and train.excluded_bad == 5
    bad_idx = {b.idx for b in report.bad}
    assert not bad_idx & {r.idx for r in train.records}
    for i in range(len(train)):
        train[i]  # every remaining item loads
    with pytest.warns(UserWarning, match="1 images left out"):
        test = CelebAHQ(damaged_celebahq.tree.root, "test", "lr", input_size=S, cache_dir=out)
    used = {r.contour for r in test.manifest.rows} | {r.identity for r in test.manifest.rows}
    assert str(bad["corrupt"]) not in used
    assert len(test) == 140  # 9000 now has 11 photos, 8100 has 3: 14 contours x 10

    # re-running retries only the bad ones (nothing else to do) and lists them again
    again = prepare_celebahq(damaged_celebahq.tree.root, out, size=S, progress=False)
    assert {(b.idx, b.kind) for b in again.bad} == expected and again.built_sketches == 0
    assert all(status == "unchanged" for _, _, status in again.manifests.values())


def test_cli(mini_celebahq, tmp_path, capsys):
    assert (
        main(
            [
                "celebahq",
                "--root",
                str(mini_celebahq.root),
                "--out",
                str(tmp_path / "o"),
                "--size",
                str(S),
                "--modes",
                "same_identity",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test images: 16 (paper: 2,842)" in out and "no bad files" in out and "150 from 15 contours" in out
    assert "(paper: 28,420 pairs)" in out and "test/same_identity" in out
    assert main(["celebahq", "--root", str(tmp_path / "missing"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a folder" in err
    with pytest.raises(SystemExit):
        main(["ffhq", "--root", "x"])


# ---- ideface-prepare align: raw photos -> aligned faces ------------------------------------------


def test_align_folder_aligns_resumes_and_lists_bad_photos(tmp_path, capsys):
    """Real photos (scikit-image's astronaut, and mirrored) in per-person sub-folders, a photo without a
    face and a broken file; two processes; a second run does no work and keeps the records."""
    from skimage import data

    from data.prepare import align_folder
    from models import dlibface

    if not dlibface.available():
        pytest.skip(f"dlib not installed ({dlibface.INSTALL})")
    src = tmp_path / "raw"
    (src / "eileen").mkdir(parents=True)
    (src / "cups").mkdir()
    Image.fromarray(data.astronaut()).save(src / "eileen" / "portrait.jpg", quality=95)
    Image.fromarray(data.astronaut()[:, ::-1]).save(src / "eileen" / "mirrored.png")
    Image.fromarray(data.coffee()).save(src / "cups" / "coffee.png")
    (src / "cups" / "broken.jpg").write_bytes(b"\xff\xd8 cut short")
    out = tmp_path / "aligned"
    report = align_folder(src, out, size=128, workers=2, progress=False)
    assert (report.aligned, report.skipped, report.aligners) == (2, 0, {"dlib": 2})
    assert sorted((Path(p).name, kind) for p, kind, _ in report.bad) == [
        ("broken.jpg", "unreadable"),
        ("coffee.png", "no_face"),
    ]
    face = Image.open(out / "eileen" / "portrait.png")
    assert face.size == (128, 128) and face.text["ideface.aligner"] == "dlib"
    assert len(face.text["ideface.points"].split(",")) == 10
    rows = (out / "alignment.tsv").read_text().splitlines()
    assert rows[0].startswith("file\taligner") and [r.split("\t")[:2] for r in rows[1:]] == [
        ["eileen/mirrored.png", "dlib"],
        ["eileen/portrait.jpg", "dlib"],
    ]
    bad = (out / "bad_files.tsv").read_text().splitlines()
    assert len(bad) == 3 and "coffee.png\tno_face\tno face found (dlib detector)" in bad[2]

    before = (out / "eileen" / "portrait.png").stat().st_mtime_ns
    again = align_folder(src, out, size=128, progress=False)
    assert (again.aligned, again.skipped, len(again.bad)) == (0, 2, 2)
    assert (out / "eileen" / "portrait.png").stat().st_mtime_ns == before
    assert (out / "alignment.tsv").read_text().splitlines() == rows

    assert main(["align", "--src", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_split_of_only_bad_images_writes_no_manifest_and_warns(mini_celebahq, tmp_path, capsys):
    import shutil

    root = tmp_path / "CelebAMask-HQ"
    shutil.copytree(mini_celebahq.root, root)
    test_images = [r[0] for r in mini_celebahq.split(2)]
    for idx in test_images:
        (root / "CelebA-HQ-img" / f"{idx}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "prepared"
    assert main(["celebahq", "--root", str(root), "--out", str(out), "--size", str(S), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"warning: every one of the {len(test_images)} test images is bad" in err and "no test manifest" in err
    assert not list(out.rglob("*test*.csv")) and list(out.rglob("*val*.csv"))
