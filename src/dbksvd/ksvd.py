"""Double-Batch K-SVD as functions on tensors: the training loop the estimator is a thin class on.

One *iteration* takes one sample batch, sparse-codes it against the current dictionary, updates
the atoms in shuffled atom batches (:func:`dbksvd.update.update_atoms`) and replaces unused and
near-duplicate atoms. :func:`train` runs passes of iterations over a row source, the dictionary
warm-started from batch to batch; :func:`db_ksvd` is the whole algorithm on an array, as
scikit-learn offers ``dict_learning`` beside ``DictionaryLearning``. With ``n <= batch_size``
this is classic (approximate) K-SVD. docs/algorithm.md describes every step.

Matryoshka dictionaries (``groups``): the atoms form consecutive groups, each with its own
share of the non-zeros; group g is coded and updated on the residual left by groups < g, so
every prefix of the dictionary is a usable dictionary of its own.

Shapes: rows ``X`` (n, d), dictionary ``D`` (K, d) with unit-norm rows, codes with k non-zeros
per row (:class:`~dbksvd.coding.SparseCodes`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .coding import SparseCodes, gram, sparse_encode
from .sources import RowSource, as_source
from .update import atom_usage, near_duplicates, replace_atoms, split_atoms, update_atoms, weakest_atom_swap
from .validation import (
    as_matrix,
    check_groups,
    check_memory,
    check_n_nonzero,
    check_positive_int,
    check_tol,
    resolve_device,
)

COHERENCE_THRESHOLD = 0.99
#: Atoms used by fewer rows of a batch than this are replaced (the K-SVD toolbox uses 4).
MIN_USAGE = 4
#: Iterations during which a replaced atom may not be swapped out again: a new atom starts
#: with little usage and would otherwise be the next "weakest" atom (measured: without it the
#: swap thrashes at 10 dB and recovery drops from ~97% to ~90%).
GRACE = 10


@dataclass(frozen=True)
class Settings:
    """The checked hyperparameters of one fit (see :class:`dbksvd.config.DBKSVDParams`)."""

    n_atoms: int
    n_nonzero: int
    coder: str = "omp"
    max_iter: int = 20
    batch_size: int = 65536
    atom_batch_size: int = 1
    update: str = "power"
    init: str = "data"
    replace_unused: bool = True
    #: ``[(atoms, nonzeros), ...]`` of consecutive Matryoshka groups (one group: no Matryoshka)
    groups: tuple[tuple[int, int], ...] = ()
    tol: float | None = None
    coder_tol: float | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def checked(cls, n_features: int, n_atoms: Any, n_nonzero: Any, **params: Any) -> Settings:
        """Settings from user values, checked against the data dimension ``n_features``."""
        K = check_positive_int(n_atoms, "n_atoms")
        k = check_n_nonzero(n_nonzero, K, n_features)
        atom_batch = check_positive_int(params.pop("atom_batch_size", None), "atom_batch_size", allow_none=True)
        device = resolve_device("auto" if params.get("device") is None else params["device"])
        params.pop("device", None)
        check_memory(K, n_features, device=device)
        return cls(
            n_atoms=K,
            n_nonzero=k,
            atom_batch_size=atom_batch or max(1, math.ceil(K / 8)),
            groups=tuple(check_groups(params.pop("groups", None), K, k)),
            tol=check_tol(params.pop("tol", None), "tol"),
            coder_tol=check_tol(params.pop("coder_tol", None), "coder_tol"),
            device=device,
            **params,
        )

    @property
    def bounds(self) -> list[tuple[int, int, int]]:
        """``[(first atom, end atom, non-zeros), ...]`` of the groups."""
        out, lo = [], 0
        for size, k in self.groups:
            out.append((lo, lo + size, k))
            lo += size
        return out


@dataclass
class TrainingState:
    """What a fit carries from iteration to iteration (and across ``partial_fit`` calls)."""

    dictionary: torch.Tensor
    """(K, d) the current atoms, unit-norm rows."""
    replaced_at: np.ndarray
    """(K,) int64: the iteration each atom was last replaced at."""
    n_steps: int = 0
    """Iterations (sample batches) completed."""
    n_passes: int = 0
    """Full passes over the data completed."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One entry per iteration: pass, batch, rows, loss (mean ||r||^2 per row after the update),
    rel_error (||R||_F / ||X||_F), replaced, seconds."""


def initial_dictionary(
    sample: np.ndarray | None, n_atoms: int, n_features: int, rng: np.random.Generator, dtype: torch.dtype, device: Any
) -> TrainingState:
    """A state whose atoms are K distinct non-zero rows of ``sample`` (m, d) (normalised),
    topped up with random unit vectors (all random when ``sample`` is None)."""
    atoms = np.empty((n_atoms, n_features), dtype=np.float64)
    filled = 0
    if sample is not None:
        norms = np.linalg.norm(sample, axis=1)
        usable = np.flatnonzero(norms > 0)
        pick = rng.choice(usable, size=min(n_atoms, usable.size), replace=False)
        atoms[: pick.size] = sample[pick] / norms[pick, None]
        filled = pick.size
    if filled < n_atoms:
        rand = rng.standard_normal((n_atoms - filled, n_features))
        atoms[filled:] = rand / np.linalg.norm(rand, axis=1, keepdims=True)
    D = torch.as_tensor(atoms, dtype=dtype, device=device)
    return TrainingState(D, np.full(n_atoms, -GRACE, dtype=np.int64))


def code(
    X: torch.Tensor,
    D: torch.Tensor,
    k: int,
    settings: Settings,
    gram_matrix: torch.Tensor | None = None,
    refit: bool | None = None,
    coder: str | None = None,
) -> SparseCodes:
    """Codes of ``X`` (n, d) against ``D`` (K, d) with ``k`` atoms by the settings' pursuit
    (``coder`` overrides it); MP refits unless ``refit`` is False (thresholding always does)."""
    coder = coder or settings.coder
    if refit is None:
        refit = coder == "mp"
    return sparse_encode(
        X, D, k, coder=coder, tol=settings.coder_tol, refit=refit, device=D.device, gram_matrix=gram_matrix
    )


def iterate(
    Xb: torch.Tensor,
    state: TrainingState,
    settings: Settings,
    rng: np.random.Generator,
    pass_index: int,
    batch_index: int,
    last: bool = False,
) -> dict[str, Any]:
    """One DB-KSVD iteration on the sample batch ``Xb`` (b, d): code, update the atoms, replace
    unused ones. Updates ``state`` in place and returns its history entry.

    ``last``: the final iteration of a fit, where atoms are not replaced (a replaced atom would
    be returned without ever having been updated).
    """
    t0 = time.perf_counter()
    D = state.dictionary
    bounds = settings.bounds
    target = Xb
    new_D = D.clone()
    residuals, parts = [], []
    for lo, hi, kg in bounds:
        Dg = D[lo:hi]
        codes = code(target, Dg, kg, settings)
        order = torch.as_tensor(rng.permutation(hi - lo), device=D.device)
        Dg_new, codes, R = update_atoms(
            target, Dg, codes, split_atoms(order, settings.atom_batch_size), method=settings.update
        )
        new_D[lo:hi] = Dg_new
        residuals.append(R)
        parts.append(codes)
        target = R
    R = target
    # from row norms: no (n, d) float64 copies of the batch
    r2 = torch.linalg.vector_norm(R, dim=1).double().square()
    x2 = torch.linalg.vector_norm(Xb, dim=1).double().square()
    loss = float(r2.mean())
    rel_error = math.sqrt(float(r2.sum()) / max(float(x2.sum()), 1e-300))
    replaced = 0
    if settings.replace_unused and not last:
        replaced = _replace(new_D, Xb, bounds, parts, residuals, state, rng)
    state.dictionary = new_D
    state.n_steps += 1
    entry = {
        "pass": pass_index,
        "batch": batch_index,
        "rows": int(Xb.shape[0]),
        "loss": loss,
        "rel_error": rel_error,
        "replaced": replaced,
        "seconds": time.perf_counter() - t0,
    }
    state.history.append(entry)
    return entry


def _replace(new_D, Xb, bounds, parts, residuals, state, rng) -> int:
    """Replace unused and near-duplicate atoms of each group in ``new_D`` (in place) by the
    worst-represented rows; when none needs it, swap the weakest atom. Returns how many."""
    replaced = 0
    for (lo, hi, _), codes, Rg in zip(bounds, parts, residuals):
        Dg = new_D[lo:hi]
        usage = atom_usage(codes)
        mark = (usage < min(MIN_USAGE, Xb.shape[0] // (hi - lo) + 1)) | near_duplicates(Dg, usage, COHERENCE_THRESHOLD)
        if bool(mark.any()):
            gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
            new_D[lo:hi] = replace_atoms(Dg, Xb, Rg, mark, generator=gen)
            state.replaced_at[lo:hi][mark.cpu().numpy()] = state.n_steps
            replaced += int(mark.sum())
        else:
            recent = torch.as_tensor(state.n_steps - state.replaced_at[lo:hi] < GRACE, device=Dg.device)
            swap = weakest_atom_swap(Dg, Rg, codes, protected=recent)
            if swap is not None:
                new_D[lo + swap[0]] = swap[1]
                state.replaced_at[lo + swap[0]] = state.n_steps
                replaced += 1
    return replaced


def train(
    source: RowSource,
    state: TrainingState,
    settings: Settings,
    rng: np.random.Generator,
    prepare: Callable[[Any], torch.Tensor],
    verbose: bool = False,
) -> None:
    """``settings.max_iter`` passes over ``source`` in shuffled sample batches, one
    :func:`iterate` each; ``prepare`` turns a block of rows into the tensor to fit (the
    estimator's preprocessing). Stops early when a pass lowers the mean squared residual by
    less than ``settings.tol``. ``state`` holds the last completed iteration, also when this
    raises (e.g. KeyboardInterrupt)."""
    n = source.shape[0]
    n_batches = math.ceil(n / settings.batch_size)
    whole = prepare(next(source.iter_chunks(n))) if n_batches == 1 else None
    from ._progress import progress

    bar = progress(settings.max_iter * n_batches, "fit", enabled=bool(verbose))
    previous = None
    try:
        for p in range(settings.max_iter):
            pass_loss = 0.0
            batches = [whole] if whole is not None else source.iter_batches(settings.batch_size, rng)
            for b, Xb in enumerate(batches):
                if whole is None:
                    Xb = prepare(Xb)
                last = p == settings.max_iter - 1 and b == n_batches - 1
                entry = iterate(Xb, state, settings, rng, p, b, last)
                pass_loss += entry["loss"] * entry["rows"]
                bar.update(1)
                bar.set_postfix(pass_=p + 1, loss=f"{entry['loss']:.4g}", rel_err=f"{entry['rel_error']:.4f}")
            state.n_passes = p + 1
            pass_loss /= n
            if settings.tol is not None and previous is not None and previous - pass_loss <= settings.tol * previous:
                break
            previous = pass_loss
    finally:
        bar.close()


def encode(
    chunk: torch.Tensor,
    D: torch.Tensor,
    settings: Settings,
    grams: list[torch.Tensor | None],
    refit: bool | None = None,
    coder: str | None = None,
) -> SparseCodes:
    """Codes of ``chunk`` (n, d) against the grouped dictionary ``D`` (K, d): each group coded
    on the residual of the groups before it; ``grams``: each group's Gram matrix (or None)."""
    target, parts = chunk, []
    for (lo, hi, kg), G in zip(settings.bounds, grams):
        codes = code(target, D[lo:hi], kg, settings, G, refit=refit, coder=coder)
        parts.append(codes)
        if hi < D.shape[0]:
            target = target - codes.reconstruct(D[lo:hi])
    return parts[0] if len(parts) == 1 else SparseCodes.hstack(parts)


def group_grams(D: torch.Tensor, settings: Settings, coder: str) -> list[torch.Tensor | None]:
    """Each group's Gram matrix, once per transform (the detector reading needs none)."""
    return [None if coder == "detector" else gram(D[lo:hi]) for lo, hi, _ in settings.bounds]


def db_ksvd(
    X: Any,
    n_atoms: int,
    n_nonzero: int,
    *,
    coder: str = "omp",
    max_iter: int = 20,
    batch_size: int = 65536,
    atom_batch_size: int | None = None,
    update: str = "power",
    init: str = "data",
    replace_unused: bool = True,
    groups: Any = None,
    tol: float | None = None,
    coder_tol: float | None = None,
    random_state: int | None = None,
    device: Any = None,
    verbose: int = 0,
) -> tuple[np.ndarray, SparseCodes, dict[str, Any]]:
    """Learn a dictionary for the rows of ``X`` (n, d) as given (no preprocessing; the
    :class:`~dbksvd.DBKSVD` estimator adds it, streaming and the model folder).

    Parameters as for :class:`dbksvd.config.DBKSVDParams`. ``X``: numpy, torch or a row source.

    Returns
    -------
    dictionary : (K, d) ndarray of unit-norm atoms.
    codes : :class:`~dbksvd.SparseCodes` of every row of ``X`` against it, by the same pursuit.
    info : ``n_iter`` (passes), ``n_steps`` (iterations) and ``history`` (one dict per iteration).
    """
    source = as_source(X)
    n, d = source.shape
    settings = Settings.checked(
        d,
        n_atoms,
        n_nonzero,
        coder=coder,
        max_iter=check_positive_int(max_iter, "max_iter"),
        batch_size=check_positive_int(batch_size, "batch_size"),
        atom_batch_size=atom_batch_size,
        update=update,
        init=init,
        replace_unused=bool(replace_unused),
        groups=groups,
        tol=tol,
        coder_tol=coder_tol,
        device=device,
    )
    dtype = torch.float64 if source.dtype in (torch.float64, np.float64) else torch.float32

    def prepare(block: Any) -> torch.Tensor:
        return as_matrix(block, dtype=dtype, device=settings.device)

    rng = np.random.default_rng(random_state)
    sample = None
    if init == "data":
        size = min(n, settings.batch_size, max(4 * settings.n_atoms, 16384))
        sample = as_matrix(source.take(np.sort(rng.choice(n, size=size, replace=False))), dtype=torch.float64)
        sample = sample.cpu().numpy()
    state = initial_dictionary(sample, settings.n_atoms, d, rng, dtype, settings.device)
    with flush_denormals():
        train(source, state, settings, rng, prepare, verbose=bool(verbose))
        D = state.dictionary
        grams = group_grams(D, settings, settings.coder)
        codes = SparseCodes.vstack([encode(prepare(c), D, settings, grams).to("cpu") for c in _chunks(source)])
    info = {"n_iter": state.n_passes, "n_steps": state.n_steps, "history": state.history}
    return D.cpu().numpy().copy(), codes, info


def _chunks(source: RowSource, rows: int = 65536) -> Iterator[Any]:
    yield from source.iter_chunks(rows)


@contextlib.contextmanager
def flush_denormals():
    """Treat denormal floats as zero while fitting.

    Near-exact fits drive residuals and coefficients into the denormal range, where CPU
    arithmetic is tens of times slower (seen: 6x on a whole noiseless fit) for no useful
    precision. torch has no getter for the flag, so it is restored to torch's default (off).
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
