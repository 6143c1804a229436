"""The emoji dataset: every single-code-point emoji of a colour font (Noto Color Emoji by
default), rendered on a white square. fontTools lists the font; Pillow renders it."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ...errors import DataFileError, InputError, MissingDependencyError, ParameterError
from ..images import pil
from .base import EXTRA_HINT, Item, ListDataset, SkipItem, check_limit
from .registry import register_dataset

__all__ = ["DEFAULT_EMOJI_FONT", "EmojiDataset"]

DEFAULT_EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"

_EMOJI_FONT_SIZE = 109  # the only pixel size of Noto Color Emoji's bitmap strike
_EXCLUDED_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, format, spaces


def _excluded_codepoint(cp: int) -> bool:
    """Code points that are not an emoji on their own: spaces and controls, keycap bases,
    variation selectors, ZWJ, skin-tone modifiers, regional indicators, tag characters."""
    return (
        unicodedata.category(chr(cp)) in _EXCLUDED_CATEGORIES
        or chr(cp) in "0123456789#*"
        or 0xFE00 <= cp <= 0xFE0F
        or cp == 0x200D
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0x1F1E6 <= cp <= 0x1F1FF
        or 0xE0020 <= cp <= 0xE007F
    )


def _render_glyph(font, char: str):
    """``char`` drawn in colour on a transparent canvas, cropped to its alpha bbox (RGBA), or
    None when the glyph draws nothing."""
    Image = pil()
    from PIL import ImageDraw

    left, top, right, bottom = font.getbbox(char)
    pad = 8  # room for anti-aliasing outside the nominal bbox
    width, height = max(right - left, 1) + 2 * pad, max(bottom - top, 1) + 2 * pad
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad - left, pad - top), char, font=font, fill=(0, 0, 0, 255), embedded_color=True)
    bbox = canvas.getchannel("A").getbbox()
    return None if bbox is None else canvas.crop(bbox)


def _open_font(path: str):
    try:
        from PIL import ImageFont
    except ImportError:
        pil()  # raises MissingDependencyError
    try:
        return ImageFont.truetype(path, _EMOJI_FONT_SIZE)
    except OSError as exc:
        raise DataFileError(f"cannot open emoji font {path} at {_EMOJI_FONT_SIZE} px: {exc}") from None


@lru_cache(maxsize=4)
def _emoji_listing(path: str, mtime_ns: int, file_size: int) -> tuple[tuple, tuple, str]:
    """The font's emoji as ((code point, lower-case name), ...) in code-point order, the listing's
    skip counts as ((reason, count), ...), and the font revision. Cached per file version.

    A glyph counts as empty when a colour-bitmap (CBLC) font has no bitmap for it; fonts without
    a CBLC table are checked by rendering every glyph (slower)."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError as exc:
        raise MissingDependencyError(f"the emoji dataset needs fontTools ({exc}); {EXTRA_HINT}") from None
    try:
        with open(path, "rb") as stream, TTFont(stream, lazy=True) as font:  # our handle: closed on errors too
            cmap = font.getBestCmap() or {}
            revision = f"{float(font['head'].fontRevision):.3f}"
            with_bitmap = None
            if "CBLC" in font:
                with_bitmap = set()
                for strike in font["CBLC"].strikes:
                    for subtable in strike.indexSubTables:
                        with_bitmap.update(subtable.names)
    except MissingDependencyError:
        raise
    except Exception as exc:  # fontTools raises many types on a damaged or non-font file
        raise DataFileError(f"cannot read emoji font {path}: {type(exc).__name__}: {exc}") from None

    skipped: dict[str, int] = {}
    candidates = []
    for cp in sorted(cmap):
        name = unicodedata.name(chr(cp), None)
        if name is None:
            skipped["no unicode name"] = skipped.get("no unicode name", 0) + 1
        elif not _excluded_codepoint(cp):
            candidates.append((cp, name.lower(), cmap[cp]))

    pil_font = _open_font(path) if with_bitmap is None else None
    entries = []
    for cp, caption, glyph_name in candidates:
        if with_bitmap is not None:
            empty = glyph_name not in with_bitmap
        else:
            empty = _render_glyph(pil_font, chr(cp)) is None
        if empty:
            skipped["empty glyph"] = skipped.get("empty glyph", 0) + 1
        else:
            entries.append((cp, caption))
    return tuple(entries), tuple(skipped.items()), revision


