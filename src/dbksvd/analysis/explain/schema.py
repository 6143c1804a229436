"""The files of an explanation folder (docs/explain.md): ``atoms.jsonl`` records and
``summary.json``, one schema each, used by :func:`~.records.write_explanation` to write them
and by :func:`read_atoms` / :func:`read_summary` to read them (a damaged file is one
:class:`~dbksvd.errors.DataFileError` line)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field

from ...schema import FileSchema, dump, read_json, read_jsonl

Side = Literal["+", "-"]


# -- atoms.jsonl --------------------------------------------------------------------------------


class TokenContext(FileSchema):
    """A top token in its text: the tokens around it and the atom's coefficient on each."""

    tokens: list[str]
    """The text around the token, one piece per token (each piece starts where the token
    before it ends, so the pieces joined are the text)."""
    coefs: list[float]
    """The atom's coefficient on each of those tokens (0: not used)."""
    focus: int = Field(ge=0)
    """The top token's place in ``tokens``."""


class PatchPlace(FileSchema):
    """Where a top patch lies in its image's grid of patches."""

    row: int
    """Grid row (-1: the class token)."""
    col: int
    """Grid column (-1: the class token)."""


class TopItem(FileSchema):
    """One of an atom's top-activating items (token and patch stores: its best row in one
    text or image)."""

    row: int
    """Row of the item (token, patch) in the store."""
    id: str
    """The item's id (token and patch rows: ``<item id>@<position>`` / ``@<row>,<col>``)."""
    caption: str | None
    """Its caption (None: none); a token's context window, a patch's image caption."""
    coef: float
    """The atom's coefficient on the item."""
    item: int | None = None
    """Token and patch rows: the item (text, image) index in the store."""
    position: int | None = None
    """Token and patch rows: the token or patch index in the item."""
    context: TokenContext | None = None
    """Token rows: the surrounding tokens, coloured by the atom."""
    patch: PatchPlace | None = None
    """Patch rows: the patch's place in the grid."""
    grid: list[list[float]] | None = None
    """Patch rows: the atom's coefficient on every patch of the image (grid rows x cols)."""


class Histogram(FileSchema):
    """The atom's non-zero coefficients in equal bins over [-max, max]."""

    max: float
    """Largest |coefficient|."""
    counts: list[int]
    """Coefficients per bin (21 bins)."""


class NearAtom(FileSchema):
    """One of the atoms with the largest |cosine| to this one."""

    atom: int
    """Its index in the dictionary."""
    cosine: float
    """The signed cosine of the two atoms."""


class Alternative(FileSchema):
    """A candidate description with its test scores."""

    description: str
    """The candidate's text."""
    source: str
    """Where it came from (captions:term, vocabulary:NAME, items:NAME, head, ...)."""
    faithfulness: float | None
    """Test AUROC of the description for the atom's active items (None: not scored)."""
    specificity: float | None
    """Test reciprocal rank of the atom by the description (None: not scored or not the primary side)."""


class OtherSide(FileSchema):
    """The description of the atom's other sign."""

    side: Side
    """The sign described: + or -."""
    description: str
    """The chosen description."""
    source: str
    """Where it came from."""
    faithfulness: float | None
    """Its test faithfulness (None: not scored)."""


class AtomRecord(FileSchema):
    """One line of ``atoms.jsonl``: an atom, its description and its evidence."""

    atom: int = Field(ge=0)
    """Index of the atom in the dictionary."""
    side: Side | None
    """The sign the description is about (None: undescribed)."""
    description: str | None
    """The chosen description (None: undescribed, see note)."""
    source: str | None
    """Where the description came from."""
    faithfulness: float | None
    """Its test faithfulness (None without captions or without active test items)."""
    specificity: float | None
    """Its test specificity (None as faithfulness)."""
    alternatives: list[Alternative]
    """Every candidate of the primary side, with its test scores."""
    other_side: OtherSide | None
    """The description of the other sign, or None."""
    note: str | None
    """Why the atom has no description, else None."""
    usage: float
    """Share of all items with a non-zero coefficient on the atom."""
    count_positive: int
    """Items with a positive coefficient."""
    count_negative: int
    """Items with a negative coefficient."""
    mean_positive: float
    """Mean |coefficient| over the positive items (0: none)."""
    mean_negative: float
    """Mean |coefficient| over the negative items (0: none)."""
    top_positive: list[TopItem]
    """The items with the largest positive coefficients, best first."""
    top_negative: list[TopItem]
    """The items with the largest negative coefficients, best first."""
    histogram: Histogram
    """The coefficients' histogram."""
    nearest: list[NearAtom]
    """The atoms nearest this one, by |cosine|."""


# -- summary.json -------------------------------------------------------------------------------


class Recall(FileSchema):
    """Image -> caption retrieval recall."""

    recall_at_1: float = Field(alias="recall@1")
    """Share of images whose caption ranks first."""
    recall_at_5: float = Field(alias="recall@5")
    """Share of images whose caption ranks in the top 5."""


