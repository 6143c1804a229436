"""Training of the sparse autoencoders of :mod:`dbksvd.models.sae`: Adam with warm-up and
a linear decay, decoder rows kept on the unit sphere, the AuxK / Zipf auxiliary losses, the
λ controller of the ReLU (L1) and JumpReLU (L0) penalties, the Matryoshka prefix loss, early
stopping on the validation NMSE and the threshold calibration of the batch-level rules (the
recipe is described in :mod:`dbksvd.models.sae`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .sae import SparseAutoencoder

#: Architectures that infer with the threshold θ calibrated after each epoch.
THRESHOLD_ARCHITECTURES = ("batchtopk", "featurechoice", "mutualchoice", "matryoshka-batchtopk")
#: Architectures whose sparsity penalty's weight λ (``l1_coef``) a controller steers to L0 = k;
#: only their epochs with a validation L0 within 10% of k count for early stopping.
CONTROLLED_ARCHITECTURES = ("relu", "jumprelu")
#: Architectures whose auxiliary loss (AuxK) reaches the dead latents; the others but the
#: controlled ones use ``aux_zipf``.
AUXK_ARCHITECTURES = ("topk", "batchtopk", "matryoshka-batchtopk")


@dataclass
class SAETrainConfig:
    """Training hyperparameters; the defaults train the seven architectures without tuning."""

    lr: float | None = None  # None: 4e-4 · sqrt(16384 / K), at most 4e-3 (Gao et al.'s scaling)
    batch_size: int = 4096
    max_epochs: int = 50
    patience: int = 5  # epochs without a better validation loss before stopping
    warmup_fraction: float = 0.02
    aux_k: int | None = None  # None: min(512, d // 2)
    aux_coef: float = 1 / 32
    dead_rows: int | None = None  # None: one epoch of rows, at most 10M
    l1_rate: float = 0.1  # ReLU/JumpReLU controller: λ ← λ · (L0 / k)^l1_rate per step (L0/k clipped to [0.1, 10])
    bandwidth: float = 1e-3  # JumpReLU STE: ε = bandwidth · the RMS norm of the centred training rows


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


def init_sae(
    model: SparseAutoencoder, sample: torch.Tensor, generator: torch.Generator, bandwidth: float = 1e-3
) -> None:
    """Random unit decoder rows, encoder = decoder transpose, b_dec = geometric median of the
    ``sample`` (m, d); a JumpReLU SAE's thresholds by :func:`init_thresholds`."""
    with torch.no_grad():
        W = torch.randn(model.W_dec.shape, generator=generator, dtype=model.W_dec.dtype).to(model.W_dec.device)
        model.W_dec.copy_(W / torch.linalg.vector_norm(W, dim=1, keepdim=True))
        model.W_enc.copy_(model.W_dec.T)
        model.b_enc.zero_()
        model.b_dec.copy_(geometric_median(sample.to(model.b_dec)))
    if model.architecture == "jumprelu":
        init_thresholds(model, sample, bandwidth)


@torch.no_grad()
def init_thresholds(model: SparseAutoencoder, sample: torch.Tensor, bandwidth: float = 1e-3, rows: int = 4096) -> None:
    """JumpReLU: ε = ``bandwidth`` · the RMS norm of the centred rows of ``sample`` (m, d) (the
    data scale after preprocessing; 1e-3 is the JumpReLU paper's ε for rows of unit mean squared
    norm), and θ_j latent j's (1 - k/K) quantile of the pre-activations of (at most ``rows`` of)
    the sample, at least ε, so that about k latents fire per row."""
    x = sample[:rows].to(model.b_dec)
    scale = float((x - model.b_dec).square().sum(dim=1).mean().sqrt())
    model.bandwidth = bandwidth * (scale if scale > 0 else 1.0)
    pre = model.pre_activations(x)
    n_fire = min(x.shape[0], max(1, round(x.shape[0] * model.k / pre.shape[1])))
    theta = pre.topk(n_fire, dim=0).values[-1]
    model.log_threshold.copy_(theta.clamp_min(model.bandwidth).log())


