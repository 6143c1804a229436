"""How parameters are checked: constrained types, :func:`check_fields` (estimators, at fit),
:func:`config_dataclass` (configs, on construction) and :func:`parameter_error`, the one line a
failed check becomes. Also the command-line spellings a field may carry (:func:`cli`,
:func:`comma_separated`), read by tyro when :mod:`dbksvd.cli` generates the options.

Imports no numerical library.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Gt, Lt
from pydantic import AllowInfNan, BeforeValidator, Strict

from ..errors import ParameterError


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


def config_dataclass(cls: type[T] | None = None, *, renamed: dict[str, str] | None = None) -> Any:
    """``cls`` as a pydantic dataclass that checks every field on construction and on
    assignment, a failed check raising :func:`parameter_error`'s one line (for configs; the
    estimators check when they fit, :func:`check_fields`). Still a standard dataclass:
    ``dataclasses.asdict``/``replace`` and the CLI generator read it.

    ``renamed`` maps earlier field names to today's (``{"atoms": "n_atoms"}``): the old keyword
    still works for a release, with a DeprecationWarning, and so does reading the attribute.
    Use as ``@config_dataclass`` or ``@config_dataclass(renamed={...})``."""
    if cls is None:
        return functools.partial(config_dataclass, renamed=renamed)
    from pydantic import ConfigDict, ValidationError
    from pydantic.dataclasses import dataclass as pydantic_dataclass

    checked = pydantic_dataclass(
        cls, config=ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)
    )
    init, setattr_ = checked.__init__, checked.__setattr__
    renamed = dict(renamed or {})

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for old in renamed.keys() & kwargs.keys():
            new = renamed[old]
            warnings.warn(f"{cls.__name__}({old}=...) is now {new}=...", DeprecationWarning, stacklevel=2)
            if new in kwargs:
                raise ParameterError(f"{cls.__name__}: give {new} or its old name {old}, not both")
            kwargs[new] = kwargs.pop(old)
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise parameter_error(exc, checked) from None

    @functools.wraps(setattr_)
    def __setattr__(self, name, value):
        try:
            setattr_(self, renamed.get(name, name), value)
        except ValidationError as exc:
            raise parameter_error(exc, checked) from None

    checked.__init__, checked.__setattr__ = __init__, __setattr__
    for old, new in renamed.items():
        setattr(checked, old, property(lambda self, new=new: getattr(self, new), doc=f"Old name of {new}."))
    checked.renamed_fields = renamed
    return checked


# -- command-line spellings (read by tyro, ignored by pydantic) --------------------------------


def cli(*aliases: str, metavar: str | None = None) -> Any:
    """A field's extra command-line spellings and placeholder, e.g. ``Annotated[Count,
    cli("--atoms", metavar="K")]`` for ``n_atoms``: ``--n-atoms`` and ``--atoms`` both set it."""
    import tyro

    return tyro.conf.arg(aliases=aliases or None, metavar=metavar)


def comma_separated(parse: Callable[[str], Any], metavar: str) -> Any:
    """A tuple-valued option given as ``8 16 32`` or ``8,16,32`` (the earlier spelling); an
    option given no value, or ``none``, is None. ``parse`` converts one element (``int``, ``str``)."""
    from tyro.constructors import PrimitiveConstructorSpec

    def from_args(args: list[str]) -> tuple | None:
        parts = [p.strip() for a in args for p in a.split(",") if p.strip()]
        if not parts or parts == ["none"]:
            return None
        try:
            return tuple(parse(p) for p in parts)
        except ValueError:
            raise ValueError(f"expected {metavar}; got {' '.join(args)!r}") from None

    return PrimitiveConstructorSpec(
        nargs="*",
        metavar=metavar,
        instance_from_str=from_args,
        is_instance=lambda value: value is None or isinstance(value, tuple),
        str_from_instance=lambda value: ["none"] if value is None else [",".join(map(str, value))],
    )


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


def choice_or_none(choices: tuple[str, ...], none: str) -> Any:
    """An optional choice whose None has a name on the command line (``--coder own``)."""
    from tyro.constructors import PrimitiveConstructorSpec

    return PrimitiveConstructorSpec(
        nargs=1,
        metavar="{" + ",".join((none, *choices)) + "}",
        instance_from_str=lambda args: None if args[0] == none else args[0],
        is_instance=lambda value: value is None or value in choices,
        str_from_instance=lambda value: [none if value is None else value],
        choices=(none, *choices),
    )
