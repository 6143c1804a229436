"""Every hyperparameter, once: names, defaults, constraints and help text.

The estimators inherit their parameters from these dataclasses (``class DBKSVD(DBKSVDParams,
DictionaryModel)``), so the Python API, the model folder's ``params`` and the command line
(generated from the same classes in :mod:`dbksvd.cli`) share one vocabulary (README, "Names").
A field's constraint sits in its annotation (``Count`` is an integer >= 1, ``Literal[...]`` a
choice) and :func:`check_fields` checks them all with pydantic, raising one
:class:`~dbksvd.errors.ParameterError` line. Constraints that depend on the data (k <= min(K,
d), Matryoshka groups, preprocessing steps, devices) are checked where the data is known
(:mod:`dbksvd.validation`); their fields carry :data:`CHECKED_WITH_DATA`.

This module imports no numerical library: the CLI's ``--help`` reads it without loading torch.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import KW_ONLY, dataclass
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Lt

from .errors import ParameterError


def _python_scalar(value: Any) -> Any:
    """numpy scalars as Python numbers, so that ``np.int64(8)`` counts as an integer."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


#: Marks a field whose value is checked against the data at fit time, not here.
CHECKED_WITH_DATA = "checked with the data"


def _integer():
    from pydantic import BeforeValidator, Strict

    return (BeforeValidator(_python_scalar), Strict())


# The annotations are plain typing constructs (readable by the CLI generator and by
# documentation tools); :func:`check_fields` adds pydantic's strictness when it checks.
Count = Annotated[int, Ge(1)]
"""An integer >= 1 (a bool is not an integer)."""
Seed = Annotated[int, Ge(0)]
"""A random seed: an integer >= 0."""
Tolerance = Annotated[float, Ge(0)]
"""A finite number >= 0."""
Fraction = Annotated[float, Gt(0), Lt(1)]
"""A number strictly between 0 and 1."""

#: Pursuits a dictionary model trains and codes with (:func:`dbksvd.sparse_encode`); as a
#: model's own pursuit, ``mp`` and ``threshold`` end with a least-squares refit.
TRAINING_CODERS = ("omp", "mp", "threshold")
Coder = Literal["omp", "mp", "threshold"]
#: Readings ``transform(coder=...)`` accepts: the pursuits, and ``detector`` (each row's k
#: atoms with the largest |<x, D_j>|, the projections as coefficients: an atom read as a detector).
READINGS = ("omp", "mp", "threshold", "detector")
SAE_ARCHITECTURES = ("topk", "batchtopk", "relu", "featurechoice", "mutualchoice")

DEFAULT_PREPROCESSING = "normalize+center+scale"


