"""Readers of the line-based files datasets are listed from: plain text, JSON lines, the CSV or
JSONL captions file of an image folder, and a parquet column.

Every reader returns its rows in file order and calls ``skip(reason)`` once for each row it
drops (the dataset counts them in ``skipped``). Lines must be UTF-8; a leading BOM is dropped.
pyarrow is imported only to read parquet.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...errors import DataFileError, MissingDependencyError, ParameterError
from .base import EXTRA_HINT

__all__ = [
    "decode_lines",
    "read_bytes",
    "read_captions",
    "read_jsonl_texts",
    "read_parquet_texts",
    "read_text_lines",
]

#: ``skip(reason)``: one row dropped, for ``reason`` ("malformed row", "empty text", ...).
Skip = Callable[[str], None]
#: (1-based line number, text without its line end, whether the line was valid UTF-8)
Line = tuple[int, str, bool]

_INT_LABEL = re.compile(r"[+-]?\d+")


def read_bytes(path: Path, what: str) -> bytes:
    """The whole content of ``path``; DataFileError naming it as ``what`` when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise DataFileError(f"cannot read {what} {path}: {exc}") from None


def decode_lines(data: bytes) -> list[Line]:
    """Split ``data`` into (1-based line number, text without line end, valid) with strict
    UTF-8; an invalid line has ``valid`` False and its text decoded with U+FFFD replacements.
    A leading BOM is dropped."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append((number, raw.decode("utf-8"), True))
        except UnicodeDecodeError:
            lines.append((number, raw.decode("utf-8", "replace"), False))
    return lines


def json_lines(lines: list[Line], undecodable: str, skip: Skip) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or None when malformed) for each non-blank line of a JSONL
    file; lines that are not valid UTF-8 are skipped as ``undecodable``."""
    for number, text, valid in lines:
        if not valid:
            skip(undecodable)
        elif text.strip():
            try:
                yield number, json.loads(text)
            except ValueError:
                yield number, None


# -- texts ------------------------------------------------------------------------------------


def read_text_lines(path: Path, skip: Skip) -> list[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line of a text file; lines that are not
    UTF-8 are skipped ("undecodable text")."""
    texts = []
    for number, text, valid in decode_lines(read_bytes(path, "text file")):
        if not valid:
            skip("undecodable text")
        elif text.strip():
            texts.append((number, text.strip()))
    return texts


def read_jsonl_texts(path: Path, column: str, skip: Skip) -> list[tuple[int, str]]:
    """(line number, stripped text) of field ``column`` of every line's object; lines that do not
    parse or hold no string there are skipped ("malformed line"), blank texts too ("empty text")."""
    texts = []
    for number, record in json_lines(decode_lines(read_bytes(path, "text file")), "undecodable text", skip):
        value = record.get(column) if isinstance(record, dict) else None
        if not isinstance(value, str):
            skip("malformed line")
        elif not value.strip():
            skip("empty text")
        else:
            texts.append((number, value.strip()))
    return texts


def read_parquet_texts(path: Path, column: str | None, skip: Skip) -> tuple[list[tuple[int, str]], str]:
    """((0-based row, stripped text) for every non-empty value, the column read) of string column
    ``column`` of a parquet file, or of its only string column when None; nulls and blank values
    are skipped ("empty text")."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(f"reading {path.name} needs pyarrow ({exc}); {EXTRA_HINT}") from None
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataFileError(f"cannot read parquet file {path}: {exc}") from None
    is_string = {f.name: pa.types.is_string(f.type) or pa.types.is_large_string(f.type) for f in schema}
    if column is None:
        candidates = [name for name, ok in is_string.items() if ok]
        if len(candidates) != 1:
            raise ParameterError(
                f"{path.name} has {len(candidates)} string columns ({', '.join(candidates)[:200]}); "
                "name one, e.g. texts:PATH#column"
            )
        column = candidates[0]
    elif column not in is_string:
        raise DataFileError(f"parquet file {path} has no column {column!r} (columns: {', '.join(is_string)[:200]})")
    elif not is_string[column]:
        raise DataFileError(f"column {column!r} of {path} is not a string column ({schema.field(column).type})")
    try:
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise DataFileError(f"cannot read column {column!r} of {path}: {exc}") from None
    texts = []
    for row, value in enumerate(values):
        if value is None or not value.strip():
            skip("empty text")
        else:
            texts.append((row, value.strip()))
    return texts, column


# -- captions files ---------------------------------------------------------------------------


def read_captions(path: Path, skip: Skip) -> list[tuple[str, str, Any]]:
    """(path text, stripped caption, raw label or None) for every usable row of a captions file:
    a CSV with header ``path,caption[,label]`` or JSONL objects with keys ``path``, ``caption``
    [, ``label``]. Rows are skipped when the line is not UTF-8 ("undecodable caption"), the
    caption is empty ("empty caption") or the row cannot be parsed ("malformed row"); CSV labels
    that are integers become ints."""
    lines = decode_lines(read_bytes(path, "captions file"))
    if path.suffix.lower() == ".csv":
        return _read_captions_csv(path, lines, skip)
    return _read_captions_jsonl(path, lines, skip)


def _read_captions_csv(path: Path, lines: list[Line], skip: Skip) -> list[tuple[str, str, Any]]:
    undecodable = {number for number, _, valid in lines if not valid}
    reader = csv.reader(text + "\n" for _, text, _ in lines)
    header, rows = None, []
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:  # e.g. an unterminated quote: the rest of the file is lost
            skip("malformed row")
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if header is None:
            header = [name.strip().lower() for name in row]
            missing = [name for name in ("path", "caption") if name not in header]
            if missing:
                raise DataFileError(
                    f"captions file {path} lacks the column(s) {', '.join(missing)} (header: {','.join(row)[:200]})"
                )
            continue
        if any(number in undecodable for number in range(first_line, reader.line_num + 1)):
            skip("undecodable caption")
        elif len(row) != len(header):
            skip("malformed row")
        else:
            record = dict(zip(header, row))
            label = record.get("label", "").strip() or None
            if label is not None and _INT_LABEL.fullmatch(label):
                label = int(label)
            _keep_row(rows, record["path"].strip(), record["caption"], label, skip)
    if header is None:
        raise DataFileError(f"captions file {path} is empty: it needs a header path,caption[,label]")
    return rows


def _read_captions_jsonl(path: Path, lines: list[Line], skip: Skip) -> list[tuple[str, str, Any]]:
    rows, keys_seen, objects = [], set(), 0
    for _, record in json_lines(lines, "undecodable caption", skip):
        if not isinstance(record, dict):
            skip("malformed row")
            continue
        objects += 1
        keys_seen.update(record)
        path_value, caption, label = record.get("path"), record.get("caption"), record.get("label")
        if (
            not isinstance(path_value, str)
            or "caption" not in record
            or not isinstance(caption, (str, type(None)))
            or isinstance(label, bool)
            or not isinstance(label, (int, str, type(None)))
        ):
            skip("malformed row")
            continue
        if isinstance(label, str):
            label = label.strip() or None
        _keep_row(rows, path_value.strip(), caption or "", label, skip)
    missing = [name for name in ("path", "caption") if name not in keys_seen]
    if objects and missing:
        raise DataFileError(f"captions file {path} has no {' or '.join(missing)} field in any row")
    return rows


def _keep_row(rows: list, path_text: str, caption: str, label: Any, skip: Skip) -> None:
    if not path_text:
        skip("malformed row")
    elif not caption.strip():
        skip("empty caption")
    else:
        rows.append((path_text, caption.strip(), label))
