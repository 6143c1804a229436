"""Every parameter, once: names, defaults, constraints and help text.

The estimators inherit their hyperparameters from dataclasses here (``class DBKSVD(DBKSVDParams,
DictionaryModel)``, :mod:`.params`), the analyses take configs from here (:class:`CompareConfig`,
:class:`ExplainConfig`, :mod:`.analysis`), and the command line is generated from the same
classes (:mod:`dbksvd.cli`), so that the Python API, the model folder's ``params``, the options
and the docs share one vocabulary (README, "Names"). A field's constraint sits in its annotation
(``Count`` is an integer >= 1, ``Literal[...]`` a choice) and is checked with pydantic
(:mod:`.checks`), raising one :class:`~dbksvd.errors.ParameterError` line such as
``ExplainConfig.top must be an integer >= 1; got True``. Constraints that depend on the data
(k <= min(K, d), Matryoshka groups, preprocessing steps, devices) are checked where the data is
known (:mod:`dbksvd.validation`); their fields carry :data:`CHECKED_WITH_DATA`.

Configs check on construction (:func:`config_dataclass`); estimators check when they fit
(:func:`check_fields`), as scikit-learn's do. This package imports no numerical library: the
CLI's ``--help`` reads it without loading torch.
"""

from .analysis import (
    BRIDGE_KINDS,
    DEFAULT_METHODS,
    DEFAULT_TEXT_ENCODER,
    METHODS,
    SAE_METHODS,
    CompareConfig,
    ExplainConfig,
)
from .checks import (
    CHECKED_WITH_DATA,
    Count,
    Flag,
    Fraction,
    PositiveInt,
    Seed,
    Tolerance,
    check_fields,
    choice_or_none,
    cli,
    comma_separated,
    config_dataclass,
    parameter_error,
)
from .params import (
    DEFAULT_PREPROCESSING,
    READINGS,
    SAE_ARCHITECTURES,
    TRAINING_CODERS,
    Coder,
    DBKSVDParams,
    FixedDictionaryParams,
    SAEParams,
    matryoshka_sizes,
)

__all__ = [
    "BRIDGE_KINDS",
    "CHECKED_WITH_DATA",
    "DBKSVDParams",
    "DEFAULT_METHODS",
    "DEFAULT_PREPROCESSING",
    "DEFAULT_TEXT_ENCODER",
    "METHODS",
    "READINGS",
    "SAE_ARCHITECTURES",
    "SAE_METHODS",
    "TRAINING_CODERS",
    "Coder",
    "CompareConfig",
    "Count",
    "ExplainConfig",
    "FixedDictionaryParams",
    "Flag",
    "Fraction",
    "PositiveInt",
    "SAEParams",
    "Seed",
    "Tolerance",
    "check_fields",
    "choice_or_none",
    "cli",
    "comma_separated",
    "config_dataclass",
    "matryoshka_sizes",
    "parameter_error",
]
