"""Sparse autoencoder baselines: activations, training on real embeddings, persistence."""

import numpy as np
import pytest
import torch

from dbksvd import InputError, ParameterError, metrics
from dbksvd.coding import sparse_encode
from dbksvd.models import SAE, load_model
from dbksvd.models import SAE_ARCHITECTURES as ARCHITECTURES
from dbksvd.models.sae import (
    SparseAutoencoder,
    _aux_loss,
    _zipf_underused,
    batch_topk_activation,
    feature_choice_activation,
    geometric_median,
    threshold_activation,
    topk_activation,
)


def test_activations():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [0.1, 0.2, -0.3, 4.0], [-1.0, -2.0, -3.0, -4.0]])
    z = topk_activation(pre, 2)
    assert torch.equal(z, torch.tensor([[3.0, 0, 2.0, 0], [0, 0.2, 0, 4.0], [0, 0, 0, 0]]))
    z = batch_topk_activation(pre, 1)  # the 3 largest positive entries of the batch
    assert torch.equal(z, torch.tensor([[3.0, 0, 2.0, 0], [0, 0, 0, 4.0], [0, 0, 0, 0]]))
    z = feature_choice_activation(pre, 1)  # each column keeps its largest positive entry
    assert torch.equal(z, torch.tensor([[3.0, 0, 2.0, 0], [0, 0.2, 0, 4.0], [0, 0, 0, 0]]))
    assert torch.equal(threshold_activation(pre, 1.0), torch.tensor([[3.0, 0, 2.0, 0], [0, 0, 0, 4.0], [0, 0, 0, 0]]))


def test_geometric_median_resists_outliers():
    X = torch.cat([torch.zeros(20, 3), torch.full((3, 3), 100.0)])
    assert torch.linalg.vector_norm(geometric_median(X)) < 1.0
    assert torch.linalg.vector_norm(X.mean(dim=0)) > 20


def test_aux_losses_reach_only_the_candidate_latents():
    torch.manual_seed(0)
    m = SparseAutoencoder(6, 10, "topk", 2)
    with torch.no_grad():
        m.W_dec.copy_(torch.nn.functional.normalize(torch.randn(10, 6), dim=1))
        m.W_enc.copy_(m.W_dec.T)
    x = torch.randn(32, 6)
    pre = m.pre_activations(x)
    residual = (x - m.decode(topk_activation(pre, 2))).detach()
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[3, 7]] = True
    loss = _aux_loss(m, pre, residual, dead, aux_k=4)
    loss.backward()
    assert loss > 0
    grad_rows = m.W_dec.grad.abs().sum(dim=1) > 0
    assert grad_rows[[3, 7]].all() and not grad_rows[~dead].any()
    assert _aux_loss(m, pre.detach(), residual, torch.zeros(10, dtype=torch.bool), 4) == 0
    density = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.001, 0.25, 0.2, 0.1, 0.05, 0.0])
    under = _zipf_underused(density, k=2)
    assert under[3] and under[9] and under[4] and not under[0]


@pytest.fixture(scope="module")
def split(fashion_store):
    X = fashion_store.space().to_numpy().astype(np.float32)
    return X[:240], X[240:]


def random_floor(train, test, K, k):
    """Explained signal of random unit directions with an exact OMP coder (the floor)."""
    rng = np.random.default_rng(0)
    D = rng.standard_normal((K, train.shape[1])).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    mean = train.mean(axis=0)
    codes = sparse_encode(test - mean, D, k)
    return metrics.explained_signal(test, codes.reconstruct(torch.from_numpy(D)).numpy() + mean)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_sae_trains_on_real_embeddings_and_beats_random_directions(split, architecture):
    train, test = split
    K, k = 64, 8
    sae = SAE(architecture, K, k, batch_size=64, max_epochs=60, patience=10, random_state=0, device="cpu").fit(train)
    np.testing.assert_allclose(np.linalg.norm(sae.components_, axis=1), 1, atol=1e-5)
    codes = sae.transform(test)
    l0 = float((codes.values != 0).sum(dim=1).float().mean())
    if architecture == "topk":
        assert l0 <= k
    elif architecture == "relu":
        assert l0 <= 1.5 * k
    else:
        assert 0.5 * k <= l0 <= 1.5 * k  # threshold calibrated on held-out rows
    assert sae.score(test) > random_floor(train, test, K, k) + 0.05, architecture
    pursuit = sae.transform(test, coder="omp")
    assert int((pursuit.values != 0).sum(dim=1).max()) <= k
    assert sae.history_ and sae.stopped_ in ("early_stopping", "decayed", "max_epochs")


