"""The text side of the explanations: the text encoder and what is embedded with it
(captions, phrases, vocabularies), and the comparison space of atoms already in a text space."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...io import atomic_path
from ...metrics import unit_rows


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
            from ...encoders import get_encoder

            self._encoder = get_encoder(self.spec)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), e) float32 unit rows, from memory where already embedded."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._phrases))
        if todo:
            rows = unit_rows(self._embed_by_length(todo, progress=self.show_progress and len(todo) > 2000))
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
        from ...encoders.base import cache_dir

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
            rows = unit_rows(self._embed_by_length(list(vocab.entries), self.show_progress)).astype(np.float16)
            try:
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, rows)
            except OSError:
                pass  # an unwritable cache only costs time
        rows = np.asarray(rows, dtype=np.float32)
        self._phrases.update(zip(vocab.entries, rows))
        return rows

    def _embed_by_length(self, texts: list[str], progress: bool) -> np.ndarray:
        """(len(texts), e) embeddings of ``texts``, in their order, computed in batches of
        texts of similar length: a batch pads to its longest text, so this is about three times
        faster on a vocabulary (11,846 WordNet nouns) than batches in vocabulary order."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        rows = self.encoder.encode_texts([texts[i] for i in order], batch_size=256, progress=progress)
        out = np.empty_like(rows)
        out[order] = rows
        return out


class SharedSpace:
    """Atoms already live in the text space (a text model, or CLIP's shared space): directions
    are compared with vocabulary embeddings centred on their own mean."""

    kind = "shared"

    def directions(self, U: np.ndarray) -> np.ndarray:
        return unit_rows(U)

    def texts(self, T: np.ndarray) -> np.ndarray:
        T = unit_rows(T)
        return unit_rows(T - T.mean(axis=0, keepdims=True))
