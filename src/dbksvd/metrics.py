"""Every metric of ``docs/metrics.md``, one definition each, accumulated in float64.

``X`` (n, d) are the vectors a method was asked to reconstruct, ``X_hat`` (n, d) its
reconstructions, ``r_i = x_i - x̂_i``. Inputs may be numpy arrays or torch tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .coding import SparseCodes
from .errors import InputError
from .validation import as_matrix


def _pair(X: Any, X_hat: Any) -> tuple[torch.Tensor, torch.Tensor]:
    Xt = as_matrix(X, "X", dtype=torch.float64, device="cpu")
    Xh = as_matrix(X_hat, "X_hat", dtype=torch.float64, device="cpu")
    if Xt.shape != Xh.shape:
        raise InputError(f"X has shape {tuple(Xt.shape)} but X_hat has shape {tuple(Xh.shape)}")
    return Xt, Xh


def explained_signal(X: Any, X_hat: Any) -> float:
    """``1 - mean_i(‖r_i‖ / ‖x_i‖)`` over rows with ``x_i ≠ 0`` (the seed paper's headline)."""
    Xt, Xh = _pair(X, X_hat)
    xn = torch.linalg.vector_norm(Xt, dim=1)
    keep = xn > 0
    if not bool(keep.any()):
        raise InputError("explained signal is undefined: every row of X is zero")
    rn = torch.linalg.vector_norm(Xt - Xh, dim=1)
    return float(1.0 - (rn[keep] / xn[keep]).mean())


def fvu(X: Any, X_hat: Any) -> float:
    """Fraction of variance unexplained: ``Σ_i ‖r_i‖² / Σ_i ‖x_i - x̄‖²`` over the whole set."""
    Xt, Xh = _pair(X, X_hat)
    total = (Xt - Xt.mean(dim=0, keepdim=True)).square().sum()
    if float(total) == 0.0:
        raise InputError("FVU is undefined: X has zero variance")
    return float((Xt - Xh).square().sum() / total)


def explained_variance(X: Any, X_hat: Any) -> float:
    """``1 - FVU``."""
    return 1.0 - fvu(X, X_hat)


def cosine(X: Any, X_hat: Any) -> float:
    """``mean_i cos(x_i, x̂_i)``; a zero vector has cosine 0 with anything."""
    Xt, Xh = _pair(X, X_hat)
    den = torch.linalg.vector_norm(Xt, dim=1) * torch.linalg.vector_norm(Xh, dim=1)
    num = (Xt * Xh).sum(dim=1)
    cos = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))
    return float(cos.mean())


