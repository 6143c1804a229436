"""Dictionary models and their one on-disk format.

- :mod:`.base`: what every model shares (scikit-learn's parameter protocol, preprocessing,
  ``transform``/``inverse_transform``/``score``, :func:`check_rows`).
- :mod:`.dbksvd`: :class:`DBKSVD`, the estimator on :mod:`dbksvd.ksvd`'s training loop.
- :mod:`.fixed`: dictionaries set without K-SVD (random directions, scikit-learn's MBDL).
- :mod:`.sae`: the sparse autoencoders DB-KSVD is compared with.
- :mod:`.folder`: the model folder (docs/model-format.md), the registry of architectures and
  :func:`load`, which opens a folder of any of them.
"""

from ..config import SAE_ARCHITECTURES
from .base import DictionaryModel, check_rows
from .dbksvd import DBKSVD
from .fixed import FixedDictionary, MiniBatchDictionary, RandomDictionary
from .folder import architectures, load
from .sae import SAE, SparseAutoencoder

#: Every architecture a model folder may record.
ARCHITECTURES = ("dbksvd", "random", "sklearn-mbdl", *SAE_ARCHITECTURES)

#: The old name of :func:`load`.
load_model = load

__all__ = [
    "ARCHITECTURES",
    "DBKSVD",
    "SAE",
    "SAE_ARCHITECTURES",
    "DictionaryModel",
    "FixedDictionary",
    "MiniBatchDictionary",
    "RandomDictionary",
    "SparseAutoencoder",
    "architectures",
    "check_rows",
    "load",
    "load_model",
]
