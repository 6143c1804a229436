"""A linear bridge between an image embedding space and a text embedding space.

When images and texts are embedded by unrelated encoders (EfficientNet images, MiniLM
captions), a dictionary atom (a direction in the image space) cannot be compared with the text
embedding of a word directly. :func:`fit_bridge` learns a linear map from a dataset's
image-caption pairs so that it can be, in one of two ways:

* ``"ridge"``: the comparison space is the (unit-normalised, centred) text space; the image
  side is mapped into it by ridge regression, ``W = argmin ||Xc W - Yc||^2 + alpha ||W||^2``.
* ``"cca"``: regularised canonical correlation analysis; both sides are projected onto their
  top ``components`` canonical directions. Covariances are regularised as
  ``C + reg * tr(C) / d * I``; each canonical coordinate is scaled on both sides by the square
  root of its canonical correlation, so the inner product weights a coordinate by its
  correlation and noisy low-correlation coordinates count less whatever ``components`` is.
  On the emoji pairs (effnet-lite0 / minilm, five 80/20 splits, held-out recall@1 / @5) no
  scaling gave 0.258 / 0.481, sqrt(rho) 0.264 / 0.485, rho 0.271 / 0.486: within noise of each
  other, and sqrt(rho) is the usual choice.

Every row is unit-normalised, then centred with the training means, before it is mapped;
a direction (:meth:`LinearBridge.directions`) is a linear map of a vector and is neither
normalised nor centred before the map. Outputs are unit rows, compared by cosine.

Both kinds are solved from the thin SVD of the centred training matrices, computed through the
eigendecomposition of the smaller Gram matrix (the n x n "dual" Gram when there are fewer pairs
than dimensions), so a whole grid of hyper-parameters costs one decomposition per side (and,
for CCA, one small eigendecomposition per ``reg``).
:func:`fit_bridge` chooses the hyper-parameters (and, with ``kind="auto"``, the kind) on
held-out image -> caption retrieval, then refits on every pair; :func:`bridge_recall`
measures that retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ...config import BRIDGE_KINDS
from ...data.splits import permutation_split
from ...errors import InputError, ModelFormatError, ParameterError
from ...metrics import recall_at_k, unit_rows

#: Fewest image-caption pairs :func:`fit_bridge` accepts.
MIN_PAIRS = 10
#: Ridge penalties tried (on unit-norm, centred rows), strongest first: ties go to the stronger.
RIDGE_ALPHAS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)
#: CCA covariance regularisation (share of the mean eigenvalue added), strongest first.
CCA_REGS = (10.0, 3.0, 1.0, 0.3, 0.1)
#: CCA components tried, fewest first (capped by the ranks of the two sides).
CCA_COMPONENTS = (32, 64, 128, 256)
#: Power of the canonical correlation each CCA coordinate is scaled by (see the module doc).
CCA_SCALE_POWER = 0.5
_FORMAT = "dbksvd-bridge"
_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Small helpers.


def _matrix(A: Any, name: str, *, dim: int | None = None, space: str = "", allow_vector: bool = False) -> np.ndarray:
    """``A`` as a finite float64 2-D array (a 1-D vector is one row when ``allow_vector``)."""
    try:
        M = np.asarray(A, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric array") from None
    if M.ndim == 1 and allow_vector:
        M = M[None, :]
    if M.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (rows x dimensions), got {M.ndim} dimension(s)")
    if dim is not None and M.shape[1] != dim:
        raise InputError(f"{name} has {M.shape[1]} columns but the bridge expects {dim} ({space} space)")
    if not np.isfinite(M).all():
        raise InputError(f"{name} contains non-finite values (NaN or inf)")
    return M


def _captions(captions: Any, n: int) -> list[str]:
    if isinstance(captions, str):
        raise InputError("captions must be a list of strings, not one string")
    try:
        caps = list(captions)
    except TypeError:
        raise InputError("captions must be a list of strings") from None
    if len(caps) != n:
        raise InputError(f"{len(caps)} captions for {n} rows")
    bad = [i for i, c in enumerate(caps) if not isinstance(c, str)]
    if bad:
        raise InputError(f"captions must all be str; caption {bad[0]} is {type(caps[bad[0]]).__name__}")
    return caps


def _pairs(X: Any, Y: Any, captions: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    Xm = _matrix(X, "X (images)")
    Ym = _matrix(Y, "Y (texts)")
    if Xm.shape[0] != Ym.shape[0]:
        raise InputError(f"X has {Xm.shape[0]} rows but Y has {Ym.shape[0]}; they must be pairs")
    return Xm, Ym, _captions(captions, Xm.shape[0])


def _thin_svd(A: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A = U diag(s) Vt`` with the numerically zero singular values dropped, through the
    eigendecomposition of the smaller of ``A A^T`` (dual) and ``A^T A`` (primal)."""
    n, d = A.shape
    if n <= d:
        lam, U = np.linalg.eigh(A @ A.T)
        keep = lam > rtol * max(lam.max(initial=0.0), np.finfo(np.float64).tiny)
        lam, U = lam[keep][::-1], U[:, keep][:, ::-1]
        s = np.sqrt(lam)
        Vt = (U.T @ A) / s[:, None]
    else:
        lam, V = np.linalg.eigh(A.T @ A)
        keep = lam > rtol * max(lam.max(initial=0.0), np.finfo(np.float64).tiny)
        lam, V = lam[keep][::-1], V[:, keep][:, ::-1]
        s = np.sqrt(lam)
        U = (A @ V) / s[None, :]
        Vt = V.T
    return U, s, Vt


