"""What the analyses run: :class:`CompareConfig` (``dbksvd compare``) and :class:`ExplainConfig`
(``dbksvd explain``), checked field by field on construction and assignment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import ParameterError
from .checks import Count, Flag, Fraction, Seed, choice_or_none, cli, comma_separated, config_dataclass
from .params import DEFAULT_PREPROCESSING, SAE_ARCHITECTURES, parse_steps

SAE_METHODS = SAE_ARCHITECTURES
#: ``dbksvd``: DB-KSVD with OMP (the best reconstructions); ``dbksvd-threshold``: with the
#: thresholding pursuit (detector supports: the more describable atoms, BENCHMARKS.md);
#: ``dbksvd-matryoshka``: OMP on a Matryoshka dictionary with the groups of
#: :func:`~dbksvd.config.matryoshka_sizes` (those of ``matryoshka-batchtopk``; not a default)
METHODS = ("dbksvd", "dbksvd-threshold", "dbksvd-matryoshka", *SAE_METHODS, "sklearn", "random")
DEFAULT_METHODS = ("dbksvd", "dbksvd-threshold", *SAE_METHODS, "random")
#: How image-space atoms are mapped into the text space (:mod:`dbksvd.analysis.explain.bridge`).
BRIDGE_KINDS = ("ridge", "cca", "auto")
#: The text encoder of descriptions and captions when the store has no ``text`` space.
DEFAULT_TEXT_ENCODER = "minilm"


@config_dataclass(
    renamed={
        "atoms": "n_atoms",
        "nnz": "n_nonzero",
        "seed": "random_state",
        "dbksvd_iters": "dbksvd_max_iter",
        "sae_epochs": "sae_max_epochs",
    }
)
class CompareConfig:
    """What to compare: methods, dictionary size, sparsities, split and training budgets.

    Every field is checked on construction and assignment; a bad value is a one-line
    ParameterError that names the field (k <= d is checked against the data by validate)."""

    n_atoms: Annotated[Count, cli("--atoms", metavar="K")]
    """Dictionary size K of every method (atoms)."""
    n_nonzero: Annotated[tuple[Count, ...], Field(min_length=1), comma_separated(int, "k[,k...]"), cli("--nnz")]
    """The sparsities k compared (non-zeros per row), each at most K, e.g. 8,16,32; every method
    is trained once per k."""
    methods: Annotated[
        tuple[Literal[METHODS], ...], Field(min_length=1), comma_separated(str, "METHOD[,METHOD...]")
    ] = DEFAULT_METHODS
    """The methods compared: dbksvd (OMP), dbksvd-threshold (thresholding pursuit),
    dbksvd-matryoshka (nested groups, as matryoshka-batchtopk's), the SAEs topk, batchtopk, relu,
    featurechoice, mutualchoice, jumprelu, matryoshka-batchtopk, sklearn
    (MiniBatchDictionaryLearning) and random (random directions)."""
    random_state: Annotated[Seed, cli("--seed", metavar="SEED")] = 0
    """Random seed of the split and of every method."""
    test_fraction: Fraction = 0.2
    """Share of the rows held out as test rows (the reported metrics; at most 20,000 rows)."""
    val_fraction: Fraction = 0.1
    """Share of the rows held out for validation (SAE early stopping; at most 20,000 rows)."""
    preprocessing: Annotated[str, cli(metavar="STEPS")] = DEFAULT_PREPROCESSING
    """Preprocessing of every method's input: none, or steps from normalize, center, scale
    joined by + (e.g. normalize+center+scale)."""
    dbksvd_max_iter: Annotated[Count, cli("--iters", metavar="N")] = 30
    """DB-KSVD passes over the training rows (scikit-learn's MBDL gets a third of them)."""
    dbksvd_batch_size: Annotated[Count, cli(metavar="ROWS")] = 65536
    """DB-KSVD batch size (rows)."""
    sae_max_epochs: Annotated[Count, cli("--epochs", metavar="N")] = 50
    """Most SAE training epochs (early stopping on the validation rows)."""
    sae_batch_size: Annotated[Count, cli(metavar="ROWS")] = 4096
    """Largest SAE batch size (rows; at most an eighth of the training rows)."""
    pursuit: Flag = True
    """Also evaluate every SAE with an exact OMP coder on its own decoder (rows "<sae>+omp")."""
    device: Annotated[str | None, cli(metavar="DEVICE")] = None
    """Torch device of the methods (cpu, cuda, auto); None: each method's default."""

    @field_validator("preprocessing")
    @classmethod
    def _known_steps(cls, value: str) -> str:
        parse_steps(value)  # a one-line ParameterError names the valid steps
        return value

    @model_validator(mode="after")
    def _k_at_most_atoms(self) -> CompareConfig:
        for k in self.n_nonzero:
            if k > self.n_atoms:
                raise ParameterError(f"k={k} (n_nonzero) must be at most K={self.n_atoms} (n_atoms)")
        return self

    def validate(self, n: int, d: int) -> None:
        """Check the sparsities against data of ``n`` rows and ``d`` features: k <= d."""
        for k in self.n_nonzero:
            if k > d:
                raise ParameterError(f"k={k} must be at most d={d} (the features of the data)")


@config_dataclass(renamed={"seed": "random_state"})
class ExplainConfig:
    """How atoms are described and scored.

    Every field is checked on construction and assignment; a bad value is a one-line
    ParameterError that names the field."""

    vocabularies: Annotated[
        Annotated[tuple[str, ...], Field(min_length=1)] | None,
        comma_separated(str, "VOCAB[,VOCAB...]"),
        cli("--vocab"),
    ] = None
    """Vocabularies of candidate descriptions: names (captions, imagenet, wordnet) or files
    with one entry per line (dbksvd.data.load_vocabulary); None: captions when the
    store has them, imagenet and wordnet."""
    bridge: Literal[BRIDGE_KINDS] = "auto"
    """How image-space atoms are mapped into the text space when the two encoders differ:
    ridge (regression), cca (canonical correlation) or auto (the better on held-out
    image->caption retrieval)."""
    top: Annotated[Count, cli(metavar="N")] = 20
    """Top-activating items kept per atom and side as evidence (items)."""
    min_items: Annotated[Count, cli(metavar="N")] = 3
    """Describe items an atom needs on a side (non-zero with that sign) to be described there."""
    candidates: Annotated[Count, cli(metavar="N")] = 3
    """Candidate descriptions taken from each vocabulary and from the classifier head, per atom
    and side."""
    score_top: Annotated[Count, cli(metavar="N")] = 10
    """Top held-out items per atom whose captions score specificity (items)."""
    max_rows: Annotated[Count, cli(metavar="N")] = 20_000
    """Token and patch stores: the atoms are described on a seeded sample of whole texts or
    images with at most this many rows (tokens or patches) in all."""
    window: Annotated[Count, cli(metavar="TOKENS")] = 4
    """Token stores: a token's caption (what its descriptions are scored against) is its
    context, this many tokens on each side of it."""
    select_fraction: Fraction = 0.2
    """Share of the items in the select split (choice of the descriptions with describe)."""
    test_fraction: Fraction = 0.2
    """Share of the items held out in the test split (the reported scores)."""
    random_state: Annotated[Seed, cli("--seed", metavar="SEED")] = 0
    """Random seed of the item split, the bridge's validation split and the random baseline."""
    text_encoder: Annotated[str | None, cli(metavar="ENCODER")] = None
    """Encoder of descriptions and captions (an encoder spec, e.g. minilm); None: the encoder of
    the store's text space, else minilm."""
    baseline: Flag = True
    """Also describe a random-direction dictionary of the same size and sparsity, and report its
    scores next to the model's."""
    coder: Annotated[
        Literal["omp", "mp", "threshold", "detector"] | None,
        choice_or_none(("detector", "omp", "mp", "threshold"), none="own"),
    ] = None
    """Which items an atom fires on: None (own on the command line) for the model's own codes,
    or a reading of its atoms (dbksvd.config.READINGS; detector: the k atoms with the largest
    |projection| of each item, every atom read as a detector, without explaining away)."""
    distinct: Annotated[Flag, cli("--allow-shared")] = True
    """Give two atoms the same description only when nothing as good is free: an atom whose
    best description a more faithful atom holds takes its best free candidate within one
    standard error of its best (--no-distinct or --allow-shared: keep each atom's best)."""

    @model_validator(mode="after")
    def _leave_items_to_describe(self) -> ExplainConfig:
        if self.select_fraction + self.test_fraction >= 1:
            raise ParameterError(
                f"select_fraction + test_fraction must be < 1 to leave items to describe; got "
                f"{self.select_fraction} + {self.test_fraction}"
            )
        return self

    def validate(self) -> None:
        """Nothing left to check: every field is checked on construction and assignment (kept
        for callers of the earlier API)."""
