"""The models' hyperparameters: :class:`DBKSVDParams`, :class:`FixedDictionaryParams` and
:class:`SAEParams`. The estimators inherit them (``class DBKSVD(DBKSVDParams, ...)``) and check
them when they fit (:func:`~dbksvd.config.checks.check_fields`); ``dbksvd fit`` generates its
options from :class:`DBKSVDParams` (the ``cli(...)`` annotations give the short spellings)."""

from __future__ import annotations

import numbers
from dataclasses import KW_ONLY, dataclass
from typing import Annotated, Any, Literal

import tyro
from annotated_types import Ge

from ..errors import ParameterError
from .checks import CHECKED_WITH_DATA, Count, Fraction, Seed, Tolerance, cli, comma_separated

#: Pursuits a dictionary model trains and codes with (:func:`dbksvd.sparse_encode`); as a
#: model's own pursuit, ``mp`` and ``threshold`` end with a least-squares refit.
TRAINING_CODERS = ("omp", "mp", "threshold")
Coder = Literal["omp", "mp", "threshold"]
#: Readings ``transform(coder=...)`` accepts: the pursuits, and ``detector`` (each row's k
#: atoms with the largest |<x, D_j>|, the projections as coefficients: an atom read as a detector).
READINGS = ("omp", "mp", "threshold", "detector")
SAE_ARCHITECTURES = (
    "topk",
    "batchtopk",
    "relu",
    "featurechoice",
    "mutualchoice",
    "jumprelu",
    "matryoshka-batchtopk",
)

DEFAULT_PREPROCESSING = "normalize+center+scale"
#: Preprocessing steps, in the order they are applied (dbksvd.preprocessing).
PREPROCESSING_STEPS = ("normalize", "center", "scale")


def parse_steps(spec: Any) -> tuple[str, ...]:
    """``"normalize+center"``, ``"none"``, ``["center"]`` ... -> steps in canonical order."""
    if spec is None:
        return ()
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace(",", "+").split("+") if p.strip()]
    else:
        parts = [str(p) for p in spec]
    if parts == ["none"] or (not parts and not isinstance(spec, str)):
        return ()
    unknown = [p for p in parts if p not in PREPROCESSING_STEPS]
    if unknown or not parts:
        raise ParameterError(
            f"preprocessing {spec!r} is not valid; use 'none' or steps from {', '.join(PREPROCESSING_STEPS)} joined by '+'"
        )
    return tuple(s for s in PREPROCESSING_STEPS if s in parts)


def matryoshka_sizes(n_atoms: int, n_nonzero: int | None = None, levels: int = 5) -> tuple[int, ...]:
    """The default Matryoshka group sizes for K = ``n_atoms`` atoms (or latents): nested prefixes
    halving from K (K/16, K/8, K/4, K/2, K for five levels), so the groups hold K/16, K/16, K/8,
    K/4 and K/2 atoms (floor divisions; the sizes add up to K), e.g. K=512: (32, 32, 64, 128, 256).

    At most ``levels`` groups, at most ``floor(log2 K) + 1`` (every group holds an atom) and,
    with ``n_nonzero`` k, at most k (so DB-KSVD can give each group a non-zero). The
    ``matryoshka-batchtopk`` SAE and the comparison's ``dbksvd-matryoshka`` both use these."""
    for value, name in ((n_atoms, "n_atoms"), (n_nonzero, "n_nonzero"), (levels, "levels")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ParameterError(f"{name} must be an integer >= 1; got {value!r}")
    K = int(n_atoms)
    G = min(int(levels), K.bit_length(), int(n_nonzero or levels))
    prefixes = [K >> (G - 1 - g) for g in range(G)]
    return tuple(end - start for start, end in zip([0, *prefixes[:-1]], prefixes))


@dataclass(eq=False, repr=False)
class DBKSVDParams:
    """Double-Batch K-SVD (docs/algorithm.md)."""

    n_atoms: Annotated[Count, cli("--atoms", metavar="K")]
    """K, the number of atoms (rows of the dictionary)."""
    n_nonzero: Annotated[Count, cli("--nnz", metavar="k")]
    """k, the most atoms per row (1 <= k <= min(K, d))."""
    _: KW_ONLY
    coder: Coder = "omp"
    """The pursuit: omp (exact Batch-OMP: the best reconstructions), mp (matching pursuit with a
    least-squares refit) or threshold (each row's k atoms with the largest |<x, D_j>|,
    least-squares coefficients: atoms active where they respond most, easier to describe)."""
    max_iter: Annotated[Count, cli("--iters", metavar="N")] = 20
    """Passes over the data."""
    batch_size: Annotated[Count, cli(metavar="ROWS")] = 65536
    """Rows per sample batch (one K-SVD iteration each)."""
    atom_batch_size: Annotated[Count | None, cli(metavar="ATOMS")] = None
    """Atoms updated together from one snapshot (default ceil(K / 8))."""
    update: Literal["power", "svd"] = "power"
    """Atom update: power (one power step per atom and iteration, approximate K-SVD) or svd (the
    top singular pair, by power iteration to tolerance; slower)."""
    init: Literal["data", "random"] = "data"
    """Initial atoms: data (random distinct rows) or random (random unit vectors)."""
    replace_unused: bool = True
    """Replace unused and near-duplicate atoms by the worst-represented rows (never in the last
    iteration)."""
    groups: Annotated[tuple[int, ...] | None, CHECKED_WITH_DATA, comma_separated(int, "SIZE[,SIZE...]")] = None
    """Matryoshka group sizes adding up to n_atoms, e.g. 256 768 (in Python also (atoms, nonzeros)
    pairs); every prefix of groups is a dictionary of its own."""
    preprocessing: Annotated[str, CHECKED_WITH_DATA, cli(metavar="STEPS")] = DEFAULT_PREPROCESSING
    """none, or the steps normalize, center, scale joined by '+'; stored with the model."""
    tol: Annotated[Tolerance | None, cli(metavar="FRACTION")] = None
    """Stop when a pass lowers the mean squared residual by less than this fraction."""
    coder_tol: Annotated[Tolerance | None, cli(metavar="FRACTION")] = None
    """Stop coding a row once ||x - x_hat|| <= coder_tol * ||x||."""
    random_state: Annotated[Seed | None, cli("--seed", metavar="SEED")] = None
    """Seed; fits are deterministic for a given seed on the CPU."""
    device: Annotated[str | None, CHECKED_WITH_DATA, cli(metavar="DEVICE")] = None
    """cpu, cuda, cuda:N (default: cuda when present)."""
    verbose: Annotated[Annotated[int, Ge(0)] | bool, tyro.conf.Suppress] = 0
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

    architecture: Literal[
        "topk", "batchtopk", "relu", "featurechoice", "mutualchoice", "jumprelu", "matryoshka-batchtopk"
    ] = "topk"
    """The activation rule: topk, batchtopk, relu, featurechoice, mutualchoice, jumprelu or
    matryoshka-batchtopk."""
    n_atoms: Count = 4096
    """K latents (decoder rows)."""
    n_nonzero: Count = 32
    """The target L0 k."""
    _: KW_ONLY
    groups: Annotated[tuple[int, ...] | None, CHECKED_WITH_DATA] = None
    """matryoshka-batchtopk only: the nested group sizes, adding up to n_atoms (latents in
    order; prefix m is the first m latents); None: matryoshka_sizes(n_atoms, n_nonzero)."""
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
