import math

import numpy as np
import pytest
import torch

import dbksvd
from dbksvd import DBKSVD, ParameterError, metrics
from dbksvd.preprocessing import Preprocessor, parse_steps


def cone(rng, n=600, d=24, offset=3.0):
    """CLIP-like rows: a large shared component plus varied norms."""
    X = rng.standard_normal((n, d)) + offset * np.ones(d) / math.sqrt(d) * 4
    return X * rng.uniform(0.5, 3.0, size=(n, 1))


@pytest.mark.parametrize(
    "spec", ["none", "normalize", "center", "scale", "normalize+center", "center+scale", "normalize+center+scale"]
)
def test_apply_then_invert_is_the_identity(rng, spec):
    X = cone(rng)
    pre = Preprocessor.fit(parse_steps(spec), [X[:250], X[250:]], X)
    Z, norms = pre.apply(torch.from_numpy(X))
    np.testing.assert_allclose(pre.invert(Z, norms).numpy(), X, rtol=1e-12, atol=1e-12)


def test_fitted_statistics(rng):
    X = cone(rng)
    pre = Preprocessor.fit(parse_steps("normalize+center+scale"), [X[:100], X[100:]], X)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(pre.mean, unit.mean(axis=0), rtol=1e-12)
    Z, _ = pre.apply(torch.from_numpy(X))
    assert np.linalg.norm(Z.numpy(), axis=1).mean() == pytest.approx(math.sqrt(X.shape[1]), rel=1e-9)
    assert np.abs(Z.numpy().mean(axis=0)).max() < 1e-9  # centred


def test_parse_steps():
    assert parse_steps("scale+normalize") == ("normalize", "scale")
    assert parse_steps("none") == () and parse_steps(None) == () and parse_steps([]) == ()
    with pytest.raises(ParameterError, match="not valid"):
        parse_steps("whiten")
    with pytest.raises(ParameterError):
        DBKSVD(8, 2, preprocessing="center+zca").fit(np.random.rand(50, 4))


def test_model_maps_back_to_the_input_space(rng, tmp_path):
    X = cone(rng, n=800)
    model = DBKSVD(48, 6, max_iter=10, random_state=0, device="cpu").fit(X)  # default preprocessing
    assert model.preprocessor_.steps == ("normalize", "center", "scale")
    codes = model.transform(X)
    assert codes.row_norms is not None
    np.testing.assert_allclose(codes.row_norms.numpy(), np.linalg.norm(X, axis=1), rtol=1e-5)
    X_hat = model.inverse_transform(codes)
    # reconstructions live where X lives: same norms up to the coding error, never unit-norm
    assert metrics.cosine(X, X_hat) > 0.9
    assert model.score(X) == pytest.approx(metrics.explained_signal(X, X_hat), rel=1e-6)
    with pytest.raises(ParameterError, match="row_norms"):
        model.inverse_transform(codes.to_dense())
    # the statistics travel with the saved model
    model.save(tmp_path / "m")
    again = dbksvd.load(tmp_path / "m")
    assert again.preprocessor_.steps == model.preprocessor_.steps
    np.testing.assert_array_equal(again.preprocessor_.mean, model.preprocessor_.mean)
    assert again.preprocessor_.scale == model.preprocessor_.scale
    np.testing.assert_allclose(again.inverse_transform(again.transform(X)), X_hat, rtol=1e-5, atol=1e-5)


def test_centring_makes_the_fit_translation_invariant(rng):
    X = rng.standard_normal((500, 16))
    shift = 50.0 * rng.standard_normal(16)
    a = DBKSVD(24, 3, preprocessing="center", max_iter=5, random_state=0, device="cpu").fit(X)
    b = DBKSVD(24, 3, preprocessing="center", max_iter=5, random_state=0, device="cpu").fit(X + shift)
    np.testing.assert_allclose(a.components_, b.components_, atol=1e-3)
    np.testing.assert_allclose(
        b.inverse_transform(b.transform(X + shift)) - shift, a.inverse_transform(a.transform(X)), atol=1e-3
    )
    # without centring the shared offset dominates the first atom
    c = DBKSVD(24, 3, preprocessing="none", max_iter=5, random_state=0, device="cpu").fit(X + shift)
    top = np.abs(c.components_ @ (shift / np.linalg.norm(shift))).max()
    assert top > 0.99
