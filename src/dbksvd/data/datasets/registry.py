"""Datasets by name: each family registers its class once, and ``get_dataset`` (a spec string
such as ``"folder:PATH"``) and ``dataset_from_spec`` (a manifest's ``dataset`` entry) look it up.

A family is named ``name`` alone (``"emoji"``) or ``name:ARGUMENT`` (``"folder:PATH"``) as its
class's ``spec_argument`` says; see :class:`~.base.Dataset`.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from ...errors import ParameterError
from .base import Dataset

__all__ = ["dataset_from_spec", "dataset_names", "get_dataset", "register_dataset"]

_FAMILIES: dict[str, type[Dataset]] = {}  # name -> class, in registration order
D = TypeVar("D", bound=type[Dataset])


def register_dataset(cls: D) -> D:
    """Class decorator: make ``cls`` reachable as ``cls.name`` (names are unique)."""
    if not cls.name or cls.name in _FAMILIES:
        raise ValueError(f"dataset name {cls.name!r} of {cls.__name__} is empty or already registered")
    _FAMILIES[cls.name] = cls
    return cls


def dataset_names() -> tuple[str, ...]:
    """The spec forms of every registered family, e.g. ``("emoji", ..., "folder:PATH", ...)``."""
    return tuple(cls.spec_form or cls.name for cls in _FAMILIES.values())


def _choices() -> str:
    return ", ".join(cls.spec_usage or cls.spec_form or cls.name for cls in _FAMILIES.values())


def get_dataset(spec: str, **options) -> Dataset:
    """The dataset named by ``spec``: "emoji", "fashion-mnist", "folder:PATH" or
    "texts:PATH" / "texts:PATH#column"; ``options`` go to its constructor
    (e.g. ``get_dataset("emoji", size=224, limit=100)``)."""
    if not isinstance(spec, str):
        raise ParameterError(f"dataset must be a string, one of {_choices()}; got {spec!r}")
    kind, colon, argument = spec.strip().partition(":")
    cls = _FAMILIES.get(kind)
    if cls is None or (bool(colon) != (cls.spec_argument is not None)) or (colon and not argument):
        raise ParameterError(f"unknown dataset {spec!r}; choose one of {_choices()}")
    arguments: dict[str, Any] = cls.spec_arguments(argument) if colon else {}
    clash = sorted(set(arguments) & set(options))
    if clash:
        raise ParameterError(f"{', '.join(clash)} given both in {spec!r} and as an option")
    try:
        inspect.signature(cls).bind(**arguments, **options)
    except TypeError as exc:
        raise ParameterError(f"bad option for dataset {kind}: {exc}") from None
    return cls(**arguments, **options)


def dataset_from_spec(spec: dict) -> Dataset:
    """The dataset a store was embedded from, rebuilt from its manifest's ``dataset`` entry
    (``spec()`` of the dataset), e.g. to load an item's image again for display. Raises
    DataFileError when the data it names is gone (a moved font or folder)."""
    if not isinstance(spec, dict):
        raise ParameterError(f"a dataset spec must be a dict, got {type(spec).__name__}")
    name = spec.get("name")
    cls = _FAMILIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ParameterError(f"unknown dataset {name!r} in the spec; choose one of {', '.join(_FAMILIES)}")
    return cls.from_spec(spec)
