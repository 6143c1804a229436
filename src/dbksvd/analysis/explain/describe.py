"""Candidate descriptions of atoms, from captions, vocabularies and a classifier head.

* :class:`CaptionTerms`: words and two-word phrases over-represented in the captions of an
  atom's top items relative to the other items, by the weighted log-odds ratio with an
  informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"), turned into
  short phrases.
* :func:`nearest_entries`: the vocabulary entries whose (text-space) embeddings are closest to
  an atom direction mapped into the text space.
* :func:`head_classes`: the classes an atom direction pushes up most through a linear
  classifier head (logit change ``W u``).
* :func:`unit_candidates`: all of them for every atom and side of a dictionary, in a
  prepared :class:`~dbksvd.analysis.explain.context.ExplainContext`.

Every function takes whole batches of atoms ("units": an atom and the side it is described
on) and returns, per unit, ``(text, source)`` pairs in order of preference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from ... import metrics
from ...metrics import unit_rows
from .evidence import SIGN

if TYPE_CHECKING:
    from .context import ExplainContext

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "with",
        "without",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "as",
        "is",
        "are",
        "be",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "into",
        "onto",
        "over",
        "under",
        "up",
        "down",
        "out",
        "off",
        "per",
        "via",
        "not",
        "no",
        "s",
    ]
)
_TOKEN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")

#: total weight of the informative Dirichlet prior (the corpus term shares, scaled)
PRIOR_WEIGHT = 500.0


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits; inner hyphens and apostrophes kept)."""
    return _TOKEN.findall(text.casefold())


def caption_terms(text: str) -> list[str]:
    """The terms of one caption: content words (no stop words, 2+ characters) and pairs of
    adjacent content words ("smiling eyes")."""
    tokens = tokenize(text)
    words = [t for t in tokens if t not in STOP_WORDS and len(t) > 1]
    pairs = [
        f"{a} {b}"
        for a, b in zip(tokens, tokens[1:])
        if a not in STOP_WORDS and b not in STOP_WORDS and len(a) > 1 and len(b) > 1
    ]
    return list(dict.fromkeys(words + pairs))


def token_terms(token: str) -> list[str]:
    """The term of one token: the token itself, lower case (stop words included: an atom may
    well be about "of")."""
    term = " ".join(tokenize(token))
    return [term] if term else []


