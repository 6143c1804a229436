"""How atoms are described and scored: :class:`ExplainConfig`, checked field by field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ...config import Flag, Fraction, PositiveInt, Seed, config_dataclass
from ...errors import ParameterError
from .bridge import BRIDGE_KINDS

#: The text encoder of descriptions and captions when the store has no ``text`` space.
DEFAULT_TEXT_ENCODER = "minilm"


@config_dataclass
class ExplainConfig:
    """How atoms are described and scored.

    Every field is checked on construction and assignment; a bad value is a one-line
    ParameterError that names the field."""

    vocabularies: Annotated[tuple[str, ...], Field(min_length=1)] | None = None
    """Vocabularies of candidate descriptions: names (captions, imagenet, wordnet) or files
    with one entry per line (dbksvd.data.load_vocabulary); None: captions when the
    store has them, imagenet and wordnet."""
    bridge: Literal[BRIDGE_KINDS] = "auto"
    """How image-space atoms are mapped into the text space when the two encoders differ:
    ridge (regression), cca (canonical correlation) or auto (the better on held-out
    image->caption retrieval)."""
    top: PositiveInt = 20
    """Top-activating items kept per atom and side as evidence (items)."""
    min_items: PositiveInt = 3
    """Describe items an atom needs on a side (non-zero with that sign) to be described there."""
    candidates: PositiveInt = 3
    """Candidate descriptions taken from each vocabulary and from the classifier head, per atom
    and side."""
    score_top: PositiveInt = 10
    """Top held-out items per atom whose captions score specificity (items)."""
    select_fraction: Fraction = 0.2
    """Share of the items in the select split (choice of the descriptions with describe)."""
    test_fraction: Fraction = 0.2
    """Share of the items held out in the test split (the reported scores)."""
    seed: Seed = 0
    """Random seed of the item split, the bridge's validation split and the random baseline."""
    text_encoder: str | None = None
    """Encoder of descriptions and captions (an encoder spec, e.g. minilm); None: the encoder of
    the store's text space, else minilm."""
    baseline: Flag = True
    """Also describe a random-direction dictionary of the same size and sparsity, and report its
    scores next to the model's."""
    coder: Literal["omp", "mp", "threshold", "detector"] | None = None
    """Which items an atom fires on: None for the model's own codes, or a reading of its atoms
    (dbksvd.config.READINGS; detector: the k atoms with the largest |projection| of each item,
    every atom read as a detector, without explaining away)."""
    distinct: Flag = True
    """Give two atoms the same description only when nothing as good is free: an atom whose
    best description a more faithful atom holds takes its best free candidate within one
    standard error of its best."""

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
