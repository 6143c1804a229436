"""The schemas of the JSON files dbksvd writes, used both to write and to read them.

A file's schema is a :class:`FileSchema` (a strict pydantic model that refuses unknown keys).
Writing goes through the schema too, so what is written is what a reader accepts; reading
refuses a damaged file (not JSON, a missing key, a wrong type) with one
:class:`~dbksvd.errors.DataFileError` line that names the file and the key, by this code
whichever file it is. Optional keys that are absent stay absent: a record is dumped with the
keys it was given (``exclude_unset``), so a file round-trips to the same keys and values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import DataFileError
from .io import atomic_path


class FileSchema(BaseModel):
    """Base of every file schema: strict types (a bool is not a number, a string is not an
    integer), no keys beyond the declared ones, field docstrings as descriptions."""

    model_config = ConfigDict(strict=True, extra="forbid", use_attribute_docstrings=True, populate_by_name=True)


S = TypeVar("S", bound=FileSchema)


def _refused(path: str | os.PathLike, what: str, exc: ValidationError, line: int | None = None) -> DataFileError:
    err = exc.errors(include_url=False)[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    at = f" line {line}," if line is not None else ""
    more = len(exc.errors()) - 1
    return DataFileError(
        f"{path}:{at} not a valid {what}: {key}: {err['msg']}" + (f" (and {more} more)" if more else "")
    )


def validate(schema: type[S], data: Any, what: str, path: str | os.PathLike = "<memory>") -> S:
    """``data`` (parsed JSON) as ``schema``; a mismatch is a one-line :class:`DataFileError`."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _refused(path, what, exc) from None


def dump(record: FileSchema) -> dict[str, Any]:
    """The JSON-ready content of ``record``: the keys it was given, by their file names."""
    return record.model_dump(mode="python", exclude_unset=True, by_alias=True)


def _parse(text: str, path: Path, what: str, line: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f" line {line}," if line is not None else ""
        raise DataFileError(f"{path}:{at} not a valid {what}: corrupt JSON ({exc.msg})") from None


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file (expected a {what})") from None
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a valid {what}: not UTF-8 text") from None
    except OSError as exc:
        raise DataFileError(f"{path}: unreadable ({type(exc).__name__})") from None


def _file(path: str | os.PathLike, in_folder: str | None) -> Path:
    path = Path(path)
    return path / in_folder if in_folder and path.is_dir() else path


def read_json(path: str | os.PathLike, schema: type[S], what: str, *, in_folder: str | None = None) -> S:
    """The JSON file ``path`` as a ``schema`` record (``what`` names it in errors); a folder
    ``path`` reads its file ``in_folder`` when that is given."""
    path = _file(path, in_folder)
    return validate(schema, _parse(_text(path, what), path, what), what, path)


def write_json(path: str | os.PathLike, record: FileSchema, *, indent: int | None = 2) -> None:
    """``record`` as JSON at ``path``, atomically (NaN is written as ``NaN``, as Python's json does)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dump(record), indent=indent, default=float) + "\n")


def read_jsonl(path: str | os.PathLike, schema: type[S], what: str, *, in_folder: str | None = None) -> list[S]:
    """Every non-blank line of the JSON-lines file ``path`` as a ``schema`` record (a folder
    ``path``: its file ``in_folder``)."""
    path = _file(path, in_folder)
    out = []
    for i, line in enumerate(_text(path, what).split("\n"), start=1):  # not splitlines: U+2028 is text
        if line.strip():
            try:
                out.append(schema.model_validate(_parse(line, path, what, i)))
            except ValidationError as exc:
                raise _refused(path, what, exc, line=i) from None
    return out


def write_jsonl(path: str | os.PathLike, records: list[FileSchema]) -> None:
    """One JSON object per line (UTF-8, not ASCII-escaped) at ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(dump(r), ensure_ascii=False) + "\n")
