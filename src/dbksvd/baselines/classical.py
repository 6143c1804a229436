"""Dictionary baselines coded with the same exact OMP as DB-KSVD: random unit directions
(the floor every learned dictionary must clear) and scikit-learn's
MiniBatchDictionaryLearning (when scikit-learn is installed).

Both reuse :class:`~dbksvd.DBKSVD` for everything but learning the atoms: the preprocessing,
``transform`` (Batch-OMP with ``n_nonzero`` atoms), metrics and the model folder.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from ..errors import MissingDependencyError
from ..ksvd import DBKSVD
from ..sources import as_source
from ..validation import float_dtype


class _FixedCoderDictionary(DBKSVD, abc.ABC):
    """DBKSVD minus its learning: subclasses set ``self._D`` (K, d) in ``_learn``."""

    def fit(self, X: Any, y: Any = None) -> _FixedCoderDictionary:
        source = as_source(X)
        n, d = source.shape
        cfg = self._validated(d)
        rng = np.random.default_rng(self.random_state)
        self._start(cfg, d, float_dtype(source), source)
        self._fit_preprocessing(source, cfg, rng)
        self._learn(source, cfg, rng)
        self.n_iter_ = self.max_iter
        self._finish()
        return self

    @abc.abstractmethod
    def _learn(self, source: Any, cfg: dict[str, Any], rng: np.random.Generator) -> None:
        """Set ``self._D`` (K, d), unit-norm rows in the preprocessed space."""


class RandomDictionary(_FixedCoderDictionary):
    """K random unit directions (Gaussian, normalised): a dictionary that learned nothing."""

    architecture_name = "random"

    def _learn(self, source: Any, cfg: dict[str, Any], rng: np.random.Generator) -> None:
        D = rng.standard_normal((cfg["K"], self.n_features_in_))
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        self._D = torch.as_tensor(D, dtype=self._dtype)


class MiniBatchDictionary(_FixedCoderDictionary):
    """scikit-learn's ``MiniBatchDictionaryLearning`` (online dictionary learning, Mairal et
    al. 2009; lasso coding while learning, ``alpha``), ``max_iter`` passes over the
    preprocessed rows held in memory; codes from the same Batch-OMP as DB-KSVD."""

    architecture_name = "sklearn-mbdl"

    def _learn(self, source: Any, cfg: dict[str, Any], rng: np.random.Generator) -> None:
        try:
            from sklearn.decomposition import MiniBatchDictionaryLearning
        except ImportError:
            raise MissingDependencyError("the sklearn baseline needs scikit-learn: pip install scikit-learn") from None
        Z = self._prepare(next(source.iter_chunks(source.shape[0]))).cpu().numpy()
        est = MiniBatchDictionaryLearning(
            n_components=cfg["K"],
            alpha=1.0,
            batch_size=256,
            max_iter=self.max_iter,
            transform_algorithm="omp",
            transform_n_nonzero_coefs=cfg["k"],
            random_state=int(rng.integers(2**31 - 1)),
        )
        est.fit(Z)
        D = est.components_.astype(np.float64)
        norms = np.linalg.norm(D, axis=1, keepdims=True)
        dead = norms[:, 0] < 1e-12  # sklearn can leave an atom at zero
        D[dead] = rng.standard_normal((int(dead.sum()), D.shape[1]))
        self._D = torch.as_tensor(D / np.linalg.norm(D, axis=1, keepdims=True), dtype=self._dtype)
