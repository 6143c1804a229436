"""Reading array files and writing atomically."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from dbksvd import DataFileError
from dbksvd.io import atomic_path, load_array, write_json


def test_formats_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", x=a)
    np.savez(tmp_path / "two.npz", x=a, y=a * 2)
    save_file({"emb": a, "other": a[:1]}, str(tmp_path / "a.safetensors"))
    m = load_array(tmp_path / "a.npy")
    assert isinstance(m, np.memmap) and not m.flags.writeable
    np.testing.assert_array_equal(m, a)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), a)
    np.testing.assert_array_equal(load_array(tmp_path / "two.npz", "y"), a * 2)
    np.testing.assert_array_equal(load_array(tmp_path / "a.safetensors", "emb"), a)


@pytest.mark.parametrize(
    "make, key, words",
    [
        (lambda p: None, None, "no such file"),
        (
            lambda p: (
                np.save(p.with_suffix(".npy"), np.ones(3))
                or p.with_suffix(".npy").write_bytes(p.with_suffix(".npy").read_bytes()[:-8])
            ),
            None,
            "not a readable .npy",
        ),
        (lambda p: p.with_suffix(".npz").write_bytes(b"garbage"), None, "not a readable .npz"),
        (
            lambda p: p.with_suffix(".safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}"),
            None,
            "not a readable .safetensors",
        ),
        (lambda p: np.savez(p.with_suffix(".npz"), x=np.ones(2), y=np.ones(2)), None, "choose one with --key"),
        (lambda p: np.savez(p.with_suffix(".npz"), x=np.ones(2)), "z", "no array named 'z'"),
        (lambda p: p.with_suffix(".csv").write_text("1,2"), None, "unsupported file type"),
    ],
)
def test_bad_files_are_named(tmp_path, make, key, words):
    base = tmp_path / "f"
    make(base)
    candidates = [c for c in tmp_path.iterdir()] or [base.with_suffix(".npy")]
    with pytest.raises(DataFileError) as info:
        load_array(candidates[0], key)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, OSError)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert target.read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1


def test_atomic_folder_replaces_old(tmp_path):
    target = tmp_path / "model"
    for text in ["one", "two"]:
        with atomic_path(target, directory=True) as tmp:
            (tmp / "f").write_text(text)
    assert (target / "f").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
