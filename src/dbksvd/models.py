"""Every dictionary model by name, and loading a model folder of any architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .baselines.classical import MiniBatchDictionary, RandomDictionary
from .baselines.sae import ARCHITECTURES as SAE_ARCHITECTURES
from .baselines.sae import SAE
from .errors import InputError
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


def check_rows(model: DictionaryModel, X: Any) -> None:
    """Refuse rows ``X`` (an array or a store space) of another dimension than the model's, or
    a store embedded with another encoder than the model's training data (InputError)."""
    here = X.describe() if hasattr(X, "describe") else {}
    model._check_features(X.shape[1], X if here else None)  # the dimension first: the plainer problem
    trained = getattr(model, "data_info_", None) or {}
    if trained.get("encoder") and here.get("encoder") and trained["encoder"] != here["encoder"]:
        raise InputError(
            f"the model was fitted on {trained['encoder']} embeddings but {here['name']} holds "
            f"{here['encoder']} embeddings"
        )


__all__ = ["check_rows", "ARCHITECTURES", "DBKSVD", "SAE", "RandomDictionary", "MiniBatchDictionary", "load_model"]
