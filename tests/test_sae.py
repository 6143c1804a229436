"""Sparse autoencoder baselines: activations, training on real embeddings, persistence."""

import numpy as np
import pytest
import torch

from dbksvd import InputError, ParameterError, metrics
from dbksvd.coding import sparse_encode
from dbksvd.config import matryoshka_sizes
from dbksvd.data import make_sparse_problem
from dbksvd.models import SAE, load_model
from dbksvd.models import SAE_ARCHITECTURES as ARCHITECTURES
from dbksvd.models.sae import (
    SparseAutoencoder,
    _aux_loss,
    _zipf_underused,
    batch_topk_activation,
    expected_l0,
    feature_choice_activation,
    geometric_median,
    jumprelu_activation,
    threshold_activation,
    topk_activation,
)
from dbksvd.validation import check_groups


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
    elif architecture == "jumprelu":
        assert 0.75 * k <= l0 <= 1.25 * k  # learned thresholds, steered to k
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


@pytest.mark.parametrize("architecture", ["relu", "batchtopk", "jumprelu", "matryoshka-batchtopk"])
def test_transform_in_chunks_of_different_widths(architecture):
    """Rows of a relu/batchtopk/jumprelu/matryoshka SAE use a varying number of latents, so
    chunks of one transform differ in width: they are padded to one and code as a single chunk does."""
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
        SAE("gated", 16, 2).fit(train)
    with pytest.raises(ParameterError):
        SAE("topk", 16, 17).fit(train)
    with pytest.raises(InputError, match="too few"):
        SAE("topk", 4, 1, device="cpu").fit(train[:1])
    sae = SAE("topk", 16, 2, max_epochs=1, device="cpu").fit(train)
    with pytest.raises(InputError, match="features"):
        sae.transform(train[:, :10])


# -- JumpReLU ---------------------------------------------------------------------------------


