"""Sparse autoencoders, the baselines DB-KSVD is compared with.

``z = act(W_enc (x - b_dec) + b_enc)``, ``x̂ = z W_dec + b_dec`` with unit-norm decoder rows
``W_dec`` (K, d): the decoder *is* a dictionary, so every metric and the pursuit coders apply
to it unchanged. Architectures (``act``):

- ``topk`` (Gao et al. 2024): the k largest pre-activations of each row, ReLU'd; AuxK loss:
  the ``aux_k`` largest pre-activations of *dead* latents (no activation during the last
  ``dead_rows`` training rows) reconstruct the detached residual, weight ``aux_coef``.
- ``batchtopk`` (Bussmann et al. 2024): the n·k largest pre-activations of the batch, so rows
  share a budget; at inference a threshold θ makes the activation per-row (calibrated after
  each epoch so that the mean L0 on the validation rows is k); AuxK as for ``topk``.
- ``relu``: ReLU with an L1 penalty weighted by decoder norms (all 1 here); the penalty's
  weight λ follows a controller that steers the batch L0 to k, so no λ needs tuning; only
  epochs whose validation L0 is within 10% of k count for early stopping.
- ``featurechoice`` (Ayonrinde 2024): each latent picks its m = n·k/K largest
  pre-activations in the batch; ``mutualchoice``: the n·k largest entries of the whole batch
  matrix. Both infer with the calibrated threshold θ and use ``aux_zipf``.
- ``jumprelu`` (Rajamanoharan et al. 2024): ``z_j = pre_j · H(pre_j - θ_j)`` with a learned
  per-latent threshold ``θ_j = exp(log_threshold_j) > 0``, used as is at inference (no
  calibration). The Heaviside gets straight-through gradients wrt θ only, from a rectangle
  kernel of bandwidth ε (``1e-3`` times the RMS norm of the centred, preprocessed training
  rows, the paper's ε for rows of unit mean squared norm): ``∂z_j/∂θ_j = -(θ_j/ε)
  1[|pre_j - θ_j| < ε/2]``. The penalty is the expected L0 through the same estimator,
  ``λ Σ_j H(pre_j - θ_j)`` per row (``∂/∂θ_j = -(λ/ε) 1[...]``), its weight λ steered to the
  target L0 k by the ReLU SAE's controller (at most 1/k: k latents never cost more than the
  signal); only epochs with a validation L0 within 10% of k count for early stopping. θ_j
  starts at latent j's (1 - k/K) quantile of a sample's pre-activations (about k latents fire
  per row) and is rescaled once by a common factor at the end of the learning-rate warm-up
  (mean L0 k on that batch): the pre-activations grow as the decoder first aligns with the
  data, faster than θ can follow at the learning rate.
- ``matryoshka-batchtopk`` (Bussmann et al. 2025): BatchTopK on latents in nested groups
  (``groups``, default :func:`dbksvd.config.matryoshka_sizes`: prefixes K/16, K/8, K/4, K/2,
  K, at most k groups); the loss is the mean over the prefixes m of the normalised MSE of
  ``z[:, :m] W_dec[:m] + b_dec`` (the first m latents alone), plus AuxK as for ``batchtopk``,
  so every prefix is an autoencoder of its own; inference with the calibrated threshold θ
  like ``batchtopk``.
- ``aux_zipf`` (our reading of Ayonrinde 2024, which generalises AuxK from dead to
  under-used latents): with latents ranked by their running firing density, the expected
  density of rank r is Zipf, ``k · r^-1 / Σ_s s^-1``; latents below half of it count as
  under-used and, like AuxK's dead latents, reconstruct the detached residual.

Training: Adam with linear warm-up and a linear decay over the last fifth, decoder-row
gradients projected orthogonally to the rows and rows renormalised after each step, decoder
bias at the geometric median of a sample, encoder initialised as the decoder's transpose,
early stopping on the validation normalised MSE: a plateau (``patience`` epochs without
improvement) at full learning rate starts the decay early, a plateau during the decay stops
training, and the best validation epoch is kept. Loss: normalised MSE ``‖x - x̂‖² / ‖x‖²``.
The training loop lives in :mod:`dbksvd.models.sae_training` (its names are re-exported here).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..coding import SparseCodes, sparse_encode
from ..config import SAE_ARCHITECTURES, SAEParams, matryoshka_sizes
from ..errors import InputError, ModelFormatError, ParameterError
from ..preprocessing import Preprocessor, parse_steps
from ..sources import ArraySource, as_source
from ..validation import as_matrix, check_group_sizes, check_n_nonzero, check_positive_int, resolve_device
from .base import DictionaryModel
from .sae_training import (  # noqa: F401  (re-exported: dbksvd.models.sae.train_sae etc.)
    AUXK_ARCHITECTURES,
    CONTROLLED_ARCHITECTURES,
    THRESHOLD_ARCHITECTURES,
    SAETrainConfig,
    _aux_loss,
    _nmse,
    _zipf_underused,
    calibrate_threshold,
    evaluate_nmse,
    geometric_median,
    init_sae,
    init_thresholds,
    rescale_thresholds,
    train_sae,
)

ARCHITECTURES = SAE_ARCHITECTURES


# -- activations (pure functions on (n, K) pre-activations) ---------------------------------


def topk_activation(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the k largest pre-activations (ReLU'd); zeros elsewhere."""
    vals, idx = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, idx, vals.clamp_min(0))


