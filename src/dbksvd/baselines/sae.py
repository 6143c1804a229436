"""Sparse autoencoders, the baselines DB-KSVD is compared with.

``z = act(W_enc (x - b_dec) + b_enc)``, ``x̂ = z W_dec + b_dec`` with unit-norm decoder rows
``W_dec`` (K, d): the decoder *is* a dictionary, so every metric and the pursuit coders apply
to it unchanged. Architectures (``act``):

- ``topk`` (Gao et al. 2024): the k largest pre-activations of each row, ReLU'd; AuxK loss:
  the ``aux_k`` largest pre-activations of *dead* latents (no activation during the last
  ``dead_rows`` training rows) reconstruct the detached residual, weight ``aux_coef``.
- ``batchtopk`` (Bussmann et al. 2024): the n·k largest pre-activations of the batch, so rows
  share a budget; at inference a threshold θ (running mean of the smallest kept value) makes
  the activation per-row; AuxK as for ``topk``.
- ``relu``: ReLU with an L1 penalty weighted by decoder norms (all 1 here); the penalty's
  weight λ follows a controller that steers the batch L0 to k, so no λ needs tuning.
- ``featurechoice`` (Ayonrinde 2024): each latent picks its m = n·k/K largest
  pre-activations in the batch; ``mutualchoice``: the n·k largest entries of the whole batch
  matrix. Both infer with the threshold θ and use ``aux_zipf``.
- ``aux_zipf`` (our reading of Ayonrinde 2024, which generalises AuxK from dead to
  under-used latents): with latents ranked by their running firing density, the expected
  density of rank r is Zipf, ``k · r^-1 / Σ_s s^-1``; latents below half of it count as
  under-used and, like AuxK's dead latents, reconstruct the detached residual.

Training: Adam with linear warm-up and a linear decay over the last fifth, decoder-row
gradients projected orthogonally to the rows and rows renormalised after each step, decoder
bias at the geometric median of a sample, encoder initialised as the decoder's transpose,
early stopping on the validation normalised MSE. Loss: normalised MSE ``‖x - x̂‖² / ‖x‖²``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ParameterError

ARCHITECTURES = ("topk", "batchtopk", "relu", "featurechoice", "mutualchoice")
THRESHOLD_ARCHITECTURES = ("batchtopk", "featurechoice", "mutualchoice")


# -- activations (pure functions on (n, K) pre-activations) ---------------------------------


def topk_activation(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the k largest pre-activations (ReLU'd); zeros elsewhere."""
    vals, idx = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, idx, vals.clamp_min(0))


