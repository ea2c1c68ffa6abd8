import numpy as np
import pytest

from osteolens.io.atomic import replaced_atomically


def test_the_new_file_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "sub" / "cache.npz"
    with replaced_atomically(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".tmp.npz") and tmp.name != target.name
        np.savez(tmp, a=np.arange(3))  # numpy keeps a name that already ends in .npz
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    assert [p.name for p in target.parent.iterdir()] == ["cache.npz"]


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "state.json"
    target.write_text('{"last_change": 7}')
    with pytest.raises(RuntimeError, match="disk full"):
        with replaced_atomically(target) as tmp:
            tmp.write_text('{"last_ch')
            raise RuntimeError("disk full")
    assert target.read_text() == '{"last_change": 7}' and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_two_writers_of_one_file_write_to_different_temporary_files(tmp_path):
    target = tmp_path / "state.json"
    with replaced_atomically(target) as first, replaced_atomically(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last: its file wins, whole
