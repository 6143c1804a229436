"""Every hyperparameter, once: names, defaults, constraints and help text.

The estimators inherit their parameters from these dataclasses (``class DBKSVD(DBKSVDParams,
DictionaryModel)``), so the Python API, the model folder's ``params`` and the command line
(generated from the same classes in :mod:`dbksvd.cli`) share one vocabulary (README, "Names").
A field's constraint sits in its annotation (``Count`` is an integer >= 1, ``Literal[...]`` a
choice) and :func:`check_fields` checks them all with pydantic, raising one
:class:`~dbksvd.errors.ParameterError` line. Constraints that depend on the data (k <= min(K,
d), Matryoshka groups, preprocessing steps, devices) are checked where the data is known
(:mod:`dbksvd.validation`); their fields carry :data:`CHECKED_WITH_DATA`.

Configs (:func:`config_dataclass`, e.g. ``ExplainConfig``) check on construction; estimators
check when they fit (:func:`check_fields`). Both raise :func:`parameter_error`'s one line,
``ExplainConfig.top must be an integer >= 1; got True``.

This module imports no numerical library: the CLI's ``--help`` reads it without loading torch.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import KW_ONLY, dataclass
from typing import Annotated, Any, Literal, TypeVar

from annotated_types import Ge, Gt, Lt
from pydantic import AllowInfNan, BeforeValidator, Strict

from .errors import ParameterError


def _python_scalar(value: Any) -> Any:
    """numpy scalars as Python numbers, so that ``np.int64(8)`` counts as an integer."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


#: Marks a field whose value is checked against the data at fit time, not here.
CHECKED_WITH_DATA = "checked with the data"


# Constraints sit in the annotations (readable by the CLI generator); strict: a bool is not an
# integer, a string is not a number (numpy scalars count as numbers).
Count = Annotated[int, BeforeValidator(_python_scalar), Strict(), Ge(1)]
"""An integer >= 1 (counts, sizes, iterations)."""
PositiveInt = Count
Seed = Annotated[int, BeforeValidator(_python_scalar), Strict(), Ge(0)]
"""A random seed: an integer >= 0."""
Tolerance = Annotated[float, BeforeValidator(_python_scalar), Strict(), AllowInfNan(False), Ge(0)]
"""A finite number >= 0."""
Fraction = Annotated[float, BeforeValidator(_python_scalar), Strict(), Gt(0), Lt(1)]
"""A number strictly between 0 and 1."""
Flag = Annotated[bool, Strict()]
"""True or False, nothing else."""

T = TypeVar("T")

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
    """Check every field of the dataclass instance ``obj`` (an estimator's hyperparameters)
    against its annotation, raising :func:`parameter_error`'s one line.

    Integers are strict (``True`` and ``3.0`` are not integers, ``np.int64(3)`` is), floats
    accept integers, ``X | None`` accepts None; fields marked :data:`CHECKED_WITH_DATA` are
    left to the fit. Estimators check when they fit, not when built (scikit-learn's contract:
    ``__init__`` and ``set_params`` only store).
    """
    from pydantic import ValidationError

    checked = _checked_twin(type(obj), owner or type(obj).__name__)
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(checked)}
    try:
        checked(**values)
    except ValidationError as exc:
        raise parameter_error(exc, checked) from None


@functools.cache
def _checked_twin(cls: type, name: str) -> type:
    """A pydantic dataclass named ``name`` with the checkable fields of the dataclass ``cls``,
    made strict."""
    import typing

    from pydantic import ConfigDict
    from pydantic.dataclasses import dataclass as pydantic_dataclass

    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [
        (f.name, _strict_hint(hints[f.name]))
        for f in dataclasses.fields(cls)
        if not f.name.startswith("_") and CHECKED_WITH_DATA not in getattr(hints[f.name], "__metadata__", ())
    ]
    twin = dataclasses.make_dataclass(name, fields)
    return pydantic_dataclass(twin, config=ConfigDict(arbitrary_types_allowed=True))


def _strict_hint(hint: Any) -> Any:
    """``hint`` with strict scalars (numpy scalars accepted) wherever it holds int, float, bool or str."""
    import types
    import typing

    from pydantic import AllowInfNan, BeforeValidator, Strict

    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        return Annotated[(_strict_hint(base), *meta)]
    if origin in (typing.Union, types.UnionType):
        args = tuple(_strict_hint(a) for a in typing.get_args(hint))
        return functools.reduce(lambda a, b: a | b, args)
    if hint is float:
        return Annotated[float, BeforeValidator(_python_scalar), Strict(), AllowInfNan(False)]
    if hint in (int, bool, str):
        return Annotated[hint, BeforeValidator(_python_scalar), Strict()]
    return hint


def config_dataclass(cls: type[T]) -> type[T]:
    """``cls`` as a pydantic dataclass that checks every field on construction and on
    assignment, a failed check raising :func:`parameter_error`'s one line (for configs; the
    estimators check when they fit, :func:`check_fields`). Still a standard dataclass:
    ``dataclasses.asdict``/``replace`` and the CLI generator read it."""
    from pydantic import ConfigDict, ValidationError
    from pydantic.dataclasses import dataclass as pydantic_dataclass

    checked = pydantic_dataclass(
        cls, config=ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)
    )
    init, setattr_ = checked.__init__, checked.__setattr__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise parameter_error(exc, checked) from None

    @functools.wraps(setattr_)
    def __setattr__(self, name, value):
        try:
            setattr_(self, name, value)
        except ValidationError as exc:
            raise parameter_error(exc, checked) from None

    checked.__init__, checked.__setattr__ = __init__, __setattr__
    return checked


