"""Every dictionary model by name, and loading a model folder of any architecture."""

from __future__ import annotations

from pathlib import Path

from .baselines.classical import MiniBatchDictionary, RandomDictionary
from .baselines.sae import ARCHITECTURES as SAE_ARCHITECTURES
from .baselines.sae import SAE
from .estimator import DictionaryModel
from .ksvd import DBKSVD
from .ksvd import load as load_dictionary
from .modelio import read_model

#: Dictionaries coded with Batch-OMP (DB-KSVD and the classical baselines), by architecture.
OMP_DICTIONARIES = {c.architecture_name: c for c in (DBKSVD, RandomDictionary, MiniBatchDictionary)}
ARCHITECTURES = (*OMP_DICTIONARIES, *SAE_ARCHITECTURES)


def load_model(path: str | Path) -> DictionaryModel:
    """A DBKSVD, SAE or baseline dictionary from its model folder, by its ``architecture``."""
    config, _, _ = read_model(path, ARCHITECTURES)
    arch = config["architecture"]
    return SAE.load(path) if arch in SAE_ARCHITECTURES else load_dictionary(path, OMP_DICTIONARIES[arch])


__all__ = ["ARCHITECTURES", "DBKSVD", "SAE", "RandomDictionary", "MiniBatchDictionary", "load_model"]
