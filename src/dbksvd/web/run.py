"""A run folder as the explorer reads it: what is in it, and every question the explorer asks.

A run folder (docs/explorer.md) holds an embedding store, model folders, their explanations
(``dbksvd explain``), an optional ``metrics.json`` of held-out numbers and optional
``dbksvd compare`` reports. :class:`Run` finds them, says what is missing, and answers the
queries of the web app (``app.py``) and of the static export (``export.py``) as plain JSON-able
dicts. It only reads: nothing is ever written into the run folder.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileError, DbksvdError, InputError, NotFoundError, ParameterError

#: Bounds on what a client may ask for.
MAX_PAGE = 200  # atoms or items per page
MAX_QUERY_CHARS = 200  # search text
MAX_UPLOAD_BYTES = 8 * 2**20  # an uploaded image file
MAX_IMAGE_PIXELS = 4096 * 4096  # an uploaded image once decoded (decompression bombs)
THUMB_PX = 96  # item thumbnails, longest side
SORT_KEYS = ("usage", "faithfulness", "specificity", "atom")
#: Above this many rows the explorer does not code or embed-search the whole store at once.
MAX_ROWS_IN_MEMORY = 200_000
CARD_THUMBS = 4
#: Image formats an upload may be in (never one whose decoder runs an external program).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Uploads decoded and encoded at once (each may hold a 16.7-megapixel image in memory).
_UPLOAD_SLOTS = threading.BoundedSemaphore(2)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``_.-`` as one ``-``
    (model ids: safe in URLs and file names)."""
    return _UNSAFE.sub("-", text)


@dataclass
class ModelEntry:
    """One model folder of the run. ``id``: its path in the run with ``/`` as ``.``;
    ``space``: the store space it codes (None when it fits none); ``problem``: why it cannot be
    used (a damaged folder), else None."""

    id: str
    rel: str
    path: Path
    config: dict[str, Any]
    space: str | None
    explanation: Path | None = None
    summary: dict[str, Any] | None = None
    heldout: dict[str, Any] | None = None
    problem: str | None = None
    _model: Any = field(default=None, repr=False)
    _atoms: list[dict[str, Any]] | None = field(default=None, repr=False)
    _columns: dict[str, Any] | None = field(default=None, repr=False)
    _desc_vectors: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_atoms(self) -> int:
        return int(self.config.get("n_atoms", 0))

    @property
    def k(self) -> int | None:
        return self.config.get("params", {}).get("n_nonzero")

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture"))

    @property
    def coder(self) -> str:
        default = "omp" if self.architecture == "dbksvd" else "own"
        return str(self.config.get("params", {}).get("coder", default))

    def card(self) -> dict[str, Any]:
        s = self.summary or {}
        out = {
            "id": self.id,
            "folder": self.rel,
            "architecture": self.architecture,
            "atoms": self.n_atoms,
            "k": self.k,
            "coder": self.coder,
            "space": self.space,
            "problem": self.problem,
            "explanation": None if self.explanation is None else self.explanation.name,
            "heldout": self.heldout,
            "described": s.get("described"),
            "diversity": s.get("diversity"),
            "faithfulness": (s.get("faithfulness") or {}).get("mean"),
            "specificity": (s.get("specificity") or {}).get("mean"),
        }
        rnd = s.get("random") or {}
        out["random"] = (
            None
            if not rnd
            else {
                "faithfulness": (rnd.get("faithfulness") or {}).get("mean"),
                "specificity": (rnd.get("specificity") or {}).get("mean"),
                "diversity": rnd.get("diversity"),
            }
        )
        return out