_BOUND_ERRORS = ("greater_than_equal", "greater_than", "less_than", "less_than_equal")


def parameter_error(exc: Any, owner: type) -> ParameterError:
    """pydantic's ``ValidationError`` ``exc``, raised checking the fields of ``owner`` (a pydantic
    dataclass or model), as one line that names the field and what it takes, e.g.
    ``ExplainConfig.top must be an integer >= 1; got True``, from the first error.

    A choice (``Literal``) reads ``CompareConfig.methods[1]: unknown method 'pca'; it must be
    one of ...``; an error raised by a check of several fields (a model validator) reads
    ``Owner: <its message>``.
    """
    import types
    from typing import Annotated, Literal, Union, get_args, get_origin

    def flat(meta: Any) -> list[Any]:  # pydantic's FieldInfo nests its constraints
        out = []
        for m in meta:
            out.extend(flat(m.metadata) if hasattr(m, "metadata") and hasattr(m, "annotation") else [m])
        return out

    def unwrap(tp: Any, meta: list[Any], optional: bool = False) -> tuple[Any, list[Any]]:
        """The type under ``Annotated`` (and, with ``optional``, under ``X | None``) and its constraints."""
        while True:
            if get_origin(tp) is Annotated:
                tp, *extra = get_args(tp)
                meta = [*meta, *flat(extra)]
            elif optional and get_origin(tp) in (Union, types.UnionType) and len(get_args(tp)) == 2:
                tp = next((a for a in get_args(tp) if a is not type(None)), tp)
            else:
                return tp, meta

    def bounds(meta: list[Any]) -> str:
        """' >= 1', ' in (0, 1)', ... from annotated-types' Ge / Gt / Le / Lt."""
        limit = {k: getattr(m, k) for m in meta for k in ("ge", "gt", "le", "lt") if getattr(m, k, None) is not None}
        num = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in limit.items()}
        lo = "ge" if "ge" in limit else "gt" if "gt" in limit else None
        hi = "le" if "le" in limit else "lt" if "lt" in limit else None
        if lo and hi:
            return f" in {'[' if lo == 'ge' else '('}{num[lo]}, {num[hi]}{']' if hi == 'le' else ')'}"
        symbol = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        return "".join(f" {symbol[k]} {num[k]}" for k in (lo, hi) if k)

    nouns = {
        bool: ("true or false", "booleans"),
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
        str: ("a string", "strings"),
    }

    def describe(tp: Any, meta: list[Any], plural: bool = False) -> str:
        tp, meta = unwrap(tp, meta)
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            text = " or ".join(describe(a, meta, plural) for a in rest)
            return text + " or None" if len(rest) < len(args) else text
        if origin is Literal:
            return "one of " + ", ".join(map(repr, args))
        if origin in (tuple, list):
            size = "non-empty " if any(getattr(m, "min_length", 0) for m in meta) else ""
            kind = "tuples" if plural else "tuple" if origin is tuple else "list"
            return f"{'' if plural else 'a '}{size}{kind} of {describe(args[0] if args else Any, [], True)}"
        singular, many = nouns.get(tp, (f"a {getattr(tp, '__name__', tp)}", f"{getattr(tp, '__name__', tp)} values"))
        return (many if plural else singular) + bounds(meta)

    err = exc.errors(include_url=False)[0]
    name, loc, value = owner.__name__, err["loc"], err.get("input")
    fields = getattr(owner, "__pydantic_fields__", None) or getattr(owner, "model_fields", {})
    if not loc or loc[0] not in fields:
        if err["type"] == "unexpected_keyword_argument":
            return ParameterError(f"{name} has no field {loc[-1]!r}")
        cause = (err.get("ctx") or {}).get("error")
        return ParameterError(f"{name}: {cause if cause is not None else err['msg']}")
    tp, meta = fields[loc[0]].annotation, list(fields[loc[0]].metadata)
    where = f"{name}.{loc[0]}"
    for part in loc[1:]:  # into the element of a tuple or list
        tp, meta = unwrap(tp, meta, optional=True)
        if get_origin(tp) not in (tuple, list) or not isinstance(part, int):
            break
        tp, meta, where = get_args(tp)[0], [], f"{where}[{part}]"
    if err["type"] == "missing":
        return ParameterError(f"{where} is required")
    if err["type"] == "value_error" and (err.get("ctx") or {}).get("error") is not None:
        return ParameterError(f"{where}: {err['ctx']['error']}")  # a field validator's own message
    if err["type"] == "literal_error":
        noun = loc[0].removesuffix("s") if len(loc) > 1 else loc[0]
        return ParameterError(f"{where}: unknown {noun} {value!r}; {loc[0]} must be {describe(tp, meta)}")
    if err["type"] in _BOUND_ERRORS:  # the type is right: name the bound it breaks
        _, bmeta = unwrap(tp, meta, optional=True)
        return ParameterError(f"{where} must be{bounds(bmeta)}; got {value!r}")
    return ParameterError(f"{where} must be {describe(tp, meta)}; got {value!r}")


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