def batch_topk_activation(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n·k largest positive entries of the batch; also the smallest kept value (for θ)."""
    flat = pre.clamp_min(0).flatten()
    vals, idx = flat.topk(min(flat.numel(), pre.shape[0] * k))
    z = torch.zeros_like(flat).scatter_(0, idx, vals).view_as(pre)
    kept = vals[vals > 0]
    return z, kept.min() if kept.numel() else pre.new_zeros(())


def feature_choice_activation(pre: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each latent (column) keeps its m largest positive entries of the batch."""
    m = min(m, pre.shape[0])
    vals, idx = pre.clamp_min(0).topk(m, dim=0)
    z = torch.zeros_like(pre).scatter_(0, idx, vals)
    kept = vals[vals > 0]
    return z, kept.min() if kept.numel() else pre.new_zeros(())


def threshold_activation(pre: torch.Tensor, theta: float) -> torch.Tensor:
    """Inference for batch-level rules: keep pre-activations above θ."""
    return torch.where(pre > theta, pre, torch.zeros_like(pre))


# -- the module ------------------------------------------------------------------------------


class SparseAutoencoder(torch.nn.Module):
    """Weights: ``W_enc`` (d, K), ``b_enc`` (K,), ``W_dec`` (K, d) unit-norm rows, ``b_dec`` (d,).
    Buffers: ``theta`` (inference threshold) and ``l1_coef`` (the ReLU controller's λ)."""

    def __init__(self, d: int, K: int, architecture: str, k: int):
        super().__init__()
        self.architecture, self.k = architecture, k
        self.W_enc = torch.nn.Parameter(torch.empty(d, K))
        self.b_enc = torch.nn.Parameter(torch.zeros(K))
        self.W_dec = torch.nn.Parameter(torch.empty(K, d))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.register_buffer("theta", torch.zeros(()))
        self.register_buffer("l1_coef", torch.zeros(()))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes (n, K) and, for batch-level rules in training, the smallest kept value."""
        a = self.architecture
        if a == "topk":
            return topk_activation(pre, self.k), None
        if a == "relu":
            return torch.relu(pre), None
        if not training:
            return threshold_activation(pre, float(self.theta)), None
        if a == "featurechoice":
            return feature_choice_activation(pre, max(1, round(pre.shape[0] * self.k / pre.shape[1])))
        return batch_topk_activation(pre, self.k)  # batchtopk, mutualchoice

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre_activations(x), training=False)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec


# -- training --------------------------------------------------------------------------------


@dataclass
class SAETrainConfig:
    """Training hyperparameters; the defaults train the five architectures without tuning."""

    lr: float | None = None  # None: 4e-4 · sqrt(16384 / K), at most 4e-3 (Gao et al.'s scaling)
    batch_size: int = 4096
    max_epochs: int = 50
    patience: int = 5  # epochs without a better validation loss before stopping
    warmup_fraction: float = 0.02
    aux_k: int | None = None  # None: min(512, d // 2)
    aux_coef: float = 1 / 32
    dead_rows: int | None = None  # None: one epoch of rows, at most 10M
    l1_rate: float = 0.05  # ReLU controller: λ ← λ · exp(l1_rate · (L0 - k) / k) per step
    theta_momentum: float = 0.99


def geometric_median(X: torch.Tensor, iters: int = 50, eps: float = 1e-8) -> torch.Tensor:
    """Weiszfeld's algorithm on the rows of ``X`` (m, d) -> (d,)."""
    y = X.mean(dim=0)
    for _ in range(iters):
        w = 1.0 / torch.linalg.vector_norm(X - y, dim=1).clamp_min(eps)
        y_new = (w[:, None] * X).sum(dim=0) / w.sum()
        if torch.linalg.vector_norm(y_new - y) <= 1e-6 * torch.linalg.vector_norm(y).clamp_min(eps):
            return y_new
        y = y_new
    return y


def init_sae(model: SparseAutoencoder, sample: torch.Tensor, generator: torch.Generator) -> None:
    """Random unit decoder rows, encoder = decoder transpose, b_dec = geometric median."""
    with torch.no_grad():
        W = torch.randn(model.W_dec.shape, generator=generator, dtype=model.W_dec.dtype).to(model.W_dec.device)
        model.W_dec.copy_(W / torch.linalg.vector_norm(W, dim=1, keepdim=True))
        model.W_enc.copy_(model.W_dec.T)
        model.b_enc.zero_()
        model.b_dec.copy_(geometric_median(sample.to(model.b_dec)))


def _nmse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return ((x - x_hat).square().sum(dim=1) / x.square().sum(dim=1).clamp_min(1e-12)).mean()


def _aux_loss(model: SparseAutoencoder, pre: torch.Tensor, residual: torch.Tensor, candidates: torch.Tensor,
              aux_k: int) -> torch.Tensor:
    """Reconstruct the detached residual from the ``aux_k`` largest pre-activations of the
    ``candidates`` (dead or under-used latents), normalised by the residual's variance."""
    if not bool(candidates.any()):
        return pre.new_zeros(())
    masked = torch.where(candidates, pre, torch.full_like(pre, -torch.inf))
    k = min(aux_k, int(candidates.sum()))
    vals, idx = masked.topk(k, dim=1)
    z = torch.zeros_like(pre).scatter_(1, idx, torch.relu(vals))
    e_hat = z @ model.W_dec
    denom = (residual - residual.mean(dim=0)).square().sum(dim=1).mean().clamp_min(1e-12)
    return (residual - e_hat).square().sum(dim=1).mean() / denom


def _zipf_underused(density: torch.Tensor, k: int) -> torch.Tensor:
    """(K,) bool: latents firing at under half their Zipf-expected density (rank by density)."""
    K = density.numel()
    ranks = torch.empty(K, dtype=torch.long, device=density.device)
    ranks[torch.argsort(density, descending=True)] = torch.arange(1, K + 1, device=density.device)
    harmonic = (1.0 / torch.arange(1, K + 1, device=density.device, dtype=density.dtype)).sum()
    expected = k / (ranks.to(density.dtype) * harmonic)
    return density < 0.5 * expected


def train_sae(model: SparseAutoencoder, batches, n_train: int, X_val: torch.Tensor, cfg: SAETrainConfig,
              generator: torch.Generator, progress: Any = None) -> dict[str, Any]:
    """Train ``model`` in place; ``batches(epoch)`` yields training batches (tensors on the
    model's device). Returns the history and why training stopped; the weights are those of
    the best validation epoch. Raises :class:`FloatingPointError` on a non-finite loss."""
    K, d = model.W_dec.shape
    k = model.k
    steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    total = steps_per_epoch * cfg.max_epochs
    lr = cfg.lr if cfg.lr is not None else min(4e-3, 4e-4 * math.sqrt(16384 / K))
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    warm = max(10, int(cfg.warmup_fraction * total))
    decay_from = int(0.8 * total)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if step >= decay_from:
            return max(0.0, (total - step) / max(1, total - decay_from))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    aux_k = cfg.aux_k or min(512, d // 2)
    dead_rows = cfg.dead_rows or min(n_train, 10_000_000)
    since_fired = torch.zeros(K, device=model.W_dec.device)
    density = torch.full((K,), k / K, device=model.W_dec.device)
    if model.architecture == "relu":
        model.l1_coef.fill_(1e-3)
    best, best_state, bad_epochs, history, step = math.inf, None, 0, [], 0
    stop = "max_epochs"
    for epoch in range(cfg.max_epochs):
        t0, total_loss, rows = time.perf_counter(), 0.0, 0
        model.train()
        for x in batches(epoch):
            pre = model.pre_activations(x)
            z, smallest = model.activate(pre, training=True)
            x_hat = model.decode(z)
            loss = _nmse(x, x_hat)
            fired = (z > 0).any(dim=0)
            since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + x.shape[0])
            density = 0.99 * density + 0.01 * (z > 0).float().mean(dim=0)
            if model.architecture == "relu":
                loss = loss + model.l1_coef * (z.sum(dim=1) / x.square().sum(dim=1).sqrt().clamp_min(1e-12)).mean()
            elif model.architecture in ("topk", "batchtopk"):
                loss = loss + cfg.aux_coef * _aux_loss(model, pre, (x - x_hat).detach(), since_fired >= dead_rows, aux_k)
            else:
                loss = loss + cfg.aux_coef * _aux_loss(model, pre, (x - x_hat).detach(), _zipf_underused(density, k),
                                                       aux_k)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}, step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():  # keep decoder rows on the unit sphere
                W, g = model.W_dec, model.W_dec.grad
                g -= (g * W).sum(dim=1, keepdim=True) * W
            opt.step()
            sched.step()
            step += 1
            with torch.no_grad():
                model.W_dec /= torch.linalg.vector_norm(model.W_dec, dim=1, keepdim=True).clamp_min(1e-12)
                if smallest is not None:
                    model.theta.mul_(cfg.theta_momentum).add_((1 - cfg.theta_momentum) * smallest)
                if model.architecture == "relu":
                    l0 = float((z > 0).sum(dim=1).float().mean())
                    model.l1_coef.mul_(math.exp(cfg.l1_rate * (l0 - k) / k))
            total_loss += float(loss) * x.shape[0]
            rows += x.shape[0]
            if progress is not None:
                progress.update(1)
        val = evaluate_nmse(model, X_val)
        history.append({"epoch": epoch, "train_loss": total_loss / max(rows, 1), "val_nmse": val,
                        "seconds": time.perf_counter() - t0, "dead": int((since_fired >= dead_rows).sum())})
        if progress is not None:
            progress.set_postfix(epoch=epoch + 1, val_nmse=f"{val:.4f}")
        if val < best - 1e-5:
            best, bad_epochs = val, 0
            best_state = {n: t.detach().clone() for n, t in model.state_dict().items()}
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                stop = "early_stopping"
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "stopped": stop, "best_val_nmse": best, "lr": lr, "steps": step}


@torch.no_grad()
def evaluate_nmse(model: SparseAutoencoder, X: torch.Tensor, chunk: int = 8192) -> float:
    """Validation normalised MSE with the inference activation."""
    model.eval()
    total = 0.0
    for s in range(0, X.shape[0], chunk):
        x = X[s:s + chunk]
        total += float(_nmse(x, model.decode(model.encode(x)))) * x.shape[0]
    return total / X.shape[0]


def check_architecture(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ParameterError(f"unknown SAE architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    return name
