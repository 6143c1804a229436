"""The one image decoder: an image file (a path, or its bytes) -> an upright RGB PIL image.

Every image dbksvd reads goes through :func:`decode_image`: the image-folder dataset, the
encoders' file inputs and the explorer's uploads. It opens the file (only the formats asked
for), refuses more pixels than allowed from the header, before decoding (decompression bombs),
decodes every pixel (truncated data fails here, not later), applies the EXIF orientation (a
phone photo stored sideways comes out upright) and converts to RGB with :func:`to_rgb`.

Pillow is imported on first use.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileError, ImageError, MissingDependencyError

__all__ = ["decode_image", "pil", "to_rgb"]

_EXTRA_HINT = "pip install 'dbksvd[embed]'"
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def pil():
    """``PIL.Image`` (imported on first use); MissingDependencyError without Pillow."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError(f"reading images needs Pillow ({exc}); {_EXTRA_HINT}") from None
    return Image


class _Bytes(io.BytesIO):
    """An in-memory file whose repr (quoted by Pillow's messages) is its size, not an address."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self._size = len(data)

    def __repr__(self) -> str:
        return f"<{self._size} bytes>"


def decode_image(
    source: str | os.PathLike | bytes,
    *,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = None,
    name: str | None = None,
):
    """The image in ``source`` (a file path, or a file's bytes) as an RGB ``PIL.Image``.

    Parameters
    ----------
    source : path or bytes
        The image file, or its whole content.
    max_pixels : int, optional
        Most pixels (width x height) allowed, checked on the header before any decoding;
        never more than Pillow's ``Image.MAX_IMAGE_PIXELS`` (read at each call), which is the
        bound when None.
    formats : sequence of str, optional
        Pillow format names the file may be in (e.g. ``("PNG", "JPEG")``); any when None.
    name : str, optional
        What the messages call the source (default: the path, or "the image" for bytes).

    Returns
    -------
    PIL.Image.Image
        Mode ``RGB``, upright (EXIF orientation applied), size (width, height) in pixels after
        the rotation; transparency composited on white, 16-bit grey scaled to 8 bits.

    Raises
    ------
    DataFileError
        ``"image file not found: PATH"`` when a path does not exist.
    ImageError
        Anything else: not an image, a format not in ``formats``, truncated or damaged data,
        more than the allowed pixels; ``reason`` holds the decoder's own error.
    """
    Image = pil()
    from PIL import ImageOps

    if isinstance(source, (bytes, bytearray, memoryview)):
        stream, label = _Bytes(bytes(source)), name or "the image"
    else:
        stream = Path(source)
        label = name or str(stream)
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = Image.MAX_IMAGE_PIXELS if limit is None else min(limit, Image.MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; the bound below refuses.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image_file = Image.open(stream, formats=None if formats is None else list(formats))
        with image_file as image:
            width, height = image.size
            if limit is not None and width * height > limit:
                raise ImageError(
                    f"{label} is {width} x {height} pixels; at most {limit} pixels are allowed",
                    f"DecompressionBombError: {width} x {height} pixels, more than the {limit} allowed",
                )
            image.load()  # decodes every pixel: truncated data fails here
            return to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise DataFileError(f"image file not found: {stream}") from None
    except (ImageError, MemoryError):
        raise
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        raise ImageError(f"{label} is not a readable image ({reason})", reason) from None


def to_rgb(image: Any):
    """A decoded ``PIL.Image`` in any mode -> RGB: transparent pixels (alpha, or a palette or
    grey image's transparency) composited on white, 16-bit grey scaled to 8 bits (/257); an RGB
    image is returned as it is."""
    Image = pil()
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")
