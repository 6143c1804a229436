"""The DB-KSVD estimator: :mod:`dbksvd.ksvd`'s training loop with a scikit-learn interface,
stored preprocessing, streaming from row sources, ``partial_fit`` and the model folder."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import ksvd
from ..config import DBKSVDParams
from ..preprocessing import Preprocessor, parse_steps
from ..sources import RowSource, as_source
from ..validation import as_matrix, float_dtype
from .base import PursuitModel

#: Rows per block when a pass only accumulates statistics (the preprocessing mean).
CHUNK_ROWS = 16384
#: The initialisation / scale sample holds at most max(4K, this many) rows.
SAMPLE_ROWS = 16384


class DBKSVD(DBKSVDParams, PursuitModel):
    """Double-Batch K-SVD: a dictionary of ``n_atoms`` unit-norm atoms in which every row is a
    combination of at most ``n_nonzero`` of them (docs/algorithm.md).

    Parameters: see :class:`dbksvd.config.DBKSVDParams` (``help(dbksvd.config.DBKSVDParams)``
    or ``dbksvd fit --help``); they are checked when fitting.

    Attributes
    ----------
    components_ : (K, d) ndarray, unit-norm atoms (in the preprocessed space).
    preprocessor_ : the fitted :class:`dbksvd.preprocessing.Preprocessor`.
    data_info_ : provenance of the training rows (e.g. the store, space and encoder).
    n_features_in_ : d.
    n_iter_ : passes completed; ``n_steps_`` iterations (sample batches) completed.
    history_ : one dict per iteration (:attr:`dbksvd.ksvd.TrainingState.history`).
    """

    #: The ``architecture`` field of the saved model folder.
    architecture_name = "dbksvd"

    def _settings(self, n_features: int) -> ksvd.Settings:
        """Every hyperparameter checked (against the data dimension too), in one place."""
        self._check_params()
        return ksvd.Settings.checked(
            n_features,
            self.n_atoms,
            self.n_nonzero,
            coder=self.coder,
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            atom_batch_size=self.atom_batch_size,
            update=self.update,
            init=self.init,
            replace_unused=self.replace_unused,
            groups=self.groups,
            tol=self.tol,
            coder_tol=self.coder_tol,
            device=self.device,
        )

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> DBKSVD:
        """Learn the dictionary from ``X`` (n, d): numpy (memory-mapped is fine), torch, or a
        store space (:class:`dbksvd.data.store.StoreSpace`), streamed in shuffled sample
        batches so that the data never has to fit in memory."""
        source = as_source(X)
        n, d = source.shape
        settings = self._settings(d)
        self._warn_if_memorising(n, settings)
        rng = np.random.default_rng(self.random_state)
        self._start(d, float_dtype(source), source, settings)
        sample = self._fit_preprocessing(source, settings, rng)
        self._state = ksvd.initial_dictionary(sample, settings.n_atoms, d, rng, self._dtype, self._device)
        with self._training():
            ksvd.train(source, self._state, settings, rng, self._prepare, verbose=bool(self.verbose))
        return self

    def partial_fit(self, X: Any, y: Any = None) -> DBKSVD:
        """One iteration per ``batch_size`` rows of ``X``, in order (streaming). The first call
        fits the preprocessing statistics on its rows; later calls reuse them."""
        source = as_source(X)
        n, d = source.shape
        settings = self._settings(d)
        if getattr(self, "_rng", None) is None:  # first call, or a model from load()
            self._rng = np.random.default_rng(self.random_state)
        if not hasattr(self, "components_"):
            self._start(d, float_dtype(source), source, settings)
            sample = self._fit_preprocessing(source, settings, self._rng)
            self._state = ksvd.initial_dictionary(sample, settings.n_atoms, d, self._rng, self._dtype, self._device)
        else:
            self._check_features(d)
            self._resume(settings)
        with self._training():
            for b, chunk in enumerate(source.iter_chunks(settings.batch_size)):
                ksvd.iterate(self._prepare(chunk), self._state, settings, self._rng, self.n_iter_, b)
        return self

    @contextlib.contextmanager
    def _training(self):
        """Denormals flushed while training; afterwards ``components_`` is the dictionary of the
        last completed iteration on success and after Ctrl-C (the interrupt is re-raised), and
        is left untouched after any other error."""
        with ksvd.flush_denormals():
            try:
                yield
            except KeyboardInterrupt:
                self._finish()
                raise
            except BaseException:
                self._state = None
                raise
            self._finish()

    def _warn_if_memorising(self, n: int, settings: ksvd.Settings) -> None:
        """Warn when the rows cannot pin the atoms down (n·k/K small: atoms copy rows)."""
        import warnings

        per_atom = n * settings.n_nonzero / settings.n_atoms
        if per_atom < 2:
            warnings.warn(
                f"{n} rows x k={settings.n_nonzero} non-zeros give {per_atom:.2g} uses per atom for "
                f"K={settings.n_atoms} atoms: the dictionary can only memorise rows; use fewer atoms or more rows",
                UserWarning,
                stacklevel=3,
            )

    def _fit_preprocessing(self, source: RowSource, settings: ksvd.Settings, rng: np.random.Generator):
        """Fit ``preprocessor_``; returns the preprocessed initialisation sample (float64 numpy,
        up to ``batch_size`` random rows, at most ``max(4K, 16384)``) when ``init="data"``,
        else None."""
        steps = parse_steps(self.preprocessing)
        sample = None
        if settings.init == "data" or "scale" in steps:
            n = source.shape[0]
            size = min(n, settings.batch_size, max(4 * settings.n_atoms, SAMPLE_ROWS))
            pool = np.sort(rng.choice(n, size=size, replace=False))
            sample = as_matrix(source.take(pool), dtype=torch.float64, device="cpu")
        self.preprocessor_ = Preprocessor.fit(steps, source.iter_chunks(CHUNK_ROWS), sample)
        if sample is None or settings.init != "data":
            return None
        return self.preprocessor_.apply(sample)[0].numpy()

    def _start(self, d: int, dtype: torch.dtype, source: RowSource, settings: ksvd.Settings) -> None:
        self.n_features_in_ = d
        self.data_info_ = source.describe()
        self.n_iter_ = 0
        self.n_steps_ = 0
        self.history_ = []
        self._dtype = dtype
        self._device = settings.device

    def _resume(self, settings: ksvd.Settings) -> None:
        self._dtype = torch.float64 if self.components_.dtype == np.float64 else torch.float32
        self._device = settings.device
        D = torch.as_tensor(self.components_, dtype=self._dtype, device=self._device).clone()
        replaced_at = getattr(self, "_replaced_at", None)
        if replaced_at is None or len(replaced_at) != D.shape[0]:
            replaced_at = np.full(D.shape[0], self.n_steps_ - ksvd.GRACE, dtype=np.int64)
        self._state = ksvd.TrainingState(D, replaced_at, self.n_steps_, self.n_iter_, self.history_)

    def _finish(self) -> None:
        """Publish the dictionary of the last completed iteration (also after an interrupt)."""
        state = getattr(self, "_state", None)
        if state is not None:
            self.components_ = state.dictionary.detach().cpu().numpy().copy()
            self.n_steps_, self.history_, self._replaced_at = state.n_steps, state.history, state.replaced_at
            self.n_iter_ = max(self.n_iter_, state.n_passes)
            self._state = None

    # -- using a fitted model --------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model folder (docs/model-format.md) atomically."""
        self._check_fitted()
        state = {"n_iter": int(self.n_iter_), "n_steps": int(self.n_steps_), "history": self.history_}
        return self._write_folder(path, state)

    @classmethod
    def _from_folder(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> DBKSVD:
        model = cls(**cls._params_from_config(config))
        state = config["state"]
        model.components_ = np.array(tensors["components"])
        model.n_iter_ = int(state.get("n_iter", 0))
        model.n_steps_ = int(state.get("n_steps", 0))
        model.history_ = list(state.get("history", []))
        return model
