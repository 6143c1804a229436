"""What every dictionary model shares (DB-KSVD, the SAEs, fixed dictionaries): scikit-learn's
parameter protocol, parameter checks, fitted-state checks, the stored preprocessing, mapping
codes back to the input space for ``inverse_transform`` and ``score``, and the model folder.

A subclass is a dataclass of its hyperparameters (:mod:`dbksvd.config`) and provides ``fit``,
``_transform_chunks(X, batch_size, coder)`` (yielding the raw rows and their codes chunk by
chunk; ``coder`` None for the model's own), ``save`` and ``_from_folder``, and, when its
reconstructions carry an offset (an SAE's decoder bias), ``_decoder_bias()``.
"""

from __future__ import annotations

import abc
import inspect
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .. import ksvd, metrics
from ..coding import SparseCodes
from ..config import READINGS, check_fields
from ..errors import InputError, ModelFormatError, NotFittedError, ParameterError
from ..preprocessing import Preprocessor, parse_steps
from ..sources import as_source
from ..validation import as_matrix, check_choice, check_positive_int
from .folder import write_model


class DictionaryModel(abc.ABC):
    """Base class; fitted models have ``components_`` (K, d) and ``preprocessor_``."""

    #: The ``architecture`` field of the saved model folder (an SAE's is its activation rule).
    architecture_name: ClassVar[str] = ""

    # -- scikit-learn parameter protocol ---------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> DictionaryModel:
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(f"{type(self).__name__} has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = [f"{self.n_atoms}", f"{self.n_nonzero}"] + [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if k not in ("n_atoms", "n_nonzero") and defaults.get(k) != v
        ]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _check_params(self) -> None:
        """Every hyperparameter against its declared constraint (:func:`dbksvd.config.check_fields`)."""
        check_fields(self)

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise NotFittedError(f"this {type(self).__name__} model is not fitted yet; call fit first")

    def _preprocessor(self) -> Preprocessor:
        """The fitted preprocessing; for a model whose ``components_`` were set by hand, the
        ``preprocessing`` parameter when it needs no statistics (``none``, ``normalize``)."""
        pre = getattr(self, "preprocessor_", None)
        if pre is not None:
            return pre
        steps = parse_steps(self.preprocessing)
        if set(steps) - {"normalize"}:
            raise NotFittedError(f"preprocessing {self.preprocessing!r} has no fitted statistics; call fit")
        return Preprocessor(steps)

    def _check_features(self, d: int, source: Any = None) -> None:
        if d != self.n_features_in_:
            what = "X" if source is None else source.describe().get("name", "X")
            raise InputError(f"{what} has {d} features but the model was fitted with {self.n_features_in_}")

    def _prepare(self, block: Any) -> torch.Tensor:
        """A block of input rows as a preprocessed tensor in the fit's dtype and device."""
        X = as_matrix(block, dtype=self._dtype, device=self._device)
        # a converted block (e.g. a float16 store batch) is our own copy: preprocess it in place
        return self.preprocessor_.apply(X, inplace=not _shares_memory(X, block))[0]

    def _decoder_bias(self) -> torch.Tensor | None:
        """(d,) offset added to ``C D`` in the preprocessed space (None for DB-KSVD)."""
        return None

    def transform(self, X: Any, *, batch_size: int | None = None, coder: str | None = None) -> SparseCodes:
        """Sparse codes (on the CPU) of ``X`` (n, d), after the model's preprocessing; the
        codes carry ``row_norms`` when it normalises rows. ``X`` is read chunk by chunk, so a
        memory-mapped array or a store is never loaded whole.

        ``coder``: None for the model's own (DB-KSVD: its pursuit; an SAE: its encoder), or one
        of :data:`dbksvd.config.READINGS` against the model's atoms (after an SAE's decoder
        bias): ``"omp"``/``"mp"``/``"threshold"`` as when training (they separate an SAE's
        encoder from its dictionary), ``"detector"`` reads every atom as a detector (each row's
        k largest |projections|, the projections as coefficients)."""
        if coder is not None:
            check_choice(coder, "coder", READINGS)
        return SparseCodes.vstack([codes for _, codes in self._transform_chunks(X, batch_size, coder)])

    def inverse_transform(self, codes: SparseCodes | Any) -> np.ndarray:
        """Reconstructions (n, d) in the input space: ``C D`` mapped back through the
        preprocessing. ``codes``: :class:`SparseCodes` from :meth:`transform`, or dense (n, K)
        codes when the model does not normalise rows."""
        self._check_fitted()
        D = torch.as_tensor(self.components_)
        if not isinstance(codes, SparseCodes):
            C = as_matrix(codes, "codes", dtype=D.dtype, device="cpu")
            if C.shape[1] != D.shape[0]:
                raise InputError(f"codes have {C.shape[1]} columns but the model has {D.shape[0]} atoms")
            return self._preprocessor().invert(self._with_bias(C @ D)).numpy()
        if codes.n_atoms != D.shape[0]:
            raise InputError(f"codes refer to {codes.n_atoms} atoms but the model has {D.shape[0]}")
        codes = codes.to("cpu")
        return self._preprocessor().invert(self._with_bias(codes.reconstruct(D)), codes.row_norms).numpy()

    def _with_bias(self, Z: torch.Tensor) -> torch.Tensor:
        bias = self._decoder_bias()
        return Z if bias is None else Z + bias.to(dtype=Z.dtype, device=Z.device)

    def score(self, X: Any, y: Any = None) -> float:
        """Explained signal ``1 - mean ‖x - x̂‖ / ‖x‖`` of ``X`` (higher is better), on the
        input vectors (reconstructions mapped back through the preprocessing)."""
        total, n = 0.0, 0
        for rows, codes in self._transform_chunks(X):
            total += metrics.explained_signal(rows.double(), self.inverse_transform(codes)) * rows.shape[0]
            n += rows.shape[0]
        return total / n

    # -- the model folder (docs/model-format.md) --------------------------------------------

    def _write_folder(self, path: str | Path, state: dict[str, Any], tensors: dict[str, Any] | None = None) -> Path:
        return write_model(
            path,
            architecture=self.architecture_name,
            params=self._folder_params(),
            components=self.components_,
            preprocessor=self._preprocessor(),
            data=getattr(self, "data_info_", None),
            state=state,
            tensors=tensors,
        )

    def _folder_params(self) -> dict[str, Any]:
        """The folder's ``params``: every constructor argument as JSON."""
        return jsonable(self.get_params())

    @classmethod
    def _params_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The constructor arguments stored in ``config["params"]`` (old names mapped)."""
        params = dict(config["params"])
        if params.get("groups") is not None:
            params["groups"] = [tuple(g) if isinstance(g, list) else g for g in params["groups"]]
        unknown = set(params) - set(cls._param_names())
        if unknown:
            raise ModelFormatError(f"unknown parameters {', '.join(sorted(unknown))} for {cls.__name__}")
        return params

    @classmethod
    @abc.abstractmethod
    def _from_folder(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> DictionaryModel:
        """The model of a checked model folder (``config.json``, tensors), less what
        :func:`dbksvd.models.folder.load` sets for every model."""


class PursuitModel(DictionaryModel):
    """A dictionary coded by a pursuit (DB-KSVD, fixed dictionaries): a subclass provides
    ``_settings(n_features)`` (:class:`dbksvd.ksvd.Settings`)."""

    @abc.abstractmethod
    def _settings(self, n_features: int) -> ksvd.Settings:
        """The checked hyperparameters."""

    def _transform_chunks(self, X: Any, batch_size: int | None = None, coder: str | None = None):
        """``(rows as a tensor, codes)`` per chunk of ``X``, both on the CPU; ``coder`` replaces
        the model's own pursuit (a requested ``mp`` and ``threshold`` refit as when training;
        ``detector`` is the bare projection reading)."""
        self._check_fitted()
        source = as_source(X)
        self._check_features(source.shape[1], source)
        settings = self._settings(source.shape[1])
        coder = coder or settings.coder
        refit = coder == "mp"
        step = check_positive_int(batch_size, "batch_size", allow_none=True) or settings.batch_size
        dtype = torch.float64 if self.components_.dtype == np.float64 else torch.float32
        D = torch.as_tensor(self.components_, dtype=dtype, device=settings.device)
        grams = ksvd.group_grams(D, settings, coder)
        for chunk in source.iter_chunks(step):
            X_chunk = as_matrix(chunk, dtype=dtype, device=settings.device)
            target, norms = self._preprocessor().apply(X_chunk)
            codes = ksvd.encode(target, D, settings, grams, refit=refit, coder=coder)
            yield X_chunk.cpu(), codes.with_row_norms(norms).to("cpu")


def check_rows(model: DictionaryModel, X: Any) -> None:
    """Refuse rows ``X`` (an array or a store space) of another dimension than the model's, or
    a store embedded with another encoder, layer or granularity (items, tokens, patches) than
    the model's training data (InputError)."""
    here = X.describe() if hasattr(X, "describe") else {}
    model._check_features(X.shape[1], X if here else None)  # the dimension first: the plainer problem
    trained = getattr(model, "data_info_", None) or {}
    if not (trained.get("encoder") and here.get("encoder")):
        return

    def rows(info: dict[str, Any]) -> str:
        kind = {"item": "pooled", "token": "token", "patch": "patch"}[info.get("granularity") or "item"]
        layer = "" if info.get("layer") is None else f" layer {info['layer']}"
        return f"{info['encoder']}{layer} embeddings ({kind} rows)"

    if rows(trained) != rows(here):
        raise InputError(f"the model was fitted on {rows(trained)} but {here['name']} holds {rows(here)}")


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON values (devices as strings, Matryoshka groups as lists)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, torch.device):
            v = str(v)
        if k == "groups" and v is not None:
            v = [list(g) if isinstance(g, tuple) else g for g in v]
        out[k] = v
    return out


def _shares_memory(X: torch.Tensor, block: Any) -> bool:
    """Whether tensor ``X`` may view the memory of ``block`` (a numpy array or tensor)."""
    if isinstance(block, torch.Tensor):
        return X.untyped_storage().data_ptr() == block.untyped_storage().data_ptr()
    return X.device.type == "cpu" and np.shares_memory(X.numpy(), block)
