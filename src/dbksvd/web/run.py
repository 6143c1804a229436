"""A run folder (``run_folder.py``) with its heavy parts loaded on first use, and the
explorer's queries (``queries.py``) as methods: :class:`Run`, what the web app (``app.py``)
and the static export (``export.py``) ask.

Every part (a model, its atom records and gallery columns, its descriptions' embeddings, an
encoder, the store's text rows, the dataset behind the thumbnails) is a
:class:`~dbksvd._lazy.locked_cached_property`: loaded once, one part at a time, by the first
request that needs it or by :meth:`Run.warm` in the background, and read without a lock after
that. Thumbnails and query embeddings are kept in ``functools.lru_cache``\\ s. It only reads:
nothing is ever written into the run folder.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._lazy import locked_cached_property
from ..errors import DbksvdError, InputError, NotFoundError, ParameterError
from ..metrics import unit_rows
from . import queries
from .run_folder import ModelEntry, RunFolder

#: Above this many rows the explorer does not code or embed-search the whole store at once.
MAX_ROWS_IN_MEMORY = 200_000
THUMB_PX = 96  # item thumbnails, longest side
MAX_UPLOAD_BYTES = 8 * 2**20  # an uploaded image file
MAX_IMAGE_PIXELS = 4096 * 4096  # an uploaded image once decoded (decompression bombs)
#: Image formats an upload may be in (never one whose decoder runs an external program).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Uploads decoded and encoded at once (each may hold a 16.7-megapixel image in memory).
_UPLOAD_SLOTS = threading.BoundedSemaphore(2)


@dataclass
class AtomColumns:
    """One model's K atoms as columns, for sorting and filtering the gallery: ``usage``,
    ``faithfulness``, ``specificity`` and ``atom`` (the index) as (K,) float64 (NaN where a
    record has no value); ``text``, every description of the atom (both sides and the
    alternatives) lowercased and joined by `` | `` ('' for an undescribed atom)."""

    usage: np.ndarray
    faithfulness: np.ndarray
    specificity: np.ndarray
    atom: np.ndarray
    text: list[str]
    _orders: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> AtomColumns:
        def column(key: str) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else r[key] for r in records], dtype=np.float64)

        def text(r: dict[str, Any]) -> str:
            descriptions = [r.get("description"), (r.get("other_side") or {}).get("description")]
            descriptions += [a["description"] for a in r.get("alternatives", [])]
            return " | ".join(filter(None, descriptions)).lower()

        return cls(
            usage=column("usage"),
            faithfulness=column("faithfulness"),
            specificity=column("specificity"),
            atom=np.arange(len(records), dtype=np.float64),
            text=[text(r) for r in records],
        )

    def order(self, sort: str, order: str) -> np.ndarray:
        """(K,) atom indices sorted by column ``sort`` (``order`` asc or desc), missing values
        last, ties by atom index. Computed once per key (two threads at once compute the same)."""
        key = (sort, order)
        if key not in self._orders:
            v = getattr(self, sort)
            primary = np.where(np.isnan(v), np.inf, -v if order == "desc" else v)
            self._orders[key] = np.lexsort((self.atom, primary))
        return self._orders[key]


class LoadedModel:
    """One model of a run with the parts the explorer uses, each loaded on first use (under
    the run's ``load_lock``)."""

    def __init__(self, run: Run, entry: ModelEntry):
        self.run = run
        self.entry = entry
        self.load_lock = run.load_lock

    @locked_cached_property
    def estimator(self) -> Any:
        """The fitted model (any architecture: ``dbksvd.models.load_model``)."""
        from ..models import load_model

        return load_model(self.entry.path)

    @locked_cached_property
    def atoms(self) -> list[dict[str, Any]]:
        """Every atom record (docs/explain.md): from the explanation, or, without a usable one,
        the evidence of the model's codes of every store row (no descriptions)."""
        records = self.run.explanation_records(self.entry)
        return records if records is not None else self._evidence_records()

    def _evidence_records(self) -> list[dict[str, Any]]:
        from ..analysis.explain import AtomEvidence, atom_evidence, evidence_records, nearest_atoms

        run, entry, model = self.run, self.entry, self.estimator
        note = "no descriptions yet (run dbksvd explain)"
        if run.store is not None and entry.space is not None and run.store.count <= MAX_ROWS_IN_MEMORY:
            ev = atom_evidence(model.transform(run.store.space(entry.space)), model.components_)
            return evidence_records(ev, [m["id"] for m in run.meta], [m.get("caption") for m in run.meta], note=note)
        K = entry.n_atoms
        near, near_cos = nearest_atoms(model.components_)  # the dictionary alone gives these
        zeros = {s: np.zeros(K, dtype=np.int64) for s in ("pos", "neg")}
        empty = AtomEvidence(
            0,
            zeros,
            {s: np.zeros(K) for s in zeros},
            {s: np.full((K, 0), -1) for s in zeros},
            {s: np.zeros((K, 0)) for s in zeros},
            np.zeros((K, 21), dtype=np.int64),
            np.zeros(K),
            near,
            near_cos,
        )
        return evidence_records(empty, [], [], note=note + "; no store rows coded")

    @locked_cached_property
    def columns(self) -> AtomColumns:
        """The atoms as columns, for the gallery."""
        return AtomColumns.from_records(self.atoms)

    @locked_cached_property
    def description_vectors(self) -> np.ndarray | None:
        """(K, t) unit text embeddings of the atoms' descriptions (NaN rows for undescribed
        atoms); None when no atom is described."""
        texts = [r.get("description") for r in self.atoms]
        distinct = sorted({t for t in texts if t})
        if not distinct:
            return None
        vecs = dict(zip(distinct, self.run.embed_texts(distinct)))
        dim = len(next(iter(vecs.values())))
        return np.stack([vecs[t] if t else np.full(dim, np.nan, dtype=np.float32) for t in texts])


class Run(RunFolder):
    """The explorer's view of the run folder ``path`` (thread-safe; loads lazily)."""

    def __init__(self, path: str | Path):
        # one part loads at a time (a batch coding of the store is not run by two threads at
        # once); reentrant: a part's loading reads other parts
        self.load_lock = threading.RLock()
        super().__init__(path)
        self.loaded = {model_id: LoadedModel(self, entry) for model_id, entry in self.models.items()}
        self.dataset_problem: str | None = None
        self._render_lock = threading.Lock()  # a dataset renders one image at a time
        # per instance, so that a run's caches go with it
        self._thumbnail_png = functools.lru_cache(maxsize=8192)(self._render_thumbnail)
        self.query_vector = functools.lru_cache(maxsize=1024)(self._embed_query)

    def warm(self) -> None:
        """Load what the first requests would otherwise wait for: models, atom records, the
        text encoder and the description embeddings (a server calls this in the background)."""
        for entry in self.usable():
            try:
                self.columns(entry)
                if self.text_encoder_spec is not None:
                    self.description_vectors(entry)
            except DbksvdError as exc:
                self.problems.append(f"{entry.rel}: {exc}")
        if self.text_encoder_spec is not None:
            _ = self.text_matrix

    # -- the models ---------------------------------------------------------------------------

    def _loads(self, entry: ModelEntry) -> bool:
        """Whether ``entry`` loads (model and atom records); one that fails is marked with its
        problem."""
        if entry.problem is None:
            try:
                self.model(entry)
                self.atoms(entry)
            except DbksvdError as exc:
                entry.problem = str(exc)
                self.problems.append(f"{entry.rel}: {exc}")
        return entry.problem is None

    def usable(self) -> list[ModelEntry]:
        """The models that load (one that fails is marked with its problem and left out)."""
        return [entry for entry in self.models.values() if self._loads(entry)]

    def entry(self, model_id: str) -> ModelEntry:
        """The usable model ``model_id`` (NotFoundError for one that does not exist or load)."""
        entry = self.models.get(model_id)
        if entry is None:
            raise NotFoundError(f"no model {str(model_id)[:60]!r} in this run")
        if not self._loads(entry):
            raise NotFoundError(f"model {model_id} cannot be used: {entry.problem}")
        return entry

    def model(self, entry: ModelEntry) -> Any:
        return self.loaded[entry.id].estimator

    def atoms(self, entry: ModelEntry) -> list[dict[str, Any]]:
        return self.loaded[entry.id].atoms

    def columns(self, entry: ModelEntry) -> AtomColumns:
        return self.loaded[entry.id].columns

    def description_vectors(self, entry: ModelEntry) -> np.ndarray | None:
        return self.loaded[entry.id].description_vectors

    # -- text and image encoders, embeddings -------------------------------------------------

    @locked_cached_property
    def text_encoder(self) -> Any:
        from ..encoders import get_encoder

        return get_encoder(self.text_encoder_spec)

    @locked_cached_property
    def image_encoder(self) -> Any:
        """The encoder of the store's image space (the text encoder when it is the same one)."""
        spec = self.encoder_spec("image")
        if spec == self.text_encoder_spec:
            return self.text_encoder
        from ..encoders import get_encoder

        return get_encoder(spec)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(len(texts), t) unit float32 text embeddings."""
        return unit_rows(self.text_encoder.encode_texts(texts), np.float32)

    def _embed_query(self, q: str) -> np.ndarray:
        """The (t,) unit text embedding of a query (``query_vector`` keeps the last 1,024)."""
        return self.embed_texts([q])[0]

    @locked_cached_property
    def text_matrix(self) -> np.ndarray | None:
        """(n, t) the store's text rows as unit float32 vectors, when it has a text space that
        fits in memory."""
        if not self.has_space("text") or self.store.count > MAX_ROWS_IN_MEMORY:
            return None
        return unit_rows(self.store.space("text").to_numpy(), np.float32)

    # -- thumbnails ---------------------------------------------------------------------------

    @locked_cached_property
    def dataset(self) -> Any:
        """The image dataset the store was embedded from, or None when it cannot be opened
        (``dataset_problem`` and the run's problems say why)."""
        from ..data.datasets import dataset_from_spec

        try:
            ds = dataset_from_spec(self.store.dataset)
            if getattr(ds, "modality", "image") != "image":
                raise ParameterError("a text dataset has no images")
            return ds
        except DbksvdError as exc:
            self.dataset_problem = str(exc)
            self.problems.append(f"no thumbnails: {exc}")
            return None

    def thumbnail(self, row: Any) -> bytes:
        """A PNG of item ``row``, at most THUMB_PX on its longest side (rendered from the
        dataset the store was embedded from; the last 8,192 are kept)."""
        return self._thumbnail_png(queries.store_row(self, row))

    def _render_thumbnail(self, r: int) -> bytes:
        from ..data.datasets import Item

        if self.dataset is None:
            raise NotFoundError(f"no thumbnails: {self.dataset_problem}")
        m = self.meta[r]
        try:
            with self._render_lock:
                image = self.dataset.load(
                    Item(id=m["id"], source=m["source"], caption=m.get("caption"), label=m.get("label"))
                )
        except Exception as exc:  # a moved or damaged source file: that one thumbnail is missing
            raise NotFoundError(f"no image for item {r}: {' '.join(str(exc).split())[:100]}") from None
        image.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    # -- the queries (queries.py) -----------------------------------------------------------

    atom_card = staticmethod(queries.atom_card)

    def overview(self) -> dict[str, Any]:
        return queries.overview(self)

    def gallery(self, model_id: str, **options: Any) -> dict[str, Any]:
        return queries.gallery(self, model_id, **options)

    def atom(self, model_id: str, atom: Any) -> dict[str, Any]:
        return queries.atom(self, model_id, atom)

    def item(self, row: Any) -> dict[str, Any]:
        return queries.item(self, row)

    def items(self, q: str = "", offset: int = 0, limit: int = 48) -> dict[str, Any]:
        return queries.items(self, q, offset, limit)

    def search(self, q: str, limit: int = 10) -> dict[str, Any]:
        return queries.search(self, q, limit)

    def decompose(self, row: Any) -> dict[str, Any]:
        return queries.decompose(self, row)

    def decompose_image(self, data: bytes) -> dict[str, Any]:
        """The sparse codes of an uploaded image file (encoded with the store's image encoder)
        under every image-space model."""
        if not self.has_space("image"):
            raise ParameterError("this run has no image space, so no upload")
        with _UPLOAD_SLOTS:
            image = open_upload(data)
            size = list(image.size)
            x = self.image_encoder.encode_images([image])[0]
            del image
        models = [queries.code_of(self, e, x) for e in self.usable() if e.space == "image"]
        return {"item": {"row": None, "caption": "uploaded image", "size": size}, "models": models}


def open_upload(data: bytes) -> Any:
    """An uploaded image file as an RGB PIL image, refusing files over MAX_UPLOAD_BYTES, images
    over MAX_IMAGE_PIXELS (checked on the header, before decoding) and anything unreadable."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ParameterError(f"the upload is {len(data)} bytes; at most {MAX_UPLOAD_BYTES} are allowed")
    if not data:
        raise InputError("the upload is empty")
    from ..data.images import decode_image  # upright (EXIF), ImageError when unreadable or too large

    return decode_image(data, max_pixels=MAX_IMAGE_PIXELS, formats=UPLOAD_FORMATS, name="the upload")
