"""A run folder as the explorer finds it (docs/explorer.md): the embedding store, the model
folders with their explanations (``atoms-*``), ``metrics.json`` and ``dbksvd compare``
reports, each checked as it is read, and a list of what is missing.

Everything here is cheap and happens once, when the folder is opened: the heavy parts (models,
atom records, encoders) are loaded later, on first use, by :class:`dbksvd.web.run.Run`.
Nothing is ever written into the folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataFileError, DbksvdError, NotFoundError

#: How many folder levels below the run folder are searched (never into a store's shards).
SCAN_DEPTH = 3
#: The columns of a compare report's results rows that the overview shows.
REPORT_KEYS = (
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

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``_.-`` as one ``-``
    (model ids: safe in URLs and file names)."""
    return _UNSAFE.sub("-", text)


@dataclass
class ModelEntry:
    """One model folder of the run, as found. ``id``: its path in the run (``rel``) with ``/``
    as ``.``; ``config``: its ``config.json`` (empty when damaged); ``space``: the store space
    it codes (None when it fits none); ``explanation``: its ``atoms-*`` folder and ``summary``
    that folder's ``summary.json``; ``heldout``: its ``metrics.json`` numbers; ``problem``: why
    it cannot be used (a damaged folder, a model that fails to load), else None."""

    id: str
    rel: str
    path: Path
    config: dict[str, Any]
    space: str | None
    explanation: Path | None = None
    summary: dict[str, Any] | None = None
    heldout: dict[str, Any] | None = None
    problem: str | None = None

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


def _read_config(folder: Path) -> tuple[dict[str, Any], str | None]:
    """A model folder's ``config.json`` and None, or ``({}, problem)`` when it is damaged."""
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
        return config, None
    except (ValueError, OSError) as exc:
        return {}, f"unreadable config.json ({' '.join(str(exc).split())[:80]})"


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


