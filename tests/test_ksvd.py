"""The DBKSVD estimator: recovery, determinism, the scikit-learn protocol, streaming,
Matryoshka groups, persistence and bad input."""

import json

import numpy as np
import pytest
import torch

import dbksvd
from dbksvd import DBKSVD, InputError, ModelFormatError, NotFittedError, ParameterError, metrics
from dbksvd.data import make_sparse_problem


def small(**kw):
    params = dict(max_iter=30, batch_size=2000, random_state=0, device="cpu")
    params.update(kw)
    return DBKSVD(50, 3, **{"preprocessing": "none", **params})


@pytest.mark.parametrize("snr", [None, 20])
def test_recovery_regression(snr):
    """Aharon et al.'s experiment at reduced size: 3 trials, 40 iterations."""
    rates = []
    for trial in range(3):
        p = make_sparse_problem(1500, 20, 50, 3, snr_db=snr, random_state=10 + trial)
        model = small(max_iter=40, random_state=trial).fit(p.X)
        rates.append(metrics.atom_recovery(p.dictionary, model.components_))
    assert np.mean(rates) >= 0.9


def test_fit_is_deterministic_and_learns():
    p = make_sparse_problem(1000, 20, 50, 3, snr_db=30, random_state=0)
    a = small(max_iter=10).fit(p.X)
    b = small(max_iter=10).fit(p.X)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = small(max_iter=10, random_state=1).fit(p.X)
    assert not np.array_equal(a.components_, c.components_)
    losses = [h["loss"] for h in a.history_]
    assert losses[-1] < 0.4 * losses[0]
    assert a.n_iter_ == 10 and a.n_steps_ == 10 and len(a.history_) == 10
    assert a.components_.shape == (50, 20) and a.components_.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a.components_, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize(
    "kw",
    [dict(coder="mp"), dict(update="svd"), dict(init="random"), dict(atom_batch_size=1), dict(replace_unused=False)],
)
def test_variants_fit_well(kw):
    p = make_sparse_problem(1500, 20, 50, 3, snr_db=30, random_state=3)
    model = small(**kw).fit(p.X)
    assert model.score(p.X) > 0.85


def test_threshold_pursuit_codes_with_least_squares_and_reads_bare_on_request():
    p = make_sparse_problem(1500, 20, 50, 3, snr_db=30, random_state=3)
    model = small(coder="threshold").fit(p.X)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < 0.5 * losses[0] and model.score(p.X) > 0.6  # it learns, if less well than OMP
    own, bare = model.transform(p.X), model.transform(p.X, coder="detector")
    assert torch.equal(own.indices, bare.indices)  # the same detector support
    D = torch.as_tensor(model.components_, dtype=torch.float64)
    X = torch.as_tensor(p.X, dtype=torch.float64)
    assert torch.allclose(bare.values.double(), (X.unsqueeze(1) * D[bare.indices]).sum(-1), atol=1e-4)

    def err(c):
        return float(torch.linalg.vector_norm(X - c.reconstruct(model.components_).double(), dim=1).mean())

    assert err(own) < err(bare)
    # OMP on the same atoms reconstructs at least as well as the thresholding pursuit
    assert (
        model.score(p.X)
        <= metrics.explained_signal(p.X, model.inverse_transform(model.transform(p.X, coder="omp"))) + 1e-6
    )


def test_float64_and_torch_input():
    p = make_sparse_problem(500, 10, 20, 2, random_state=0, dtype=np.float64)
    model = DBKSVD(20, 2, preprocessing="none", max_iter=3, random_state=0, device="cpu").fit(torch.from_numpy(p.X))
    assert model.components_.dtype == np.float64
    assert model.transform(p.X).values.dtype == torch.float64


def test_mini_batches_and_memmap(tmp_path):
    p = make_sparse_problem(3000, 20, 50, 3, snr_db=30, random_state=5)
    np.save(tmp_path / "x.npy", p.X)
    X = dbksvd.io.load_array(tmp_path / "x.npy")
    model = small(batch_size=500, max_iter=6).fit(X)
    assert model.n_steps_ == 36 and {h["rows"] for h in model.history_} == {500}
    assert metrics.atom_recovery(p.dictionary, model.components_) > 0.8
    assert model.transform(X, batch_size=700).indices.shape == (3000, 3)


def test_tol_stops_early():
    p = make_sparse_problem(1000, 20, 50, 3, random_state=0)
    model = small(max_iter=200, tol=1e-2).fit(p.X)
    assert model.n_iter_ < 200


def test_partial_fit_streams():
    p = make_sparse_problem(4000, 20, 50, 3, snr_db=30, random_state=1)
    model = small(batch_size=1000)
    for s in range(0, 4000, 1000):
        model.partial_fit(p.X[s : s + 1000])
    for _ in range(5):
        model.partial_fit(p.X)
    assert model.n_steps_ == 4 + 5 * 4
    assert model.history_[-1]["loss"] < model.history_[0]["loss"] / 3
    with pytest.raises(InputError, match="fitted with 20"):
        model.partial_fit(np.ones((5, 7)))


def test_transform_inverse_score_agree():
    p = make_sparse_problem(800, 20, 50, 3, snr_db=30, random_state=2)
    model = small(max_iter=10).fit(p.X)
    codes = model.transform(p.X)
    X_hat = model.inverse_transform(codes)
    assert X_hat.shape == p.X.shape and isinstance(X_hat, np.ndarray)
    np.testing.assert_allclose(model.inverse_transform(codes.to_dense().numpy()), X_hat, atol=1e-5)
    assert model.score(p.X) == pytest.approx(metrics.explained_signal(p.X, X_hat), abs=1e-6)