def _usage(codes: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-row non-zero counts (n,) and per-atom row counts (K,) of sparse or dense codes."""
    if isinstance(codes, SparseCodes):
        used = codes.values != 0
        per_atom = torch.bincount(codes.indices[used].cpu(), minlength=codes.n_atoms)
        return used.sum(dim=1).cpu(), per_atom, len(codes)
    C = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(np.asarray(codes))
    if C.ndim != 2:
        raise InputError(f"codes must be 2-D (rows, atoms); got shape {tuple(C.shape)}")
    nz = C != 0
    return nz.sum(dim=1), nz.sum(dim=0), C.shape[0]


def l0(codes: Any) -> float:
    """``mean_i #{j : c_ij ≠ 0}`` for :class:`SparseCodes` or a dense (n, K) matrix."""
    per_row, _, n = _usage(codes)
    if n == 0:
        raise InputError("L0 is undefined for zero rows")
    return float(per_row.double().mean())


def dead_atoms(codes: Any, rare_fraction: float = 1e-4) -> dict[str, int]:
    """``{"dead": atoms never used, "rare": atoms used by fewer than rare_fraction of rows}``.

    ``rare`` counts dead atoms too (they are used by 0 rows).
    """
    _, per_atom, n = _usage(codes)
    return {"dead": int((per_atom == 0).sum()), "rare": int((per_atom < rare_fraction * n).sum())}


def coherence(dictionary: Any, chunk: int = 2048) -> dict[str, float]:
    """``{"max": max_{j≠l} |⟨D_j, D_l⟩|, "mean_max": mean_j max_{l≠j} |⟨D_j, D_l⟩|}``.

    Rows are normalised first, so the numbers are cosines whatever the scale.
    """
    D = as_matrix(dictionary, "dictionary", dtype=torch.float64, device="cpu")
    K = D.shape[0]
    if K < 2:
        raise InputError("coherence needs at least two atoms")
    D = D / torch.linalg.vector_norm(D, dim=1, keepdim=True).clamp_min(1e-300)
    per_atom = torch.empty(K, dtype=torch.float64)
    for s in range(0, K, chunk):
        G = (D[s : s + chunk] @ D.T).abs()
        r = torch.arange(G.shape[0])
        G[r, r + s] = -1.0
        per_atom[s : s + chunk] = G.max(dim=1).values
    return {"max": float(per_atom.max()), "mean_max": float(per_atom.mean())}


def atom_recovery(true_dictionary: Any, learned_dictionary: Any, threshold: float = 0.01) -> float:
    """Share of true atoms g with ``min_j (1 - |⟨g, D_j⟩|) < threshold`` (Aharon et al. 2006)."""
    Dt = as_matrix(true_dictionary, "true_dictionary", dtype=torch.float64, device="cpu")
    Dl = as_matrix(learned_dictionary, "learned_dictionary", dtype=torch.float64, device="cpu")
    if Dt.shape[1] != Dl.shape[1]:
        raise InputError(f"true atoms have {Dt.shape[1]} features but learned atoms have {Dl.shape[1]}")
    Dt = Dt / torch.linalg.vector_norm(Dt, dim=1, keepdim=True).clamp_min(1e-300)
    Dl = Dl / torch.linalg.vector_norm(Dl, dim=1, keepdim=True).clamp_min(1e-300)
    best = (Dt @ Dl.T).abs().max(dim=1).values
    return float(((1.0 - best) < threshold).double().mean())


def reconstruction_metrics(X: Any, X_hat: Any, codes: Any = None, dictionary: Any = None) -> dict[str, Any]:
    """All reconstruction metrics at once; code and dictionary metrics when those are given."""
    out: dict[str, Any] = {
        "explained_signal": explained_signal(X, X_hat),
        "fvu": fvu(X, X_hat),
        "explained_variance": explained_variance(X, X_hat),
        "cosine": cosine(X, X_hat),
    }
    if codes is not None:
        out["l0"] = l0(codes)
        out.update({f"{k}_atoms": v for k, v in dead_atoms(codes).items()})
    if dictionary is not None:
        coh = coherence(dictionary)
        out["max_coherence"] = coh["max"]
        out["mean_max_coherence"] = coh["mean_max"]
    return out


def linear_probe(X_train: Any, y_train: Any, *, l2: float = 1e-3, max_iter: int = 200):
    """A multinomial logistic-regression probe (L-BFGS, L2 ``l2`` on the weights) on
    standardised features; returns ``predict(X) -> labels``."""
    X = torch.as_tensor(np.asarray(X_train, dtype=np.float64))
    classes, y = np.unique(np.asarray(y_train), return_inverse=True)
    y = torch.as_tensor(y)
    mu, sd = X.mean(dim=0), X.std(dim=0).clamp_min(1e-12)
    W = torch.zeros(X.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=max_iter, line_search_fn="strong_wolfe")
    Z = (X - mu) / sd

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Z @ W + b, y) + l2 * W.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    W_, b_ = W.detach(), b.detach()

    def predict(X_new: Any) -> np.ndarray:
        Zn = (torch.as_tensor(np.asarray(X_new, dtype=np.float64)) - mu) / sd
        return classes[(Zn @ W_ + b_).argmax(dim=1).numpy()]

    return predict


