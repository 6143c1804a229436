"""The schema of every JSON answer of the explorer's API (pydantic models).

The routes of ``app.py`` declare them, so ``/api/openapi.json`` documents every response type
(errors included), but they answer the dicts of ``queries.py`` rendered by ``queries.dumps``:
FastAPI's per-field encoding of a returned model costs more than the query itself for atom
records. The tests validate every answer against its model. Needs pydantic (installed with
FastAPI: ``pip install 'dbksvd[serve]'``); nothing else in the package imports this module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..analysis.explain.schema import AtomRecord, NearAtom
from .queries import SORT_KEYS

Side = Literal["+", "-"]


class Schema(BaseModel):
    """An answer object: exactly the keys declared (an answer that grows a key must say so here)."""

    model_config = ConfigDict(extra="forbid")


class ErrorAnswer(Schema):
    """Every error (400, 404, 413, 422, 500)."""

    error: str = Field(description="what was wrong, one line")


# -- /api/overview ---------------------------------------------------------------------------


class SpaceInfo(Schema):
    encoder: str | None = Field(description="the encoder spec the space was embedded with")
    dim: int
    dtype: str


class StoreInfo(Schema):
    folder: str = Field(description="the store folder, relative to the run folder")
    dataset: str | None
    count: int = Field(description="items (store rows)")
    captioned: int = Field(description="items with a caption")
    label_names: list[str] | None
    spaces: dict[str, SpaceInfo]


class RandomScores(Schema):
    """The explanation scores of the random-direction baseline of the same size and sparsity."""

    faithfulness: float | None
    specificity: float | None
    diversity: float | None


class ModelCard(Schema):
    id: str = Field(description="the model folder's path in the run with / as .; the {model} of the routes")
    folder: str
    architecture: str = Field(description="dbksvd, an SAE kind (topk, relu, ...) or a baseline")
    atoms: int = Field(description="K, the dictionary size")
    k: int | None = Field(description="non-zeros per code")
    coder: str
    space: str | None = Field(description="the store space the model codes")
    problem: str | None = Field(description="why the model cannot be used, else null")
    explanation: str | None = Field(description="its atoms-* folder")
    heldout: dict[str, float | None] | None = Field(description="its held-out metrics (metrics.json)")
    described: int | None = Field(description="atoms with a description")
    diversity: float | None = Field(description="distinct descriptions / described atoms")
    faithfulness: float | None = Field(description="mean test AUROC of the descriptions")
    specificity: float | None = Field(description="mean test 1 / rank of the descriptions")
    random: RandomScores | None


class ReportRow(Schema):
    """A results row of a compare report (only the keys the report has)."""

    method: str | None = None
    k: int | None = None
    coder: str | None = None
    l0: float | None = None
    explained_signal: float | None = None
    explained_variance: float | None = None
    cosine: float | None = None
    dead_atoms: int | None = None
    faithfulness: float | None = None
    specificity: float | None = None
    diversity: float | None = None
    seconds: float | None = None
    status: str | None = None


class Report(Schema):
    folder: str
    rows: list[ReportRow]
    plots: list[str] = Field(description="run-relative paths, served under /files/")
    html: str = Field(description="the report page, run-relative, served under /files/")


class Features(Schema):
    thumbnails: bool
    upload: bool
    embedding_search: bool
    decompose: bool


class Overview(Schema):
    run: str = Field(description="the run folder's name")
    store: StoreInfo | None
    models: list[ModelCard]
    reports: list[Report]
    missing: list[str] = Field(description="what the run lacks, with the command that makes it")
    problems: list[str] = Field(description="damaged files and models that failed to load")
    heldout_split: str | None
    features: Features


# -- atoms -----------------------------------------------------------------------------------


class CardItem(Schema):
    row: int
    caption: str | None
    coef: float


class AtomCard(Schema):
    atom: int
    description: str | None
    side: Side | None = Field(description="the sign the description is about")
    source: str | None
    faithfulness: float | None
    specificity: float | None
    usage: float | None = Field(description="share of all items with a non-zero coefficient on the atom")
    note: str | None = Field(description="why the atom has no description")
    other_side: str | None = Field(description="the description of the other sign")
    top: list[CardItem] = Field(description="the first top items of the described side")


class SimilarAtomCard(AtomCard):
    similarity: float = Field(description="cosine to the query's text embedding")


class GalleryPage(Schema):
    model: str
    total: int = Field(description="atoms that pass the filters")
    atoms_in_model: int
    offset: int
    limit: int
    sort: Literal[SORT_KEYS]  # type: ignore[valid-type]
    order: Literal["asc", "desc"]
    q: str
    atoms: list[AtomCard]


class NearestAtom(NearAtom):
    """A nearest atom (:class:`~dbksvd.analysis.explain.schema.NearAtom`) with its description."""

    description: str | None


class AtomAnswer(AtomRecord):
    """An atom's record (docs/explain.md, atoms.jsonl: :class:`~dbksvd.analysis.explain.schema.AtomRecord`,
    whose fields it reuses) with its nearest atoms' descriptions, the model and its size."""

    nearest: list[NearestAtom]
    """The atoms nearest this one, by |cosine|, with their descriptions."""
    model: str
    """The model's id."""
    n_atoms: int
    """K, the model's dictionary size."""


# -- items -----------------------------------------------------------------------------------


class Item(Schema):
    row: int
    id: str
    caption: str | None
    source: str | None
    label: int | str | None
    label_name: str | None
    held_out: bool | None = Field(description="whether metrics.json holds the item out (null without one)")


class SimilarItem(Item):
    similarity: float = Field(description="cosine of the caption's and the query's text embeddings")


class ItemsPage(Schema):
    total: int
    offset: int
    limit: int
    q: str
    items: list[Item]


# -- /api/search -----------------------------------------------------------------------------


class ModelSearch(Schema):
    model: str
    by_text: list[AtomCard] = Field(description="atoms whose descriptions hold every word")
    by_text_total: int
    by_embedding: list[SimilarAtomCard] = Field(description="atoms whose descriptions' embeddings are nearest")
    by_direction: list[SimilarAtomCard] = Field(description="text-space atoms nearest to the query's embedding")


class ItemSearch(Schema):
    by_text: list[Item]
    by_embedding: list[SimilarItem]
    by_text_total: int | None = Field(None, description="absent without a store")


class SearchAnswer(Schema):
    q: str
    atoms: list[ModelSearch]
    items: ItemSearch
    notes: list[str]


# -- /api/decompose --------------------------------------------------------------------------


class CodeTop(Schema):
    row: int
    caption: str | None


class CodedAtom(Schema):
    atom: int
    coef: float
    side: Side = Field(description="the coefficient's sign")
    description: str | None = Field(description="the description of that sign")
    faithfulness: float | None
    top: list[CodeTop]


class ModelCode(Schema):
    model: str
    architecture: str
    coder: str
    atoms: list[CodedAtom] = Field(description="by |coefficient|, largest first")
    l0: int
    explained_signal: float | None = Field(description="1 - |x - x_hat| / |x| for this item")
    cosine: float | None = Field(description="cosine of x and its reconstruction")


class UploadedItem(Schema):
    row: None
    caption: str
    size: list[int] = Field(description="width, height in pixels")


class Decomposition(Schema):
    item: Item | UploadedItem
    models: list[ModelCode]
