"""The model folder shared by every architecture, its registry, and :func:`load`
(docs/model-format.md).

``MODEL/config.json``: ``format`` ("dbksvd-model"), ``format_version``, ``architecture``
("dbksvd", "random", "sklearn-mbdl", "topk", "batchtopk", "relu", "featurechoice",
"mutualchoice", "jumprelu", "matryoshka-batchtopk"), ``params`` (the
estimator's hyperparameters), ``n_features``, ``n_atoms``, ``dtype``, ``preprocessing`` (see
:mod:`dbksvd.preprocessing`), ``data`` (what it was trained on) and ``state`` (training
history). ``MODEL/dictionary.safetensors``: ``components`` (K, d) unit-norm atoms, the
training mean ``preprocessing.mean`` (d,) when centring, and an architecture's own tensors
(an SAE's encoder and biases).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..config import SAE_ARCHITECTURES
from ..errors import ModelFormatError
from ..io import atomic_path, read_format_json, save_tensors, validated
from ..preprocessing import Preprocessor


class ModelConfig(BaseModel):
    """``config.json`` of a model folder: written by :func:`write_model`, read by :func:`read_model`."""

    # inf and NaN (not JSON) are written as null, read back as None
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    format: Literal["dbksvd-model"] = "dbksvd-model"
    format_version: Annotated[int, Field(ge=1)]
    architecture: str
    """dbksvd, random, sklearn-mbdl, or an SAE architecture (topk, batchtopk, relu, ...)."""
    params: dict[str, Any]
    """The estimator's hyperparameters (its constructor arguments)."""
    n_features: Annotated[int, Field(ge=1)]
    """d."""
    n_atoms: Annotated[int, Field(ge=1)]
    """K."""
    dtype: Literal["float32", "float64"]
    """dtype of ``components``."""
    preprocessing: dict[str, Any] | None = None
    """:meth:`dbksvd.preprocessing.Preprocessor.to_config`."""
    data: dict[str, Any] | None = None
    """Provenance of the training rows (a store's name, space, encoder, rows, split)."""
    state: dict[str, Any]
    """Training state: passes, iterations, history (per architecture)."""


FORMAT = "dbksvd-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "dictionary.safetensors"


def write_model(
    path: str | Path,
    *,
    architecture: str,
    params: dict[str, Any],
    components: np.ndarray,
    preprocessor: Preprocessor,
    data: Any,
    state: dict[str, Any],
    tensors: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder atomically (a failed write leaves no folder behind)."""
    path = Path(path)
    config = ModelConfig(
        format_version=FORMAT_VERSION,
        architecture=architecture,
        params=params,
        n_features=int(components.shape[1]),
        n_atoms=int(components.shape[0]),
        dtype=str(components.dtype),
        preprocessing=preprocessor.to_config(),
        data=data,
        state=state,
    )
    with atomic_path(path, directory=True) as tmp:
        save_tensors(tmp / WEIGHTS_FILE, {"components": components, **preprocessor.tensors(), **(tensors or {})})
        (tmp / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n")
    return path


def read_model(
    path: str | Path, architectures: tuple[str, ...] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray], Preprocessor]:
    """``(config, tensors, preprocessor)`` of a model folder, checked: format and version,
    architecture (one of ``architectures`` when given), the dictionary's shape and dtype."""
    path = Path(path)
    cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise ModelFormatError(f"{path}: no such model folder")
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ModelFormatError(f"{path}: not a model folder ({p.name} is missing)")
    config = validated(
        ModelConfig,
        read_format_json(cfg_path, FORMAT, FORMAT_VERSION, "model config", ModelFormatError),
        cfg_path,
        ModelFormatError,
    ).model_dump()
    arch = config["architecture"]
    if architectures is not None and arch not in architectures:
        raise ModelFormatError(f"{path}: architecture {arch!r} is not one of {', '.join(architectures)}")
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise ModelFormatError(
            f"{w_path}: not a readable .safetensors file ({' '.join(str(exc).split())[:120]})"
        ) from None
    K, d, dtype = config["n_atoms"], config["n_features"], config["dtype"]
    components = tensors.get("components")
    if components is None:
        raise ModelFormatError(f"{w_path}: no array named 'components'")
    if components.shape != (K, d):
        raise ModelFormatError(f"{w_path}: dictionary has shape {components.shape} but config says ({K}, {d})")
    if str(components.dtype) != dtype:
        raise ModelFormatError(f"{w_path}: dictionary dtype {components.dtype} but config says {dtype}")
    try:
        pre = Preprocessor.from_config(config.get("preprocessing") or {"kind": "none"}, tensors, d)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{cfg_path}: {exc}") from None
    return config, tensors, pre


def architectures() -> dict[str, type]:
    """Every model class by the ``architecture`` its folders record."""
    from .dbksvd import DBKSVD
    from .fixed import MiniBatchDictionary, RandomDictionary
    from .sae import SAE

    out = {cls.architecture_name: cls for cls in (DBKSVD, RandomDictionary, MiniBatchDictionary)}
    out.update(dict.fromkeys(SAE_ARCHITECTURES, SAE))
    return out


def load(path: str | Path, architecture: str | tuple[str, ...] | None = None):
    """The model in the folder ``path``, of whatever architecture it records (DB-KSVD, an SAE,
    random directions, scikit-learn's dictionary), checked (docs/model-format.md).

    ``architecture``: refuse folders of other architectures (ModelFormatError).
    """
    classes = architectures()
    allowed = (
        tuple(classes) if architecture is None else (architecture,) if isinstance(architecture, str) else architecture
    )
    config, tensors, pre = read_model(path, allowed)
    cls = classes[config["architecture"]]
    try:
        model = cls._from_folder(config, tensors)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{Path(path) / CONFIG_FILE}: {exc}") from None
    except (TypeError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{path}: not a loadable {config['architecture']} model ({_short(exc)})") from None
    model.preprocessor_ = pre
    model.n_features_in_ = int(config["n_features"])
    model.data_info_ = config.get("data")
    return model


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]