class BridgeConfiguration(FileSchema):
    """A kind of bridge and its hyper-parameters."""

    kind: Literal["ridge", "cca"]
    """The kind of bridge."""
    params: dict[str, float | int]
    """Its hyper-parameters (ridge: alpha; cca: reg, components)."""


class BridgeCandidate(Recall, BridgeConfiguration):
    """One bridge configuration tried, with its validation recall."""


class HeldOutRecall(Recall):
    """The bridge's recall on the test items."""

    queries: int
    """Test images."""
    gallery: int
    """Distinct test captions they are ranked among."""


class BridgeReport(BridgeConfiguration):
    """The linear image -> text bridge chosen: how well it retrieves, and what else was tried."""

    validation: Recall
    """Its recall on the validation pairs."""
    candidates: list[BridgeCandidate]
    """Every configuration tried."""
    pairs: int
    """Image-caption pairs it was fitted on."""
    validation_pairs: int
    """Pairs held out to choose it."""
    test: HeldOutRecall
    """Its recall on the test items."""


class DictionaryInfo(FileSchema):
    """The dictionary described."""

    architecture: str
    """Its architecture (dbksvd, topk, random, ...)."""
    atoms: int
    """Atoms (K)."""
    k: int
    """Non-zeros per item."""


class ScoreSummary(FileSchema):
    """Mean and median of one score over the described atoms that have it."""

    mean: float | None
    """Mean (None: no atom scored)."""
    median: float | None
    """Median (None: no atom scored)."""
    atoms: int
    """Atoms scored."""


class Aggregate(FileSchema):
    """The headline numbers of one dictionary's descriptions."""

    atoms: int
    """Atoms (K)."""
    described: int
    """Atoms with a description."""
    diversity: float | None = None
    """Distinct descriptions / described atoms (absent: none described)."""
    sources: dict[str, int] | None = None
    """Descriptions per source, most first (absent: none described)."""
    faithfulness: ScoreSummary | None = None
    """Test faithfulness over the described atoms (absent without captions)."""
    specificity: ScoreSummary | None = None
    """Test specificity over the described atoms (absent without captions)."""


class RowSampleInfo(FileSchema):
    """The sample of a token or patch store that was described."""

    rows: int
    """Rows (tokens, patches) in the sample."""
    items: int
    """Whole texts or images they belong to."""
    of_rows: int
    """Rows of the store."""


class _SummaryHead(FileSchema):
    """What was described, on which items, and how (the keys before the aggregates)."""

    store: str
    """The store's path."""
    space: str
    """The store space described."""
    coder: str
    """How items were coded: own (the model's codes) or a pursuit."""
    items: int
    """Items of the space (token and patch stores: rows of the sample)."""
    captioned_items: int
    """Items with a caption (token and patch stores: rows with one)."""
    granularity: Literal["token", "patch"] | None = None
    """What a row of the store is (absent: a whole item)."""
    sample: RowSampleInfo | None = None
    """Token and patch stores: the sample described."""
    window: int | None = None
    """Token stores: tokens on each side of a token in its caption."""
    encoder: str
    """The space's encoder."""
    split: dict[str, int]
    """Items per split (describe, select, test); token and patch stores: rows, split by item."""
    text_encoder: str
    """The encoder of descriptions and captions."""
    text_space: str | None = None
    """How atoms reach the text space (absent: they do not)."""
    bridge: BridgeReport | None = None
    """The bridge, when one was learned."""
    vocabularies: dict[str, int] | None = None
    """Entries per vocabulary used."""
    head: str | None = None
    """The classifier head used (absent: none)."""
    model: DictionaryInfo
    """The dictionary described."""


class ExplainSummary(Aggregate, _SummaryHead):
    """``summary.json``: the store and split, the text side, the dictionary's aggregates, the
    random-direction baseline's aggregates and notes."""

    notes: list[str]
    """What could not be done, and why."""
    random: Aggregate | None = None
    """The same aggregates for random directions (absent without a baseline)."""
    model_path: str | None = None
    """The model folder, relative to the explanation folder (written by the CLI)."""


def read_atoms(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of an ``atoms.jsonl`` (or of ``ATOMS_DIR/atoms.jsonl``), checked against
    :class:`AtomRecord`; a damaged line is a one-line :class:`~dbksvd.errors.DataFileError`."""
    return [dump(r) for r in read_jsonl(path, AtomRecord, "atoms.jsonl record", in_folder="atoms.jsonl")]


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The ``summary.json`` of an explanation (or of ``ATOMS_DIR/summary.json``), checked against
    :class:`ExplainSummary`; a damaged file is a one-line :class:`~dbksvd.errors.DataFileError`."""
    return dump(read_json(path, ExplainSummary, "explanation summary", in_folder="summary.json"))