class CaptionTerms:
    """The term counts of a caption corpus, for log-odds against any group of its items.

    ``captions`` (n,): one caption per item (None: no caption); ``terms``: a caption's terms
    (default :func:`caption_terms`; :func:`token_terms` for the tokens of a token store);
    ``source``: the prefix of the candidates' sources (``captions:term``, ``tokens:term``).
    Each term counts once per caption (presence), so long captions do not dominate.
    """

    def __init__(self, captions: Sequence[str | None], *, source: str = "captions", terms: Any = caption_terms):
        self.captions = list(captions)
        self.source = source
        self.term_fn = terms
        vocab: dict[str, int] = {}
        indptr, indices = [0], []
        for text in self.captions:
            terms = self.term_fn(text) if text else []
            indices.extend(vocab.setdefault(t, len(vocab)) for t in terms)
            indptr.append(len(indices))
        self.terms = np.array(list(vocab), dtype=object)
        self.doc_terms = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(self.captions), len(vocab)))
        self.corpus_counts = np.asarray(self.doc_terms.sum(axis=0)).ravel()
        self.total = float(self.corpus_counts.sum())

    def zscores(self, groups: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group of item indices: (term ids, z-scores) of the terms present in the group,
        by decreasing z; z is the weighted log-odds ratio of the group against the other
        items divided by its standard deviation."""
        rows = np.concatenate([np.full(len(g), u) for u, g in enumerate(groups)]) if groups else np.zeros(0, int)
        cols = np.concatenate(groups) if groups else np.zeros(0, int)
        G = sp.csr_matrix((np.ones(len(cols)), (rows, cols.astype(np.int64))), shape=(len(groups), len(self.captions)))
        Y = (G @ self.doc_terms).tocsr()
        prior = PRIOR_WEIGHT * self.corpus_counts / max(self.total, 1.0)
        out = []
        for u in range(len(groups)):
            ids = Y.indices[Y.indptr[u] : Y.indptr[u + 1]]
            yi = Y.data[Y.indptr[u] : Y.indptr[u + 1]]
            yj = self.corpus_counts[ids] - yi
            ni = yi.sum() if len(yi) else 0.0
            nj = self.total - ni
            a = prior[ids]
            delta = np.log((yi + a) / (ni + PRIOR_WEIGHT - yi - a)) - np.log(
                (yj + a) / np.maximum(nj + PRIOR_WEIGHT - yj - a, 1e-9)
            )
            z = delta / np.sqrt(1.0 / (yi + a) + 1.0 / (yj + a))
            z = np.where(yi >= min(2, len(groups[u])), z, -np.inf)  # a term from one caption is not a pattern
            order = np.argsort(-z, kind="stable")
            keep = order[np.isfinite(z[order]) & (z[order] > 0)]
            out.append((ids[keep], z[keep]))
        return out

    def candidates(self, groups: Sequence[np.ndarray], max_terms: int = 3) -> list[list[tuple[str, str]]]:
        """Per group (item indices, best first): up to three phrases, each ``(text, source)``:
        the best term (``<source>:term``), the best ``max_terms`` terms that share no word
        (``<source>:terms``), and the group's caption richest in over-represented terms
        (``<source>:example``, captions only)."""
        out = []
        for group, (ids, z) in zip(groups, self.zscores(groups)):
            found: list[tuple[str, str]] = []
            if len(ids):
                terms = [str(t) for t in self.terms[ids]]
                found.append((terms[0], f"{self.source}:term"))
                chosen, words = [terms[0]], set(terms[0].split())
                for t in terms[1:]:
                    if len(chosen) == max_terms:
                        break
                    if not words & set(t.split()):
                        chosen.append(t)
                        words |= set(t.split())
                if len(chosen) > 1:
                    found.append((", ".join(chosen), f"{self.source}:terms"))
                if self.term_fn is caption_terms:  # a token is its own example
                    example = self._example(group, dict(zip(terms, z)))
                    if example is not None and example.casefold() not in {f.casefold() for f, _ in found}:
                        found.append((example, f"{self.source}:example"))
            out.append(found)
        return out

    def _example(self, group: np.ndarray, score: dict[str, float]) -> str | None:
        """The caption of ``group`` richest in over-represented terms (``score``: term -> z)."""
        best, best_score = None, 0.0
        for i in group:
            text = self.captions[i]
            if not text:
                continue
            ts = self.term_fn(text)
            s = sum(score.get(t, 0.0) for t in ts) / np.sqrt(max(len(ts), 1))
            if s > best_score:
                best, best_score = text, s
        return best


def _unit(X: Any) -> torch.Tensor:
    return torch.as_tensor(unit_rows(X, np.float32))


def nearest_entries(
    directions: np.ndarray, entry_vectors: np.ndarray, top: int = 3, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` entries with the largest cosine to each direction: (m, top) indices and
    cosines. ``directions`` (m, e), ``entry_vectors`` (p, e), in one comparison space."""
    U, V = _unit(directions), _unit(entry_vectors)
    top = min(top, V.shape[0])
    idx = np.zeros((U.shape[0], top), dtype=np.int64)
    cos = np.zeros((U.shape[0], top))
    for s in range(0, U.shape[0], chunk):
        best = (U[s : s + chunk] @ V.T).topk(top, dim=1)
        idx[s : s + chunk], cos[s : s + chunk] = best.indices.numpy(), best.values.double().numpy()
    return idx, cos


def head_classes(directions: np.ndarray, weight: np.ndarray, top: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` classes whose logits grow most along each direction: ``directions`` (m, d)
    in the head's input space, ``weight`` (C, d) the head's weight matrix (the bias does not
    change along a direction). Returns (m, top) class indices and logit changes per unit step."""
    G = (
        torch.as_tensor(np.asarray(directions), dtype=torch.float32)
        @ torch.as_tensor(np.asarray(weight), dtype=torch.float32).T
    )
    best = G.topk(min(top, G.shape[1]), dim=1)
    return best.indices.numpy(), best.values.double().numpy()


def unit_candidates(
    ctx: ExplainContext, D: np.ndarray, units: list[tuple[int, str]], groups: list[np.ndarray]
) -> list[list[tuple[str, str]]]:
    """Per unit (atom, side), with ``groups`` its top describe items: the distinct ``(text,
    source)`` candidates of every source (caption terms, vocabulary entries near the atom
    direction and near its items' captions, classifier-head classes) in order of preference;
    two texts equal after :func:`dbksvd.metrics.normalize_description` count once."""
    cands: list[list[tuple[str, str]]] = [[] for _ in units]
    if not units:
        return cands
    U = np.stack([SIGN[side] * D[atom] for atom, side in units])
    for terms in ctx.terms:
        for c, found in zip(cands, terms.candidates(groups)):
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
