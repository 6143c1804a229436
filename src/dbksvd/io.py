"""Reading arrays from disk and writing files atomically.

Supported inputs: ``.npy`` (memory-mapped, never read whole), ``.npz`` and ``.safetensors``
(one array chosen by ``key``; the key may be omitted when the file holds exactly one array).
Writes go to a temporary sibling that is renamed into place, so a failed or interrupted run
never leaves a partial file or folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataFileError

ARRAY_SUFFIXES = (".npy", ".npz", ".safetensors")


def load_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Open one array from ``path``; ``.npy`` files come back memory-mapped (read-only)."""
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"{p}: no such file")
    if p.is_dir():
        raise DataFileError(f"{p}: is a folder, expected an array file ({', '.join(ARRAY_SUFFIXES)})")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise DataFileError(f"{p}: a .npy file holds one array; --key {key!r} does not apply")
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataFileError(f"{p}: not a readable .npy file ({_short(exc)})") from None
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                name = _pick_key(p, list(z.files), key)
                return z[name]
        except DataFileError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise DataFileError(f"{p}: not a readable .npz file ({_short(exc)})") from None
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="np") as f:
                name = _pick_key(p, list(f.keys()), key)
                return f.get_tensor(name)
        except DataFileError:
            raise
        except Exception as exc:  # safetensors raises its own SafetensorError for corrupt files
            raise DataFileError(f"{p}: not a readable .safetensors file ({_short(exc)})") from None
    raise DataFileError(f"{p}: unsupported file type {suffix!r}; expected one of {', '.join(ARRAY_SUFFIXES)}")


def _pick_key(path: Path, keys: list[str], key: str | None) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        listed = ", ".join(sorted(keys)[:10]) or "none"
        raise DataFileError(f"{path}: holds {len(keys)} arrays ({listed}); choose one with --key")
    if key not in keys:
        listed = ", ".join(sorted(keys)[:10]) or "none"
        raise DataFileError(f"{path}: no array named {key!r} (available: {listed})")
    return key


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    On any exception (KeyboardInterrupt included) the temporary file or folder is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    tmp = (
        Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        if directory
        else Path(tempfile.mkstemp(prefix=prefix, dir=parent)[1])
    )
    try:
        yield tmp
        if directory:
            old = None
            if target.exists():
                old = parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def read_format_json(path: Path, fmt: str, max_version: int, what: str, error: type = DataFileError) -> dict:
    """A JSON object whose ``format`` is ``fmt`` and whose ``format_version`` this dbksvd reads
    (model configs, store manifests); anything else raises ``error`` with a one-line reason."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise error(f"{path}: corrupt JSON") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise error(f"{path}: not a dbksvd {what}")
    version = obj.get("format_version")
    if not isinstance(version, int):
        raise error(f"{path}: format_version is missing")
    if version > max_version:
        raise error(
            f"{path.parent}: written by a newer dbksvd ({what} format {version}; "
            f"this version reads up to {max_version}); upgrade dbksvd"
        )
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Write named arrays/tensors to a ``.safetensors`` file, atomically."""
    import torch
    from safetensors.torch import save_file

    data = {
        k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))).detach().cpu().contiguous()
        for k, v in tensors.items()
    }
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=metadata)


def validated(schema: type, obj: Any, path: Path, error: type = DataFileError):
    """``obj`` (parsed JSON) as an instance of the pydantic model ``schema``, or ``error`` with
    one line naming the first bad field: ``config.json: field 'n_atoms': Input should be a
    valid integer``."""
    from pydantic import ValidationError

    try:
        return schema.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise error(f"{path}: field '{where}': {first['msg']}") from None
