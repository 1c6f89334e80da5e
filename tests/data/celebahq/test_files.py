"""CelebA-HQ's files (data.celebahq.files): the index joining the three annotation files, the counts against
the paper's, and one-line errors for missing or inconsistent files."""

import shutil

import pytest

from data.celebahq.dataset import CelebAHQ
from data.celebahq.files import (
    CelebAHQIndex,
    MissingDataError,
    count_report,
)

S = 32  # encoder input size in these tests (the photos are 64, the masks 32)
TEXT_FILES = ("CelebA-HQ-to-CelebA-mapping.txt", "identity_CelebA.txt", "list_eval_partition.txt")


def _text_only_root(tree, tmp_path, skip=()):
    root = tmp_path / "root"
    (root / "CelebA-HQ-img").mkdir(parents=True)
    for name in TEXT_FILES:
        if name not in skip:
            shutil.copy(tree.root / name, root / name)
    return root


def test_index_joins_the_three_files(mini_celebahq):
    index = CelebAHQIndex(mini_celebahq.root)
    assert [(r.idx, r.orig_file, r.identity, r.partition) for r in index.records] == mini_celebahq.records
    assert index.counts() == {
        "train": {"images": 20, "identities": 4},
        "val": {"images": 4, "identities": 2},
        "test": {"images": 16, "identities": 3},
    }
    test = index.split("test")
    assert [r.idx for r in test] == sorted(r.idx for r in test) and {r.partition for r in test} == {2}
    # CelebA's partition is identity-disjoint, and so are the splits
    ids = {s: {r.identity for r in index.split(s)} for s in ("train", "val", "test")}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
    assert not (ids["val"] & ids["test"])
    assert index.mask_path(2013, "hair").parts[-2:] == ("1", "02013_hair.png")
    assert index.mask_path(7, "skin").parts[-2:] == ("0", "00007_skin.png")
    assert set(index.mask_files(mini_celebahq.records[0][0])) >= {"skin", "nose", "hair"}
    with pytest.raises(ValueError, match="train, val, test"):
        index.split("dev")


def test_count_report_shows_the_papers_figures(mini_celebahq):
    text = count_report(CelebAHQIndex(mini_celebahq.root))
    assert "test images: 16 (paper: 2,842)" in text and "train: 20 images, 4 identities" in text


@pytest.mark.parametrize(
    "missing,source",
    [
        ("CelebA-HQ-to-CelebA-mapping.txt", "switchablenorms/CelebAMask-HQ"),
        ("identity_CelebA.txt", "mmlab.ie.cuhk.edu.hk"),
        ("list_eval_partition.txt", "mmlab.ie.cuhk.edu.hk"),
        ("CelebA-HQ-img", "switchablenorms/CelebAMask-HQ"),
    ],
)
def test_missing_files_are_named_with_their_source(mini_celebahq, tmp_path, missing, source):
    root = _text_only_root(mini_celebahq, tmp_path, skip=(missing,))
    if missing == "CelebA-HQ-img":
        (root / missing).rmdir()
    with pytest.raises(MissingDataError) as info:
        CelebAHQ(root, split="test", input_size=S)
    assert isinstance(info.value, FileNotFoundError)
    assert missing in str(info.value) and source in str(info.value)
    with pytest.raises(MissingDataError, match="data.root"):
        CelebAHQ(None)
    with pytest.raises(MissingDataError, match="not a folder"):
        CelebAHQIndex(tmp_path / "nowhere")


def test_celeba_files_in_their_archive_subfolders(mini_celebahq, tmp_path):
    root = _text_only_root(mini_celebahq, tmp_path, skip=TEXT_FILES[1:])
    (root / "Anno").mkdir()
    (root / "Eval").mkdir()
    shutil.copy(mini_celebahq.root / "identity_CelebA.txt", root / "Anno")
    shutil.copy(mini_celebahq.root / "list_eval_partition.txt", root / "Eval")
    assert len(CelebAHQIndex(root).records) == 40


def test_inconsistent_annotation_files_are_reported(mini_celebahq, tmp_path):
    root = _text_only_root(mini_celebahq, tmp_path)
    lines = (root / "identity_CelebA.txt").read_text().splitlines()
    first_hq = mini_celebahq.records[0][1]
    kept = [x for x in lines if not x.startswith(first_hq)]
    (root / "identity_CelebA.txt").write_text("\n".join(kept) + "\n")
    with pytest.raises(ValueError, match=f"no identity in .*identity_CelebA.txt.*{first_hq}"):
        CelebAHQIndex(root)
    root2 = _text_only_root(mini_celebahq, tmp_path / "b")
    mapping = (root2 / TEXT_FILES[0]).read_text().splitlines()
    (root2 / TEXT_FILES[0]).write_text("\n".join(mapping[1:]) + "\n")
    with pytest.raises(ValueError, match="header"):
        CelebAHQIndex(root2)
    (root2 / TEXT_FILES[0]).write_text("\n".join(mapping) + "\n")
    (root2 / TEXT_FILES[2]).write_text((root2 / TEXT_FILES[2]).read_text() + "999999.jpg 7\n")
    with pytest.raises(ValueError, match="0, 1 or 2"):
        CelebAHQIndex(root2)
