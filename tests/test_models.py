"""The models package: one loader for every architecture, the algorithm as a function, the
declared parameter constraints, the model config schema."""

import json
import warnings

import numpy as np
import pytest
import torch

import dbksvd
from dbksvd import DBKSVD, ModelFormatError, ParameterError, db_ksvd
from dbksvd.data import make_sparse_problem
from dbksvd.models import SAE, FixedDictionary, MiniBatchDictionary, RandomDictionary


@pytest.fixture(scope="module")
def problem():
    return make_sparse_problem(1500, 24, 40, 3, snr_db=30, random_state=0)


def test_the_estimator_is_the_function_plus_preprocessing(problem):
    """DBKSVD(preprocessing='none') draws and computes exactly what db_ksvd does."""
    X = problem.X.astype(np.float32)
    D, codes, info = db_ksvd(X, 40, 3, max_iter=25, random_state=3)
    model = DBKSVD(40, 3, preprocessing="none", max_iter=25, random_state=3).fit(X)
    np.testing.assert_array_equal(D, model.components_)
    again = model.transform(X)
    assert torch.equal(codes.indices, again.indices) and torch.allclose(codes.values, again.values)
    assert info["n_iter"] == model.n_iter_ == 25 and len(info["history"]) == model.n_steps_
    assert D.shape == (40, 24) and np.allclose(np.linalg.norm(D, axis=1), 1, atol=1e-5)
    # it learned: most planted atoms are recovered
    assert dbksvd.metrics.atom_recovery(problem.dictionary, D) > 0.8


def test_db_ksvd_checks_its_parameters(problem):
    with pytest.raises(ParameterError, match="n_nonzero"):
        db_ksvd(problem.X, 40, 41)
    with pytest.raises(ParameterError, match="max_iter"):
        db_ksvd(problem.X, 40, 3, max_iter=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DBKSVD(40, 3, max_iter=2, random_state=0),
        lambda: DBKSVD(40, 3, coder="threshold", groups=[8, 32], max_iter=2, random_state=0),
        lambda: RandomDictionary(40, 3, random_state=0),
        lambda: MiniBatchDictionary(40, 3, max_iter=1, random_state=0),
        lambda: SAE("topk", 40, 3, max_epochs=2, random_state=0),
        lambda: SAE("batchtopk", 40, 3, max_epochs=2, random_state=0),
        lambda: SAE("jumprelu", 40, 3, max_epochs=2, random_state=0),
        lambda: SAE("matryoshka-batchtopk", 40, 3, max_epochs=2, random_state=0),
    ],
    ids=[
        "dbksvd",
        "dbksvd-matryoshka",
        "random",
        "sklearn-mbdl",
        "topk",
        "batchtopk",
        "jumprelu",
        "matryoshka-batchtopk",
    ],
)
def test_dbksvd_load_opens_every_architecture(make, problem, tmp_path):
    pytest.importorskip("sklearn")
    X = problem.X.astype(np.float32)
    model = make().fit(X)
    model.save(tmp_path / "m")
    again = dbksvd.load(tmp_path / "m")
    assert type(again) is type(model) and again.get_params() == model.get_params()
    np.testing.assert_array_equal(again.components_, model.components_)
    a, b = model.transform(X[:50]), again.transform(X[:50])
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    assert again.score(X[:200]) == pytest.approx(model.score(X[:200]))


def test_fixed_dictionaries_are_not_dbksvd():
    """Random directions and scikit-learn's atoms carry no K-SVD training hyperparameters."""
    assert not issubclass(RandomDictionary, DBKSVD) and issubclass(RandomDictionary, FixedDictionary)
    names = set(RandomDictionary(8, 2).get_params())
    assert {"update", "atom_batch_size", "replace_unused", "groups"}.isdisjoint(names)


def test_an_old_random_folder_with_dbksvd_parameters_still_loads(problem, tmp_path):
    model = RandomDictionary(40, 3, random_state=0).fit(problem.X)
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["params"].update(update="power", atom_batch_size=None, replace_unused=True, groups=None)  # as 0.1 wrote
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    np.testing.assert_array_equal(dbksvd.load(tmp_path / "m").components_, model.components_)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("n_atoms", True, "DBKSVD.n_atoms must be an integer >= 1; got True"),
        ("n_atoms", 3.0, "DBKSVD.n_atoms must be an integer"),
        ("max_iter", -2, "DBKSVD.max_iter must be >= 1; got -2"),
        ("coder", "lars", "DBKSVD.coder: unknown coder 'lars'; coder must be one of 'omp', 'mp', 'threshold'"),
        ("tol", float("nan"), "DBKSVD.tol must be a number >= 0 or None; got nan"),
        ("replace_unused", "yes", "DBKSVD.replace_unused must be true or false"),
        ("random_state", -1, "DBKSVD.random_state must be >= 0"),
    ],
)
def test_declared_constraints_are_checked_in_one_place(field, value, words, problem):
    with pytest.raises(ParameterError, match=words.replace("(", r"\(").replace(")", r"\)")):
        DBKSVD(**{"n_atoms": 8, "n_nonzero": 2, field: value}).fit(problem.X)


def test_numpy_integers_are_integers(problem):
    model = DBKSVD(np.int64(8), np.int32(2), max_iter=np.int64(1), random_state=0).fit(problem.X)
    assert model.components_.shape == (8, 24)


def test_sae_constraints(problem):
    with pytest.raises(ParameterError, match="SAE.validation_fraction must be"):
        SAE("topk", 8, 2, validation_fraction=1.5).fit(problem.X)
    with pytest.raises(ParameterError, match="SAE.patience must be an integer"):
        SAE("topk", 8, 2, patience=True).fit(problem.X)


def test_more_atoms_than_the_rows_can_pin_down_warns(problem):
    with pytest.warns(UserWarning, match="memorise"):
        DBKSVD(400, 2, max_iter=1, random_state=0).fit(problem.X[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DBKSVD(40, 3, max_iter=1, random_state=0).fit(problem.X)


def test_model_config_schema_refuses_bad_fields(problem, tmp_path):
    DBKSVD(8, 2, max_iter=1).fit(problem.X).save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    good = json.loads(path.read_text())
    for change, words in [
        ({"n_atoms": "eight"}, "field 'n_atoms'"),
        ({"dtype": "int8"}, "field 'dtype'"),
        ({"surprise": 1}, "field 'surprise'"),
        ({"params": [1, 2]}, "field 'params'"),
    ]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ModelFormatError, match=words) as err:
            dbksvd.load(tmp_path / "m")
        assert "\n" not in str(err.value)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "state"}))
    with pytest.raises(ModelFormatError, match="field 'state'"):
        dbksvd.load(tmp_path / "m")


def test_load_can_insist_on_an_architecture(problem, tmp_path):
    RandomDictionary(8, 2).fit(problem.X).save(tmp_path / "r")
    with pytest.raises(ModelFormatError, match="architecture 'random' is not one of"):
        dbksvd.models.load(tmp_path / "r", "dbksvd")
    with pytest.raises(ModelFormatError, match="architecture 'random'"):
        SAE.load(tmp_path / "r")