def probe_retention(predict: Any, X_test: Any, X_test_hat: Any, y_test: Any) -> dict[str, float]:
    """Probe retention (docs/metrics.md): the accuracy of a linear probe trained on the original
    training rows (``predict = linear_probe(X_train, y_train)``, trained once for any number of
    reconstructions) on the reconstructed test rows ``X_test_hat`` ÷ its accuracy on the
    original test rows ``X_test``; ``y_test`` (n,) their labels."""
    y_test = np.asarray(y_test)
    acc = float((predict(X_test) == y_test).mean())
    acc_hat = float((predict(X_test_hat) == y_test).mean())
    return {
        "probe_accuracy": acc,
        "probe_accuracy_reconstructed": acc_hat,
        "probe_retention": acc_hat / acc if acc > 0 else float("nan"),
    }


# -- explanations (docs/metrics.md, "Explanation scores") -------------------------------


def unit_rows(A: Any, dtype: Any = None) -> np.ndarray:
    """Rows of ``A`` scaled to unit norm, for cosine similarities; an all-zero row stays zero.
    ``dtype``: of the result (default: float32 and float64 kept, anything else as float64)."""
    A = np.asarray(A) if dtype is None else np.asarray(A, dtype=dtype)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    norms = np.linalg.norm(A, axis=-1, keepdims=True)
    return A / np.where(norms > 0, norms, 1).astype(A.dtype)


def faithfulness(similarity: Any, active: Any) -> np.ndarray:
    """Faithfulness per described atom: the AUROC of ``similarity`` for separating the items
    where the atom is active with the described sign from the others (0.5 = chance).

    ``similarity`` (J, n): ``sim(description_j, caption_i)``; ``active`` (J, n) bool. Ties
    count one half (average ranks). Returns (J,) float64, NaN for a row whose items are all
    active or all inactive.
    """
    from scipy.stats import rankdata

    S = np.atleast_2d(np.asarray(similarity, dtype=np.float64))
    A = np.atleast_2d(np.asarray(active, dtype=bool))
    if S.shape != A.shape:
        raise InputError(f"similarity has shape {S.shape} but active has shape {A.shape}")
    n_pos = A.sum(axis=1).astype(np.float64)
    n_neg = A.shape[1] - n_pos
    ranks = rankdata(S, axis=1) if S.size else S
    u = (ranks * A).sum(axis=1) - n_pos * (n_pos + 1) / 2  # Mann-Whitney U of the active items
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def auroc_standard_error(auroc: Any, n_pos: Any, n_neg: Any) -> np.ndarray:
    """The standard error of an AUROC estimated from ``n_pos`` positive and ``n_neg`` negative
    items (Hanley & McNeil 1982): ``sqrt((A(1-A) + (n₁-1)(Q₁-A²) + (n₂-1)(Q₂-A²)) / (n₁ n₂))``
    with ``Q₁ = A/(2-A)``, ``Q₂ = 2A²/(1+A)``. Broadcasts; NaN where a count is 0."""
    A = np.asarray(auroc, dtype=np.float64)
    n1 = np.asarray(n_pos, dtype=np.float64)
    n2 = np.asarray(n_neg, dtype=np.float64)
    q1, q2 = A / (2 - A), 2 * A * A / (1 + A)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (A * (1 - A) + (n1 - 1) * (q1 - A * A) + (n2 - 1) * (q2 - A * A)) / (n1 * n2)
        return np.where((n1 > 0) & (n2 > 0), np.sqrt(np.maximum(var, 0.0)), np.nan)


def specificity(similarity_to_atoms: Any, own: Any) -> np.ndarray:
    """Specificity per described atom: the reciprocal rank of the atom itself when every
    candidate atom ``l`` is scored by ``similarity_to_atoms[j, l]``, the mean similarity of
    description ``j`` to the captions of atom ``l``'s top held-out items (1 = best).

    ``similarity_to_atoms`` (J, L); ``own`` (J,) int: the column of atom j itself, or -1 when
    it has no held-out items (then NaN). Ties share the mean of their ranks; NaN columns
    (atoms without held-out items) are not candidates.
    """
    M = np.atleast_2d(np.asarray(similarity_to_atoms, dtype=np.float64))
    own = np.asarray(own, dtype=np.int64).reshape(-1)
    if own.shape[0] != M.shape[0]:
        raise InputError(f"own has {own.shape[0]} entries for {M.shape[0]} descriptions")
    if own.size and own.max() >= M.shape[1]:
        raise InputError(f"own refers to column {own.max()} but there are {M.shape[1]} candidate atoms")
    out = np.full(M.shape[0], np.nan)
    ok = own >= 0
    if not ok.any():
        return out
    rows = np.flatnonzero(ok)
    mine = M[rows, own[rows]][:, None]
    valid = ~np.isnan(M[rows])
    greater = ((M[rows] > mine) & valid).sum(axis=1)
    tied = ((M[rows] == mine) & valid).sum(axis=1) - 1  # others with the same score
    out[rows] = np.where(np.isnan(mine[:, 0]), np.nan, 1.0 / (1.0 + greater + tied / 2.0))
    return out