def check_fields(obj: Any, owner: str | None = None) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation.

    Integers are strict (``True`` and ``3.0`` are not integers, ``np.int64(3)`` is), floats
    accept integers, ``X | None`` accepts None. Raises ParameterError naming the field, the
    rule and the value: ``DBKSVD.n_atoms must be an integer >= 1; got 0``.
    """
    owner = owner or type(obj).__name__
    for f in dataclasses.fields(obj):
        if f.name.startswith("_"):
            continue
        value = getattr(obj, f.name)
        adapter, rule = _adapter(type(obj), f.name)
        if adapter is None:
            continue
        from pydantic import ValidationError

        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            why = _broken_rule(exc.errors(), rule)
            raise ParameterError(f"{owner}.{f.name} must be {why}; got {value!r}") from None


#: pydantic error types -> the rule broken, in words ({x}: the constraint's value)
_BROKEN = {
    "greater_than_equal": ">= {ge}",
    "greater_than": "> {gt}",
    "less_than": "< {lt}",
    "less_than_equal": "<= {le}",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "True or False",
    "string_type": "a string",
}


def _broken_rule(errors: list[dict[str, Any]], rule: str) -> str:
    """The first broken rule of a failed check (a union's None branch aside), in words."""
    for e in errors:
        if e["type"] == "none_required":
            continue
        if e["type"] == "literal_error":
            return "one of " + e["ctx"]["expected"].replace(" or ", ", ")
        words = _BROKEN.get(e["type"])
        if words:
            return words.format(**e.get("ctx", {}))
    return rule


@functools.cache
def _adapter(cls: type, name: str):
    """(pydantic TypeAdapter, rule in words) for field ``name`` of ``cls``; (None, "") for a
    field checked with the data."""
    import typing

    hint = typing.get_type_hints(cls, include_extras=True)[name]
    if CHECKED_WITH_DATA in getattr(hint, "__metadata__", ()):
        return None, ""
    from pydantic import TypeAdapter

    strict = _strict_hint(hint)
    return TypeAdapter(strict), _rule(hint)


def _strict_hint(hint: Any) -> Any:
    """``hint`` with strict integers (and numpy scalars accepted) wherever it holds ``int``."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        return Annotated[(_strict_hint(base), *meta)]
    if origin in (typing.Union, types.UnionType):
        args = tuple(_strict_hint(a) for a in typing.get_args(hint))
        return functools.reduce(lambda a, b: a | b, args)
    if hint is int:
        return Annotated[(int, *_integer())]
    if hint is float:
        from pydantic import AllowInfNan, BeforeValidator, Strict

        return Annotated[float, BeforeValidator(_python_scalar), Strict(), AllowInfNan(False)]
    if hint is bool:
        from pydantic import Strict

        return Annotated[bool, Strict()]
    if hint is str:
        from pydantic import Strict

        return Annotated[str, Strict()]
    return hint


def _rule(hint: Any) -> str:
    """The constraint of ``hint`` in words, for error messages."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        words = _rule(base)
        for m in meta:
            for attr, sign in (("ge", ">="), ("gt", ">"), ("lt", "<"), ("le", "<=")):
                if getattr(m, attr, None) is not None:
                    words += f" {sign} {getattr(m, attr)}"
        return words.replace("> 0 < 1", "in (0, 1)")
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(hint) if a is not type(None)]
        none = len(parts) < len(typing.get_args(hint))
        return " or ".join(_rule(a) for a in parts) + (" or None" if none else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return {int: "an integer", float: "a finite number", bool: "True or False", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


# -- the models' hyperparameters ------------------------------------------------------------


@dataclass(eq=False, repr=False)
class DBKSVDParams:
    """Double-Batch K-SVD (docs/algorithm.md)."""

    n_atoms: Count
    """K, the number of atoms (rows of the dictionary)."""
    n_nonzero: Count
    """k, the most atoms per row (1 <= k <= min(K, d))."""
    _: KW_ONLY
    coder: Coder = "omp"
    """The pursuit: omp (exact Batch-OMP: the best reconstructions), mp (matching pursuit with a
    least-squares refit) or threshold (each row's k atoms with the largest |<x, D_j>|,
    least-squares coefficients: atoms active where they respond most, easier to describe)."""
    max_iter: Count = 20
    """Passes over the data."""
    batch_size: Count = 65536
    """Rows per sample batch (one K-SVD iteration each)."""
    atom_batch_size: Count | None = None
    """Atoms updated together from one snapshot (default ceil(K / 8))."""
    update: Literal["power", "svd"] = "power"
    """Atom update: power (one power step per atom and iteration, approximate K-SVD) or svd (the
    top singular pair, by power iteration to tolerance; slower)."""
    init: Literal["data", "random"] = "data"
    """Initial atoms: data (random distinct rows) or random (random unit vectors)."""
    replace_unused: bool = True
    """Replace unused and near-duplicate atoms by the worst-represented rows (never in the last
    iteration)."""
    groups: Annotated[tuple[int, ...] | None, CHECKED_WITH_DATA] = None
    """Matryoshka group sizes adding up to n_atoms, e.g. 256 768 (in Python also (atoms, nonzeros)
    pairs); every prefix of groups is a dictionary of its own."""
    preprocessing: Annotated[str, CHECKED_WITH_DATA] = DEFAULT_PREPROCESSING
    """none, or the steps normalize, center, scale joined by '+'; stored with the model."""
    tol: Tolerance | None = None
    """Stop when a pass lowers the mean squared residual by less than this fraction."""
    coder_tol: Tolerance | None = None
    """Stop coding a row once ||x - x_hat|| <= coder_tol * ||x||."""
    random_state: Seed | None = None
    """Seed; fits are deterministic for a given seed on the CPU."""
    device: Annotated[str | None, CHECKED_WITH_DATA] = None
    """cpu, cuda, cuda:N (default: cuda when present)."""
    verbose: Annotated[int, Ge(0)] | bool = 0
    """0 silent, 1 a progress bar (iteration, loss, rate, ETA) on stderr."""


@dataclass(eq=False, repr=False)
class FixedDictionaryParams:
    """A dictionary that is not learned by K-SVD, coded with a pursuit like DB-KSVD's."""

    n_atoms: Count
    """K, the number of atoms."""
    n_nonzero: Count
    """k, the most atoms per row."""
    _: KW_ONLY
    coder: Coder = "omp"
    """The pursuit the atoms are coded with (as for DB-KSVD)."""
    max_iter: Count = 20
    """Passes over the data, for a dictionary learned by another method (scikit-learn's)."""
    preprocessing: Annotated[str, CHECKED_WITH_DATA] = DEFAULT_PREPROCESSING
    """As for DB-KSVD."""
    random_state: Seed | None = None
    """Seed."""
    device: Annotated[str | None, CHECKED_WITH_DATA] = None
    """cpu, cuda, cuda:N (default: cuda when present)."""
    verbose: Annotated[int, Ge(0)] | bool = 0
    """0 silent, 1 progress."""


@dataclass(eq=False, repr=False)
class SAEParams:
    """A sparse autoencoder (docs/model-format.md lists the architectures)."""

    architecture: Literal["topk", "batchtopk", "relu", "featurechoice", "mutualchoice"] = "topk"
    """The activation rule: topk, batchtopk, relu, featurechoice or mutualchoice."""
    n_atoms: Count = 4096
    """K latents (decoder rows)."""
    n_nonzero: Count = 32
    """The target L0 k."""
    _: KW_ONLY
    preprocessing: Annotated[str, CHECKED_WITH_DATA] = DEFAULT_PREPROCESSING
    """As for DB-KSVD."""
    lr: Tolerance | None = None
    """Adam learning rate (default 4e-4 * sqrt(16384 / K), at most 4e-3)."""
    batch_size: Count = 4096
    """Rows per optimiser step."""
    max_epochs: Count = 50
    """Epochs at most (early stopping on the validation rows)."""
    patience: Count = 5
    """Epochs without a better validation loss before the decay starts or training stops."""
    aux_k: Count | None = None
    """Dead latents in the auxiliary loss (default min(512, d // 2))."""
    aux_coef: Tolerance = 1 / 32
    """Weight of the auxiliary loss."""
    validation_fraction: Fraction = 0.1
    """Share of the training rows held out for early stopping when fit gets no X_val (at most
    16,384 rows)."""
    random_state: Seed | None = None
    """Seed."""
    device: Annotated[str | None, CHECKED_WITH_DATA] = None
    """cpu, cuda, cuda:N (default: cuda when present)."""
    verbose: Annotated[int, Ge(0)] | bool = 0
    """0 silent, 1 a progress bar."""