def batch_topk_activation(pre: torch.Tensor, k: int) -> torch.Tensor:
    """The n·k largest positive entries of the batch (rows share the budget)."""
    flat = pre.clamp_min(0).flatten()
    vals, idx = flat.topk(min(flat.numel(), pre.shape[0] * k))
    return torch.zeros_like(flat).scatter_(0, idx, vals).view_as(pre)


def feature_choice_activation(pre: torch.Tensor, m: int) -> torch.Tensor:
    """Each latent (column) keeps its m largest positive entries of the batch."""
    vals, idx = pre.clamp_min(0).topk(min(m, pre.shape[0]), dim=0)
    return torch.zeros_like(pre).scatter_(0, idx, vals)


def threshold_activation(pre: torch.Tensor, theta: float) -> torch.Tensor:
    """Inference for batch-level rules: keep pre-activations above θ."""
    return torch.where(pre > theta, pre, torch.zeros_like(pre))


def _rectangle(pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """(n, K): the rectangle kernel ``1[|pre - θ| < ε/2] / ε``, the STE's density at the jump."""
    return ((pre - theta).abs() < bandwidth / 2).to(pre.dtype) / bandwidth


class _JumpReLU(torch.autograd.Function):
    """``pre · H(pre - θ)``; backward: ``pre``'s gradient where the latent fires, θ's by the
    rectangle STE, ``-(θ/ε) K((pre - θ)/ε)`` times the incoming gradient, summed over rows."""

    @staticmethod
    def forward(ctx, pre, theta, bandwidth):
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, theta = ctx.saved_tensors
        grad_pre = grad * (pre > theta).to(grad.dtype)
        grad_theta = -(theta * _rectangle(pre, theta, ctx.bandwidth) * grad).sum(dim=0)
        return grad_pre, grad_theta, None


class _Step(torch.autograd.Function):
    """``H(pre - θ)``; backward: none for ``pre``, ``-K((pre - θ)/ε)/ε`` for θ (summed over rows)."""

    @staticmethod
    def forward(ctx, pre, theta, bandwidth):
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, theta = ctx.saved_tensors
        return None, -(_rectangle(pre, theta, ctx.bandwidth) * grad).sum(dim=0), None


def jumprelu_activation(pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``pre`` (n, K) where it exceeds the per-latent threshold ``theta`` (K,), else 0; the
    rectangle straight-through estimator of bandwidth ε gives θ its gradient."""
    return _JumpReLU.apply(pre, theta, bandwidth)


def expected_l0(pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """(n,): active latents per row, ``Σ_j H(pre_j - θ_j)``, differentiable in θ by the same
    estimator (JumpReLU's sparsity penalty)."""
    return _Step.apply(pre, theta, bandwidth).sum(dim=1)


# -- the module ------------------------------------------------------------------------------


class SparseAutoencoder(torch.nn.Module):
    """Weights: ``W_enc`` (d, K), ``b_enc`` (K,), ``W_dec`` (K, d) unit-norm rows, ``b_dec`` (d,);
    ``jumprelu`` also ``log_threshold`` (K,), θ = exp(log_threshold). Buffers: ``theta`` (the
    inference threshold of the batch-level rules) and ``l1_coef`` (the controller's λ: the ReLU
    SAE's L1 weight, the JumpReLU SAE's L0 weight). ``groups``: the Matryoshka group sizes
    (``matryoshka-batchtopk``; one group of K otherwise); ``bandwidth``: JumpReLU's ε."""

    def __init__(self, d: int, K: int, architecture: str, k: int, groups: tuple[int, ...] | None = None):
        super().__init__()
        self.architecture, self.k = architecture, k
        self.groups = tuple(groups) if groups is not None else (K,)
        self.bandwidth = 1e-3
        self.W_enc = torch.nn.Parameter(torch.empty(d, K))
        self.b_enc = torch.nn.Parameter(torch.zeros(K))
        self.W_dec = torch.nn.Parameter(torch.empty(K, d))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        if architecture == "jumprelu":
            self.log_threshold = torch.nn.Parameter(torch.zeros(K))
        self.register_buffer("theta", torch.zeros(()))
        self.register_buffer("l1_coef", torch.zeros(()))

    @property
    def threshold(self) -> torch.Tensor:
        """(K,) JumpReLU's per-latent thresholds θ = exp(log_threshold) > 0."""
        return self.log_threshold.exp()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor, training: bool) -> torch.Tensor:
        """Codes (n, K); batch-level rules use the calibrated threshold θ at inference."""
        a = self.architecture
        if a == "topk":
            return topk_activation(pre, self.k)
        if a == "relu":
            return torch.relu(pre)
        if a == "jumprelu":
            return jumprelu_activation(pre, self.threshold, self.bandwidth)
        if not training:
            return threshold_activation(pre, float(self.theta))
        if a == "featurechoice":
            return feature_choice_activation(pre, max(1, round(pre.shape[0] * self.k / pre.shape[1])))
        return batch_topk_activation(pre, self.k)  # batchtopk, mutualchoice, matryoshka-batchtopk

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre_activations(x), training=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def decode_prefixes(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Per Matryoshka prefix m (the ends of ``groups``), the reconstruction (n, d) from the
        first m latents of ``z`` (n, K) alone, ``z[:, :m] W_dec[:m] + b_dec``; the last is
        :meth:`decode`'s."""
        out, x_hat, start = [], self.b_dec, 0
        for size in self.groups:
            x_hat = x_hat + z[:, start : start + size] @ self.W_dec[start : start + size]
            out.append(x_hat)
            start += size
        return out


def check_architecture(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ParameterError(f"unknown SAE architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    return name


# -- the estimator ---------------------------------------------------------------------------


class SAE(SAEParams, DictionaryModel):
    """A sparse autoencoder with DBKSVD's interface: fit on arrays or a store space, codes as
    :class:`~dbksvd.SparseCodes`, the same preprocessing, metrics and model folder.

    Parameters: see :class:`dbksvd.config.SAEParams` (architecture, n_atoms K latents, n_nonzero
    the target L0 k, and the training hyperparameters of :class:`SAETrainConfig`).

    Attributes: ``components_`` (K, d) the unit-norm decoder rows, ``module_`` the torch
    :class:`SparseAutoencoder`, ``history_`` (per epoch: train loss, validation NMSE, dead
    latents, seconds), ``stopped_`` (``"early_stopping"``, ``"decayed"`` or ``"max_epochs"``).
    """

    @property
    def architecture_name(self) -> str:
        """The folder's ``architecture``: the activation rule."""
        return self.architecture

    def _validated(self, d: int) -> dict[str, Any]:
        check_architecture(self.architecture)  # the plainer message first
        self._check_params()
        K = int(self.n_atoms)
        k = check_n_nonzero(self.n_nonzero, K, d)
        return {
            "architecture": check_architecture(self.architecture),
            "K": K,
            "k": k,
            "groups": self._groups(K, k),
            "preprocessing": parse_steps(self.preprocessing),
            "train": SAETrainConfig(
                lr=self.lr,
                batch_size=int(self.batch_size),
                max_epochs=int(self.max_epochs),
                patience=int(self.patience),
                aux_k=None if self.aux_k is None else int(self.aux_k),
                aux_coef=float(self.aux_coef),
            ),
            "device": resolve_device("auto" if self.device is None else self.device),
        }

    def _groups(self, K: int, k: int) -> tuple[int, ...] | None:
        """The Matryoshka group sizes of a ``matryoshka-batchtopk`` SAE (None for the others)."""
        if self.architecture != "matryoshka-batchtopk":
            if self.groups is not None:
                raise ParameterError(
                    f"groups apply only to the matryoshka-batchtopk architecture, not {self.architecture}"
                )
            return None
        return matryoshka_sizes(K, k) if self.groups is None else check_group_sizes(self.groups, K)

    def fit(self, X: Any, y: Any = None, *, X_val: Any = None) -> SAE:
        """Train on ``X`` (n, d) (array or store space); ``X_val`` for early stopping."""
        source = as_source(X)
        n, d = source.shape
        cfg = self._validated(d)
        rng = np.random.default_rng(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        self._dtype, self._device = torch.float32, cfg["device"]
        if X_val is None:
            m = min(16384, max(1, int(round(self.validation_fraction * n))))
            if n - m < 1:
                raise InputError(f"X has {n} rows: too few to hold out a validation set")
            val_rows = np.sort(rng.choice(n, size=m, replace=False))
            keep = np.setdiff1d(np.arange(n), val_rows) if isinstance(source, ArraySource) else None
            val_block = source.take(val_rows)
            if keep is not None:
                source = ArraySource(source.take(keep))
        else:
            val_source = as_source(X_val, "X_val")
            if val_source.shape[1] != d:
                raise InputError(f"X_val has {val_source.shape[1]} features but X has {d}")
            val_block = next(val_source.iter_chunks(val_source.shape[0]))
        n_train = source.shape[0]
        sample_rows = np.sort(rng.choice(n_train, size=min(n_train, 16384), replace=False))
        sample = source.take(sample_rows)
        self.preprocessor_ = Preprocessor.fit(cfg["preprocessing"], source.iter_chunks(16384), sample)
        self.n_features_in_ = d
        self.data_info_ = source.describe() if not isinstance(X, (np.ndarray, torch.Tensor)) else {"kind": "array"}
        module = SparseAutoencoder(d, cfg["K"], cfg["architecture"], cfg["k"], cfg["groups"]).to(self._device)
        tcfg = cfg["train"]
        init_sae(module, self._prepare(sample), gen, tcfg.bandwidth)
        X_val_t = self._prepare(val_block)

        def batches(epoch: int):
            for block in source.iter_batches(tcfg.batch_size, rng):
                yield self._prepare(block)

        from .._progress import progress

        bar = progress(
            tcfg.max_epochs * math.ceil(n_train / tcfg.batch_size),
            f"{cfg['architecture']} SAE",
            enabled=bool(self.verbose),
        )
        try:
            result = train_sae(module, batches, n_train, X_val_t, tcfg, gen, bar)
        finally:
            bar.close()
        self.module_ = module
        self.components_ = module.W_dec.detach().cpu().numpy().copy()
        self.history_, self.stopped_ = result["history"], result["stopped"]
        self.train_info_ = {k: v for k, v in result.items() if k != "history"}
        if cfg["groups"] is not None:
            self.train_info_["groups"] = list(cfg["groups"])
        return self

    def _decoder_bias(self) -> torch.Tensor | None:
        return self.module_.b_dec.detach().cpu()

    def _transform_chunks(self, X: Any, batch_size: int | None = None, coder: str | None = None):
        """``(rows, codes)`` per chunk; ``coder``: None = the SAE's encoder, ``"omp"``/``"mp"``
        = inference-time pursuit with k atoms against the decoder (on ``x - b_dec``)."""
        self._check_fitted()
        source = as_source(X)
        self._check_features(source.shape[1], source)
        step = check_positive_int(batch_size, "batch_size", allow_none=True) or 8192
        module = self.module_
        dev = module.W_dec.device
        for chunk in source.iter_chunks(step):
            rows = as_matrix(chunk, dtype=torch.float32, device=dev)
            Z, norms = self._preprocessor().apply(rows)
            with torch.no_grad():
                if coder is None:
                    z = module.encode(Z)
                    width = max(1, int((z != 0).sum(dim=1).max())) if z.numel() else 1
                    codes = SparseCodes.from_dense(z, width)
                else:
                    codes = sparse_encode(
                        Z - module.b_dec,
                        module.W_dec,
                        int(self.n_nonzero),
                        coder=coder,
                        refit=coder == "mp",
                        device=dev,
                    )
            yield rows.cpu(), codes.with_row_norms(norms).to("cpu")

    def save(self, path: str | Path) -> Path:
        """Write the model folder (docs/model-format.md) atomically."""
        self._check_fitted()
        m = self.module_
        tensors = {
            "encoder.weight": m.W_enc,
            "encoder.bias": m.b_enc,
            "decoder.bias": m.b_dec,
            "theta": m.theta,
            "l1_coef": m.l1_coef,
        }
        if self.architecture == "jumprelu":
            tensors["log_threshold"] = m.log_threshold
        return self._write_folder(path, {"history": self.history_, **self.train_info_}, tensors)

    def _folder_params(self) -> dict[str, Any]:
        """``groups`` is written only for ``matryoshka-batchtopk``: the folders of the other
        architectures stay as earlier versions wrote them (and read them)."""
        params = super()._folder_params()
        if self.architecture != "matryoshka-batchtopk" and params.get("groups") is None:
            params.pop("groups", None)
        return params

    @classmethod
    def load(cls, path: str | Path) -> SAE:
        """An SAE model folder (:func:`dbksvd.load` opens every architecture)."""
        from .folder import load

        return load(path, SAE_ARCHITECTURES)

    @classmethod
    def _from_folder(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> SAE:
        model = cls(**cls._params_from_config(config))
        K, d = tensors["components"].shape
        state = dict(config["state"])
        groups = None
        if config["architecture"] == "matryoshka-batchtopk":
            try:
                groups = check_group_sizes(state.get("groups") or model._groups(K, int(model.n_nonzero)), K)
            except ParameterError as exc:
                raise ModelFormatError(f"state.groups: {exc}") from None
        module = SparseAutoencoder(d, K, config["architecture"], int(model.n_nonzero), groups)
        weights = {
            "W_enc": "encoder.weight",
            "b_enc": "encoder.bias",
            "W_dec": "components",
            "b_dec": "decoder.bias",
            "theta": "theta",
            "l1_coef": "l1_coef",
        }
        if config["architecture"] == "jumprelu":
            weights["log_threshold"] = "log_threshold"
            module.bandwidth = float(state.get("bandwidth") or module.bandwidth)
        module.load_state_dict({name: torch.from_numpy(tensors[key]) for name, key in weights.items()})
        model.module_ = module.eval()
        model.components_ = np.array(tensors["components"])
        model.history_ = list(state.pop("history", []))
        model.stopped_ = state.get("stopped")
        model.train_info_ = state
        return model