class RunFolder:
    """What the run folder ``path`` holds (read once, at construction): ``store`` (an
    :class:`~dbksvd.data.store.EmbeddingStore` or None) at ``store_rel`` with its item
    metadata ``meta``; ``models`` by id; ``reports`` (the overview's view of each compare
    report); ``heldout_rows`` and ``heldout_split`` from ``metrics.json``;
    ``text_encoder_spec``, the encoder of the run's text (None without one); ``missing`` and
    ``problems``, one line each."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise DataFileError(f"{path}: no such run folder")
        self.missing: list[str] = []
        self.problems: list[str] = []
        self.store = None
        self.store_rel: str | None = None
        self.meta: list[dict[str, Any]] = []
        self.models: dict[str, ModelEntry] = {}
        self.reports: list[dict[str, Any]] = []
        self.heldout_rows: set[int] = set()
        self.heldout_split: str | None = None
        self._heldout: dict[str, dict[str, Any]] = {}
        self._scan()
        self.text_encoder_spec = self._text_encoder_spec()

    def rel(self, path: Path) -> str:
        """``path`` relative to the run folder, with ``/``."""
        return path.relative_to(self.path).as_posix()

    def has_space(self, space: str) -> bool:
        return self.store is not None and space in self.store.manifest["spaces"]

    def encoder_spec(self, space: str) -> str | None:
        """The encoder a store space was embedded with."""
        return self.store.manifest["spaces"][space]["encoder"].get("name")

    def features(self) -> dict[str, bool]:
        """What the explorer of this run can show (the front end hides the rest)."""
        return {
            "thumbnails": self.has_space("image"),
            "upload": self.has_space("image"),
            "embedding_search": self.text_encoder_spec is not None,
            "decompose": self.store is not None and any(m.space for m in self.models.values()),
        }

    def file(self, rel: str) -> Path:
        """A file inside the run folder (NotFoundError for anything outside it, hidden or missing)."""
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

    def explanation_records(self, entry: ModelEntry) -> list[dict[str, Any]] | None:
        """The atom records of ``entry``'s explanation (docs/explain.md), or None when it has
        none or it is damaged (then the explanation is dropped and the problem listed)."""
        if entry.explanation is None:
            return None
        from ..analysis.explain import read_atoms

        where = self.rel(entry.explanation)
        try:
            records = read_atoms(entry.explanation)
            if len(records) == entry.n_atoms:
                return records
            self.problems.append(f"{where}: {len(records)} records for {entry.n_atoms} atoms; ignored")
        except (ValueError, OSError) as exc:
            self.problems.append(f"{where}/atoms.jsonl unreadable ({type(exc).__name__})")
        entry.explanation = None
        return None

    # -- discovery ------------------------------------------------------------------------

    def _folders(self) -> list[Path]:
        """Every folder up to SCAN_DEPTH levels down, parents first, hidden ones left out."""
        found, frontier = [], [self.path]
        for _ in range(SCAN_DEPTH):
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
        from ..data.store import is_store
        from ..models.folder import CONFIG_FILE, WEIGHTS_FILE

        folders = self._folders()
        self._open_store([f for f in folders if is_store(f)])
        self._read_heldout()
        explanations = [f for f in folders if (f / "atoms.jsonl").is_file()]
        for folder in folders:
            if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
                self._add_model(folder, explanations)
            elif (folder / "results.json").is_file() and (folder / "report.html").is_file():
                self._add_report(folder)
        self._list_missing()

    def _open_store(self, stores: list[Path]) -> None:
        """The first store (``store`` preferred); any other is listed as ignored."""
        from ..data.store import EmbeddingStore

        stores.sort(key=lambda f: (f.name != "store", str(f)))
        if stores:
            try:
                self.store = EmbeddingStore(stores[0])
                self.store_rel = self.rel(stores[0])
                self.meta = self.store.metadata()
            except DbksvdError as exc:
                self.problems.append(f"store {self.rel(stores[0])}: {exc}")
                self.store = None
            for extra in stores[1:]:
                self.problems.append(f"store {self.rel(extra)} ignored: the explorer reads one store per run")

    def _list_missing(self) -> None:
        if self.store is None:
            self.missing.append(
                "an embedding store (dbksvd embed ... --out RUN/store): no items, thumbnails, search or decompose"
            )
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

    def _read_heldout(self) -> None:
        """``metrics.json``, read through its schema (:class:`~dbksvd.analysis.compare.HeldOutMetrics`,
        as ``dbksvd demo`` writes it): a damaged file is one problem line and no held-out
        metrics; a metric that is not a finite number (NaN) is left out of the answers."""
        from ..analysis.compare.evaluation import read_heldout_metrics

        path = self.path / "metrics.json"
        if not path.is_file():
            return
        try:
            data = read_heldout_metrics(path)
        except DataFileError as exc:
            self.problems.append(f"{exc}; held-out metrics not shown")
            return
        self.heldout_split = data["split"]
        self.heldout_rows = {int(r) for r in data["test_rows"]}
        models = data["models"]
        self._heldout = {name: {k: v for k, v in m.items() if _is_number(v)} for name, m in models.items()}
        if any(len(self._heldout[name]) < len(m) for name, m in models.items()):
            self.problems.append("metrics.json: values that are not numbers left out")

    def _add_model(self, folder: Path, explanations: list[Path]) -> None:
        rel = self.rel(folder)
        entry_id = slug(rel.replace("/", "."))
        while entry_id in self.models:  # two folder names that give the same id
            entry_id += "_"
        config, problem = _read_config(folder)
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
        entry.explanation = self._explanation_of(folder, explanations)
        if entry.explanation is not None:
            try:
                entry.summary = json.loads((entry.explanation / "summary.json").read_text())
                if not isinstance(entry.summary, dict):
                    entry.summary = None
                    raise ValueError("not an object")
            except (ValueError, OSError):
                self.problems.append(
                    f"{self.rel(entry.explanation)}/summary.json unreadable: headline scores not shown"
                )
        self.models[entry_id] = entry

    @staticmethod
    def _explanation_of(folder: Path, explanations: list[Path]) -> Path | None:
        """The explanation of a model folder: ``atoms-NAME`` next to ``model-NAME``, else one
        whose ``summary.json`` names the folder as its ``model_path``."""
        twin = folder.parent / folder.name.replace("model-", "atoms-", 1)
        if folder.name.startswith("model-") and (twin / "atoms.jsonl").is_file():
            return twin
        for expl in explanations:
            try:
                named = json.loads((expl / "summary.json").read_text()).get("model_path")
            except (ValueError, OSError, AttributeError):
                continue
            if isinstance(named, str) and named and (expl / named).resolve() == folder.resolve():
                return expl
        return None

    def _space_of(self, config: dict[str, Any]) -> str | None:
        """The store space a model codes: the one its config names, else the only one of its
        dimension."""
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
        rel = self.rel(folder)
        try:
            data = json.loads((folder / "results.json").read_text())
        except (ValueError, OSError):
            self.problems.append(f"{rel}/results.json unreadable")
            return
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            self.problems.append(f"{rel}/results.json is not a dbksvd compare report")
            return
        plots = [f"{rel}/{name}" for name in ("pareto.png", "usage.png") if (folder / name).is_file()]
        rows = [{k: r.get(k) for k in REPORT_KEYS if k in r} for r in data.get("results", []) if isinstance(r, dict)]
        self.reports.append({"folder": rel, "rows": rows, "plots": plots, "html": f"{rel}/report.html"})

    def _text_encoder_spec(self) -> str | None:
        """The encoder of the store's text space, else the text encoder an explanation used."""
        if self.has_space("text"):
            return self.encoder_spec("text")
        for m in self.models.values():
            if m.summary and m.summary.get("text_encoder"):
                return m.summary["text_encoder"]
        return None
