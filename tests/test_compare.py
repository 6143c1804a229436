"""The comparison harness and `dbksvd compare` on real Fashion-MNIST embeddings."""

import json

import numpy as np
import pytest

from dbksvd import InputError, ParameterError
from dbksvd.analysis.compare import CompareConfig, run_comparison, split_rows, write_report
from dbksvd.cli import main
from dbksvd.models import SAE


@pytest.fixture(scope="module")
def data(fashion_store):
    X = fashion_store.space().to_numpy().astype(np.float32)
    labels = np.array([r["label"] for r in fashion_store.metadata()])
    return X, labels


def small(**kw):
    params = dict(
        n_atoms=32,
        n_nonzero=(4,),
        methods=("dbksvd", "dbksvd-threshold", "topk", "random"),
        dbksvd_max_iter=10,
        sae_max_epochs=15,
    )
    params.update(kw)
    return CompareConfig(**params)


METRIC_KEYS = (
    "explained_signal",
    "fvu",
    "explained_variance",
    "cosine",
    "l0",
    "dead_atoms",
    "max_coherence",
    "probe_retention",
)


def test_comparison_rows_are_complete_reproducible_and_ordered(data):
    X, labels = data
    a = run_comparison(X, small(), labels, show_progress=False)
    rows = {r["method"]: r for r in a["results"]}
    assert set(rows) == {"dbksvd", "dbksvd-threshold", "topk", "topk+omp", "random"}
    assert [rows[m]["coder"] for m in ("dbksvd", "dbksvd-threshold", "topk")] == ["omp", "threshold", "own"]
    # the thresholding pursuit reconstructs less than OMP, far more than random directions
    assert (
        rows["random"]["explained_signal"] + 0.05
        < rows["dbksvd-threshold"]["explained_signal"]
        < rows["dbksvd"]["explained_signal"]
    )
    assert all(r["status"] == "ok" for r in rows.values())
    assert a["split"] == {"test": 60, "val": 30, "train": 210}
    for r in rows.values():
        assert r["rows"] == 60 and r["train_seconds"] > 0 and r["train_peak_rss_mb"] > 0
        assert 0 < r["probe_retention"] <= 1.5 and r["probe_accuracy"] > 0.5
    assert rows["dbksvd"]["explained_signal"] > rows["random"]["explained_signal"] + 0.05
    assert rows["topk"]["explained_signal"] > rows["random"]["explained_signal"] + 0.05
    assert rows["dbksvd"]["probe_retention"] > rows["random"]["probe_retention"]
    b = run_comparison(X, small(), labels, show_progress=False)
    for ra, rb in zip(a["results"], b["results"]):
        assert [ra[key] for key in METRIC_KEYS] == [rb[key] for key in METRIC_KEYS]


def test_report_metrics_equal_dbksvd_evaluate(data, tmp_path, capsys):
    X, labels = data
    models = {}
    report = run_comparison(
        X,
        small(methods=("dbksvd", "batchtopk")),
        labels,
        show_progress=False,
        on_model=lambda name, m: models.__setitem__(name, m),
    )
    write_report(report, tmp_path / "r", models)
    for name in ("results.json", "results.csv", "results.md", "report.html", "pareto.png", "usage.png", "split.npz"):
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    test_rows = np.load(tmp_path / "r" / "split.npz")["test"]
    np.save(tmp_path / "test.npy", X[test_rows])
    saved = json.loads((tmp_path / "r" / "results.json").read_text())["results"]
    for method in ("dbksvd", "batchtopk"):
        capsys.readouterr()
        assert (
            main(["evaluate", str(tmp_path / "r" / "models" / f"{method}-k4"), str(tmp_path / "test.npy"), "--json"])
            == 0
        )
        evaluated = json.loads(capsys.readouterr().out)
        row = next(r for r in saved if r["method"] == method)
        for key in ("explained_signal", "fvu", "explained_variance", "cosine", "l0", "dead_atoms", "max_coherence"):
            assert evaluated[key] == pytest.approx(row[key], rel=1e-5, abs=1e-6), (method, key)
        # the same numbers from all the rows and --rows the report's test split
        np.save(tmp_path / "all.npy", X)
        split = f"{tmp_path / 'r' / 'split.npz'}#test"
        model = str(tmp_path / "r" / "models" / f"{method}-k4")
        assert main(["evaluate", model, str(tmp_path / "all.npy"), "--rows", split, "--json"]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out) == evaluated and f"{len(test_rows)} rows ({split})" in out.err
    assert main(["evaluate", model, str(tmp_path / "all.npy")]) == 0
    assert f"scored: all {len(X)} rows" in capsys.readouterr().out
    assert main(["evaluate", model, str(tmp_path / "all.npy"), "--rows", f"{tmp_path / 'all.npy'}"]) == 2
    assert "integer row indices" in capsys.readouterr().err
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<table>" in html and "pareto.png" in html and "batchtopk+omp" in html


