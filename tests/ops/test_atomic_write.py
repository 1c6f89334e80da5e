import numpy as np
import pytest

from ops.atomic_write import atomic_path, atomic_write_bytes, atomic_write_text


def test_text_and_bytes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new ü")
    assert path.read_text(encoding="utf-8") == "new ü"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_a_failed_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "stats.npz"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["stats.npz"]


def test_the_temporary_keeps_the_suffix_for_writers_that_add_theirs(tmp_path):
    """numpy's savez appends .npz to a name without it: the temporary must end in .npz to be the file written."""
    path = tmp_path / "chunk_0000000_0000050.npz"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".npz"
        np.savez(tmp, a=np.arange(3))
    assert np.load(path)["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
