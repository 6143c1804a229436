"""A description for every atom of a dictionary, scored for faithfulness, specificity and
diversity on held-out items, next to the same numbers for random directions.

``explain(model, store)`` codes every item of the store's space with the model, splits the
items once (``describe`` / ``select`` / ``test``, by ``seed``) and, per atom and side
(K-SVD codes are signed):

1. **evidence** (:mod:`.evidence`): usage, coefficient statistics, top items, nearest atoms;
2. **candidates** (:mod:`.describe`): phrases over-represented in the captions of the atom's
   top ``describe`` items; the vocabulary entries nearest the atom direction in the text space
   (directly when the model's space is the text space or shared with it, as CLIP's; else
   through a linear image->text bridge learned from the image-caption pairs, :mod:`.bridge`);
   the classes the atom pushes up through the encoder's classifier head;
3. **choice**: the candidate with the best faithfulness on the ``describe`` and ``select``
   items (every item but the test ones), preferring words no other atom holds within one
   standard error of the best; every candidate's scores on the ``test`` items are kept
   (docs/metrics.md: faithfulness = AUROC of
   ``sim(description, caption)`` for the items where the atom fires with the described sign;
   specificity = reciprocal rank of the atom among all atoms by the description's mean
   similarity to their top test items; diversity = distinct / described).

A store without captions gets descriptions from the classifier head and shared-space
vocabularies only, without scores, and the summary says so.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import metrics
from .._progress import progress
from ..coding import SparseCodes
from ..errors import MissingDependencyError, ParameterError
from ..io import atomic_path
from .compare import split_rows
from .describe import CaptionTerms, head_classes, nearest_entries, unit_rows
from .evidence import AtomEvidence, active_matrix, atom_evidence

DEFAULT_TEXT_ENCODER = "minilm"
SIGN = {"pos": 1, "neg": -1}
SIDE_MARK = {"pos": "+", "neg": "-"}


@dataclass
class ExplainConfig:
    """How atoms are described and scored.

    ``vocabularies``: names or files for :func:`dbksvd.data.load_vocabulary` (None: captions
    when the store has them, imagenet, wordnet); ``bridge``: ridge, cca or auto; ``top``: top
    items per side kept as evidence; ``min_items``: ``describe`` items an atom needs on a side
    to be described; ``candidates``: entries taken from each vocabulary and from the head;
    ``score_top``: top held-out items per atom for specificity; ``text_encoder``: for
    descriptions and captions (None: the encoder of the store's ``text`` space, else minilm);
    ``baseline``: also describe a random-direction dictionary of the same size and sparsity;
    ``coder``: which items an atom "fires" on: None for the model's own codes, or a pursuit of
    :data:`dbksvd.coding.ALGORITHMS` against its atoms (``"threshold"``: the k atoms with the
    largest |projection| of each item, every atom read as a detector, without explaining away);
    ``distinct``: an atom whose best description another, more faithful atom already holds
    takes its best free candidate within one standard error of its best (else keeps it).
    """

    vocabularies: tuple[str, ...] | None = None
    bridge: str = "auto"
    top: int = 20
    min_items: int = 3
    candidates: int = 3
    score_top: int = 10
    select_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    text_encoder: str | None = None
    baseline: bool = True
    coder: str | None = None
    distinct: bool = True

    def validate(self) -> None:
        from ..coding import ALGORITHMS
        from .bridge import BRIDGE_KINDS

        if self.coder is not None and self.coder not in ALGORITHMS:
            raise ParameterError(f"unknown coder {self.coder!r}; choose one of {', '.join(ALGORITHMS)} (or none)")
        if self.bridge not in BRIDGE_KINDS:
            raise ParameterError(f"unknown bridge {self.bridge!r}; choose one of {', '.join(BRIDGE_KINDS)}")
        for name in ("top", "min_items", "candidates", "score_top"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ParameterError(f"{name} must be a positive integer, got {v!r}")
        if not (
            0 < self.select_fraction < 1
            and 0 < self.test_fraction < 1
            and self.select_fraction + self.test_fraction < 1
        ):
            raise ParameterError("select_fraction and test_fraction must be in (0, 1) and leave items to describe")
        if self.vocabularies is not None and not self.vocabularies:
            raise ParameterError("give at least one vocabulary, or leave the default")


# -- the text side: encoder, caption embeddings, vocabularies, mapping into the text space --


class TextSide:
    """The text encoder and what is embedded with it: captions, phrases, vocabularies.

    ``spec``: the text encoder (loaded on first use). Embedded phrases are kept in memory
    (:meth:`known` adds ones embedded elsewhere, such as a store's captions); vocabularies are
    also cached on disk (by encoder and entries) under :func:`dbksvd.encoders.base.cache_dir`.
    """

    def __init__(self, spec: str, show_progress: bool = True):
        self.spec = spec
        self._encoder = None
        self._phrases: dict[str, np.ndarray] = {}
        self.show_progress = show_progress

    @property
    def encoder(self):
        if self._encoder is None:
            from ..encoders import get_encoder

            self._encoder = get_encoder(self.spec)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), e) float32 unit rows, from memory where already embedded."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._phrases))
        if todo:
            rows = unit_rows(self.encoder.encode_texts(todo, progress=self.show_progress and len(todo) > 2000))
            self._phrases.update(zip(todo, rows))
        if not texts:
            return np.zeros((0, self.encoder.dim("text")), dtype=np.float32)
        return np.stack([self._phrases[t] for t in texts])

    def known(self, texts: Sequence[str | None], rows: np.ndarray) -> None:
        """Remember ``rows`` (n, e) as the embeddings of ``texts`` (e.g. a store's captions and
        its text space), so that they are not embedded again."""
        unit = unit_rows(rows)
        for t, r in zip(texts, unit):
            if t is not None:
                self._phrases.setdefault(t, r)

    def vocabulary(self, vocab: Any) -> np.ndarray:
        """(len(vocab), e) float32 unit rows of a :class:`dbksvd.data.Vocabulary`, cached on disk."""
        from ..encoders.base import cache_dir

        if all(e in self._phrases for e in vocab.entries):  # e.g. the captions: already embedded
            return np.stack([self._phrases[e] for e in vocab.entries])

        key = json.dumps([self.encoder.spec(), vocab.fingerprint()], sort_keys=True)
        path = cache_dir() / f"vocab-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
        rows = None
        if path.exists():
            try:
                rows = np.load(path)
            except (OSError, ValueError):
                rows = None
            if rows is not None and rows.shape[0] != len(vocab):
                rows = None
        if rows is None:
            rows = self.encoder.encode_texts(list(vocab.entries), progress=self.show_progress)
            rows = unit_rows(rows).astype(np.float16)
            try:
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, rows)
            except OSError:
                pass  # an unwritable cache only costs time
        rows = np.asarray(rows, dtype=np.float32)
        self._phrases.update(zip(vocab.entries, rows))
        return rows


class SharedSpace:
    """Atoms already live in the text space (a text model, or CLIP's shared space): directions
    are compared with vocabulary embeddings centred on their own mean."""

    kind = "shared"

    def directions(self, U: np.ndarray) -> np.ndarray:
        return unit_rows(U)

    def texts(self, T: np.ndarray) -> np.ndarray:
        T = unit_rows(T)
        return unit_rows(T - T.mean(axis=0, keepdims=True))


# -- the result -------------------------------------------------------------------------------


@dataclass
class Explanation:
    """``atoms``: one record per atom (see docs/explain.md); ``summary``: aggregates, the
    random-direction baseline's aggregates, the bridge report and notes."""

    atoms: list[dict[str, Any]]
    summary: dict[str, Any]
    baseline_atoms: list[dict[str, Any]] | None = None


@dataclass
class ExplainContext:
    """Everything about the store that does not depend on the dictionary."""

    cfg: ExplainConfig
    rows: Any  # the store space (a row source)
    X: np.ndarray  # (n, d) its rows, in memory
    ids: list[str]
    captions: list[str | None]
    split: dict[str, np.ndarray]  # describe / select / test row ids
    text: TextSide | None
    caption_unit: np.ndarray | None  # (n, e) unit caption embeddings, or None (no scores)
    terms: CaptionTerms | None
    mapping: Any  # SharedSpace, a fitted LinearBridge, or None
    # (Vocabulary, its vectors in the comparison space, its vectors in the text space centred)
    vocabularies: list[tuple[Any, np.ndarray, np.ndarray]]
    head: Any  # ClassifierHead or None
    notes: list[str]
    info: dict[str, Any]


def _subset(codes: SparseCodes, rows: np.ndarray) -> SparseCodes:
    r = torch.as_tensor(rows, dtype=torch.long)
    return SparseCodes(codes.indices[r], codes.values[r], codes.n_atoms)


def _float(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def explain(
    model: Any, store: Any, space: str | None = None, config: ExplainConfig | None = None, *, show_progress: bool = True
) -> Explanation:
    """Describe and score every atom of ``model`` on the items of ``store`` (an
    :class:`~dbksvd.data.EmbeddingStore`; ``space``: default the one the model was fitted on,
    else the store's default)."""
    trained = getattr(model, "data_info_", None) or {}
    space = space or (trained.get("space") if trained.get("space") in store.spaces else store.default_space())
    ctx = explain_context(store, space, config, show_progress=show_progress, model=model)
    atoms, summary = explain_model(model, ctx, show_progress=show_progress)
    baseline_atoms = None
    if ctx.cfg.baseline:
        from ..baselines.classical import RandomDictionary

        random = RandomDictionary(
            int(model.components_.shape[0]),
            int(model.n_nonzero),
            preprocessing=getattr(model, "preprocessing", "normalize+center+scale"),
            random_state=ctx.cfg.seed,
        )
        random.fit(ctx.X[ctx.split["describe"]])
        baseline_atoms, summary["random"] = _explain_model(random, ctx, "random directions", show_progress)
    return Explanation(atoms, summary, baseline_atoms)


def explain_model(model: Any, ctx: ExplainContext, *, show_progress: bool = False) -> tuple[list[dict], dict]:
    """The atom records and the summary of one dictionary in a prepared context (no baseline)."""
    from ..models import check_rows

    check_rows(model, ctx.rows)
    atoms, agg = _explain_model(model, ctx, "model", show_progress)
    summary = {
        **ctx.info,
        "model": {
            "architecture": getattr(model, "architecture_name", type(model).__name__),
            "atoms": int(model.components_.shape[0]),
            "k": int(model.n_nonzero),
        },
        **agg,
        "notes": ctx.notes,
    }
    return atoms, summary


def explain_context(
    store: Any,
    space: str | None = None,
    config: ExplainConfig | None = None,
    *,
    split: dict[str, np.ndarray] | None = None,
    show_progress: bool = True,
    model: Any = None,
) -> ExplainContext:
    """Everything about ``store``'s space that does not depend on the dictionary: rows,
    captions and their embeddings, the item split, the bridge, vocabularies, the head.
    ``split``: ``{"describe", "select", "test"}`` row ids (default: drawn with the config's
    fractions and seed); ``model``: checked against the rows before any work."""
    from ..data.vocab import load_vocabulary
    from ..models import check_rows

    cfg = config or ExplainConfig()
    cfg.validate()
    space = space or store.default_space()
    rows = store.space(space)
    if model is not None:
        check_rows(model, rows)
    X = rows.to_numpy().astype(np.float32)
    n = X.shape[0]
    meta = store.metadata()
    ids = [str(m.get("id")) for m in meta]
    captions = [m.get("caption") or None for m in meta]
    n_captioned = sum(c is not None for c in captions)
    if split is None:
        s = split_rows(n, cfg.test_fraction, cfg.select_fraction, cfg.seed)
        split = {"describe": s["train"], "select": s["val"], "test": s["test"]}
    notes: list[str] = []
    spaces = store.manifest["spaces"]
    encoder_of = {name: spaces[name]["encoder"]["name"] for name in spaces}
    info: dict[str, Any] = {
        "store": str(store.path),
        "space": space,
        "coder": cfg.coder or "own",
        "items": n,
        "captioned_items": n_captioned,
        "encoder": encoder_of[space],
        "split": {k: int(len(v)) for k, v in split.items()},
    }

    text_space = "text" if "text" in spaces else None
    text_spec = cfg.text_encoder or (encoder_of[text_space] if text_space else DEFAULT_TEXT_ENCODER)
    if text_space and cfg.text_encoder and cfg.text_encoder != encoder_of[text_space]:
        text_space = None  # the user chose another text encoder: embed the captions again with it
    shared = encoder_of[space] == text_spec
    caption_rows = None
    if n_captioned:
        if text_space:
            caption_rows = store.space(text_space).to_numpy().astype(np.float32)
        elif shared:
            caption_rows = X
    text = TextSide(text_spec, show_progress)
    info["text_encoder"] = text_spec

    caption_unit, terms = None, None
    if n_captioned >= 2:
        if caption_rows is None:
            present = [i for i, c in enumerate(captions) if c is not None]
            rows_ = text.embed([captions[i] for i in present])  # each distinct caption once
            caption_rows = np.zeros((n, rows_.shape[1]), dtype=np.float32)
            caption_rows[present] = rows_
        caption_unit = unit_rows(caption_rows)
        text.known(captions, caption_unit)
        terms = CaptionTerms(captions)
        if n_captioned < n:
            notes.append(
                f"{n - n_captioned} of {n} items have no caption: they count as dissimilar to every "
                "description in the scores"
            )
    else:
        notes.append(
            "the store has no captions: descriptions come from vocabularies and the classifier head "
            "only, and faithfulness and specificity cannot be computed"
        )

    mapping = None
    if shared:
        mapping = SharedSpace()
        info["text_space"] = "shared with the model's space"
    elif caption_unit is not None and caption_rows is not None:
        from .bridge import bridge_recall, fit_bridge

        fit_rows = np.sort(np.concatenate([split["describe"], split["select"]]))
        has = np.array([captions[i] is not None for i in range(n)])
        fit_rows, test_rows = fit_rows[has[fit_rows]], split["test"][has[split["test"]]]
        bridge, report = fit_bridge(
            X[fit_rows], caption_rows[fit_rows], [captions[i] for i in fit_rows], kind=cfg.bridge, seed=cfg.seed
        )
        report["test"] = bridge_recall(bridge, X[test_rows], caption_rows[test_rows], [captions[i] for i in test_rows])
        mapping = bridge
        info["text_space"] = f"linear bridge ({bridge.kind}) from {space} to {text_spec}"
        info["bridge"] = report
    else:
        notes.append(
            f"the {space} space ({encoder_of[space]}) is not a text space and the store has no "
            "captions to learn a bridge from: no vocabulary descriptions"
        )

    vocabularies: list[tuple[Any, np.ndarray, np.ndarray]] = []
    if mapping is not None:
        names = cfg.vocabularies
        if names is None:
            names = (("captions",) if n_captioned else ()) + ("imagenet", "wordnet")
        for name in names:
            try:
                vocab = load_vocabulary(name, captions=captions)
            except MissingDependencyError as exc:
                if cfg.vocabularies is not None:
                    raise  # asked for by name: the user must know
                notes.append(f"vocabulary {name} skipped: {exc}")
                continue
            raw = text.vocabulary(vocab)
            vocabularies.append((vocab, mapping.texts(raw), SharedSpace().texts(raw)))
        info["vocabularies"] = {v.name: len(v) for v, _, _ in vocabularies}
    elif cfg.vocabularies is not None:
        notes.append("vocabularies were given but there is no way into the text space: they are not used")

    head = None
    if space == "image":
        try:
            from ..encoders import get_encoder

            head = get_encoder(encoder_of[space]).head()
        except Exception as exc:  # a missing package or weights: no head descriptions, say why
            notes.append(f"no classifier-head descriptions: {' '.join(str(exc).split())[:160]}")
    if head is not None:
        info["head"] = f"{encoder_of[space]} ({len(head.class_names)} classes)"
        text.embed(head.class_names)
    return ExplainContext(
        cfg, rows, X, ids, captions, split, text, caption_unit, terms, mapping, vocabularies, head, notes, info
    )


# -- one dictionary ---------------------------------------------------------------------------


def _candidates(
    ctx: ExplainContext, D: np.ndarray, units: list[tuple[int, str]], groups: list[np.ndarray]
) -> list[list[tuple[str, str]]]:
    """Per unit (atom, side): distinct ``(text, source)`` candidates in order of preference."""
    cands: list[list[tuple[str, str]]] = [[] for _ in units]
    if not units:
        return cands
    U = np.stack([SIGN[side] * D[atom] for atom, side in units])
    if ctx.terms is not None:
        for c, found in zip(cands, ctx.terms.candidates(groups)):
            c.extend(found)
    if ctx.mapping is not None:
        mapped = ctx.mapping.directions(U)
        for vocab, vectors, _ in ctx.vocabularies:
            idx, _ = nearest_entries(mapped, vectors, ctx.cfg.candidates)
            for c, row in zip(cands, idx):
                c.extend((vocab.entries[i], f"vocabulary:{vocab.name}") for i in row)
    if ctx.caption_unit is not None and ctx.vocabularies:
        # what the atom's top items' captions have in common beyond the average caption
        mean = ctx.caption_unit.mean(axis=0)
        centroids = np.stack([ctx.caption_unit[g].mean(axis=0) - mean for g in groups])
        for vocab, _, vectors in ctx.vocabularies:
            idx, _ = nearest_entries(centroids, vectors, ctx.cfg.candidates)
            for c, row in zip(cands, idx):
                c.extend((vocab.entries[i], f"items:{vocab.name}") for i in row)
                if len(row) > 1:  # what the nearest entries name together
                    c.append((", ".join(vocab.entries[i] for i in row), f"items:{vocab.name}:list"))
    if ctx.head is not None:
        idx, _ = head_classes(U, ctx.head.weight, ctx.cfg.candidates)
        for c, row in zip(cands, idx):
            c.extend((ctx.head.class_names[i], "head") for i in row)
    out = []
    for c in cands:
        seen: dict[str, tuple[str, str]] = {}
        for text, source in c:
            seen.setdefault(metrics.normalize_description(text), (text, source))
        out.append(list(seen.values()))
    return out


def _scores(
    ctx: ExplainContext,
    codes: SparseCodes,
    rows: np.ndarray,
    units: list[tuple[int, str]],
    primary: np.ndarray,
    E: np.ndarray,
    owner: np.ndarray,
    K: int,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faithfulness and specificity of every candidate (embeddings ``E`` (c, e), ``owner``
    (c,) its unit) on the items ``rows``, and per unit the number of those items it is
    active on."""
    C = ctx.caption_unit[rows]
    sub = _subset(codes, rows)
    atoms = np.array([a for a, _ in units])
    signs = np.array([SIGN[s] for _, s in units])
    active = active_matrix(sub, atoms, signs)  # (units, n_split)
    # each atom's top items on its primary side, for specificity
    ev = atom_evidence(sub, top=ctx.cfg.score_top, nearest=0)
    side_of = {a: s for (a, s), p in zip(units, primary) if p}
    tops = np.zeros((K, C.shape[1]), dtype=np.float32)
    has_top = np.zeros(K, dtype=bool)
    for a, s in side_of.items():
        t = ev.top[s][a]
        t = t[t >= 0]
        if len(t):
            tops[a] = C[t].mean(axis=0)
            has_top[a] = True
    cols = np.flatnonzero(has_top)
    col_of = np.full(K, -1)
    col_of[cols] = np.arange(len(cols))
    faith = np.full(len(E), np.nan)
    spec = np.full(len(E), np.nan)
    for s in range(0, len(E), chunk):
        e, o = E[s : s + chunk], owner[s : s + chunk]
        faith[s : s + chunk] = metrics.faithfulness(e @ C.T, active[o])
        own = np.where(primary[o], col_of[atoms[o]], -1)
        if len(cols):
            spec[s : s + chunk] = metrics.specificity(e @ tops[cols].T, own)
    return faith, spec, active.sum(axis=1)


def _explain_model(model: Any, ctx: ExplainContext, label: str, show_progress: bool) -> tuple[list[dict], dict]:
    cfg = ctx.cfg
    D = np.asarray(model.components_, dtype=np.float32)
    K = D.shape[0]
    bar = progress(4, f"explain {label}", enabled=show_progress, unit="step")
    try:
        codes = model.transform(ctx.X, coder=cfg.coder)
        bar.update(1)
        ev = atom_evidence(codes, D, top=cfg.top)
        desc_rows = ctx.split["describe"]
        ev_desc = atom_evidence(_subset(codes, desc_rows), D, rows=desc_rows, top=cfg.top, nearest=0)
        primary_side = ev_desc.primary_side()
        units, primary, groups = [], [], []
        for a in range(K):
            for side in ("pos", "neg"):
                if ev_desc.count[side][a] >= cfg.min_items:
                    t = ev_desc.top[side][a]
                    units.append((a, side))
                    primary.append(side == primary_side[a])
                    groups.append(t[t >= 0])
        primary = np.array(primary, dtype=bool)
        cands = _candidates(ctx, D, units, groups)
        bar.update(1)
        scored = ctx.caption_unit is not None
        chosen: list[int] = [0] * len(units)
        test_scores: list[tuple[np.ndarray, np.ndarray]] = [(np.full(len(c), np.nan),) * 2 for c in cands]
        if scored and units:
            texts = [t for c in cands for t, _ in c]
            owner = np.array([u for u, c in enumerate(cands) for _ in c], dtype=np.int64)
            E = ctx.text.embed(texts)
            # the choice uses every item that is not held out for the test scores: the more
            # items, the less a candidate wins by the chance of a few activations
            choice_rows = np.sort(np.concatenate([ctx.split["describe"], ctx.split["select"]]))
            f_sel, s_sel, n_active = _scores(ctx, codes, choice_rows, units, primary, E, owner, K)
            bar.update(1)
            f_test, s_test, _ = _scores(ctx, codes, ctx.split["test"], units, primary, E, owner, K)
            start, choice_f = 0, []
            for u, c in enumerate(cands):
                f, sp = f_sel[start : start + len(c)], s_sel[start : start + len(c)]
                key = [
                    (-1.0 if math.isnan(a) else a, -1.0 if math.isnan(b) else b, -i)
                    for i, (a, b) in enumerate(zip(f, sp))
                ]
                chosen[u] = max(range(len(c)), key=lambda i: key[i]) if c else 0
                choice_f.append(np.array([k[0] for k in key]))
                test_scores[u] = (f_test[start : start + len(c)], s_test[start : start + len(c)])
                start += len(c)
            if cfg.distinct:
                best = np.array([f[c] if len(f) else np.nan for f, c in zip(choice_f, chosen)])
                # (-1 marks an undefined AUROC: clipped to 0, its standard error is 0)
                margin = metrics.auroc_standard_error(np.clip(best, 0, 1), n_active, len(choice_rows) - n_active)
                _distinct(cands, chosen, choice_f, primary, np.nan_to_num(margin, nan=0.0))
        else:
            bar.update(1)
        bar.update(1)
    finally:
        bar.close()
    atoms = _records(ctx, ev, units, primary, cands, chosen, test_scores, scored)
    return atoms, _aggregate(atoms, K, scored)


def _distinct(
    cands: list[list[tuple[str, str]]],
    chosen: list[int],
    choice_f: list[np.ndarray],
    primary: np.ndarray,
    margin: np.ndarray,
) -> None:
    """Give two atoms the same words only when nothing as good is free (a one-standard-error
    rule): in order of their choice faithfulness, each described atom keeps its best
    candidate unless an atom before it holds that text, then takes its best free candidate
    whose choice faithfulness is within ``margin[u]`` (the standard error of its best) of its
    best, else keeps the shared one. ``chosen`` is updated in place; other sides are left alone."""
    taken: set[str] = set()
    order = sorted((u for u in range(len(cands)) if cands[u] and primary[u]), key=lambda u: -choice_f[u][chosen[u]])
    for u in order:
        if metrics.normalize_description(cands[u][chosen[u]][0]) in taken:
            best = choice_f[u][chosen[u]]
            free = [
                i
                for i in np.argsort(-choice_f[u], kind="stable")
                if choice_f[u][i] >= best - margin[u] and metrics.normalize_description(cands[u][i][0]) not in taken
            ]
            if free:
                chosen[u] = int(free[0])
        taken.add(metrics.normalize_description(cands[u][chosen[u]][0]))


def evidence_records(
    ev: AtomEvidence, ids: list[str], captions: list[str | None], note: str | None = None
) -> list[dict[str, Any]]:
    """One ``atoms.jsonl`` record per atom (docs/explain.md) from the evidence alone: usage,
    counts, top items (``ids``/``captions`` by store row), histogram and nearest atoms, with no
    description yet (``note`` says why)."""

    def items(rows: np.ndarray, coefs: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"row": int(r), "id": ids[r], "caption": captions[r], "coef": float(c)}
            for r, c in zip(rows, coefs)
            if r >= 0
        ]

    usage = ev.usage()
    return [
        {
            "atom": a,
            "side": None,
            "description": None,
            "source": None,
            "faithfulness": None,
            "specificity": None,
            "alternatives": [],
            "other_side": None,
            "note": note,
            "usage": float(usage[a]),
            "count_positive": int(ev.count["pos"][a]),
            "count_negative": int(ev.count["neg"][a]),
            "mean_positive": float(ev.mean_abs["pos"][a]),
            "mean_negative": float(ev.mean_abs["neg"][a]),
            "top_positive": items(ev.top["pos"][a], ev.top_coef["pos"][a]),
            "top_negative": items(ev.top["neg"][a], ev.top_coef["neg"][a]),
            "histogram": {"max": float(ev.hist_max[a]), "counts": ev.hist[a].tolist()},
            "nearest": [{"atom": int(j), "cosine": float(c)} for j, c in zip(ev.nearest[a], ev.nearest_cos[a])],
        }
        for a in range(ev.n_atoms)
    ]


def _records(ctx, ev: AtomEvidence, units, primary, cands, chosen, test_scores, scored) -> list[dict[str, Any]]:
    records = evidence_records(
        ev, ctx.ids, ctx.captions, note=f"fewer than {ctx.cfg.min_items} describing items on either side"
    )
    for u, ((a, side), is_primary) in enumerate(zip(units, primary)):
        c = cands[u]
        if not c:
            continue
        f, s = test_scores[u]
        alts = [
            {
                "description": t,
                "source": src,
                "faithfulness": _float(f[i]) if scored else None,
                "specificity": _float(s[i]) if scored and is_primary else None,
            }
            for i, (t, src) in enumerate(c)
        ]
        best = alts[chosen[u]]
        entry = {
            "side": SIDE_MARK[side],
            "description": best["description"],
            "source": best["source"],
            "faithfulness": best["faithfulness"],
        }
        rec = records[a]
        if is_primary:
            rec.update(entry, specificity=best["specificity"], alternatives=alts, note=None)
        else:
            rec["other_side"] = entry
    return records


def _aggregate(atoms: list[dict[str, Any]], K: int, scored: bool) -> dict[str, Any]:
    described = [r for r in atoms if r["description"] is not None]
    out: dict[str, Any] = {"atoms": K, "described": len(described)}
    if described:
        out["diversity"] = metrics.diversity([r["description"] for r in described])
        sources: dict[str, int] = {}
        for r in described:
            sources[r["source"]] = sources.get(r["source"], 0) + 1
        out["sources"] = dict(sorted(sources.items(), key=lambda kv: -kv[1]))
    if scored:
        for name in ("faithfulness", "specificity"):
            vals = np.array([r[name] for r in described if r[name] is not None], dtype=np.float64)
            out[name] = {
                "mean": float(vals.mean()) if len(vals) else None,
                "median": float(np.median(vals)) if len(vals) else None,
                "atoms": int(len(vals)),
            }
    return out


# -- output -----------------------------------------------------------------------------------


def summary_table(summary: dict[str, Any]) -> str:
    """The headline numbers of a summary (model and random directions) as markdown."""
    rows = [("model", summary)] + ([("random directions", summary["random"])] if "random" in summary else [])
    lines = [
        "| dictionary | described | faithfulness (mean AUROC) | specificity (mean 1/rank) | diversity |",
        "|---|---|---|---|---|",
    ]
    for name, s in rows:

        def get(key, s=s):
            v = (s.get(key) or {}).get("mean") if isinstance(s.get(key), dict) else s.get(key)
            return "n/a" if v is None else f"{v:.3f}"

        lines.append(
            f"| {name} | {s['described']} / {s['atoms']} | {get('faithfulness')} | {get('specificity')} | "
            f"{get('diversity')} |"
        )
    text = "\n".join(lines) + "\n"
    if "bridge" in summary:
        b = summary["bridge"]
        text += (
            f"\nbridge ({b['kind']}, {summary['space']} -> text): held-out image->caption recall@1 "
            f"{b['test']['recall@1']:.3f}, recall@5 {b['test']['recall@5']:.3f} over {b['test']['gallery']} captions\n"
        )
    for note in summary.get("notes", []):
        text += f"\nnote: {note}\n"
    return text


def write_explanation(expl: Explanation, out: str | Path) -> Path:
    """``out/``: atoms.jsonl (one record per atom), summary.json, summary.md and, with a
    baseline, random_atoms.jsonl; written to a temporary folder, then renamed."""
    out = Path(out)
    with atomic_path(out, directory=True) as tmp:
        _write_jsonl(tmp / "atoms.jsonl", expl.atoms)
        if expl.baseline_atoms is not None:
            _write_jsonl(tmp / "random_atoms.jsonl", expl.baseline_atoms)
        (tmp / "summary.json").write_text(json.dumps(expl.summary, indent=2) + "\n")
        (tmp / "summary.md").write_text(summary_table(expl.summary))
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_atoms(path: str | Path) -> list[dict[str, Any]]:
    """The records of an ``atoms.jsonl`` (or of ``ATOMS_DIR/atoms.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "atoms.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = [
    "ExplainConfig",
    "Explanation",
    "explain",
    "explain_context",
    "explain_model",
    "ExplainContext",
    "write_explanation",
    "read_atoms",
    "summary_table",
    "explanation_scores",
    "evidence_records",
]


def explanation_scores(model: Any, ctx: ExplainContext) -> dict[str, Any]:
    """The headline explanation numbers of one dictionary, as flat table columns:
    ``faithfulness`` and ``specificity`` (means over described atoms), ``diversity`` and
    ``described`` (share of atoms with a description)."""
    _, agg = _explain_model(model, ctx, "model", False)
    out: dict[str, Any] = {"described": agg["described"] / agg["atoms"], "diversity": agg.get("diversity")}
    for name in ("faithfulness", "specificity"):
        if name in agg:
            out[name] = agg[name]["mean"]
    return out