@torch.no_grad()
def rescale_thresholds(model: SparseAutoencoder, x: torch.Tensor) -> None:
    """JumpReLU: multiply every θ_j by one factor c so that the rows ``x`` (n, d) have a mean L0
    of k: c is the (n·k)-th largest ratio pre-activation / θ (θ kept at least ε)."""
    ratio = (model.pre_activations(x) / model.threshold).flatten()
    c = float(ratio.topk(min(ratio.numel(), x.shape[0] * model.k)).values[-1])
    if c > 0:
        model.log_threshold.copy_((model.threshold * c).clamp_min(model.bandwidth).log())


def _nmse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return ((x - x_hat).square().sum(dim=1) / x.square().sum(dim=1).clamp_min(1e-12)).mean()


def _aux_loss(
    model: SparseAutoencoder, pre: torch.Tensor, residual: torch.Tensor, candidates: torch.Tensor, aux_k: int
) -> torch.Tensor:
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


def train_sae(
    model: SparseAutoencoder,
    batches,
    n_train: int,
    X_val: torch.Tensor,
    cfg: SAETrainConfig,
    generator: torch.Generator,
    progress: Any = None,
) -> dict[str, Any]:
    """Train ``model`` in place; ``batches(epoch)`` yields training batches (tensors on the
    model's device). Returns the history and why training stopped; the weights are those of
    the best validation epoch (``best_val_nmse`` None when no epoch counted for early
    stopping). Raises :class:`FloatingPointError` on a non-finite loss."""
    from .sae import expected_l0

    K, d = model.W_dec.shape
    k = model.k
    steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    total = steps_per_epoch * cfg.max_epochs
    lr = cfg.lr if cfg.lr is not None else min(4e-3, 4e-4 * math.sqrt(16384 / K))
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    warm = max(10, int(cfg.warmup_fraction * total))
    # linear decay over the last fifth; a validation plateau before that starts the decay early
    plan = {"decay_from": int(0.8 * total), "end": total}

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if step >= plan["decay_from"]:
            return max(0.0, (plan["end"] - step) / max(1, plan["end"] - plan["decay_from"]))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    aux_k = cfg.aux_k or min(512, d // 2)
    dead_rows = cfg.dead_rows or min(n_train, 10_000_000)
    since_fired = torch.zeros(K, device=model.W_dec.device)
    density = torch.full((K,), k / K, device=model.W_dec.device)
    controlled = model.architecture in CONTROLLED_ARCHITECTURES
    if controlled:
        model.l1_coef.fill_(1e-3)
    best, best_state, bad_epochs, history, step = math.inf, None, 0, [], 0
    stop = "max_epochs"
    for epoch in range(cfg.max_epochs):
        t0, total_loss, rows = time.perf_counter(), 0.0, 0
        model.train()
        for x in batches(epoch):
            if model.architecture == "jumprelu" and step == warm:
                # the pre-activations grow as the decoder first aligns with the data, faster
                # than θ can follow: rescale θ once, at the end of the warm-up
                rescale_thresholds(model, x)
            pre = model.pre_activations(x)
            z = model.activate(pre, training=True)
            if model.architecture == "matryoshka-batchtopk":  # every prefix reconstructs on its own
                prefixes = model.decode_prefixes(z)
                x_hat = prefixes[-1]
                loss = torch.stack([_nmse(x, p) for p in prefixes]).mean()
            else:
                x_hat = model.decode(z)
                loss = _nmse(x, x_hat)
            fired = (z > 0).any(dim=0)
            since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + x.shape[0])
            density = 0.99 * density + 0.01 * (z > 0).float().mean(dim=0)
            if model.architecture == "relu":
                loss = loss + model.l1_coef * (z.sum(dim=1) / x.square().sum(dim=1).sqrt().clamp_min(1e-12)).mean()
            elif model.architecture == "jumprelu":
                loss = loss + model.l1_coef * expected_l0(pre, model.threshold, model.bandwidth).mean()
            elif model.architecture in AUXK_ARCHITECTURES:
                loss = loss + cfg.aux_coef * _aux_loss(
                    model, pre, (x - x_hat).detach(), since_fired >= dead_rows, aux_k
                )
            else:
                loss = loss + cfg.aux_coef * _aux_loss(
                    model, pre, (x - x_hat).detach(), _zipf_underused(density, k), aux_k
                )
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
                if controlled:
                    l0 = float((z > 0).sum(dim=1).float().mean())
                    model.l1_coef.mul_(min(10.0, max(0.1, l0 / k)) ** cfg.l1_rate)
                    if model.architecture == "jumprelu":  # k latents never cost more than the signal
                        model.l1_coef.clamp_(max=1.0 / k)
            total_loss += float(loss.detach()) * x.shape[0]
            rows += x.shape[0]
            if progress is not None:
                progress.update(1)
        if model.architecture in THRESHOLD_ARCHITECTURES:
            calibrate_threshold(model, X_val)
        val, val_l0 = evaluate_nmse(model, X_val)
        history.append(
            {
                "epoch": epoch,
                "train_loss": total_loss / max(rows, 1),
                "val_nmse": val,
                "val_l0": val_l0,
                "seconds": time.perf_counter() - t0,
                "dead": int((since_fired >= dead_rows).sum()),
            }
        )
        if progress is not None:
            progress.set_postfix(epoch=epoch + 1, val_nmse=f"{val:.4f}", l0=f"{val_l0:.1f}")
        # the ReLU/JumpReLU SAE's λ is still moving while its L0 is off target: such epochs don't count
        eligible = not controlled or 0.9 * k <= val_l0 <= 1.1 * k
        if not eligible:
            continue
        if val < best - 1e-5:
            best, bad_epochs = val, 0
            best_state = {n: t.detach().clone() for n, t in model.state_dict().items()}
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience and step < plan["decay_from"]:
                # plateau at full learning rate: decay now (over >= 3 epochs) instead of stopping
                plan["decay_from"], bad_epochs = step, 0
                plan["end"] = min(total, step + max(3 * steps_per_epoch, int(0.2 * total)))
            elif bad_epochs >= cfg.patience:
                stop = "early_stopping"
                break
        if step >= plan["end"]:
            stop = "decayed"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    # None (JSON null) when no epoch counted, e.g. a ReLU SAE whose L0 never came near k: the
    # same value in memory, in config.json and after loading (inf is not JSON)
    best_val = best if math.isfinite(best) else None
    out = {"history": history, "stopped": stop, "best_val_nmse": best_val, "lr": lr, "steps": step}
    if model.architecture == "jumprelu":
        out["bandwidth"] = model.bandwidth
    return out


@torch.no_grad()
def evaluate_nmse(model: SparseAutoencoder, X: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """Validation normalised MSE and mean L0 with the inference activation."""
    model.eval()
    total, l0 = 0.0, 0.0
    for s in range(0, X.shape[0], chunk):
        x = X[s : s + chunk]
        z = model.encode(x)
        total += float(_nmse(x, model.decode(z))) * x.shape[0]
        l0 += float((z > 0).sum())
    return total / X.shape[0], l0 / X.shape[0]


@torch.no_grad()
def calibrate_threshold(model: SparseAutoencoder, X: torch.Tensor) -> None:
    """Set θ so that the inference activation's mean L0 on ``X`` is exactly k: the (n·k)-th
    largest pre-activation (a running mean of batch minima lags and overshoots L0)."""
    pre = model.pre_activations(X).flatten()
    n_keep = min(pre.numel(), X.shape[0] * model.k)
    model.theta.fill_(float(pre.topk(n_keep).values[-1].clamp_min(0)))