def test_jumprelu_straight_through_gradients_on_a_hand_made_case():
    """ε = 0.1: only pre-activations within ε/2 of θ give θ a gradient, -(θ/ε) per unit of
    upstream gradient for the activation and -1/ε for the L0 count; pre gets the gate."""
    pre = torch.tensor([[1.02, 0.3], [0.97, 2.0]], requires_grad=True)
    theta = torch.tensor([1.0, 1.0], requires_grad=True)
    z = jumprelu_activation(pre, theta, 0.1)
    assert torch.equal(z.detach(), torch.tensor([[1.02, 0.0], [0.0, 2.0]]))
    z.sum().backward()
    # raising θ_0 switches off rows 0 (1.02) and 1 (0.97 is in the window too): -θ/ε each
    torch.testing.assert_close(theta.grad, torch.tensor([-20.0, 0.0]))
    torch.testing.assert_close(pre.grad, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    theta.grad = None
    l0 = expected_l0(pre, theta, 0.1)
    assert torch.equal(l0.detach(), torch.tensor([1.0, 1.0]))
    l0.sum().backward()
    torch.testing.assert_close(theta.grad, torch.tensor([-20.0, 0.0]))  # -1/ε per row in the window


def test_jumprelu_threshold_gradient_has_the_right_sign():
    """Through the module: the L0 penalty pushes θ up (descent raises it), a latent that helps
    the reconstruction pulls its θ down."""
    m = SparseAutoencoder(2, 2, "jumprelu", 1)
    m.bandwidth = 0.1
    with torch.no_grad():
        m.W_dec.copy_(torch.eye(2))
        m.W_enc.copy_(0.51 * torch.eye(2))
        m.log_threshold.zero_()  # θ = 1
    x = torch.tensor([[2.0, 0.0]])  # pre = [1.02, 0]: latent 0 just above θ, under-reconstructing
    pre = m.pre_activations(x)
    expected_l0(pre, m.threshold, m.bandwidth).sum().backward()
    assert m.log_threshold.grad[0] < 0 and m.log_threshold.grad[1] == 0
    m.zero_grad()
    pre = m.pre_activations(x)
    ((x - m.decode(m.activate(pre, training=True))) ** 2).sum().backward()
    assert m.log_threshold.grad[0] > 0  # descent lowers θ_0: keeping latent 0 helps


def test_jumprelu_learns_its_thresholds_and_hits_k(split, monkeypatch):
    """On real embeddings the thresholds move away from their initial quantiles and the
    validation L0 (learned thresholds, no calibration) is within 20% of k."""
    import dbksvd.models.sae as sae_module

    train, test = split
    K, k = 64, 8
    start = {}
    real_init = sae_module.init_sae

    def init(module, sample, generator, bandwidth):
        real_init(module, sample, generator, bandwidth)
        start["theta"] = module.threshold.detach().clone()

    monkeypatch.setattr(sae_module, "init_sae", init)
    sae = SAE("jumprelu", K, k, batch_size=64, max_epochs=60, patience=10, random_state=0, device="cpu").fit(train)
    theta = sae.module_.threshold.detach()
    assert (theta > 0).all() and theta.shape == (K,)
    assert float((theta / start["theta"]).log().abs().mean()) > 0.1  # learned, not the initial values
    assert len(set(theta.tolist())) > K // 2  # per latent
    assert sae.train_info_["best_val_nmse"] is not None  # some epoch had its L0 within 10% of k
    best = min((h for h in sae.history_ if 0.9 * k <= h["val_l0"] <= 1.1 * k), key=lambda h: h["val_nmse"])
    assert best["val_nmse"] == pytest.approx(sae.train_info_["best_val_nmse"])
    l0 = float((sae.transform(test).values != 0).sum(dim=1).float().mean())
    assert 0.8 * k <= l0 <= 1.2 * k
    assert sae.train_info_["bandwidth"] > 0


def test_jumprelu_round_trips_its_thresholds(tmp_path):
    from safetensors.numpy import load_file

    X = make_sparse_problem(400, 12, 24, 3, snr_db=20, random_state=0).X
    sae = SAE("jumprelu", 24, 3, batch_size=64, max_epochs=3, random_state=0, device="cpu").fit(X)
    sae.save(tmp_path / "m")
    stored = load_file(str(tmp_path / "m" / "dictionary.safetensors"))["log_threshold"]
    np.testing.assert_array_equal(stored, sae.module_.log_threshold.detach().numpy())
    again = load_model(tmp_path / "m")
    assert again.architecture == "jumprelu" and again.module_.bandwidth == sae.module_.bandwidth
    a, b = sae.transform(X), again.transform(X)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)


# -- Matryoshka BatchTopK -----------------------------------------------------------------------


