"""Preprocessing stored with a model: unit-norm rows, centring, scaling to mean norm √d.

A model is fitted on ``Z = preprocess(X)`` and its reconstructions are mapped back with
:meth:`Preprocessor.invert`, so every metric is computed on the vectors the user gave (see
``docs/metrics.md``, "Conventions"). The steps always run in this order, each optional:

1. ``normalize``: ``x / ‖x‖`` (rows with ‖x‖ = 0 are left at 0). The row norms are returned
   so that :meth:`Preprocessor.invert` can restore them.
2. ``center``: subtract the mean training row (after step 1).
3. ``scale``: multiply by one factor ``s`` so that the mean training row norm becomes √d
   (after steps 1-2), the scale SAE recipes assume; K-SVD itself is scale-invariant.

The default, ``normalize+center+scale``, suits CLIP-like embeddings: they are compared by
cosine (so the norm carries little meaning) and share a large common component (the "cone"),
which centring removes so that atoms describe how items *differ*. Use ``none`` for data
whose raw geometry matters (e.g. planted synthetic problems).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config.params import parse_steps
from .errors import ModelFormatError, ParameterError
from .validation import as_matrix


def steps_name(steps: tuple[str, ...]) -> str:
    return "+".join(steps) if steps else "none"


@dataclass
class Preprocessor:
    """Fitted preprocessing. ``mean``: (d,) float64 or None; ``scale``: the factor s."""

    steps: tuple[str, ...]
    mean: np.ndarray | None = None
    scale: float = 1.0

    @property
    def normalizes(self) -> bool:
        return "normalize" in self.steps

    @property
    def is_identity(self) -> bool:
        return not self.steps

    @classmethod
    def fit(cls, steps: tuple[str, ...], chunks: Iterable[Any], sample: Any) -> Preprocessor:
        """Statistics from the training data.

        ``chunks``: an iterable over all training rows, chunk by chunk (for the exact mean; only
        read when centring). ``sample``: (m, d) rows on which the scale is estimated (the whole
        data when it is small; the initialisation sample for a store).
        """
        pre = cls(steps)
        if "center" in steps:
            total, n = None, 0
            for chunk in chunks:
                c = as_matrix(chunk, dtype=torch.float64, device="cpu")
                if pre.normalizes:
                    c = c / _safe_norms(c)[:, None]
                s = c.sum(dim=0)
                total = s if total is None else total + s
                n += c.shape[0]
            pre.mean = (total / max(n, 1)).cpu().numpy()
        if "scale" in steps:
            Z, _ = cls(tuple(s for s in steps if s != "scale"), pre.mean).apply(
                as_matrix(sample, dtype=torch.float64, device="cpu")
            )
            mean_norm = float(torch.linalg.vector_norm(Z, dim=1).mean())
            d = Z.shape[1]
            pre.scale = math.sqrt(d) / mean_norm if mean_norm > 0 else 1.0
        return pre

    def apply(self, X: torch.Tensor, *, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(Z, norms)``: Z (n, d) in X's dtype and device; norms (n,) when normalising, else None.

        ``inplace=True`` may overwrite ``X`` (for a caller's own temporary copy)."""
        norms = None
        Z = X
        if self.normalizes:
            norms = torch.linalg.vector_norm(X, dim=1)
            Z = X.div_(_safe_norms(X)[:, None]) if inplace else X / _safe_norms(X)[:, None]
        # after the first step Z is our own copy, so the later steps work in place (at a
        # 65536 x 768 batch, each extra copy would be 200 MB)
        if self.mean is not None:
            mean = torch.as_tensor(self.mean, dtype=X.dtype, device=X.device)
            Z = Z.sub_(mean) if inplace or Z is not X else Z - mean
        if self.scale != 1.0:
            Z = Z.mul_(self.scale) if inplace or Z is not X else Z * self.scale
        return Z, norms

    def invert(self, Z: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
        """The inverse of :meth:`apply`: (n, d) in the space of the original rows."""
        if self.normalizes and norms is None:
            raise ParameterError(
                "this model normalises rows, so mapping codes back needs each row's norm: "
                "pass the SparseCodes returned by transform (they carry row_norms)"
            )
        X = Z
        if self.scale != 1.0:
            X = X / self.scale
        if self.mean is not None:
            X = X + torch.as_tensor(self.mean, dtype=Z.dtype, device=Z.device)
        if self.normalizes:
            X = X * norms.to(dtype=Z.dtype, device=Z.device)[:, None]
        return X

    # -- persistence (config.json entry + one tensor) ---------------------------------------

    def to_config(self) -> dict[str, Any]:
        return {
            "kind": steps_name(self.steps),
            "steps": list(self.steps),
            "scale": self.scale,
            "has_mean": self.mean is not None,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        return {} if self.mean is None else {"preprocessing.mean": self.mean}

    @classmethod
    def from_config(cls, config: Any, tensors: dict[str, np.ndarray], d: int) -> Preprocessor:
        try:
            steps = parse_steps(config.get("steps", config.get("kind", "none")))
            scale = float(config.get("scale", 1.0))
        except (AttributeError, ParameterError, TypeError, ValueError):
            raise ModelFormatError(f"bad preprocessing entry {config!r}") from None
        mean = tensors.get("preprocessing.mean")
        if ("center" in steps) != (mean is not None):
            raise ModelFormatError("preprocessing says 'center' but the training mean is missing (or the reverse)")
        if mean is not None and mean.shape != (d,):
            raise ModelFormatError(f"preprocessing mean has shape {mean.shape}, expected ({d},)")
        if not math.isfinite(scale) or scale <= 0:
            raise ModelFormatError(f"preprocessing scale {scale} is not a positive number")
        return cls(steps, None if mean is None else np.asarray(mean, dtype=np.float64), scale)


def _safe_norms(X: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(X, dim=1)
    return torch.where(n > 0, n, torch.ones_like(n))