def normalize_description(text: str) -> str:
    """The form in which two descriptions count as the same: case-folded, single spaces."""
    return " ".join(str(text).casefold().split())


def diversity(descriptions: Any) -> float:
    """Distinct descriptions ÷ described atoms (None entries are undescribed and skipped);
    descriptions equal after :func:`normalize_description` count once."""
    described = [normalize_description(d) for d in descriptions if d is not None]
    if not described:
        raise InputError("diversity is undefined: no atom has a description")
    return len(set(described)) / len(described)


def recall_at_k(similarity: Any, targets: Any, ks: Any = (1, 5)) -> dict[str, float]:
    """Retrieval recall: share of queries whose target is among the ``k`` best-scored gallery
    entries, for each ``k`` in ``ks``. ``similarity`` (q, g), ``targets`` (q,) gallery indices.
    Ties are counted against the query (a target tied with another entry ranks below it)."""
    S = np.atleast_2d(np.asarray(similarity, dtype=np.float64))
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if t.shape[0] != S.shape[0]:
        raise InputError(f"{t.shape[0]} targets for {S.shape[0]} queries")
    if S.shape[0] == 0:
        raise InputError("recall is undefined for zero queries")
    if t.min() < 0 or t.max() >= S.shape[1]:
        raise InputError(f"targets must be gallery indices in [0, {S.shape[1]})")
    mine = S[np.arange(len(t)), t][:, None]
    rank = (mine <= S).sum(axis=1) - 1  # entries scored at least as high, other than the target
    return {f"recall@{k}": float((rank < k).mean()) for k in ks}


# -- splice metrics (docs/metrics.md, "Splice metrics") ----------------------------------


def _logit_rows(logits: Any, name: str) -> torch.Tensor:
    """``logits`` (n, V) as a tensor on its own device (numpy arrays on the CPU)."""
    L = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    if L.ndim != 2 or L.shape[1] == 0:
        raise InputError(f"{name} must be 2-D (rows, classes); got shape {tuple(L.shape)}")
    return L


def _log_softmax64(L: torch.Tensor) -> torch.Tensor:
    """log_softmax in float64 (on the CPU where the device has no float64, e.g. MPS)."""
    if L.device.type == "mps":
        L = L.cpu()
    return torch.log_softmax(L.double(), dim=-1)


def cross_entropy(logits: Any, targets: Any, *, chunk: int = 1024) -> np.ndarray:
    """Cross-entropy in nats of each row's softmax at its target: ``-log softmax(l_i)[t_i]``.

    ``logits`` (n, V) (any float dtype, any device; log_softmax in float64, ``chunk`` rows at
    a time), ``targets`` (n,) class indices. Returns (n,) float64."""
    L = _logit_rows(logits, "logits")
    t = torch.as_tensor(np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets), dtype=torch.long)
    t = t.reshape(-1)
    if t.shape[0] != L.shape[0]:
        raise InputError(f"{t.shape[0]} targets for {L.shape[0]} rows of logits")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= L.shape[1]):
        raise InputError(f"targets must be class indices in [0, {L.shape[1]})")
    out = np.empty(L.shape[0], dtype=np.float64)
    for s in range(0, L.shape[0], chunk):
        lp = _log_softmax64(L[s : s + chunk])
        out[s : s + chunk] = (-lp.gather(1, t[s : s + chunk, None].to(lp.device))[:, 0]).cpu().numpy()
    return out


