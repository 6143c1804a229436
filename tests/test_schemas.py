"""The file schemas (dbksvd.schema): atoms.jsonl, summary.json, results.json and metrics.json
are written through their schema and read back through it to the same keys and values; a
damaged file is refused in one DataFileError line that names the file and the key."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from dbksvd import SparseCodes
from dbksvd.analysis.compare import (
    CompareConfig,
    read_heldout_metrics,
    read_results,
    write_heldout_metrics,
    write_report,
)
from dbksvd.analysis.explain import (
    Explanation,
    atom_evidence,
    evidence_records,
    read_atoms,
    read_summary,
    write_explanation,
)
from dbksvd.errors import DataFileError

METRICS = {
    "rows": 2,
    "features": 4,
    "atoms": 3,
    "explained_signal": 0.5,
    "fvu": 0.4,
    "explained_variance": 0.6,
    "cosine": 0.9,
    "l0": 2.0,
    "dead_atoms": 1,
    "rare_atoms": 1,
    "max_coherence": 0.3,
    "mean_max_coherence": 0.2,
}


@pytest.fixture
def explanation():
    codes = SparseCodes(torch.tensor([[0, 1], [0, 2], [1, 0]]), torch.tensor([[2.0, -1.0], [0.5, 3.0], [-4.0, 0.0]]), 3)
    D = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    atoms = evidence_records(
        atom_evidence(codes, D, top=2, nearest=1), ["a", "b", "c"], ["red flag", None, "cat\u2028face"]
    )
    atoms[0].update(side="+", description="flag", source="captions:term", faithfulness=0.9, specificity=1.0)
    atoms[0]["alternatives"] = [
        {"description": "flag", "source": "captions:term", "faithfulness": 0.9, "specificity": 1.0}
    ]
    atoms[1]["other_side"] = {"side": "-", "description": "cat", "source": "head", "faithfulness": None}
    summary = {
        "store": "s",
        "space": "image",
        "coder": "own",
        "items": 3,
        "captioned_items": 2,
        "encoder": "effnet-lite0",
        "split": {"describe": 1, "select": 1, "test": 1},
        "text_encoder": "minilm",
        "model": {"architecture": "dbksvd", "atoms": 3, "k": 2},
        "atoms": 3,
        "described": 1,
        "diversity": 1.0,
        "sources": {"captions:term": 1},
        "faithfulness": {"mean": 0.9, "median": 0.9, "atoms": 1},
        "specificity": {"mean": None, "median": None, "atoms": 0},
        "notes": ["a note"],
        "random": {"atoms": 3, "described": 0},
        "model_path": "../model",
    }
    return Explanation(atoms, summary, baseline_atoms=[dict(a) for a in atoms])


def test_explanation_round_trips_to_the_same_keys_and_values(explanation, tmp_path):
    write_explanation(explanation, tmp_path / "atoms")
    assert read_atoms(tmp_path / "atoms") == explanation.atoms  # a U+2028 in a caption is not a line break
    assert [list(r) for r in read_atoms(tmp_path / "atoms" / "atoms.jsonl")] == [list(r) for r in explanation.atoms]
    assert read_summary(tmp_path / "atoms") == explanation.summary
    assert list(read_summary(tmp_path / "atoms")) == list(explanation.summary)
    assert json.loads((tmp_path / "atoms" / "summary.json").read_text()) == explanation.summary
    assert read_atoms(tmp_path / "atoms" / "random_atoms.jsonl") == explanation.atoms


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_a_damaged_explanation_is_refused_in_one_line(explanation, tmp_path):
    write_explanation(explanation, tmp_path / "atoms")
    path = tmp_path / "atoms" / "atoms.jsonl"
    lines = path.read_text(encoding="utf-8").split("\n")
    bad = json.loads(lines[1])
    bad["usage"] = "often"
    path.write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]), encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        read_atoms(path)
    assert "atoms.jsonl: line 2, not a valid atoms.jsonl record: usage:" in one_line(info)
    path.write_text(lines[0][:-5] + "\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="line 1, not a valid atoms.jsonl record: corrupt JSON"):
        read_atoms(path)
    summary = tmp_path / "atoms" / "summary.json"
    summary.write_text("[]")
    with pytest.raises(DataFileError) as info:
        read_summary(summary)
    assert "not a valid explanation summary" in one_line(info)
    summary.write_text(json.dumps({**explanation.summary, "describd": 1}))
    with pytest.raises(DataFileError, match="describd: Extra inputs are not permitted"):
        read_summary(summary)
    with pytest.raises(DataFileError, match="no such file"):
        read_summary(tmp_path / "nowhere")
    # writing goes through the same schema: a record that would not read back is not written
    with pytest.raises(DataFileError, match="x/atoms.jsonl: .*atom: Input should be greater than or equal to 0"):
        write_explanation(Explanation([{**explanation.atoms[0], "atom": -1}], explanation.summary), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.fixture
def report():
    trained = {"train_seconds": 1.5, "train_peak_rss_mb": 500.0, "train_extra_rss_mb": 10.0, **METRICS}
    probe = {"probe_accuracy": 0.5, "probe_accuracy_reconstructed": 0.0, "probe_retention": 0.0}
    results = [
        {"method": "dbksvd", "k": 2, "coder": "omp", "status": "ok", **trained, **probe},
        {"method": "topk", "k": 2, "coder": "own", "status": "ok", **trained, "probe_retention": math.nan},
        {"method": "relu", "k": 2, "coder": "own", "status": "failed: non-finite training loss"},
    ]
    return {
        "config": dataclasses.asdict(CompareConfig(n_atoms=3, n_nonzero=(2,), methods=("dbksvd", "topk", "relu"))),
        "rows": 10,
        "features": 4,
        "split": {"test": 2, "val": 1, "train": 7},
        "split_rows": {"test": np.array([0, 1]), "val": np.array([2]), "train": np.arange(3, 10)},
        "results": results,
        "usage": {"dbksvd-k2": [1, 0, 1]},
    }


def test_results_round_trip_and_refuse_damage(report, tmp_path):
    write_report(report, tmp_path / "r")
    written = json.loads((tmp_path / "r" / "results.json").read_text())
    back = read_results(tmp_path / "r")
    assert json.dumps(back) == json.dumps(written)  # same keys, values and order (NaN included)
    assert back["results"][2] == report["results"][2] and math.isnan(back["results"][1]["probe_retention"])
    damaged = {**written, "results": [{**written["results"][0], "l0": None}]}
    (tmp_path / "r" / "results.json").write_text(json.dumps(damaged))
    with pytest.raises(DataFileError) as info:
        read_results(tmp_path / "r" / "results.json")
    assert "not a valid comparison results: results.0.ok.l0:" in one_line(info)
    damaged = {**written, "config": {**written["config"], "n_nonzero": [0]}}
    (tmp_path / "r" / "results.json").write_text(json.dumps(damaged))
    with pytest.raises(DataFileError, match="config.n_nonzero.0"):
        read_results(tmp_path / "r")
    # a file written before the config's fields were renamed (atoms, nnz, seed, ...) still reads
    renamed = {"n_atoms": "atoms", "n_nonzero": "nnz", "random_state": "seed", "dbksvd_max_iter": "dbksvd_iters"}
    old = {**written, "config": {renamed.get(key, key): v for key, v in written["config"].items()}}
    (tmp_path / "r" / "results.json").write_text(json.dumps(old))
    assert json.dumps(read_results(tmp_path / "r")["config"]) == json.dumps(written["config"])
    with pytest.raises(DataFileError, match="s/results.json: .*results.0.ok.train_seconds: Field required"):
        write_report(
            {**report, "results": [{"method": "dbksvd", "k": 2, "coder": "omp", "status": "ok"}]}, tmp_path / "s"
        )
    assert not (tmp_path / "s").exists()


def test_heldout_metrics_round_trip_and_refuse_damage(tmp_path):
    path = tmp_path / "metrics.json"
    write_heldout_metrics(path, "test (20%, seed 0)", np.array([3, 5]), {"model-image": METRICS})
    expected = {"split": "test (20%, seed 0)", "test_rows": [3, 5], "models": {"model-image": METRICS}}
    assert json.loads(path.read_text()) == expected == read_heldout_metrics(tmp_path)
    path.write_text('{"models": {"model-image": {"explained_signal": NaN}, "model-odd": 3}}')
    with pytest.raises(DataFileError) as info:
        read_heldout_metrics(path)
    assert "metrics.json: not a valid metrics.json:" in one_line(info)
