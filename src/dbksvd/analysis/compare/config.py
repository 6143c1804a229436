"""What a comparison runs: the methods and :class:`CompareConfig`, checked field by field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ...config import Flag, Fraction, PositiveInt, Seed, config_dataclass
from ...errors import ParameterError
from ...preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from ...preprocessing import parse_steps

SAE_METHODS = ("topk", "batchtopk", "relu", "featurechoice", "mutualchoice")
#: ``dbksvd``: DB-KSVD with OMP (the best reconstructions); ``dbksvd-threshold``: with the
#: thresholding pursuit (detector supports: the more describable atoms, BENCHMARKS.md)
METHODS = ("dbksvd", "dbksvd-threshold", *SAE_METHODS, "sklearn", "random")
DEFAULT_METHODS = ("dbksvd", "dbksvd-threshold", "topk", "batchtopk", "relu", "featurechoice", "mutualchoice", "random")


@config_dataclass
class CompareConfig:
    """What to compare: methods, dictionary size, sparsities, split and training budgets.

    Every field is checked on construction and assignment; a bad value is a one-line
    ParameterError that names the field (k <= d is checked against the data by validate)."""

    atoms: PositiveInt
    """Dictionary size K of every method (atoms)."""
    nnz: Annotated[tuple[PositiveInt, ...], Field(min_length=1)]
    """The sparsities k compared (non-zeros per row), each at most K; every method is trained
    once per k."""
    methods: Annotated[tuple[Literal[METHODS], ...], Field(min_length=1)] = DEFAULT_METHODS
    """The methods compared: dbksvd (OMP), dbksvd-threshold (thresholding pursuit), the SAEs
    topk, batchtopk, relu, featurechoice, mutualchoice, sklearn (MiniBatchDictionaryLearning)
    and random (random directions)."""
    seed: Seed = 0
    """Random seed of the split and of every method."""
    test_fraction: Fraction = 0.2
    """Share of the rows held out as test rows (the reported metrics; at most 20,000 rows)."""
    val_fraction: Fraction = 0.1
    """Share of the rows held out for validation (SAE early stopping; at most 20,000 rows)."""
    preprocessing: str = DEFAULT_PREPROCESSING
    """Preprocessing of every method's input: none, or steps from normalize, center, scale
    joined by + (e.g. normalize+center+scale)."""
    dbksvd_iters: PositiveInt = 30
    """DB-KSVD passes over the training rows (scikit-learn's MBDL gets a third of them)."""
    dbksvd_batch_size: PositiveInt = 65536
    """DB-KSVD batch size (rows)."""
    sae_epochs: PositiveInt = 50
    """Most SAE training epochs (early stopping on the validation rows)."""
    sae_batch_size: PositiveInt = 4096
    """Largest SAE batch size (rows; at most an eighth of the training rows)."""
    pursuit: Flag = True
    """Also evaluate every SAE with an exact OMP coder on its own decoder (rows "<sae>+omp")."""
    device: str | None = None
    """Torch device of the methods (cpu, cuda, auto); None: each method's default."""

    @field_validator("preprocessing")
    @classmethod
    def _known_steps(cls, value: str) -> str:
        parse_steps(value)  # a one-line ParameterError names the valid steps
        return value

    @model_validator(mode="after")
    def _k_at_most_atoms(self) -> CompareConfig:
        for k in self.nnz:
            if k > self.atoms:
                raise ParameterError(f"k={k} (nnz) must be at most K={self.atoms} (atoms)")
        return self

    def validate(self, n: int, d: int) -> None:
        """Check the sparsities against data of ``n`` rows and ``d`` features: k <= d."""
        for k in self.nnz:
            if k > d:
                raise ParameterError(f"k={k} must be at most d={d} (the features of the data)")
