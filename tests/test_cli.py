"""The command line: happy paths, one-line errors with exit status 2, no partial outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from dbksvd import DBKSVD, load
from dbksvd.cli import main
from dbksvd.data import make_sparse_problem


@pytest.fixture
def data(tmp_path):
    p = make_sparse_problem(1200, 20, 50, 3, snr_db=30, random_state=0)
    np.save(tmp_path / "x.npy", p.X)
    np.savez(tmp_path / "x.npz", emb=p.X, other=p.X[:, :5])
    return tmp_path, p


def test_fit_encode_evaluate(data, capsys):
    tmp, p = data
    assert main(["fit", str(tmp / "x.npy"), "--atoms", "50", "--nnz", "3", "--out", str(tmp / "m"),
                 "--iters", "15", "--batch-size", "2000", "--device", "cpu", "--quiet"]) == 0
    model = load(tmp / "m")
    assert model.components_.shape == (50, 20) and model.n_iter_ == 15
    assert main(["encode", str(tmp / "m"), str(tmp / "x.npz"), "--key", "emb", "--out", str(tmp / "codes.safetensors")]) == 0
    codes = load_file(str(tmp / "codes.safetensors"))
    assert codes["indices"].shape == (1200, 3) and codes["values"].shape == (1200, 3)
    capsys.readouterr()
    assert main(["evaluate", str(tmp / "m"), str(tmp / "x.npy"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["explained_signal"] > 0.8 and result["l0"] <= 3 and result["rows"] == 1200
    assert result["explained_signal"] == pytest.approx(model.score(p.X), abs=1e-6)
    assert main(["evaluate", str(tmp / "m"), str(tmp / "x.npy")]) == 0
    assert "explained_variance" in capsys.readouterr().out


def test_demo_runs(capsys, tmp_path):
    assert main(["demo", "--synthetic", "--samples", "3000", "--features", "20", "--atoms", "50", "--nnz", "3",
                 "--iters", "10", "--quiet", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "atom_recovery" in out and "explained_signal" in out
    assert (tmp_path / "demo" / "config.json").exists()


@pytest.mark.parametrize("args, words", [
    (["fit", "{t}/missing.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "no such file"),
    (["fit", "{t}/x.npz", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "choose one with --key"),
    (["fit", "{t}/x.npz", "--key", "nope", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "no array named 'nope'"),
    (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "30", "--out", "{t}/out"], "exceeds"),
    (["fit", "{t}/x.npy", "--atoms", "0", "--nnz", "1", "--out", "{t}/out"], "n_atoms must be >= 1"),
    (["fit", "{t}/nan.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "NaN"),
    (["fit", "{t}/obj.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "not a readable .npy"),
    (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "2", "--groups", "4,x", "--out", "{t}/out"], "--groups"),
    (["encode", "{t}/nomodel", "{t}/x.npy", "--out", "{t}/out.safetensors"], "no such model folder"),
    (["evaluate", "{t}/model", "{t}/x5.npy"], "features but the model was fitted with 20"),
])
def test_errors_are_one_line_and_write_nothing(data, capsys, args, words):
    tmp, p = data
    np.save(tmp / "nan.npy", np.full((10, 20), np.nan))
    np.save(tmp / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(tmp / "x5.npy", p.X[:, :5])
    DBKSVD(8, 2, preprocessing="none", max_iter=1, device="cpu").fit(p.X[:100]).save(tmp / "model")
    before = set(tmp.iterdir())
    assert main([a.format(t=tmp) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dbksvd: error:") and words in err and "\n" not in err
    assert set(tmp.iterdir()) == before


def test_interrupted_fit_saves_last_iteration(data, interrupt_at, capsys):
    tmp, _ = data
    interrupt_at(3)
    code = main(["fit", str(tmp / "x.npy"), "--atoms", "50", "--nnz", "3", "--out", str(tmp / "m"),
                 "--device", "cpu", "--quiet", "--batch-size", "500"])
    assert code == 130
    assert "after 2 iterations" in capsys.readouterr().err
    assert load(tmp / "m").n_steps_ == 2


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dbksvd.cli", "fit", str(tmp_path / "none.npy"), "--atoms", "4",
                           "--nnz", "1", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "no such file" in proc.stderr
