"""dbksvd: monosemantic sparse dictionaries for embedding spaces, learned with Double-Batch K-SVD.

Layers, lowest first: ``coding`` and ``update`` (pure functions on tensors), ``ksvd`` (the
estimator), ``metrics``, ``io``, then the CLI. Lower layers never import higher ones.
"""

from . import metrics
from .coding import SparseCodes, sparse_encode
from .errors import (
    DataFileError,
    DbksvdError,
    InputError,
    MissingDependencyError,
    ModelFormatError,
    NotFittedError,
    NotFoundError,
    ParameterError,
)
from .ksvd import DBKSVD, load

__version__ = "0.1.0"

__all__ = [
    "DBKSVD",
    "SparseCodes",
    "sparse_encode",
    "load",
    "metrics",
    "DbksvdError",
    "InputError",
    "MissingDependencyError",
    "ParameterError",
    "DataFileError",
    "ModelFormatError",
    "NotFittedError",
    "NotFoundError",
]
