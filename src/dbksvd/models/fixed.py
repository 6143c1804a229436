"""Dictionaries that K-SVD does not learn, coded with the same pursuits as DB-KSVD: random unit
directions (the floor every learned dictionary must clear) and scikit-learn's
MiniBatchDictionaryLearning (when scikit-learn is installed).

They share DB-KSVD's preprocessing, ``transform`` (:func:`dbksvd.ksvd.encode`), metrics and the
model folder, but none of its training hyperparameters (:class:`dbksvd.config.FixedDictionaryParams`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import ksvd
from ..config import FixedDictionaryParams
from ..errors import MissingDependencyError
from ..preprocessing import Preprocessor, parse_steps
from ..sources import RowSource, as_source
from ..validation import as_matrix, float_dtype
from .base import PursuitModel

#: Rows of the preprocessing sample.
SAMPLE_ROWS = 16384


class FixedDictionary(FixedDictionaryParams, PursuitModel):
    """A dictionary set once by ``_atoms`` (no K-SVD iterations), coded by ``coder``."""

    def _settings(self, n_features: int) -> ksvd.Settings:
        self._check_params()
        return ksvd.Settings.checked(
            n_features, self.n_atoms, self.n_nonzero, coder=self.coder, max_iter=self.max_iter, device=self.device
        )

    def fit(self, X: Any, y: Any = None) -> FixedDictionary:
        """Fit the preprocessing on ``X`` (n, d) and set the atoms."""
        source = as_source(X)
        n, d = source.shape
        settings = self._settings(d)
        rng = np.random.default_rng(self.random_state)
        self.n_features_in_ = d
        self.data_info_ = source.describe()
        self._dtype = float_dtype(source)
        self._device = settings.device
        self._fit_preprocessing(source, settings, rng)
        D = self._atoms(source, settings, rng)
        self.components_ = D.astype(np.float64 if self._dtype == torch.float64 else np.float32)
        self.n_iter_, self.n_steps_, self.history_ = self.max_iter, 0, []
        return self

    def _fit_preprocessing(self, source: RowSource, settings: ksvd.Settings, rng: np.random.Generator) -> None:
        # the same draws as DB-KSVD's, so that a seed gives both the same preprocessing
        steps = parse_steps(self.preprocessing)
        n = source.shape[0]
        size = min(n, settings.batch_size, max(4 * settings.n_atoms, SAMPLE_ROWS))
        pool = np.sort(rng.choice(n, size=size, replace=False))
        sample = as_matrix(source.take(pool), dtype=torch.float64, device="cpu")
        self.preprocessor_ = Preprocessor.fit(steps, source.iter_chunks(SAMPLE_ROWS), sample)

    @abc.abstractmethod
    def _atoms(self, source: RowSource, settings: ksvd.Settings, rng: np.random.Generator) -> np.ndarray:
        """(K, d) float64 unit-norm atoms in the preprocessed space."""

    def save(self, path: str | Path) -> Path:
        """Write the model folder (docs/model-format.md) atomically."""
        self._check_fitted()
        return self._write_folder(path, {"n_iter": int(self.n_iter_), "n_steps": 0, "history": []})

    @classmethod
    def _params_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        # folders written before fixed dictionaries had their own parameters hold all of DB-KSVD's
        params = {k: v for k, v in config["params"].items() if k in cls._param_names()}
        return super()._params_from_config({"params": params})

    @classmethod
    def _from_folder(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> FixedDictionary:
        model = cls(**cls._params_from_config(config))
        model.components_ = np.array(tensors["components"])
        model.n_iter_ = int(config["state"].get("n_iter", model.max_iter))
        model.n_steps_, model.history_ = 0, []
        return model


class RandomDictionary(FixedDictionary):
    """K random unit directions (Gaussian, normalised): a dictionary that learned nothing."""

    architecture_name = "random"

    def _atoms(self, source: RowSource, settings: ksvd.Settings, rng: np.random.Generator) -> np.ndarray:
        # DB-KSVD's data initialisation draws here; keep the draw so seeds give the same atoms
        D = rng.standard_normal((settings.n_atoms, self.n_features_in_))
        return D / np.linalg.norm(D, axis=1, keepdims=True)


class MiniBatchDictionary(FixedDictionary):
    """scikit-learn's ``MiniBatchDictionaryLearning`` (online dictionary learning, Mairal et
    al. 2009; lasso coding while learning, ``alpha`` 1), ``max_iter`` passes over the
    preprocessed rows held in memory; codes from the same pursuit as DB-KSVD."""

    architecture_name = "sklearn-mbdl"

    def _atoms(self, source: RowSource, settings: ksvd.Settings, rng: np.random.Generator) -> np.ndarray:
        try:
            from sklearn.decomposition import MiniBatchDictionaryLearning
        except ImportError:
            raise MissingDependencyError("the sklearn baseline needs scikit-learn: pip install scikit-learn") from None
        Z = self._prepare(next(source.iter_chunks(source.shape[0]))).cpu().numpy()
        est = MiniBatchDictionaryLearning(
            n_components=settings.n_atoms,
            alpha=1.0,
            batch_size=256,
            max_iter=self.max_iter,
            transform_algorithm="omp",
            transform_n_nonzero_coefs=settings.n_nonzero,
            random_state=int(rng.integers(2**31 - 1)),
        )
        est.fit(Z)
        D = est.components_.astype(np.float64)
        norms = np.linalg.norm(D, axis=1, keepdims=True)
        dead = norms[:, 0] < 1e-12  # sklearn can leave an atom at zero
        D[dead] = rng.standard_normal((int(dead.sum()), D.shape[1]))
        return D / np.linalg.norm(D, axis=1, keepdims=True)
