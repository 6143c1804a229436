"""Every dictionary model by name, and loading a model folder of any architecture."""

from __future__ import annotations

from pathlib import Path

from .baselines.sae import ARCHITECTURES as SAE_ARCHITECTURES
from .baselines.sae import SAE
from .estimator import DictionaryModel
from .ksvd import DBKSVD
from .ksvd import load as load_dbksvd
from .modelio import read_model

ARCHITECTURES = ("dbksvd", *SAE_ARCHITECTURES)


def load_model(path: str | Path) -> DictionaryModel:
    """A :class:`DBKSVD` or :class:`SAE` from its model folder, by its ``architecture``."""
    config, _, _ = read_model(path, ARCHITECTURES)
    return load_dbksvd(path) if config["architecture"] == "dbksvd" else SAE.load(path)


__all__ = ["ARCHITECTURES", "DBKSVD", "SAE", "load_model"]
