"""Input and parameter checks, in one place.

Every public entry point (``sparse_encode``, ``DBKSVD``, the metrics, the CLI) funnels its
arguments through these functions, so a given mistake always produces the same one-line
error.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np
import torch

from .errors import InputError, ParameterError

#: Rows of a dictionary must have norm 1 within this absolute tolerance.
UNIT_NORM_ATOL = 1e-3

_FLOAT_DTYPES = (torch.float32, torch.float64)


def resolve_device(device: Any = None, like: torch.Tensor | None = None) -> torch.device:
    """``None`` -> the device of ``like`` (or CPU); ``"auto"`` -> CUDA when present."""
    if device is None:
        return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} requested but CUDA is not available")
    return dev


def matrix_source(X: Any, name: str = "X") -> torch.Tensor | np.ndarray:
    """Check that ``X`` is a non-empty 2-D real array without copying it.

    Returns ``X`` itself (a tensor or numpy array, possibly memory-mapped; other sequences
    go through ``np.asarray``) so that callers can slice it chunk by chunk.
    """
    if isinstance(X, torch.Tensor):
        if X.is_complex():
            raise InputError(f"{name} is complex; expected real numbers")
        src, shape = X, tuple(X.shape)
    else:
        src = X if isinstance(X, np.ndarray) else np.asarray(X)
        if src.dtype == object or src.dtype.kind in "OUSVMm":
            raise InputError(f"{name} has dtype {src.dtype}; expected numbers")
        if src.dtype.kind == "c":
            raise InputError(f"{name} is complex; expected real numbers")
        shape = src.shape
    if len(shape) != 2:
        raise InputError(f"{name} must be 2-D (rows, features); got {len(shape)}-D with shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{name} is empty (shape {shape})")
    return src


def float_dtype(src: Any) -> torch.dtype:
    """float64 for float64 input, float32 for everything else (ints, bools, halves).

    ``src``: anything with a numpy or torch ``dtype`` (an array, a tensor, a row source)."""
    return torch.float64 if src.dtype in (torch.float64, np.float64) else torch.float32


def as_matrix(
    X: Any,
    name: str = "X",
    *,
    dtype: torch.dtype | None = None,
    device: Any = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Return ``X`` as a 2-D floating torch tensor, refusing what cannot be used.

    Integer, boolean and half-precision input becomes float32; float32 and float64 are kept
    (unless ``dtype`` says otherwise). Object, string and complex input is refused, as are
    other than two dimensions, zero rows or columns, and NaN or inf. No copy is made when
    the input is already a suitable tensor on the target device.
    """
    src = matrix_source(X, name)
    target = dtype or float_dtype(src)
    if isinstance(src, torch.Tensor):
        t = src
    else:
        if not src.flags.writeable:  # e.g. a read-only memory map: torch needs its own copy
            src = np.array(src, dtype=None, copy=True)
        t = torch.from_numpy(np.ascontiguousarray(src))
    t = t.to(device=resolve_device(device, like=t), dtype=target)
    if check_finite and not _all_finite(t):
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise InputError(f"{name} contains NaN or inf in {bad} row(s)")
    return t


def _all_finite(t: torch.Tensor) -> bool:
    """True when ``t`` has no NaN or inf: min and max propagate NaN, one pass, no (n, d) mask."""
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def check_dictionary(
    dictionary: Any,
    n_features: int | None = None,
    *,
    name: str = "dictionary",
    dtype: torch.dtype | None = None,
    device: Any = None,
) -> torch.Tensor:
    """A ``(K, d)`` dictionary with unit-norm rows, as a tensor; ``d`` must equal ``n_features``."""
    D = as_matrix(dictionary, name, dtype=dtype, device=device)
    if n_features is not None and D.shape[1] != n_features:
        raise InputError(f"{name} has {D.shape[1]} features per atom but the data has {n_features}")
    norms = torch.linalg.vector_norm(D, dim=1, dtype=torch.float64)
    off = (norms - 1).abs() > UNIT_NORM_ATOL
    if bool(off.any()):
        j = int(torch.nonzero(off)[0])
        raise InputError(
            f"{name} rows must have unit norm; {int(off.sum())} do not (row {j} has norm {float(norms[j]):.4g})"
        )
    return D