def test_sklearn_protocol():
    model = DBKSVD(8, 2, max_iter=3, groups=[4, 4])
    assert model.get_params()["max_iter"] == 3
    assert model.set_params(max_iter=7).max_iter == 7
    with pytest.raises(ParameterError, match="no parameter"):
        model.set_params(n_components=3)
    base = pytest.importorskip("sklearn.base")
    clone = base.clone(model)
    assert clone.get_params() == model.get_params() and clone is not model
    assert "max_iter=7" in repr(model)


def test_matryoshka_prefix_is_a_dictionary_of_its_own():
    # Hierarchical data: two strong atoms out of 16 coarse ones, two weak out of 48 fine ones.
    rng = np.random.default_rng(4)
    D = rng.standard_normal((64, 24))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    n = 3000
    coarse = np.argsort(rng.random((n, 16)), axis=1)[:, :2]
    fine = 16 + np.argsort(rng.random((n, 48)), axis=1)[:, :2]
    C = np.zeros((n, 64))
    np.put_along_axis(C, coarse, 3 * rng.standard_normal((n, 2)), axis=1)
    np.put_along_axis(C, fine, rng.standard_normal((n, 2)), axis=1)
    X = (C @ D + 0.01 * rng.standard_normal((n, 24))).astype(np.float32)
    model = DBKSVD(
        64, 4, preprocessing="none", groups=[(16, 2), (48, 2)], max_iter=15, random_state=0, device="cpu"
    ).fit(X)
    flat = DBKSVD(64, 4, preprocessing="none", max_iter=15, random_state=0, device="cpu").fit(X)
    codes = model.transform(X)
    assert codes.indices.shape == (n, 4)
    assert (codes.indices[:, :2] < 16).all() and (codes.indices[:, 2:] >= 16).all()

    def prefix_score(m):
        prefix = DBKSVD(16, 2, preprocessing="none", device="cpu")
        prefix.components_, prefix.n_features_in_ = m.components_[:16], 24
        return prefix.score(X)

    assert prefix_score(model) > prefix_score(flat) + 0.05
    assert metrics.atom_recovery(D[:16], model.components_[:16]) >= 0.9
    assert model.score(X) > 0.8


def test_groups_validation():
    with pytest.raises(ParameterError, match="add up to"):
        DBKSVD(10, 2, groups=[4, 4]).fit(np.random.rand(20, 5))
    with pytest.raises(ParameterError, match="non-zeros add up"):
        DBKSVD(10, 2, groups=[(5, 1), (5, 2)]).fit(np.random.rand(20, 5))
    assert dbksvd.validation.check_groups([4, 12], 16, 8) == [(4, 2), (12, 6)]


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(n_atoms=0), "n_atoms must be >= 1"),
        (dict(n_nonzero=6), "exceeds the number of features"),
        (dict(coder="lars"), "coder must be one of"),
        (dict(update="full"), "update must be one of"),
        (dict(max_iter=0), "max_iter"),
        (dict(batch_size=2.5), "batch_size must be an integer"),
        (dict(tol=-1.0), "tol must be"),
        (dict(device="tpu"), "device"),
    ],
)
def test_bad_parameters(kw, words):
    params = dict(n_atoms=8, n_nonzero=2)
    params.update(kw)
    with pytest.raises(ParameterError, match=words):
        DBKSVD(**params).fit(np.random.rand(20, 5))


def test_bad_data():
    with pytest.raises(InputError, match="NaN"):
        DBKSVD(4, 1).fit(np.array([[1.0, np.nan], [0, 1], [1, 1], [2, 1]]))
    with pytest.raises(InputError, match="empty"):
        DBKSVD(4, 1).fit(np.zeros((0, 3)))
    with pytest.raises(NotFittedError):
        DBKSVD(4, 1).transform(np.ones((2, 3)))


def test_interrupt_keeps_last_completed_iteration(interrupt_at):
    p = make_sparse_problem(600, 20, 50, 3, random_state=0)
    model = small(max_iter=10)
    interrupt_at(4)
    with pytest.raises(KeyboardInterrupt):
        model.fit(p.X)
    assert model.n_steps_ == 3 and model.components_.shape == (50, 20)


def test_save_load_round_trip(tmp_path):
    p = make_sparse_problem(500, 20, 50, 3, random_state=0)
    model = small(max_iter=3, groups=[10, 40]).fit(p.X)
    model.save(tmp_path / "m")
    again = dbksvd.load(tmp_path / "m")
    assert again.get_params() == model.get_params()
    np.testing.assert_array_equal(again.components_, model.components_)
    assert again.history_ == model.history_ and again.n_iter_ == 3
    assert torch.equal(again.transform(p.X).indices, model.transform(p.X).indices)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format_version"] == 1 and config["preprocessing"]["kind"] == "none"


def _saved(tmp_path):
    model = DBKSVD(8, 2, max_iter=2, random_state=0, device="cpu").fit(np.random.default_rng(0).random((50, 6)))
    return model.save(tmp_path / "m")


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "corrupt JSON"),
        (lambda d: _edit(d, format_version=99), "newer dbksvd"),
        (lambda d: _edit(d, n_atoms=9), "shape"),
        (lambda d: _edit(d, dtype="float16"), "dtype"),
        (lambda d: (d / "dictionary.safetensors").write_bytes(b"\x00" * 5), "dictionary.safetensors"),
    ],
)
def test_load_names_what_is_wrong(tmp_path, damage, words):
    path = _saved(tmp_path)
    damage(path)
    with pytest.raises(ModelFormatError, match=words):
        dbksvd.load(path)
    with pytest.raises(ModelFormatError, match="no such model folder"):
        dbksvd.load(tmp_path / "missing")


def _edit(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))
