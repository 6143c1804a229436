"""dbksvd: monosemantic sparse dictionaries for embedding spaces, learned with Double-Batch K-SVD.

Layers, lowest first (a module imports only from its own layer and those below):

1. ``config`` (every parameter and config, checked), ``errors``, ``validation``, ``io``;
2. arrays in, arrays out: ``coding`` (the pursuits, :func:`sparse_encode`), ``update`` (atom
   updates), ``ksvd`` (the training loop, :func:`db_ksvd`), ``preprocessing``, ``metrics``,
   ``sources`` (row sources);
3. ``models`` (the estimators and their model folder);
4. ``data`` (datasets, the embedding store, splits, vocabularies) and ``encoders``,
   ``embedding`` (dataset -> encoder -> store);
5. ``analysis`` (the comparison harness, atom descriptions);
6. ``web`` (the explorer), ``pipeline`` (the demo);
7. ``cli`` (the ``dbksvd`` command).

``import dbksvd`` is light: the names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "DBKSVD": "dbksvd.models",
    "SAE": "dbksvd.models",
    "RandomDictionary": "dbksvd.models",
    "MiniBatchDictionary": "dbksvd.models",
    "load": "dbksvd.models",
    "SparseCodes": "dbksvd.coding",
    "sparse_encode": "dbksvd.coding",
    "db_ksvd": "dbksvd.ksvd",
    "DbksvdError": "dbksvd.errors",
    "InputError": "dbksvd.errors",
    "MissingDependencyError": "dbksvd.errors",
    "ParameterError": "dbksvd.errors",
    "DataFileError": "dbksvd.errors",
    "ModelFormatError": "dbksvd.errors",
    "NotFittedError": "dbksvd.errors",
    "NotFoundError": "dbksvd.errors",
}
_MODULES = ("metrics", "config", "errors")

__all__ = [*_EXPORTS, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"dbksvd.{name}")
    else:
        raise AttributeError(f"module 'dbksvd' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