# ----------------------------------------------------------------------------------------------
# The fitted bridge.


class LinearBridge:
    """Fitted linear map; rows are unit-normalised, then centred with the training means,
    before anything else.

    ``kind``: ``"ridge"`` or ``"cca"``; ``params``: the hyper-parameters it was fitted with.
    Image rows map by ``normalise((normalise(X) - mean_x) @ wx)``; text rows by
    ``normalise((normalise(T) - mean_y) @ wy)``, with ``wy`` the identity for ridge.
    """

    def __init__(
        self,
        kind: str,
        params: dict[str, Any],
        mean_x: np.ndarray,
        mean_y: np.ndarray,
        wx: np.ndarray,
        wy: np.ndarray | None = None,
    ):
        self.kind = kind
        self.params = dict(params)
        self.mean_x = np.asarray(mean_x, dtype=np.float64)
        self.mean_y = np.asarray(mean_y, dtype=np.float64)
        self.wx = np.asarray(wx, dtype=np.float64)
        self.wy = None if wy is None else np.asarray(wy, dtype=np.float64)

    @property
    def image_dim(self) -> int:
        return int(self.mean_x.shape[0])

    @property
    def text_dim(self) -> int:
        return int(self.mean_y.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the comparison space."""
        return int(self.wx.shape[1])

    def __repr__(self) -> str:
        return (
            f"LinearBridge(kind={self.kind!r}, params={self.params}, "
            f"image_dim={self.image_dim}, text_dim={self.text_dim}, dim={self.dim})"
        )

    # -- mapping --------------------------------------------------------------------------------

    def directions(self, U: Any) -> np.ndarray:
        """Directions ``U`` (m, d_x) of the image space (as a dictionary's atoms, in the
        unit-norm row space; not centred) -> (m, e) unit rows of the comparison space.
        A 1-D vector gives a 1-D result."""
        M = _matrix(U, "directions", dim=self.image_dim, space="image", allow_vector=True)
        out = unit_rows(M @ self.wx)
        return out[0] if np.ndim(U) == 1 else out

    def images(self, X: Any) -> np.ndarray:
        """Raw image rows (n, d_x) -> (n, e) unit rows of the comparison space."""
        M = _matrix(X, "images", dim=self.image_dim, space="image", allow_vector=True)
        out = unit_rows((unit_rows(M) - self.mean_x) @ self.wx)
        return out[0] if np.ndim(X) == 1 else out

    def texts(self, T: Any) -> np.ndarray:
        """Raw text rows (p, d_y) -> (p, e) unit rows of the comparison space."""
        M = _matrix(T, "texts", dim=self.text_dim, space="text", allow_vector=True)
        C = unit_rows(M) - self.mean_y
        out = unit_rows(C if self.wy is None else C @ self.wy)
        return out[0] if np.ndim(T) == 1 else out

    # -- persistence ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON-able description; with :meth:`state` it rebuilds the bridge (:meth:`from_state`)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "kind": self.kind,
            "params": dict(self.params),
            "dims": {"image": self.image_dim, "text": self.text_dim, "comparison": self.dim},
        }

    def state(self) -> dict[str, np.ndarray]:
        """The arrays: ``mean_x``, ``mean_y``, ``wx`` and, for CCA, ``wy``."""
        out = {"mean_x": self.mean_x.copy(), "mean_y": self.mean_y.copy(), "wx": self.wx.copy()}
        if self.wy is not None:
            out["wy"] = self.wy.copy()
        return out

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Any]) -> LinearBridge:
        """The bridge that :meth:`config` and :meth:`state` describe (outputs are identical)."""
        if not isinstance(config, dict) or config.get("format") != _FORMAT:
            raise ModelFormatError(f"not a bridge config (format must be {_FORMAT!r})")
        if not isinstance(config.get("version"), int) or config["version"] > _VERSION:
            raise ModelFormatError(
                f"bridge config version {config.get('version')!r} is newer than this dbksvd reads ({_VERSION})"
            )
        kind = config.get("kind")
        if kind not in ("ridge", "cca"):
            raise ModelFormatError(f"bridge config has kind {kind!r}; expected 'ridge' or 'cca'")
        try:
            dims = config["dims"]
            dx, dy, e = int(dims["image"]), int(dims["text"]), int(dims["comparison"])
            params = dict(config.get("params", {}))
        except (KeyError, TypeError, ValueError):
            raise ModelFormatError("bridge config lacks its dims (image, text, comparison)") from None
        need = {"mean_x": (dx,), "mean_y": (dy,), "wx": (dx, e)}
        if kind == "cca":
            need["wy"] = (dy, e)
        arrays = {}
        for key, shape in need.items():
            if key not in state:
                raise ModelFormatError(f"bridge state lacks {key!r}")
            a = np.asarray(state[key], dtype=np.float64)
            if a.shape != shape:
                raise ModelFormatError(f"bridge state {key!r} has shape {a.shape}; the config says {shape}")
            if not np.isfinite(a).all():
                raise ModelFormatError(f"bridge state {key!r} contains non-finite values")
            arrays[key] = a.copy()
        return cls(kind, params, arrays["mean_x"], arrays["mean_y"], arrays["wx"], arrays.get("wy"))


# ----------------------------------------------------------------------------------------------
# Fitting.


class _Side:
    """One side of the training pairs: unit rows centred, their mean, and (computed on first
    use) the thin SVD of the centred rows."""

    def __init__(self, A: np.ndarray):
        self.centred = unit_rows(A)
        self.mean = self.centred.mean(axis=0)
        self.centred -= self.mean
        self.dim = A.shape[1]
        self._svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def svd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._svd is None:
            self._svd = _thin_svd(self.centred)
        return self._svd


def _ridge(x: _Side, y: _Side, alphas: tuple[float, ...]) -> Iterator[LinearBridge]:
    # W = Xc^T (Xc Xc^T + a I)^-1 Yc = V diag(s / (s^2 + a)) U^T Yc, for every a from one SVD.
    U, s, Vt = x.svd
    UtY = U.T @ y.centred
    for a in alphas:
        W = Vt.T @ ((s / (s**2 + a))[:, None] * UtY)
        yield LinearBridge("ridge", {"alpha": float(a)}, x.mean, y.mean, W)


def _cca(x: _Side, y: _Side, regs: tuple[float, ...], components: tuple[int, ...]) -> Iterator[LinearBridge]:
    # Cxx_r = Cxx + ex I with Cxx = Xc^T Xc / (n-1) = Vx diag(sx^2/(n-1)) Vx^T; the whitened
    # cross-covariance Cxx_r^-1/2 Cxy Cyy_r^-1/2 lives in span(Vx) x span(Vy), where it equals
    # Vx diag(ax) (Ux^T Uy) diag(ay) Vy^T / (n-1) with a = s / sqrt(s^2/(n-1) + e). Its SVD
    # M = P diag(rho) Q^T comes from the eigendecomposition of the small M^T M.
    (Ux, sx, Vxt), (Uy, sy, Vyt) = x.svd, y.svd
    denom = max(x.centred.shape[0] - 1, 1)
    lx, ly = sx**2 / denom, sy**2 / denom
    UxUy = Ux.T @ Uy
    for reg in regs:
        ex, ey = reg * lx.sum() / x.dim, reg * ly.sum() / y.dim
        ix, iy = 1.0 / np.sqrt(lx + ex), 1.0 / np.sqrt(ly + ey)
        M = (sx * ix)[:, None] * UxUy * (sy * iy)[None, :] / denom
        lam, Q = np.linalg.eigh(M.T @ M)
        lam, Q = lam[::-1], Q[:, ::-1]
        rank = max(1, min(int((lam > 1e-12 * max(lam[0], 1e-300)).sum()), M.shape[0]))
        rho = np.sqrt(lam[:rank])
        Q = Q[:, :rank]
        P = (M @ Q) / rho
        for c in components:
            c = min(c, rank)
            scale = rho[:c] ** CCA_SCALE_POWER
            Wx = Vxt.T @ (ix[:, None] * P[:, :c]) * scale
            Wy = Vyt.T @ (iy[:, None] * Q[:, :c]) * scale
            yield LinearBridge("cca", {"reg": float(reg), "components": int(c)}, x.mean, y.mean, Wx, Wy)


def _candidates(
    kinds: tuple[str, ...], X: np.ndarray, Y: np.ndarray, *, params: dict[str, Any] | None = None
) -> Iterator[LinearBridge]:
    """Bridges fitted on (X, Y), one at a time: the whole grid of each of ``kinds`` (one decomposition per
    side shared by all), or, with ``params``, just that configuration of ``kinds[0]``."""
    x, y = _Side(X), _Side(Y)
    for kind in kinds:
        if kind == "ridge":
            yield from _ridge(x, y, RIDGE_ALPHAS if params is None else (params["alpha"],))
            continue
        rank = max(1, min(x.svd[1].shape[0], y.svd[1].shape[0]))
        if params is None:
            regs = CCA_REGS
            comps = tuple(dict.fromkeys(min(c, rank) for c in CCA_COMPONENTS))
        else:
            regs, comps = (params["reg"],), (min(params["components"], rank),)
        yield from _cca(x, y, regs, comps)


def _key(r: dict[str, float]) -> tuple[float, float]:
    return (r["recall@1"], r["recall@5"])


def fit_bridge(
    X: Any, Y: Any, captions: Any, *, kind: str = "auto", val_fraction: float = 0.2, seed: int = 0
) -> tuple[LinearBridge, dict[str, Any]]:
    """Learn a :class:`LinearBridge` from image-caption pairs.

    ``X`` (n, d_x) image rows, ``Y`` (n, d_y) their captions' text rows, ``captions`` the n
    caption strings. The pairs are split (``seed``) into fit and validation rows; each kind's
    grid (ridge ``alpha``; CCA ``reg`` x ``components``) is fitted on the fit rows and scored by
    validation image -> caption recall@1 (ties: recall@5, then the stronger regularisation).
    ``kind="auto"`` takes the kind whose best candidate has the higher validation recall@5
    (then recall@1; ties: ridge). The chosen configuration is refitted on all n pairs.

    Returns ``(bridge, report)``; ``report`` has ``kind``, ``params``, ``validation``
    (recall@1, recall@5 of the chosen candidate), ``candidates`` (every configuration tried with
    its validation recall), ``pairs`` (n) and ``validation_pairs``.
    """
    if kind not in BRIDGE_KINDS:
        raise ParameterError(f"unknown bridge kind {kind!r}; choose one of {', '.join(BRIDGE_KINDS)}")
    Xm, Ym, caps = _pairs(X, Y, captions)
    n = Xm.shape[0]
    if n < MIN_PAIRS:
        raise InputError(f"a bridge needs at least {MIN_PAIRS} image-caption pairs, got {n}")
    try:
        vf = float(val_fraction)
    except (TypeError, ValueError):
        raise ParameterError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}") from None
    if not 0.0 < vf < 1.0:
        raise ParameterError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_val = max(1, int(round(n * vf)))
    if n - n_val < 2:
        raise ParameterError(
            f"val_fraction {val_fraction!r} leaves {n - n_val} of {n} pairs to fit; at least 2 are needed"
        )

    parts = permutation_split(n, seed, [("val", n_val), ("fit", None)], sort=False)
    fit, val = parts["fit"], parts["val"]
    Xv, Yv, cv = Xm[val], Ym[val], [caps[i] for i in val]
    kinds = ("ridge", "cca") if kind == "auto" else (kind,)
    candidates: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    for bridge in _candidates(kinds, Xm[fit], Ym[fit]):
        k = bridge.kind
        r = bridge_recall(bridge, Xv, Yv, cv, ks=(1, 5))
        row = {"kind": k, "params": dict(bridge.params), "recall@1": r["recall@1"], "recall@5": r["recall@5"]}
        candidates.append(row)
        if k not in best or _key(row) > _key(best[k]):
            best[k] = row
    chosen = best[kinds[0]]
    if kind == "auto":
        ridge, cca = best["ridge"], best["cca"]
        if (cca["recall@5"], cca["recall@1"]) > (ridge["recall@5"], ridge["recall@1"]):
            chosen = cca

    bridge = next(_candidates((chosen["kind"],), Xm, Ym, params=chosen["params"]))
    report = {
        "kind": bridge.kind,
        "params": dict(bridge.params),
        "validation": {"recall@1": chosen["recall@1"], "recall@5": chosen["recall@5"]},
        "candidates": candidates,
        "pairs": n,
        "validation_pairs": n_val,
    }
    return bridge, report


def bridge_recall(bridge: LinearBridge, X: Any, Y: Any, captions: Any, ks: Any = (1, 5)) -> dict[str, Any]:
    """Image -> caption retrieval through ``bridge`` on the given pairs.

    The gallery is the distinct caption strings (first-appearance order), each embedded as the
    mean of the ``Y`` rows with that caption and mapped by :meth:`LinearBridge.texts`; each
    image's target is its own caption; scores are cosine similarities in the comparison space
    (:func:`dbksvd.metrics.recall_at_k`). Returns ``recall@k`` per ``k`` in ``ks``,
    ``queries`` (n) and ``gallery`` (distinct captions).
    """
    if not isinstance(bridge, LinearBridge):
        raise InputError(f"bridge must be a LinearBridge, got {type(bridge).__name__}")
    Xm, Ym, caps = _pairs(X, Y, captions)
    if Xm.shape[0] == 0:
        raise InputError("recall is undefined for zero pairs")
    index: dict[str, int] = {}
    targets = np.fromiter((index.setdefault(c, len(index)) for c in caps), dtype=np.int64, count=len(caps))
    g = len(index)
    G = np.zeros((g, Ym.shape[1]))
    np.add.at(G, targets, Ym)
    G /= np.bincount(targets, minlength=g)[:, None]
    S = bridge.images(Xm) @ bridge.texts(G).T
    out: dict[str, Any] = dict(recall_at_k(S, targets, ks))
    out["queries"] = int(Xm.shape[0])
    out["gallery"] = g
    return out
