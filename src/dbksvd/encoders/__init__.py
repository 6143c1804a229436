"""Embedding models that turn images and texts into the rows dictionaries are learned on.

``get_encoder(spec)`` builds one from a short spec string:

==================  ===============  =====================================================
spec                modalities       output
==================  ===============  =====================================================
effnet-lite0        image            1280-d pooled conv features (ImageNet head reachable)
minilm              text             384-d all-MiniLM-L6-v2 sentence embeddings; ``layer``
                                     -> its residual stream (per token: encode_tokens)
clip:NAME_OR_PATH   image, text      CLIP projected embeddings; ``layer`` -> class token
vit:NAME_OR_PATH    image            class token of hidden state ``layer`` (default -1)
hf:NAME_OR_PATH     text             any text transformer (BERT, GPT-2, Pythia, Gemma...):
                                     hidden state ``layer`` per token, or its mean
==================  ===============  =====================================================

Per token or patch (``encode_tokens`` / ``encode_patches``, :mod:`.activations`): text
transformers give the residual stream at every token, clip/vit every patch token, and
effnet-lite0 every position of its last 7 x 7 feature map.

Encoders load their model on the first encode call; each needs an optional extra
(``pip install 'dbksvd[embed]'`` for effnet-lite0 and minilm, ``'dbksvd[clip]'`` for clip/vit).
"""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError
from .base import ClassifierHead, Encoder

ENCODER_NAMES = ("effnet-lite0", "minilm", "clip:NAME_OR_PATH", "vit:NAME_OR_PATH", "hf:NAME_OR_PATH")

__all__ = ["ClassifierHead", "Encoder", "get_encoder", "ENCODER_NAMES"]


def get_encoder(
    spec: str,
    *,
    device: Any = None,
    layer: int | None = None,
    batch_size: int | None = None,
    context: int | None = None,
    stride: int | None = None,
    keep_bos: bool = False,
) -> Encoder:
    """Build the encoder named by ``spec`` (one of ``ENCODER_NAMES``).

    ``device``: None/"auto" (CUDA when available), "cpu", "cuda", ...; ``layer`` selects a
    hidden state of minilm, clip, vit and hf models (negative counts from the last) and is
    refused for effnet-lite0; ``batch_size`` overrides the encoder's default items per forward
    pass; ``context``, ``stride`` and ``keep_bos`` set the token windows of text transformers
    (minilm, hf; :mod:`dbksvd.encoders.activations`).
    """
    choices = ", ".join(ENCODER_NAMES)
    if not isinstance(spec, str):
        raise ParameterError(f"encoder must be a string, one of {choices}; got {spec!r}")
    kind, colon, model = spec.strip().partition(":")
    window = {"context": context, "stride": stride, "keep_bos": keep_bos}
    text_model = kind == "minilm" or (kind == "hf" and colon)
    if not text_model and (context is not None or stride is not None or keep_bos):
        raise ParameterError(f"context, stride and keep_bos apply to text transformers (minilm, hf:), not {kind}")
    if not colon and kind in ("effnet-lite0", "minilm"):
        if kind == "effnet-lite0":
            if layer is not None:
                raise ParameterError(
                    "layer does not apply to effnet-lite0 (its patches are the last feature map; use --patches)"
                )
            from .efficientnet import EffNetLite0Encoder

            return EffNetLite0Encoder(device=device, batch_size=batch_size)
        from .sentence import SentenceEncoder

        return SentenceEncoder(device=device, batch_size=batch_size, layer=layer, **window)
    if colon and kind == "hf" and model.strip():
        from .hf import HFTextEncoder

        return HFTextEncoder(model.strip(), device=device, layer=layer, batch_size=batch_size, **window)
    if colon and kind in ("clip", "vit") and model.strip():
        from .hf import CLIPEncoder, ViTEncoder

        cls = CLIPEncoder if kind == "clip" else ViTEncoder
        return cls(model.strip(), device=device, layer=layer, batch_size=batch_size)
    raise ParameterError(f"unknown encoder {spec!r}; choose one of {choices}")
