"""The model folder shared by every method (DB-KSVD and the SAEs).

``MODEL/config.json``: ``format`` ("dbksvd-model"), ``format_version``, ``architecture``
("dbksvd", "topk", "batchtopk", "relu", "featurechoice", "mutualchoice"), ``params`` (the
estimator's hyperparameters), ``n_features``, ``n_atoms``, ``dtype``, ``preprocessing`` (see
:mod:`dbksvd.preprocessing`), ``data`` (what it was trained on) and ``state`` (training
history). ``MODEL/dictionary.safetensors``: ``components`` (K, d) unit-norm atoms, the
training mean ``preprocessing.mean`` (d,) when centring, and an architecture's own tensors
(an SAE's encoder and biases).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFormatError
from .io import atomic_path, read_format_json, save_tensors
from .preprocessing import Preprocessor

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
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "params": params,
        "n_features": int(components.shape[1]),
        "n_atoms": int(components.shape[0]),
        "dtype": str(components.dtype),
        "preprocessing": preprocessor.to_config(),
        "data": data,
        "state": state,
    }
    with atomic_path(path, directory=True) as tmp:
        save_tensors(tmp / WEIGHTS_FILE, {"components": components, **preprocessor.tensors(), **(tensors or {})})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
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
    config = read_format_json(cfg_path, FORMAT, FORMAT_VERSION, "model config", ModelFormatError)
    arch = config.get("architecture")
    if architectures is not None and arch not in architectures:
        raise ModelFormatError(f"{path}: architecture {arch!r} is not one of {', '.join(architectures)}")
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise ModelFormatError(
            f"{w_path}: not a readable .safetensors file ({' '.join(str(exc).split())[:120]})"
        ) from None
    try:
        K, d, dtype = int(config["n_atoms"]), int(config["n_features"]), str(config["dtype"])
        dict(config["params"]), dict(config["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{cfg_path}: missing or bad field ({' '.join(str(exc).split())[:120]})") from None
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