def _finite(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _finite_values(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_values(v) for v in value]
    if isinstance(value, np.generic):
        return _finite_values(value.item())
    return value


def dumps(value: Any) -> str:
    """Compact JSON of an answer; NaN and infinities (not JSON) become null."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_finite_values(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (ParameterError otherwise)."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {str(value)[:40]!r}") from None
    if number != value and not isinstance(value, str):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if number < low or (high is not None and number > high):
        raise ParameterError(
            f"{name} must be between {low} and {high}, got {number}"
            if high is not None
            else f"{name} must be >= {low}, got {number}"
        )
    return number


def check_query(q: Any) -> str:
    """Search text: a string of at most MAX_QUERY_CHARS characters, whitespace collapsed."""
    if not isinstance(q, str):
        raise ParameterError("the query must be text")
    if len(q) > MAX_QUERY_CHARS:
        raise ParameterError(f"the query is {len(q)} characters long; at most {MAX_QUERY_CHARS} are allowed")
    return " ".join(q.split())


class Run:
    """The explorer's view of the run folder ``path`` (thread-safe; loads lazily)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise DataFileError(f"{path}: no such run folder")
        self._lock = threading.RLock()  # lazy loading (everything after it reads without locks)
        self._thumb_lock = threading.Lock()  # the small caches (thumbnails, query embeddings)
        self._render_lock = threading.Lock()
        self.missing: list[str] = []
        self.problems: list[str] = []
        self.store = None
        self.store_rel: str | None = None
        self.meta: list[dict[str, Any]] = []
        self.models: dict[str, ModelEntry] = {}
        self.reports: list[dict[str, Any]] = []
        self.heldout_rows: set[int] = set()
        self._dataset: Any = None
        self._dataset_problem: str | None = None
        self._encoders: dict[str, Any] = {}
        self._thumbs: OrderedDict[int, bytes] = OrderedDict()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_rows: np.ndarray | None = None
        self._scan()

    def warm(self) -> None:
        """Load what the first requests would otherwise wait for: models, atom records, the
        text encoder and the description embeddings (a server calls this in the background)."""
        for entry in self.usable():
            try:
                self.columns(entry)
                if self._text_spec() is not None:
                    self._description_vectors(entry)
            except DbksvdError as exc:
                self.problems.append(f"{entry.rel}: {exc}")
        if self._text_spec() is not None:
            self._text_matrix()

    # -- discovery ------------------------------------------------------------------------

    def _folders(self, depth: int = 3) -> list[Path]:
        found, frontier = [], [self.path]
        for _ in range(depth):
            nxt = []
            for folder in frontier:
                try:
                    children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    continue
                for child in children:
                    found.append(child)
                    if not (child / "manifest.json").is_file():  # never walk into a store's shards
                        nxt.append(child)
            frontier = nxt
        return found

    def _scan(self) -> None:
        from ..data.store import EmbeddingStore, is_store
        from ..models.folder import CONFIG_FILE, WEIGHTS_FILE

        folders = self._folders()
        stores = [f for f in folders if is_store(f)]
        stores.sort(key=lambda f: (f.name != "store", str(f)))
        if stores:
            try:
                self.store = EmbeddingStore(stores[0])
                self.store_rel = self._rel(stores[0])
                self.meta = self.store.metadata()
            except DbksvdError as exc:
                self.problems.append(f"store {self._rel(stores[0])}: {exc}")
                self.store = None
            for extra in stores[1:]:
                self.problems.append(f"store {self._rel(extra)} ignored: the explorer reads one store per run")
        if self.store is None:
            self.missing.append(
                "an embedding store (dbksvd embed ... --out RUN/store): no items, thumbnails, search or decompose"
            )
        self._read_heldout()
        explanations = {f.resolve(): f for f in folders if (f / "atoms.jsonl").is_file()}
        for folder in folders:
            if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
                self._add_model(folder, explanations)
            elif (folder / "results.json").is_file() and (folder / "report.html").is_file():
                self._add_report(folder)
        if not self.models:
            self.missing.append("model folders (dbksvd fit ... --out RUN/model-NAME)")
        for entry in self.models.values():
            if entry.explanation is None and entry.problem is None:
                self.missing.append(
                    f"descriptions of {entry.rel} (dbksvd explain {self.path.name}/{entry.rel} "
                    f"{self.path.name}/{self.store_rel or 'store'} --out "
                    f"{self.path.name}/{entry.rel.replace('model-', 'atoms-')})"
                )
            if entry.heldout is None and entry.problem is None:
                self.missing.append(f"held-out metrics of {entry.rel} (metrics.json)")

    def _rel(self, folder: Path) -> str:
        return folder.relative_to(self.path).as_posix()

    def _read_heldout(self) -> None:
        path = self.path / "metrics.json"
        self._heldout: dict[str, Any] = {}
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text())
            self._heldout = {k: v for k, v in dict(data.get("models", {})).items() if isinstance(v, dict)}
            self.heldout_split = data.get("split")
            self.heldout_rows = {int(r) for r in data.get("test_rows", [])}
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            self.problems.append(f"metrics.json unreadable ({type(exc).__name__}); held-out metrics not shown")

    def _add_model(self, folder: Path, explanations: dict[Path, Path]) -> None:
        rel = self._rel(folder)
        entry_id = slug(rel.replace("/", "."))
        while entry_id in self.models:  # two folder names that give the same id
            entry_id += "_"
        try:
            config = json.loads((folder / "config.json").read_text())
            if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
                raise ValueError("no architecture")
            if not isinstance(config.get("params", {}), dict) or not isinstance(config.get("data") or {}, dict):
                raise ValueError("params and data must be objects")
            if (
                isinstance(config.get("n_atoms"), bool)
                or not isinstance(config.get("n_atoms"), int)
                or not isinstance(config.get("n_features"), int)
            ):
                raise ValueError("n_atoms and n_features must be integers")
            problem = None
        except (ValueError, OSError) as exc:
            config, problem = {}, f"unreadable config.json ({' '.join(str(exc).split())[:80]})"
        entry = ModelEntry(
            entry_id,
            rel,
            folder,
            config,
            self._space_of(config),
            problem=problem,
            heldout=self._heldout.get(rel) or self._heldout.get(folder.name),
        )
        if problem is None and entry.space is None and self.store is not None:
            entry.problem = f"fits no space of the store (dimension {config.get('n_features')})"
        # its explanation: atoms-NAME next to model-NAME, or one whose summary names this folder
        twin = folder.parent / folder.name.replace("model-", "atoms-", 1)
        match = twin if folder.name.startswith("model-") and (twin / "atoms.jsonl").is_file() else None
        if match is None:
            for _resolved, expl in explanations.items():
                try:
                    named = json.loads((expl / "summary.json").read_text()).get("model_path")
                    named = named if isinstance(named, str) else None
                except (ValueError, OSError, AttributeError):
                    continue
                if named and (expl / named).resolve() == folder.resolve():
                    match = expl
                    break
        if match is not None:
            entry.explanation = match
            try:
                entry.summary = json.loads((match / "summary.json").read_text())
                if not isinstance(entry.summary, dict):
                    entry.summary = None
                    raise ValueError("not an object")
            except (ValueError, OSError):
                self.problems.append(f"{self._rel(match)}/summary.json unreadable: headline scores not shown")
        self.models[entry_id] = entry

    def _space_of(self, config: dict[str, Any]) -> str | None:
        if self.store is None:
            return None
        data = config.get("data") or {}
        d = config.get("n_features")
        space = data.get("space")
        spaces = self.store.manifest["spaces"]
        if space in spaces and spaces[space]["dim"] == d:
            return space
        same = [name for name, info in spaces.items() if info["dim"] == d]
        return same[0] if len(same) == 1 else None

    def _add_report(self, folder: Path) -> None:
        try:
            data = json.loads((folder / "results.json").read_text())
        except (ValueError, OSError):
            self.problems.append(f"{self._rel(folder)}/results.json unreadable")
            return
        rel = self._rel(folder)
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            self.problems.append(f"{rel}/results.json is not a dbksvd compare report")
            return
        plots = [f"{rel}/{name}" for name in ("pareto.png", "usage.png") if (folder / name).is_file()]
        keys = (
            "method",
            "k",
            "coder",
            "l0",
            "explained_signal",
            "explained_variance",
            "cosine",
            "dead_atoms",
            "faithfulness",
            "specificity",
            "diversity",
            "seconds",
            "status",
        )
        rows = [{k: r.get(k) for k in keys if k in r} for r in data.get("results", []) if isinstance(r, dict)]
        self.reports.append({"folder": rel, "rows": rows, "plots": plots, "html": f"{rel}/report.html"})

    # -- lookups ----------------------------------------------------------------------------

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
        entry = self.models.get(model_id)
        if entry is None:
            raise NotFoundError(f"no model {str(model_id)[:60]!r} in this run")
        if not self._loads(entry):
            raise NotFoundError(f"model {model_id} cannot be used: {entry.problem}")
        return entry

    def model(self, entry: ModelEntry) -> Any:
        if entry._model is not None:
            return entry._model
        with self._lock:
            if entry._model is None:
                from ..models import load_model

                entry._model = load_model(entry.path)
            return entry._model

    def atoms(self, entry: ModelEntry) -> list[dict[str, Any]]:
        """Every atom record of the model (docs/explain.md): from its explanation, or, without
        one, the evidence of its codes over the store (no descriptions)."""
        if entry._atoms is not None:
            return entry._atoms
        with self._lock:
            if entry._atoms is None:
                entry._atoms = self._read_atoms(entry)
            return entry._atoms

    def _read_atoms(self, entry: ModelEntry) -> list[dict[str, Any]]:
        from ..analysis.explain import evidence_records, read_atoms

        if entry.explanation is not None:
            try:
                records = read_atoms(entry.explanation)
                if len(records) == entry.n_atoms:
                    return records
                self.problems.append(
                    f"{self._rel(entry.explanation)}: {len(records)} records for {entry.n_atoms} atoms; ignored"
                )
            except (ValueError, OSError) as exc:
                self.problems.append(f"{self._rel(entry.explanation)}/atoms.jsonl unreadable ({type(exc).__name__})")
            entry.explanation = None
        note = "no descriptions yet (run dbksvd explain)"
        if self.store is None or entry.space is None or self.store.count > MAX_ROWS_IN_MEMORY:
            from ..analysis.evidence import AtomEvidence, nearest_atoms

            K = entry.n_atoms
            near, near_cos = nearest_atoms(self.model(entry).components_)  # the dictionary alone gives these
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
        from ..analysis.evidence import atom_evidence

        model = self.model(entry)
        codes = model.transform(self.store.space(entry.space))
        ev = atom_evidence(codes, model.components_)
        return evidence_records(ev, [m["id"] for m in self.meta], [m.get("caption") for m in self.meta], note=note)

    def columns(self, entry: ModelEntry) -> dict[str, Any]:
        """Per-atom arrays for sorting and filtering the gallery."""
        if entry._columns is not None:
            return entry._columns
        with self._lock:
            if entry._columns is None:
                recs = self.atoms(entry)
                col = {
                    key: np.array([np.nan if r.get(key) is None else r[key] for r in recs], dtype=np.float64)
                    for key in ("usage", "faithfulness", "specificity")
                }
                col["atom"] = np.arange(len(recs), dtype=np.float64)
                col["text"] = [
                    " | ".join(
                        filter(
                            None,
                            [r.get("description"), (r.get("other_side") or {}).get("description")]
                            + [a["description"] for a in r.get("alternatives", [])],
                        )
                    ).lower()
                    for r in recs
                ]
                col["orders"] = {}
                entry._columns = col
            return entry._columns

    # -- the queries ------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        store = None
        if self.store is not None:
            ds = self.store.dataset
            store = {
                "folder": self.store_rel,
                "dataset": ds.get("name"),
                "count": self.store.count,
                "captioned": sum(1 for m in self.meta if m.get("caption")),
                "label_names": self.store.label_names,
                "spaces": {
                    name: {"encoder": info["encoder"].get("name"), "dim": info["dim"], "dtype": info["dtype"]}
                    for name, info in self.store.manifest["spaces"].items()
                },
            }
        return {
            "run": self.path.name,
            "store": store,
            "models": [m.card() for m in self.models.values()],
            "reports": self.reports,
            "missing": list(self.missing),
            "problems": list(self.problems),
            "heldout_split": getattr(self, "heldout_split", None),
            "features": self.features(),
        }

    def features(self) -> dict[str, bool]:
        image_space = self.store is not None and "image" in self.store.manifest["spaces"]
        return {
            "thumbnails": image_space,
            "upload": image_space,
            "embedding_search": self._text_spec() is not None,
            "decompose": self.store is not None and any(m.space for m in self.models.values()),
        }

    def gallery(
        self,
        model_id: str,
        *,
        sort: str = "usage",
        order: str = "desc",
        q: str = "",
        min_faithfulness: float | None = None,
        min_specificity: float | None = None,
        min_usage: float | None = None,
        described: bool | None = None,
        offset: int = 0,
        limit: int = 48,
    ) -> dict[str, Any]:
        """One page of atom cards, sorted and filtered. Missing scores sort last either way."""
        entry = self.entry(model_id)
        if sort not in SORT_KEYS:
            raise ParameterError(f"sort must be one of {', '.join(SORT_KEYS)}, got {str(sort)[:40]!r}")
        if order not in ("asc", "desc"):
            raise ParameterError(f"order must be asc or desc, got {str(order)[:40]!r}")
        offset = check_int(offset, "offset", 0)
        limit = check_int(limit, "limit", 1, MAX_PAGE)
        q = check_query(q).lower()
        col = self.columns(entry)
        key = (sort, order)
        if key not in col["orders"]:
            v = col[sort]
            primary = np.where(np.isnan(v), np.inf, -v if order == "desc" else v)
            col["orders"][key] = np.lexsort((col["atom"], primary))  # stable: ties by atom index
        idx = col["orders"][key]
        keep = np.ones(len(idx), dtype=bool)
        for name, low in (("faithfulness", min_faithfulness), ("specificity", min_specificity), ("usage", min_usage)):
            if low is not None:
                if not isinstance(low, (int, float)) or not math.isfinite(low):
                    raise ParameterError(f"min_{name} must be a number")
                keep &= col[name][idx] >= low
        if described is not None:
            has = np.array([col["text"][i] != "" for i in range(len(col["text"]))])
            keep &= has[idx] == bool(described)
        if q:
            words = q.split()
            keep &= np.array([all(w in col["text"][i] for w in words) for i in idx], dtype=bool)
        hits = idx[keep]
        page = hits[offset : offset + limit]
        recs = self.atoms(entry)
        return {
            "model": entry.id,
            "total": int(len(hits)),
            "atoms_in_model": len(recs),
            "offset": offset,
            "limit": limit,
            "sort": sort,
            "order": order,
            "q": q,
            "atoms": [self.atom_card(recs[int(i)]) for i in page],
        }

    @staticmethod
    def atom_card(r: dict[str, Any]) -> dict[str, Any]:
        side = "top_negative" if r.get("side") == "-" else "top_positive"
        if not r.get(side):
            side = "top_negative" if r.get("top_negative") else "top_positive"
        return {
            "atom": r["atom"],
            "description": r.get("description"),
            "side": r.get("side"),
            "source": r.get("source"),
            "faithfulness": r.get("faithfulness"),
            "specificity": r.get("specificity"),
            "usage": r.get("usage"),
            "note": r.get("note"),
            "other_side": (r.get("other_side") or {}).get("description"),
            "top": [
                {"row": t["row"], "caption": t.get("caption"), "coef": t["coef"]} for t in r.get(side, [])[:CARD_THUMBS]
            ],
        }

    def atom(self, model_id: str, atom: Any) -> dict[str, Any]:
        """Everything about one atom: its record, with the nearest atoms' descriptions."""
        entry = self.entry(model_id)
        j = check_int(atom, "atom", 0, max(entry.n_atoms - 1, 0))
        recs = self.atoms(entry)
        rec = dict(recs[j])
        rec["nearest"] = [{**n, "description": recs[n["atom"]].get("description")} for n in rec.get("nearest", [])]
        rec["model"] = entry.id
        rec["n_atoms"] = entry.n_atoms
        return rec

    def item(self, row: Any) -> dict[str, Any]:
        self._need_store()
        r = check_int(row, "row", 0, self.store.count - 1)
        m = self.meta[r]
        names = self.store.label_names
        label = m.get("label")
        return {
            "row": r,
            "id": m["id"],
            "caption": m.get("caption"),
            "source": m.get("source"),
            "label": label,
            "label_name": names[label] if names and label is not None else None,
            "held_out": r in self.heldout_rows if self.heldout_rows else None,
        }

    def items(self, q: str = "", offset: int = 0, limit: int = 48) -> dict[str, Any]:
        """Items whose caption or id contains every word of ``q`` (all items when empty)."""
        self._need_store()
        q = check_query(q).lower()
        offset = check_int(offset, "offset", 0)
        limit = check_int(limit, "limit", 1, MAX_PAGE)
        words = q.split()
        rows = (
            [
                i
                for i, m in enumerate(self.meta)
                if all(w in f"{(m.get('caption') or '').lower()} {m['id'].lower()}" for w in words)
            ]
            if words
            else range(len(self.meta))
        )
        return {
            "total": len(rows),
            "offset": offset,
            "limit": limit,
            "q": q,
            "items": [self.item(r) for r in list(rows[offset : offset + limit])],
        }

    def _need_store(self) -> None:
        if self.store is None:
            raise NotFoundError("this run has no embedding store, so no items")

    # -- search -----------------------------------------------------------------------------

    def _text_spec(self) -> str | None:
        if self.store is not None and "text" in self.store.manifest["spaces"]:
            return self.store.manifest["spaces"]["text"]["encoder"].get("name")
        for m in self.models.values():
            if m.summary and m.summary.get("text_encoder"):
                return m.summary["text_encoder"]
        return None

    def encoder(self, spec: str) -> Any:
        if spec in self._encoders:
            return self._encoders[spec]
        with self._lock:
            if spec not in self._encoders:
                from ..encoders import get_encoder

                self._encoders[spec] = get_encoder(spec)
            return self._encoders[spec]

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        vecs = self.encoder(self._text_spec()).encode_texts(texts).astype(np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def _embed_query(self, q: str) -> np.ndarray:
        """The unit text embedding of a query (the last 1,024 distinct queries are kept)."""
        with self._thumb_lock:
            if q in self._queries:
                self._queries.move_to_end(q)
                return self._queries[q]
        vec = self._embed_texts([q])[0]
        with self._thumb_lock:
            self._queries[q] = vec
            while len(self._queries) > 1024:
                self._queries.popitem(last=False)
        return vec

    def search(self, q: str, limit: int = 10) -> dict[str, Any]:
        """Atoms (every model) and items for free text: by words in descriptions and captions,
        and by text embedding (descriptions, text-space atom directions, captions) when the run
        has a text encoder."""
        q = check_query(q)
        limit = check_int(limit, "limit", 1, 50)
        if not q:
            raise ParameterError("the query is empty")
        words = q.lower().split()
        spec = self._text_spec()
        qv = None
        notes = []
        if spec is not None:
            try:
                qv = self._embed_query(q)
            except DbksvdError as exc:
                notes.append(f"search by embedding unavailable: {exc}")
        else:
            notes.append("search by embedding unavailable: the run has no text encoder")
        atoms = []
        for entry in self.usable():
            recs = self.atoms(entry)
            col = self.columns(entry)
            text_hits = [i for i, t in enumerate(col["text"]) if t and all(w in t for w in words)]
            text_hits.sort(
                key=lambda i: (
                    q.lower() not in (recs[i].get("description") or "").lower(),
                    -(recs[i].get("faithfulness") or 0),
                )
            )
            result = {
                "model": entry.id,
                "by_text": [self.atom_card(recs[i]) for i in text_hits[:limit]],
                "by_text_total": len(text_hits),
                "by_embedding": [],
                "by_direction": [],
            }
            if qv is not None:
                dv = self._description_vectors(entry)
                if dv is not None:
                    sims = dv @ qv
                    best = np.argsort(-np.nan_to_num(sims, nan=-2.0))[:limit]
                    result["by_embedding"] = [
                        {**self.atom_card(recs[i]), "similarity": float(sims[i])} for i in best if np.isfinite(sims[i])
                    ]
                if (
                    entry.space == "text"
                    and self.store is not None
                    and self.store.manifest["spaces"]["text"]["encoder"].get("name") == spec
                ):
                    import torch

                    model = self.model(entry)
                    D = np.asarray(model.components_, dtype=np.float64)
                    z = model._preprocessor().apply(torch.as_tensor(qv[None], dtype=torch.float64))[0].numpy()[0]
                    cos = D @ z / max(np.linalg.norm(z), 1e-12)
                    best = np.argsort(-np.abs(cos))[:limit]
                    result["by_direction"] = [{**self.atom_card(recs[i]), "similarity": float(cos[i])} for i in best]
            atoms.append(result)
        items = {"by_text": [], "by_embedding": []}
        if self.store is not None:
            found = self.items(q, 0, limit)
            items["by_text"], items["by_text_total"] = found["items"], found["total"]
            T = self._text_matrix() if qv is not None else None
            if T is not None:
                sims = T @ qv
                best = np.argsort(-sims)[:limit]
                items["by_embedding"] = [{**self.item(int(r)), "similarity": float(sims[r])} for r in best]
        return {"q": q, "atoms": atoms, "items": items, "notes": notes}

    def _description_vectors(self, entry: ModelEntry) -> np.ndarray | None:
        """(K, t) unit embeddings of the atoms' descriptions (NaN rows for undescribed atoms)."""
        if entry._desc_vectors is not None:
            return entry._desc_vectors
        with self._lock:
            if entry._desc_vectors is None:
                texts = [r.get("description") for r in self.atoms(entry)]
                distinct = sorted({t for t in texts if t})
                if not distinct:
                    return None
                vecs = dict(zip(distinct, self._embed_texts(distinct)))
                dim = len(next(iter(vecs.values())))
                entry._desc_vectors = np.stack(
                    [vecs[t] if t else np.full(dim, np.nan, dtype=np.float32) for t in texts]
                )
            return entry._desc_vectors

    def _text_matrix(self) -> np.ndarray | None:
        """The store's text rows as unit float32 vectors, when its text space uses the run's text
        encoder and fits in memory."""
        if self.store is None or "text" not in self.store.manifest["spaces"] or self.store.count > MAX_ROWS_IN_MEMORY:
            return None
        if self._text_rows is not None:
            return self._text_rows
        with self._lock:
            if self._text_rows is None:
                T = self.store.space("text").to_numpy().astype(np.float32)
                self._text_rows = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
            return self._text_rows

    # -- decompose --------------------------------------------------------------------------

    def decompose(self, row: Any) -> dict[str, Any]:
        """The sparse code of store item ``row`` under every model of the run, side by side."""
        item = self.item(row)
        out = []
        for entry in self.usable():
            if entry.space is None:
                continue
            x = self.store.space(entry.space).take(np.array([item["row"]]))[0]
            out.append(self._code(entry, x))
        return {"item": item, "models": out}

    def decompose_image(self, data: bytes) -> dict[str, Any]:
        """The sparse codes of an uploaded image (encoded with the store's image encoder) under
        every image-space model."""
        if self.store is None or "image" not in self.store.manifest["spaces"]:
            raise ParameterError("this run has no image space, so no upload")
        spec = self.store.manifest["spaces"]["image"]["encoder"].get("name")
        with _UPLOAD_SLOTS:
            image = open_upload(data)
            size = list(image.size)
            x = self.encoder(spec).encode_images([image])[0]
            del image
        out = [self._code(e, x) for e in self.usable() if e.space == "image"]
        return {"item": {"row": None, "caption": "uploaded image", "size": size}, "models": out}

    def _code(self, entry: ModelEntry, x: np.ndarray) -> dict[str, Any]:
        model = self.model(entry)
        x = np.asarray(x, dtype=np.float32)[None]
        codes = model.transform(x)  # one row: the torch coders, safe to run concurrently
        x_hat = model.inverse_transform(codes)[0]
        xn = float(np.linalg.norm(x[0]))
        rn = float(np.linalg.norm(x[0] - x_hat))
        hn = float(np.linalg.norm(x_hat))
        recs = self.atoms(entry)
        pairs = [(int(a), float(v)) for a, v in zip(codes.indices[0].tolist(), codes.values[0].tolist()) if v != 0]
        pairs.sort(key=lambda p: -abs(p[1]))
        atoms = []
        for a, v in pairs:
            r = recs[a]
            sign = "+" if v > 0 else "-"
            other = r.get("other_side") or {}
            if r.get("side") == sign or r.get("side") is None:
                desc, faith = r.get("description"), r.get("faithfulness")
            elif other.get("side") == sign:
                desc, faith = other.get("description"), other.get("faithfulness")
            else:
                desc, faith = None, None
            tops = r.get("top_positive" if v > 0 else "top_negative", [])[:3]
            atoms.append(
                {
                    "atom": a,
                    "coef": v,
                    "side": sign,
                    "description": desc,
                    "faithfulness": faith,
                    "top": [{"row": t["row"], "caption": t.get("caption")} for t in tops],
                }
            )
        return {
            "model": entry.id,
            "architecture": entry.architecture,
            "coder": entry.coder,
            "atoms": atoms,
            "l0": len(atoms),
            "explained_signal": 1.0 - rn / xn if xn > 0 else None,
            "cosine": float(x[0] @ x_hat) / (xn * hn) if xn > 0 and hn > 0 else None,
        }

    # -- files --------------------------------------------------------------------------------

    def thumbnail(self, row: Any) -> bytes:
        """A PNG of item ``row``, at most THUMB_PX on its longest side (rendered from the
        dataset the store was embedded from)."""
        self._need_store()
        r = check_int(row, "row", 0, self.store.count - 1)
        with self._thumb_lock:
            if r in self._thumbs:
                self._thumbs.move_to_end(r)
                return self._thumbs[r]
        dataset = self._open_dataset()
        from ..data.datasets import Item

        m = self.meta[r]
        try:
            with self._render_lock:
                image = dataset.load(
                    Item(id=m["id"], source=m["source"], caption=m.get("caption"), label=m.get("label"))
                )
        except Exception as exc:  # a moved or damaged source file: that one thumbnail is missing
            raise NotFoundError(f"no image for item {r}: {' '.join(str(exc).split())[:100]}") from None
        image.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        with self._thumb_lock:
            self._thumbs[r] = data
            while len(self._thumbs) > 8192:
                self._thumbs.popitem(last=False)
        return data

    def _open_dataset(self) -> Any:
        if self._dataset is not None:
            return self._dataset
        with self._lock:
            if self._dataset is None and self._dataset_problem is None:
                from ..data.datasets import dataset_from_spec

                try:
                    ds = dataset_from_spec(self.store.dataset)
                    if getattr(ds, "modality", "image") != "image":
                        raise ParameterError("a text dataset has no images")
                    self._dataset = ds
                except DbksvdError as exc:
                    self._dataset_problem = str(exc)
                    self.problems.append(f"no thumbnails: {exc}")
            if self._dataset is None:
                raise NotFoundError(f"no thumbnails: {self._dataset_problem}")
            return self._dataset

    def file(self, rel: str) -> Path:
        """A file inside the run folder (NotFoundError for anything outside it or missing)."""
        if not isinstance(rel, str) or not rel or "\x00" in rel or len(rel) > 1000:
            raise NotFoundError("no such file")
        try:
            target = (self.path / rel).resolve()
            inside = target.is_relative_to(self.path) and target.is_file()
        except (OSError, ValueError):  # a name too long, a loop of links
            inside = False
        if not inside or any(part.startswith(".") for part in target.relative_to(self.path).parts):
            raise NotFoundError("no such file in the run folder")
        return target


def open_upload(data: bytes) -> Any:
    """An uploaded image file as an RGB PIL image, refusing files over MAX_UPLOAD_BYTES, images
    over MAX_IMAGE_PIXELS (checked on the header, before decoding) and anything unreadable."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ParameterError(f"the upload is {len(data)} bytes; at most {MAX_UPLOAD_BYTES} are allowed")
    if not data:
        raise InputError("the upload is empty")
    from ..data.images import decode_image  # upright (EXIF), ImageError when unreadable or too large

    return decode_image(data, max_pixels=MAX_IMAGE_PIXELS, formats=UPLOAD_FORMATS, name="the upload")