def test_matryoshka_sizes():
    assert matryoshka_sizes(512) == (32, 32, 64, 128, 256)  # prefixes K/16, K/8, K/4, K/2, K
    assert matryoshka_sizes(512, 3) == (128, 128, 256)  # at most k groups
    assert matryoshka_sizes(100, 8) == (6, 6, 13, 25, 50) and matryoshka_sizes(1) == (1,)
    for K in (1, 2, 3, 7, 16, 33, 100, 256, 1000):
        for k in sorted({1, 2, 3, 5, 8, K // 2 or 1, K}):
            if k > K:
                continue
            sizes = matryoshka_sizes(K, k)
            assert sum(sizes) == K and min(sizes) >= 1 and len(sizes) <= k
            check_groups(list(sizes), K, k)  # DB-KSVD takes them: each group gets its non-zeros
    with pytest.raises(ParameterError, match="n_atoms must be an integer >= 1"):
        matryoshka_sizes(0)


def _prefix_explained(sae, X):
    """Explained variance of each prefix's reconstruction (first m latents alone) and of none."""
    Z, _ = sae._preprocessor().apply(torch.as_tensor(X, dtype=torch.float32))
    total = float(((Z - Z.mean(dim=0)) ** 2).sum())
    with torch.no_grad():
        z = sae.module_.encode(Z)
        parts = [1 - float(((Z - x_hat) ** 2).sum()) / total for x_hat in sae.module_.decode_prefixes(z)]
        nothing = 1 - float(((Z - sae.module_.decode(torch.zeros_like(z))) ** 2).sum()) / total
    return parts, nothing


@pytest.mark.slow  # two SAEs trained to a plateau
def test_matryoshka_trains_every_prefix():
    """Each prefix reconstructs better than no latents, better with every group, and the first
    group alone explains more than the same latents of a BatchTopK SAE trained the same way."""
    X = make_sparse_problem(1000, 24, 64, 4, snr_db=20, random_state=0).X
    train, test = X[:800], X[800:]
    kw = dict(batch_size=128, max_epochs=12, random_state=0, device="cpu")
    mat = SAE("matryoshka-batchtopk", 64, 4, **kw).fit(train)
    assert mat.module_.groups == matryoshka_sizes(64, 4) == (8, 8, 16, 32)
    assert mat.train_info_["groups"] == [8, 8, 16, 32]
    parts, nothing = _prefix_explained(mat, test)
    assert all(p > nothing + 0.05 for p in parts)
    assert all(b > a for a, b in zip(parts, parts[1:]))
    plain = SAE("batchtopk", 64, 4, **kw).fit(train)
    plain.module_.groups = mat.module_.groups  # read the plain SAE's latents in the same prefixes
    plain_parts, _ = _prefix_explained(plain, test)
    assert parts[0] > plain_parts[0] + 0.1
    l0 = float((mat.transform(test).values != 0).sum(dim=1).float().mean())
    assert 0.5 * 4 <= l0 <= 1.5 * 4  # the calibrated threshold θ


def test_matryoshka_round_trips_its_groups(tmp_path):
    import json

    X = make_sparse_problem(400, 12, 32, 3, snr_db=20, random_state=0).X
    sae = SAE("matryoshka-batchtopk", 32, 3, groups=[4, 12, 16], batch_size=64, max_epochs=3, random_state=0)
    sae.set_params(device="cpu").fit(X)
    assert sae.module_.groups == (4, 12, 16)
    sae.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architecture"] == "matryoshka-batchtopk" and config["state"]["groups"] == [4, 12, 16]
    assert config["params"]["groups"] == [4, 12, 16]
    again = load_model(tmp_path / "m")
    assert again.module_.groups == (4, 12, 16) and again.get_params() == sae.get_params()
    assert float(again.module_.theta) == float(sae.module_.theta) > 0
    a, b = sae.transform(X), again.transform(X)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    config["state"]["groups"] = [4, 12]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    from dbksvd import ModelFormatError

    with pytest.raises(ModelFormatError, match="state.groups: group sizes add up to 16, not n_atoms=32"):
        load_model(tmp_path / "m")


def test_other_architectures_write_no_groups(tmp_path):
    """A topk folder is written as before the Matryoshka SAE existed (readable by older dbksvd)."""
    import json

    X = make_sparse_problem(300, 12, 24, 3, random_state=0).X
    SAE("topk", 24, 3, max_epochs=1, batch_size=64, random_state=0, device="cpu").fit(X).save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "groups" not in config["params"] and "groups" not in config["state"]
    assert load_model(tmp_path / "m").groups is None


@pytest.mark.parametrize(
    "architecture, groups, words",
    [
        ("matryoshka-batchtopk", [8, 8], "group sizes add up to 16, not n_atoms=32"),
        ("matryoshka-batchtopk", [0, 32], "group size must be >= 1; got 0"),
        ("matryoshka-batchtopk", [], "groups is empty"),
        ("matryoshka-batchtopk", 32, "groups must be a list of group sizes; got 32"),
        ("matryoshka-batchtopk", [16.0, 16], "group size must be an integer; got 16.0"),
        ("topk", [16, 16], "groups apply only to the matryoshka-batchtopk architecture, not topk"),
    ],
)
def test_bad_matryoshka_groups(architecture, groups, words):
    X = make_sparse_problem(200, 12, 24, 3, random_state=0).X
    with pytest.raises(ParameterError, match=words) as err:
        SAE(architecture, 32, 4, groups=groups, max_epochs=1, device="cpu").fit(X)
    assert "\n" not in str(err.value)
