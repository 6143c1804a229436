"""Configuration dataclasses whose fields are checked in one declarative place.

:func:`config_dataclass` turns a plain class with annotated fields into a pydantic dataclass
(still a standard dataclass: ``dataclasses.asdict``/``replace`` and tyro read it) that checks
every field on construction and on assignment and raises a one-line
:class:`~dbksvd.errors.ParameterError` naming the field
(:func:`dbksvd.validation.parameter_error`). Constraints are written on the field's type:

    top: PositiveInt = 20
    \"\"\"Top items kept per atom and side.\"\"\"

The aliases below are strict: a bool is not an integer, a string is not a number.
"""

from __future__ import annotations

import functools
from typing import Annotated, TypeVar

from pydantic import ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass

from .validation import parameter_error

#: An integer >= 1 (counts, sizes, iterations).
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
#: An integer >= 0 (random seeds).
Seed = Annotated[int, Strict(), Field(ge=0)]
#: A number in (0, 1), exclusive (fractions of the rows).
Fraction = Annotated[float, Strict(), Field(gt=0, lt=1)]
#: True or False, nothing else.
Flag = Annotated[bool, Strict()]

T = TypeVar("T")


def config_dataclass(cls: type[T]) -> type[T]:
    """``cls`` as a pydantic dataclass that validates on construction and assignment, a failed
    check raising :class:`~dbksvd.errors.ParameterError` (one line, naming the field)."""
    checked = dataclass(cls, config=ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True))
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