def test_the_new_baselines_and_matryoshka_dbksvd_compare(data):
    """jumprelu, matryoshka-batchtopk and dbksvd-matryoshka give ok rows; the Matryoshka
    DB-KSVD uses the nested groups of the Matryoshka SAE (dbksvd.config.matryoshka_sizes)."""
    from dbksvd.config import DEFAULT_METHODS, matryoshka_sizes

    assert {"jumprelu", "matryoshka-batchtopk"} <= set(DEFAULT_METHODS)
    assert "dbksvd-matryoshka" not in DEFAULT_METHODS
    X, labels = data
    models = {}
    methods = ("jumprelu", "matryoshka-batchtopk", "dbksvd-matryoshka")
    report = run_comparison(
        X,
        small(methods=methods, pursuit=False),
        labels,
        show_progress=False,
        on_model=lambda name, m: models.__setitem__(name, m),
    )
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == set(methods) and all(r["status"] == "ok" for r in rows.values())
    assert [rows[m]["coder"] for m in methods] == ["own", "own", "omp"]
    sizes = matryoshka_sizes(32, 4)
    assert models["matryoshka-batchtopk-k4"].module_.groups == sizes
    dbksvd_groups = models["dbksvd-matryoshka-k4"]._settings(X.shape[1]).groups
    assert tuple(a for a, _ in dbksvd_groups) == sizes and sum(nz for _, nz in dbksvd_groups) == 4
    assert rows["dbksvd-matryoshka"]["l0"] <= 4 and rows["dbksvd-matryoshka"]["explained_signal"] > 0.3
    for m in ("jumprelu", "matryoshka-batchtopk"):
        assert rows[m]["explained_signal"] > 0.2, m


def test_a_failing_method_is_reported_and_the_others_run(data, monkeypatch):
    X, labels = data

    def boom(self, *args, **kwargs):
        raise FloatingPointError("non-finite training loss at epoch 1, step 3")

    monkeypatch.setattr(SAE, "fit", boom)
    rows = run_comparison(X, small(), labels, show_progress=False)["results"]
    by = {r["method"]: r for r in rows}
    assert by["topk"]["status"].startswith("failed: non-finite training loss")
    assert by["dbksvd"]["status"] == "ok" and by["random"]["status"] == "ok"


@pytest.mark.parametrize(
    "cfg, labels, words",
    [
        (dict(methods=("dbksvd", "pca")), None, "unknown method 'pca'"),
        (dict(n_nonzero=(33,)), None, "must be at most K=32"),
        (dict(), np.zeros(5), "labels have shape"),
    ],
)
def test_bad_input(data, cfg, labels, words):
    X, _ = data
    with pytest.raises((ParameterError, InputError), match=words):
        run_comparison(X, small(**cfg), labels, show_progress=False)


def test_empty_split():
    with pytest.raises(InputError, match="split is empty"):
        split_rows(3, 0.2, 0.1, 0)


def test_cli_compare(fashion_store, tmp_path, capsys):
    args = [
        "compare",
        str(fashion_store.path),
        "--atoms",
        "16",
        "--nnz",
        "2,4",
        "--methods",
        "dbksvd,random",
        "--iters",
        "5",
        "--no-explain",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| dbksvd | 2 | ok |" in out and "probe_retention" in out
    assert (tmp_path / "r" / "models" / "random-k4" / "config.json").exists()
    assert main(args[:-3] + ["--methods", "dbksvd,nmf", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown method 'nmf'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cli_compare_scores_the_descriptions_on_a_captioned_store(emoji_store, tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                str(emoji_store.path),
                "--atoms",
                "32",
                "--nnz",
                "4",
                "--methods",
                "dbksvd,random",
                "--iters",
                "10",
                "--out",
                str(tmp_path / "r"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "faithfulness" in capsys.readouterr().out
    rows = {r["method"]: r for r in json.loads((tmp_path / "r" / "results.json").read_text())["results"]}
    for name in ("dbksvd", "random"):
        assert 0.5 < rows[name]["faithfulness"] <= 1 and 0 < rows[name]["specificity"] <= 1
        assert rows[name]["described"] > 0.9 and 0 < rows[name]["diversity"] <= 1
    assert rows["dbksvd"]["specificity"] > rows["random"]["specificity"]


def test_sklearn_baseline_learns(data):
    pytest.importorskip("sklearn")
    X, labels = data
    rows = run_comparison(X, small(methods=("sklearn", "random"), dbksvd_max_iter=6), labels, show_progress=False)[
        "results"
    ]
    by = {r["method"]: r for r in rows}
    assert by["sklearn"]["status"] == "ok" and by["sklearn"]["l0"] <= 4
    assert by["sklearn"]["explained_signal"] > by["random"]["explained_signal"] + 0.05