def _parse_codepoint(value: Any) -> int:
    """An int, "U+1F600" / "1F600" or a one-character string -> the code point."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if len(value) == 1:
            return ord(value)
        match = re.fullmatch(r"(?:[Uu]\+)?([0-9A-Fa-f]{1,6})", value.strip())
        if match:
            return int(match.group(1), 16)
    raise ParameterError(f"cannot read {value!r} as a code point (use an int, 'U+1F600' or the character)")


@register_dataset
class EmojiDataset(ListDataset):
    """Every single-code-point emoji of a colour font, rendered on a white square.

    Items: id and source ``"U+1F600"``, caption the Unicode name in lower case
    ("grinning face"), no label; listed in code-point order. The list depends on the font and on
    the Unicode version of Python's ``unicodedata`` (code points it cannot name are dropped).

    ``load`` returns a ``size`` x ``size`` RGB image: the glyph cropped to its drawn pixels,
    centred on white, shrunk with LANCZOS only when it exceeds ``size`` minus a 5 % margin on
    each side (Noto glyphs are at most 136 x 128 px, so none is shrunk at the default 160).
    Rendering is deterministic for a given font, Pillow and FreeType.

    ``codepoints`` (ints, "U+1F600" strings or characters; kept in the given order) or ``limit``
    (the first ``limit`` emoji) select a subset.
    """

    name = "emoji"
    modality = "image"
    spec_form = "emoji"

    def __init__(
        self,
        font_path: str | os.PathLike | None = None,
        size: int = 160,
        *,
        codepoints: Sequence[int | str] | None = None,
        limit: int | None = None,
    ):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
            raise ParameterError(f"size must be an integer >= 8 (pixels), got {size!r}")
        self.size = int(size)
        self.limit = check_limit(limit)
        self.font_path = os.path.abspath(os.fspath(font_path if font_path is not None else DEFAULT_EMOJI_FONT))
        try:
            stat = os.stat(self.font_path)
        except OSError:
            raise DataFileError(
                f"emoji font {self.font_path} not found; apt-get install fonts-noto-color-emoji (or pass font_path)"
            ) from None
        entries, skipped, self.font_revision = _emoji_listing(self.font_path, stat.st_mtime_ns, stat.st_size)
        self.skipped = dict(skipped)

        self.codepoints = None
        if codepoints is not None:
            captions = dict(entries)
            wanted = [_parse_codepoint(value) for value in codepoints]
            unknown = [f"U+{cp:04X}" for cp in wanted if cp not in captions]
            if unknown:
                raise ParameterError(f"not single-code-point emoji of {self.font_path}: {', '.join(unknown[:10])}")
            if len(set(wanted)) != len(wanted):
                raise ParameterError("codepoints contains duplicates")
            entries = tuple((cp, captions[cp]) for cp in wanted)
            self.codepoints = wanted
        if self.limit is not None:
            entries = entries[: self.limit]
        if not entries:
            raise InputError(f"the font {self.font_path} has no usable emoji")
        self._set_items([Item(id=f"U+{cp:04X}", source=f"U+{cp:04X}", caption=caption) for cp, caption in entries])
        self._font = None

    def load(self, item: Item):
        """The emoji as a ``size`` x ``size`` RGB PIL image (glyph centred on white)."""
        self._index_of(item)
        if self._font is None:
            self._font = _open_font(self.font_path)
        glyph = _render_glyph(self._font, chr(int(item.id[2:], 16)))
        if glyph is None:
            raise SkipItem("empty glyph")
        return self._compose(glyph)

    def _compose(self, glyph):
        Image = pil()
        margin = max(1, self.size // 20)
        fit = self.size - 2 * margin
        width, height = glyph.size
        if max(width, height) > fit:
            scale = fit / max(width, height)
            new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            glyph = glyph.resize(new_size, Image.Resampling.LANCZOS)  # premultiplied alpha inside Pillow
        canvas = Image.new("RGBA", (self.size, self.size), (255, 255, 255, 255))
        canvas.alpha_composite(glyph, dest=((self.size - glyph.width) // 2, (self.size - glyph.height) // 2))
        return canvas.convert("RGB")

    def spec(self) -> dict:
        return {
            **self._spec_head(self.font_path),
            "size": self.size,
            "limit": self.limit,
            "codepoints": None if self.codepoints is None else [f"U+{cp:04X}" for cp in self.codepoints],
            "font_revision": self.font_revision,
            "unicode_version": unicodedata.unidata_version,
            "fingerprint": self._fingerprint(),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> EmojiDataset:
        return cls(spec.get("path"), spec.get("size", 160), codepoints=spec.get("codepoints"), limit=spec.get("limit"))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_font"] = None  # FreeType handles do not pickle; reopened on demand
        return state
