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
    assert (
        main(
            [
                "fit",
                str(tmp / "x.npy"),
                "--atoms",
                "50",
                "--nnz",
                "3",
                "--out",
                str(tmp / "m"),
                "--iters",
                "15",
                "--batch-size",
                "2000",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    model = load(tmp / "m")
    assert model.components_.shape == (50, 20) and model.n_iter_ == 15
    assert (
        main(["encode", str(tmp / "m"), str(tmp / "x.npz"), "--key", "emb", "--out", str(tmp / "codes.safetensors")])
        == 0
    )
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
    assert (
        main(
            [
                "demo",
                "--synthetic",
                "--samples",
                "3000",
                "--features",
                "20",
                "--atoms",
                "50",
                "--nnz",
                "3",
                "--iters",
                "10",
                "--quiet",
                "--out",
                str(tmp_path / "demo"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "atom_recovery" in out and "explained_signal" in out
    assert (tmp_path / "demo" / "config.json").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["fit", "{t}/missing.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "no such file"),
        (["fit", "{t}/x.npz", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "choose one with --key"),
        (
            ["fit", "{t}/x.npz", "--key", "nope", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"],
            "no array named 'nope'",
        ),
        (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "30", "--out", "{t}/out"], "exceeds"),
        (["fit", "{t}/x.npy", "--atoms", "0", "--nnz", "1", "--out", "{t}/out"], "n_atoms must be >= 1"),
        (["fit", "{t}/nan.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "NaN"),
        (["fit", "{t}/obj.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/out"], "not a readable .npy"),
        (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "2", "--groups", "4,x", "--out", "{t}/out"], "--groups"),
        (["encode", "{t}/nomodel", "{t}/x.npy", "--out", "{t}/out.safetensors"], "no such model folder"),
        (["evaluate", "{t}/model", "{t}/x5.npy"], "features but the model was fitted with 20"),
    ],
)
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
    code = main(
        [
            "fit",
            str(tmp / "x.npy"),
            "--atoms",
            "50",
            "--nnz",
            "3",
            "--out",
            str(tmp / "m"),
            "--device",
            "cpu",
            "--quiet",
            "--batch-size",
            "500",
        ]
    )
    assert code == 130
    assert "after 2 iterations" in capsys.readouterr().err
    assert load(tmp / "m").n_steps_ == 2


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dbksvd.cli",
            "fit",
            str(tmp_path / "none.npy"),
            "--atoms",
            "4",
            "--nnz",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "no such file" in proc.stderr


@pytest.fixture(scope="module")
def text_store(tmp_path_factory):
    """A real MiniLM store of 120 emoji names, made through `dbksvd embed`."""
    from dbksvd.data import EmojiDataset

    tmp = tmp_path_factory.mktemp("texts")
    names = [item.caption for item in EmojiDataset(limit=400).items()][::3][:120]
    (tmp / "names.txt").write_text("\n".join(names) + "\n")
    assert main(["embed", "--dataset", f"texts:{tmp / 'names.txt'}", "--out", str(tmp / "store"), "--quiet"]) == 0
    return tmp


def test_embed_fit_encode_evaluate_on_a_store(text_store, capsys, tmp_path):
    tmp = text_store
    store = str(tmp / "store")
    assert main(["embed", "--dataset", f"texts:{tmp / 'names.txt'}", "--out", store, "--quiet"]) == 0
    assert "120 rows" in capsys.readouterr().out  # the rerun reuses the finished store
    assert (
        main(["fit", store, "--atoms", "24", "--nnz", "4", "--iters", "10", "--out", str(tmp_path / "m"), "--quiet"])
        == 0
    )
    model = load(tmp_path / "m")
    assert model.components_.shape == (24, 384) and model.data_info_["encoder"] == "minilm"
    assert main(["encode", str(tmp_path / "m"), store, "--out", str(tmp_path / "codes")]) == 0
    codes = load_file(str(tmp_path / "codes.safetensors"))
    assert codes["indices"].shape == (120, 4) and codes["row_norms"].shape == (120,)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), store, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 120 and 0.3 < result["explained_signal"] <= 1


def _foreign_store(path, dim):
    from dbksvd.data import StoreWriter

    w = StoreWriter(
        path, dataset={"name": "other"}, spaces={"text": {"encoder": {"name": "other-encoder"}, "dim": dim}}
    )
    w.add_shard(
        {"text": np.random.default_rng(0).standard_normal((10, dim))}, [{"id": str(i)} for i in range(10)], next_item=10
    )
    w.finish()


@pytest.mark.parametrize(
    "args, words",
    [
        (["embed", "--dataset", "imagenet", "--out", "{t}/out"], "dataset"),
        (["embed", "--dataset", "emoji", "--encoder", "resnet", "--out", "{t}/out"], "encoder"),
        (["embed", "--dataset", "folder:{t}/empty", "--out", "{t}/out"], "no usable images"),
        (
            ["embed", "--dataset", "texts:{t}/names.txt", "--encoder", "effnet-lite0", "--out", "{t}/out"],
            "cannot embed texts",
        ),
        (["embed", "--dataset", "texts:{t}/missing.txt", "--out", "{t}/out"], "does not exist"),
        (["evaluate", "{t}/m", "{t}/dim32"], "has 32 features but the model was fitted with 384"),
        (["evaluate", "{t}/m", "{t}/other384"], "fitted on minilm embeddings"),
        (["fit", "{t}/newer", "--atoms", "4", "--nnz", "1", "--out", "{t}/out"], "newer dbksvd"),
        (
            ["fit", "{t}/store", "--space", "image", "--atoms", "4", "--nnz", "1", "--out", "{t}/out"],
            "no space 'image'",
        ),
    ],
)
def test_store_errors_are_one_line_and_write_nothing(text_store, tmp_path, capsys, args, words):
    import shutil

    t = tmp_path
    shutil.copytree(text_store / "store", t / "store")
    shutil.copy(text_store / "names.txt", t / "names.txt")
    (t / "empty").mkdir()
    (t / "empty" / "readme.txt").write_text("no images here")
    _foreign_store(t / "dim32", 32)
    _foreign_store(t / "other384", 384)
    shutil.copytree(t / "dim32", t / "newer")
    manifest = json.loads((t / "newer" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (t / "newer" / "manifest.json").write_text(json.dumps(manifest))
    DBKSVD(8, 2, max_iter=2, device="cpu").fit(np.load(t / "store" / "text" / "shard-00000.npy")).save(t / "m")
    load(t / "m")  # sanity
    m = json.loads((t / "m" / "config.json").read_text())
    m["data"] = {"encoder": "minilm"}
    (t / "m" / "config.json").write_text(json.dumps(m))
    before = set(t.rglob("*"))
    assert main([a.format(t=t) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dbksvd: error:") and words in err and "\n" not in err, err
    assert set(t.rglob("*")) == before


def test_interrupted_embed_resumes_with_the_same_command(text_store, tmp_path, monkeypatch, capsys):
    from dbksvd.data import EmbeddingStore, TextsDataset

    args = [
        "embed",
        "--dataset",
        f"texts:{text_store / 'names.txt'}",
        "--out",
        str(tmp_path / "s"),
        "--shard-rows",
        "32",
        "--batch-size",
        "8",
        "--quiet",
    ]
    real, calls = TextsDataset.load, []

    def load(self, item):
        calls.append(1)
        if len(calls) == 75:
            raise KeyboardInterrupt
        return real(self, item)

    monkeypatch.setattr(TextsDataset, "load", load)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "64 rows are safely in" in err and "rerun the same command to resume" in err
    monkeypatch.setattr(TextsDataset, "load", real)
    assert main(args) == 0
    resumed, reference = EmbeddingStore(tmp_path / "s"), EmbeddingStore(text_store / "store")
    assert [r["id"] for r in resumed.metadata()] == [r["id"] for r in reference.metadata()]
    np.testing.assert_allclose(
        resumed.space().to_numpy().astype(np.float32), reference.space().to_numpy().astype(np.float32), atol=2e-3
    )


def test_version_and_module_entry_point():
    from dbksvd import __version__

    out = subprocess.run([sys.executable, "-m", "dbksvd", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"dbksvd {__version__}"
    out = subprocess.run([sys.executable, "-m", "dbksvd", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "fit" in out.stdout and "explain" in out.stdout


def test_runtime_failures_exit_1_and_absurd_sizes_exit_2(data, capsys):
    tmp, _ = data
    blocker = tmp / "file"
    blocker.write_text("not a folder")
    # an output below a regular file cannot be written: a runtime failure, one line
    assert (
        main(
            [
                "fit",
                str(tmp / "x.npy"),
                "--atoms",
                "8",
                "--nnz",
                "2",
                "--iters",
                "1",
                "--out",
                str(blocker / "m"),
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("dbksvd: error:") and err.count("\n") == 1 and "Traceback" not in err
    # a dictionary that cannot fit in memory is refused before anything is allocated
    assert main(["fit", str(tmp / "x.npy"), "--atoms", "4000000000", "--nnz", "2", "--out", str(tmp / "m")]) == 2
    err = capsys.readouterr().err
    assert "needs at least" in err and "use fewer atoms" in err and err.count("\n") == 1
    assert not (tmp / "m").exists()


def test_ctrl_c_anywhere_exits_130_in_one_line(data, capsys, monkeypatch):
    import dbksvd.analysis.compare as compare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "model_metrics", interrupted)
    tmp, p = data
    DBKSVD(8, 2, preprocessing="none", max_iter=1, device="cpu").fit(p.X[:100]).save(tmp / "model")
    assert main(["evaluate", str(tmp / "model"), str(tmp / "x.npy")]) == 130
    assert capsys.readouterr().err == "dbksvd: interrupted\n"


def test_encode_and_evaluate_read_the_models_own_space(emoji_store, tmp_path, capsys):
    """A model fitted on the text space of a store with an image space too: encode and evaluate
    use the text space unless --space says otherwise."""
    space = emoji_store.space("text")
    model = DBKSVD(16, 2, max_iter=2, random_state=0).fit(space)
    model.save(tmp_path / "m")
    assert main(["evaluate", str(tmp_path / "m"), str(emoji_store.path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["features"] == 384 and result["rows"] == emoji_store.count
    assert main(["encode", str(tmp_path / "m"), str(emoji_store.path), "--out", str(tmp_path / "c")]) == 0
    assert load_file(str(tmp_path / "c.safetensors"))["indices"].shape == (emoji_store.count, 2)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), str(emoji_store.path), "--space", "image"]) == 2
    assert "1280 features" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "2"], "fit: --out is required"),
        (["fit", "{t}/x.npy", "--out", "{t}/m"], "--n-atoms and --n-nonzero are required"),
        (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/m", "--bogus", "1"], "unrecognized"),
        (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/m", "--coder", "lars"], "unknown value"),
        (["fit", "{t}/x.npy", "--atoms", "eight", "--nnz", "2", "--out", "{t}/m"], "--n-atoms"),
        (["fit", "{t}/x.npy", "--atoms", "8", "--nnz", "2", "--out", "{t}/m", "--iters"], "--max-iter needs a value"),
        (["evaluate", "{t}/model"], "INPUT is required"),
        (["explain", "{t}/model", "{t}/s", "--out", "{t}/a", "--top", "0"], "--top must be >= 1; got 0"),
        (["compare", "{t}/x.npy", "--atoms", "8", "--nnz", "9", "--out", "{t}/r"], "k=9 (n_nonzero)"),
        (["serve", "{t}/run", "--workers", "0"], "--workers must be >= 1"),
        (["fitt", "{t}/x.npy"], "unknown command 'fitt'"),
    ],
)
def test_usage_errors_are_one_line_naming_the_option(data, capsys, args, words):
    tmp, _ = data
    before = set(tmp.iterdir())
    assert main([a.format(t=tmp) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dbksvd: error:") and words in err and err.count("\n") == 1, err
    assert set(tmp.iterdir()) == before


def test_no_command_prints_the_overview_and_exits_2(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "export-site" in capsys.readouterr().out


def test_help_comes_from_the_configs(capsys):
    import importlib

    from dbksvd.cli import COMMANDS

    for name, (module, summary) in COMMANDS.items():
        config = importlib.import_module(f"dbksvd.cli.{module}").CONFIG
        assert config.__doc__.splitlines()[0] == summary, name
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert f"usage: dbksvd {name}" in out and summary in out
    main(["fit", "--help"])
    out = capsys.readouterr().out
    # DBKSVDParams' own docstrings and aliases, one paragraph per option
    for words in ("--n-atoms K", "--atoms K", "--seed SEED", "--random-state SEED", "Passes over the data."):
        assert words in out, words
    assert "--verbose" not in out  # --quiet says it on the command line


def test_a_command_runs_from_python_with_its_config(data, capsys):
    from dbksvd.cli.evaluate import EvaluateConfig
    from dbksvd.cli.evaluate import run as evaluate
    from dbksvd.cli.fit import FitConfig
    from dbksvd.cli.fit import run as fit
    from dbksvd.config import DBKSVDParams

    tmp, p = data
    cfg = FitConfig(input=str(tmp / "x.npy"), out=str(tmp / "m"), model=DBKSVDParams(50, 3, max_iter=5), quiet=True)
    assert fit(cfg) == 0
    assert load(tmp / "m").n_iter_ == 5
    capsys.readouterr()
    assert evaluate(EvaluateConfig(model=str(tmp / "m"), input=str(tmp / "x.npy"), json=True)) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1200
    # the same run from the command line, spelled with today's names and with the old ones
    for spelling in (
        ["--n-atoms", "50", "--n-nonzero", "3", "--max-iter", "5"],
        ["--atoms", "50", "--nnz", "3", "--iters", "5"],
    ):
        assert (
            main(["fit", str(tmp / "x.npy"), "--out", str(tmp / "m2"), "--quiet", "--random-state", "1", *spelling])
            == 0
        )
        assert load(tmp / "m2").get_params()["random_state"] == 1
    # without a seed the command line seeds with 0, as before it was generated from DBKSVDParams
    assert main(["fit", str(tmp / "x.npy"), "--out", str(tmp / "m3"), "--quiet", "--atoms", "50", "--nnz", "3"]) == 0
    assert load(tmp / "m3").get_params()["random_state"] == 0


def test_help_loads_no_numerical_library():
    """``dbksvd COMMAND --help`` reads the configs only: no numpy, no torch (well under a second)."""
    from dbksvd.cli import COMMANDS

    modules = ", ".join(f"dbksvd.cli.{module}" for module, _ in COMMANDS.values())
    code = f"import sys, {modules}; print(sorted({{'numpy', 'torch'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