def kl_divergence(logits_p: Any, logits_q: Any, *, chunk: int = 1024) -> np.ndarray:
    """``KL(p_i || q_i) = Σ_v p_iv (log p_iv - log q_iv)`` in nats, of the softmaxes of each
    row of ``logits_p`` and ``logits_q`` (both (n, V)); float64, ``chunk`` rows at a time.
    Classes with ``p = 0`` add nothing. Returns (n,) float64."""
    P, Q = _logit_rows(logits_p, "logits_p"), _logit_rows(logits_q, "logits_q")
    if P.shape != Q.shape:
        raise InputError(f"logits_p has shape {tuple(P.shape)} but logits_q has shape {tuple(Q.shape)}")
    out = np.empty(P.shape[0], dtype=np.float64)
    for s in range(0, P.shape[0], chunk):
        lp, lq = _log_softmax64(P[s : s + chunk]), _log_softmax64(Q[s : s + chunk].to(P.device))
        p = lp.exp()
        terms = torch.where(p > 0, p * (lp - lq), torch.zeros_like(p))
        out[s : s + chunk] = terms.sum(dim=1).cpu().numpy()
    return out


def loss_recovered(ce_clean: float, ce_spliced: float, ce_ablated: float) -> float:
    """CE loss recovered ``(CE_ablated - CE_spliced) / (CE_ablated - CE_clean)``: 1 when the
    splice costs nothing, 0 when it is as bad as the ablation (zero or mean activations),
    below 0 when worse. NaN when the ablation does not change the loss."""
    den = float(ce_ablated) - float(ce_clean)
    return (float(ce_ablated) - float(ce_spliced)) / den if den != 0 else float("nan")


def top1_agreement(logits_clean: Any, logits_other: Any) -> float:
    """``mean_i [argmax l_clean_i = argmax l_other_i]`` over the rows of two (n, C) logit matrices."""
    A, B = _logit_rows(logits_clean, "logits_clean"), _logit_rows(logits_other, "logits_other")
    if A.shape != B.shape:
        raise InputError(f"logits_clean has shape {tuple(A.shape)} but logits_other has shape {tuple(B.shape)}")
    if A.shape[0] == 0:
        raise InputError("top-1 agreement is undefined for zero rows")
    return float((A.argmax(dim=1).cpu() == B.argmax(dim=1).cpu()).double().mean())


def _top_k(S: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) column indices of each row's k largest entries (any order)."""
    return np.argpartition(-S, k - 1, axis=1)[:, :k]


def neighbour_retention(X: Any, X_hat: Any, k: int = 10, *, chunk: int = 1024) -> float:
    """Neighbour retention: for each item i, the share of its ``k`` nearest neighbours among the
    clean rows ``X`` (cosine, i itself excluded) that are also among the ``k`` nearest clean
    rows of its reconstruction ``x̂_i`` (i excluded there too, so the identity scores 1); the
    mean over items. ``X``, ``X_hat`` (n, d) with n > k; zero rows have cosine 0 with all.
    Memory: ``chunk`` x n similarities at a time."""
    Xt, Xh = _pair(X, X_hat)
    n = Xt.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer; got {k!r}")
    if n <= k:
        raise InputError(f"neighbour retention with k={k} needs more than {k} rows; got {n}")
    U, Uh = unit_rows(Xt.numpy()), unit_rows(Xh.numpy())
    kept = 0
    for s in range(0, n, chunk):
        r = np.arange(s, min(n, s + chunk))
        S, Sh = U[r] @ U.T, Uh[r] @ U.T
        S[r - s, r] = -np.inf  # self excluded
        Sh[r - s, r] = -np.inf
        near, near_hat = np.sort(_top_k(S, k), axis=1), np.sort(_top_k(Sh, k), axis=1)
        kept += sum(np.intersect1d(a, b, assume_unique=True).size for a, b in zip(near, near_hat))
    return kept / (n * k)