def check_positive_int(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def check_n_nonzero(n_nonzero: Any, n_atoms: int, n_features: int) -> int:
    """``1 <= k <= min(K, d)``: more non-zeros than atoms or dimensions is meaningless."""
    k = check_positive_int(n_nonzero, "n_nonzero")
    if k > n_atoms:
        raise ParameterError(f"n_nonzero={k} exceeds the number of atoms K={n_atoms}")
    if k > n_features:
        raise ParameterError(f"n_nonzero={k} exceeds the number of features d={n_features}")
    return k


def check_tol(tol: Any, name: str = "tol") -> float | None:
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not np.isfinite(tol) or tol < 0:
        raise ParameterError(f"{name} must be a finite number >= 0 or None; got {tol!r}")
    return float(tol)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_groups(groups: Any, n_atoms: int, n_nonzero: int) -> list[tuple[int, int]]:
    """Matryoshka groups as ``[(atoms, nonzeros), ...]`` in order.

    ``groups`` is ``None`` (one group), a list of atom counts (the non-zeros are shared out in
    proportion to group size, at least one each), or a list of ``(atoms, nonzeros)`` pairs.
    Atom counts must add up to ``n_atoms`` and non-zeros to ``n_nonzero``.
    """
    if groups is None:
        return [(n_atoms, n_nonzero)]
    items = _group_items(groups)
    pairs: list[tuple[int, int]] = []
    if all(isinstance(g, numbers.Integral) and not isinstance(g, bool) for g in items):
        sizes = [check_positive_int(g, "group size") for g in items]
        if len(sizes) > n_nonzero:
            raise ParameterError(f"{len(sizes)} groups need at least as many non-zeros; n_nonzero={n_nonzero}")
        total = sum(sizes)
        shares = [max(1, int(n_nonzero * s / total)) for s in sizes]
        # Hand out (or take back) the rounding remainder, largest groups first.
        order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
        i = 0
        while sum(shares) != n_nonzero:
            g = order[i % len(order)]
            if sum(shares) < n_nonzero:
                shares[g] += 1
            elif shares[g] > 1:
                shares[g] -= 1
            i += 1
        pairs = list(zip(sizes, shares))
    else:
        for g in items:
            if not (isinstance(g, (tuple, list)) and len(g) == 2):
                raise ParameterError(f"each group must be an atom count or an (atoms, nonzeros) pair; got {g!r}")
            pairs.append((check_positive_int(g[0], "group atoms"), check_positive_int(g[1], "group nonzeros")))
    if sum(a for a, _ in pairs) != n_atoms:
        raise ParameterError(f"group sizes add up to {sum(a for a, _ in pairs)}, not n_atoms={n_atoms}")
    if sum(k for _, k in pairs) != n_nonzero:
        raise ParameterError(f"group non-zeros add up to {sum(k for _, k in pairs)}, not n_nonzero={n_nonzero}")
    for a, k in pairs:
        if k > a:
            raise ParameterError(f"a group of {a} atoms cannot hold {k} non-zeros")
    return pairs


def check_group_sizes(groups: Any, n_atoms: int) -> tuple[int, ...]:
    """Matryoshka group sizes (atoms or latents per group, in order) adding up to ``n_atoms``,
    without non-zeros (an SAE's groups: its activation shares one budget)."""
    items = _group_items(groups)
    sizes = tuple(check_positive_int(g, "group size") for g in items)
    if sum(sizes) != n_atoms:
        raise ParameterError(f"group sizes add up to {sum(sizes)}, not n_atoms={n_atoms}")
    return sizes


def _group_items(groups: Any) -> list[Any]:
    try:
        items = list(groups)
    except TypeError:
        raise ParameterError(f"groups must be a list of group sizes; got {groups!r}") from None
    if not items:
        raise ParameterError("groups is empty")
    return items


def check_memory(n_atoms: int, n_features: int, itemsize: int = 4, device: torch.device | None = None) -> None:
    """Refuse a dictionary whose training cannot fit in this machine's memory: the (K, d)
    dictionary three times (current, updated, replacement work) and the (K, K) Gram matrix
    of the pursuit, at ``itemsize`` bytes per value (ParameterError, one line, before any
    allocation: an absurd K would otherwise end in an allocator's traceback)."""
    need = itemsize * (3 * n_atoms * n_features + n_atoms * n_atoms)
    if device is not None and device.type == "cuda":
        have = torch.cuda.mem_get_info(device)[1]
        where = f"{device} has"
    else:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not a POSIX system: no check
            return
        where = "this machine has"
    if need > have:
        raise ParameterError(
            f"n_atoms={n_atoms} with {n_features} features needs at least {_size(need)} (the K x d dictionary "
            f"and the K x K Gram matrix) but {where} {_size(have)}; use fewer atoms"
        )


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} EiB"