def test_training_is_deterministic_and_round_trips(split, tmp_path):
    train, test = split
    a = SAE("batchtopk", 32, 4, batch_size=64, max_epochs=5, random_state=3, device="cpu").fit(train)
    b = SAE("batchtopk", 32, 4, batch_size=64, max_epochs=5, random_state=3, device="cpu").fit(train)
    np.testing.assert_array_equal(a.components_, b.components_)
    a.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, SAE) and again.architecture == "batchtopk"
    assert again.get_params() == a.get_params()
    np.testing.assert_allclose(
        again.inverse_transform(again.transform(test)), a.inverse_transform(a.transform(test)), rtol=1e-5, atol=1e-5
    )
    assert float(again.module_.theta) == float(a.module_.theta) > 0


@pytest.mark.parametrize("architecture", ["relu", "batchtopk"])
def test_transform_in_chunks_of_different_widths(architecture):
    """Rows of a relu/batchtopk SAE use a varying number of latents, so chunks of one
    transform differ in width: they are padded to one and code as a single chunk does."""
    from dbksvd.data import make_sparse_problem

    X = make_sparse_problem(400, 12, 24, 3, snr_db=20, random_state=0).X
    sae = SAE(architecture, 24, 3, batch_size=64, max_epochs=3, random_state=0, device="cpu").fit(X)
    whole = sae.transform(X)
    chunked = sae.transform(X, batch_size=7)
    widths = {int(sae.transform(X[s : s + 7]).indices.shape[1]) for s in range(0, len(X), 7)}
    assert len(widths) > 1  # the chunks really differ in width
    assert chunked.shape == whole.shape and chunked.indices.shape[1] == max(widths)
    # equal per row up to float rounding (matrix products of other shapes)
    torch.testing.assert_close(chunked.to_dense(), whole.to_dense(), rtol=1e-5, atol=1e-5)
    assert (chunked.row_norms is None) == (whole.row_norms is None)
    if whole.row_norms is not None:
        torch.testing.assert_close(chunked.row_norms, whole.row_norms)
    assert (chunked.indices >= 0).all() and (chunked.indices < 24).all()  # padding uses valid indices
    np.testing.assert_allclose(sae.inverse_transform(chunked), sae.inverse_transform(whole), rtol=1e-5, atol=1e-6)


def test_no_counted_epoch_gives_null_best_val_nmse(tmp_path):
    """A ReLU SAE whose L0 never nears k has no best epoch: best_val_nmse is None when fitted,
    null (valid JSON, not ``Infinity``) in config.json and None again when loaded."""
    import json

    from dbksvd.data import make_sparse_problem

    X = make_sparse_problem(300, 12, 24, 3, random_state=0).X
    sae = SAE("relu", 24, 3, max_epochs=1, batch_size=64, random_state=0, device="cpu").fit(X)
    assert not 0.9 * 3 <= sae.history_[-1]["val_l0"] <= 1.1 * 3  # the epoch did not count
    assert sae.train_info_["best_val_nmse"] is None
    sae.train_info_["lr"] = float("inf")  # any non-finite number in the state is written as null
    sae.save(tmp_path / "m")

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    config = json.loads((tmp_path / "m" / "config.json").read_text(), parse_constant=no_constants)
    assert config["state"]["best_val_nmse"] is None and config["state"]["lr"] is None
    again = load_model(tmp_path / "m")
    assert again.train_info_["best_val_nmse"] is None and again.stopped_ == sae.stopped_


def test_sae_bad_input(split):
    train, _ = split
    with pytest.raises(ParameterError, match="unknown SAE architecture"):
        SAE("jumprelu", 16, 2).fit(train)
    with pytest.raises(ParameterError):
        SAE("topk", 16, 17).fit(train)
    with pytest.raises(InputError, match="too few"):
        SAE("topk", 4, 1, device="cpu").fit(train[:1])
    sae = SAE("topk", 16, 2, max_epochs=1, device="cpu").fit(train)
    with pytest.raises(InputError, match="features"):
        sae.transform(train[:, :10])
