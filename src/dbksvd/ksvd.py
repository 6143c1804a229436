"""The DB-KSVD estimator: Double-Batch K-SVD dictionary learning with a scikit-learn interface.

One *iteration* takes one sample batch (``batch_size`` rows), sparse-codes it against the
current dictionary, then updates the atoms in shuffled atom batches (see :mod:`dbksvd.update`),
and finally replaces unused and near-duplicate atoms. ``max_iter`` passes go over the data,
shuffled per pass; the dictionary is warm-started from batch to batch and pass to pass. With
``n <= batch_size`` this is classic (approximate) K-SVD with ``max_iter`` iterations.

Matryoshka dictionaries (``groups``): the atoms form consecutive groups, each with its own
share of the non-zeros; group g is coded and updated on the residual left by groups < g, so
every prefix of the dictionary is a usable dictionary of its own.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .coding import SparseCodes, gram, sparse_encode
from .errors import ModelFormatError
from .estimator import DictionaryModel, jsonable
from .modelio import read_model, write_model
from .preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from .preprocessing import Preprocessor, parse_steps
from .sources import RowSource, as_source
from .update import atom_usage, near_duplicates, replace_atoms, split_atoms, update_atoms, weakest_atom_swap
from .validation import (
    as_matrix,
    check_choice,
    check_groups,
    check_n_nonzero,
    check_positive_int,
    check_tol,
    float_dtype,
    resolve_device,
)

#: pursuits a fit can use; as the model's own pursuit, MP and thresholding end with a
#: least-squares refit (``transform(coder="threshold")`` on any model is the bare detector reading)
TRAINING_CODERS = ("omp", "mp", "threshold")

COHERENCE_THRESHOLD = 0.99
#: Atoms used by fewer rows of a batch than this are replaced (the K-SVD toolbox uses 4).
MIN_USAGE = 4
#: Iterations during which a replaced atom may not be swapped out again: a new atom starts
#: with little usage and would otherwise be the next "weakest" atom (measured: without it the
#: swap thrashes at 10 dB and recovery drops from ~97% to ~90%).
GRACE = 10
#: Rows per block when a pass only accumulates statistics (the preprocessing mean).
CHUNK_ROWS = 16384
#: The initialisation / scale sample holds at most max(4K, this many) rows.
SAMPLE_ROWS = 16384


class DBKSVD(DictionaryModel):
    """Double-Batch K-SVD.

    Parameters
    ----------
    n_atoms : K, the number of atoms (rows of ``components_``).
    n_nonzero : k, the most atoms per row (1 <= k <= min(K, d)).
    coder : the pursuit: ``"omp"`` (exact, Batch-OMP: the best reconstructions), ``"mp"``
        (matching pursuit with least-squares refit) or ``"threshold"`` (thresholding pursuit:
        each row's k atoms with the largest |⟨x, D_j⟩|, least-squares coefficients; no
        explaining away, so an atom is active exactly where it responds most, which makes its
        activations easier to describe at some cost in reconstruction; BENCHMARKS.md).
    max_iter : passes over the data.
    batch_size : rows per sample batch (one K-SVD iteration each); the reference uses 2^16.
    atom_batch_size : atoms updated together from one snapshot; default ``ceil(K / 8)``.
    update : ``"power"`` (one power step per atom and iteration, approximate K-SVD) or ``"svd"``
        (the top singular pair per atom, by power iteration to tolerance; slower).
    init : ``"data"`` (random distinct rows) or ``"random"`` (random unit vectors).
    replace_unused : replace atoms used by fewer than 4 rows of a batch, and the less used atom
        of any pair with coherence > 0.99, by the worst-represented rows of that batch; when
        none needs it, swap the weakest atom for the main direction of the worst-coded rows if
        that captures more (see :func:`dbksvd.update.weakest_atom_swap`). Never in the last
        iteration of a fit.
    groups : Matryoshka groups, e.g. ``[256, 768]`` or ``[(256, 8), (768, 24)]``; see
        :func:`dbksvd.validation.check_groups`.
    preprocessing : ``"normalize+center+scale"`` (default, for CLIP-like embeddings), ``"none"``,
        or any of those steps joined by ``+``; fitted on the training data, stored with the
        model, applied by ``transform`` and undone by ``inverse_transform``
        (:mod:`dbksvd.preprocessing`).
    tol : stop early when a pass lowers the mean squared residual by less than this fraction.
    coder_tol : stop coding a row once ‖x - x̂‖ <= coder_tol · ‖x‖.
    random_state : seed; fits are deterministic for a given seed on the CPU.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``None``/``"auto"`` (CUDA when present).
    verbose : 0 silent, 1 a progress bar (iteration, loss, rate, ETA) on stderr.

    Attributes
    ----------
    components_ : (K, d) ndarray, unit-norm atoms (in the preprocessed space).
    preprocessor_ : the fitted :class:`dbksvd.preprocessing.Preprocessor`.
    data_info_ : provenance of the training rows (e.g. the store, space and encoder).
    n_features_in_ : d.
    n_iter_ : passes completed; ``n_steps_`` iterations (sample batches) completed.
    history_ : one dict per iteration: pass, batch, rows, loss (mean ‖r‖² per row after the
        update), rel_error (‖R‖_F / ‖X‖_F), replaced, seconds.
    """

    #: The ``architecture`` field of the saved model folder.
    architecture_name = "dbksvd"

    def __init__(
        self,
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
        preprocessing: str = DEFAULT_PREPROCESSING,
        tol: float | None = None,
        coder_tol: float | None = None,
        random_state: int | None = None,
        device: Any = None,
        verbose: int = 0,
    ):
        self.n_atoms = n_atoms
        self.n_nonzero = n_nonzero
        self.coder = coder
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.atom_batch_size = atom_batch_size
        self.update = update
        self.init = init
        self.replace_unused = replace_unused
        self.groups = groups
        self.preprocessing = preprocessing
        self.tol = tol
        self.coder_tol = coder_tol
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _validated(self, n_features: int) -> dict[str, Any]:
        """All hyperparameters checked against the data dimension, in one place."""
        K = check_positive_int(self.n_atoms, "n_atoms")
        k = check_n_nonzero(self.n_nonzero, K, n_features)
        return {
            "K": K,
            "k": k,
            "coder": check_choice(self.coder, "coder", TRAINING_CODERS),
            "max_iter": check_positive_int(self.max_iter, "max_iter"),
            "batch_size": check_positive_int(self.batch_size, "batch_size"),
            "atom_batch_size": check_positive_int(self.atom_batch_size, "atom_batch_size", allow_none=True)
            or max(1, math.ceil(K / 8)),
            "update": check_choice(self.update, "update", ("svd", "power")),
            "init": check_choice(self.init, "init", ("data", "random")),
            "groups": check_groups(self.groups, K, k),
            "preprocessing": parse_steps(self.preprocessing),
            "tol": check_tol(self.tol, "tol"),
            "coder_tol": check_tol(self.coder_tol, "coder_tol"),
            "device": resolve_device("auto" if self.device is None else self.device),
        }

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> DBKSVD:
        """Learn the dictionary from ``X`` (n, d): numpy (memory-mapped is fine), torch, or a
        store space (:class:`dbksvd.data.store.StoreSpace`), streamed in shuffled sample
        batches so that the data never has to fit in memory."""
        with self._training():
            self._fit(X)
        return self

    def partial_fit(self, X: Any, y: Any = None) -> DBKSVD:
        """One iteration per ``batch_size`` rows of ``X``, in order (streaming). The first call
        fits the preprocessing statistics on its rows; later calls reuse them."""
        with self._training():
            self._partial_fit(X)
        return self

    @contextlib.contextmanager
    def _training(self):
        """Denormals flushed while training; afterwards ``components_`` is the dictionary of the
        last completed iteration on success and after Ctrl-C (the interrupt is re-raised), and
        is left untouched after any other error."""
        with _flush_denormals():
            try:
                yield
            except KeyboardInterrupt:
                self._finish()
                raise
            except BaseException:
                self._D = None
                raise
            self._finish()

    def _fit(self, X: Any) -> None:
        source = as_source(X)
        n, d = source.shape
        cfg = self._validated(d)
        rng = np.random.default_rng(self.random_state)
        self._start(cfg, d, float_dtype(source), source)
        self._init_dictionary(self._fit_preprocessing(source, cfg, rng), cfg, rng)
        n_batches = math.ceil(n / cfg["batch_size"])
        whole = self._prepare(next(source.iter_chunks(n))) if n_batches == 1 else None
        from ._progress import progress

        bar = progress(cfg["max_iter"] * n_batches, "fit", enabled=bool(self.verbose))
        previous = None
        try:
            for p in range(cfg["max_iter"]):
                pass_loss = 0.0
                batches = [whole] if whole is not None else source.iter_batches(cfg["batch_size"], rng)
                for b, Xb in enumerate(batches):
                    if whole is None:
                        Xb = self._prepare(Xb)
                    last = p == cfg["max_iter"] - 1 and b == n_batches - 1
                    entry = self._iterate(Xb, cfg, rng, p, b, last)
                    pass_loss += entry["loss"] * entry["rows"]
                    bar.update(1)
                    bar.set_postfix(pass_=p + 1, loss=f"{entry['loss']:.4g}", rel_err=f"{entry['rel_error']:.4f}")
                self.n_iter_ = p + 1
                pass_loss /= n
                if cfg["tol"] is not None and previous is not None and previous - pass_loss <= cfg["tol"] * previous:
                    break
                previous = pass_loss
        finally:
            bar.close()

    def _partial_fit(self, X: Any) -> None:
        source = as_source(X)
        n, d = source.shape
        cfg = self._validated(d)
        if getattr(self, "_rng", None) is None:  # first call, or a model from load()
            self._rng = np.random.default_rng(self.random_state)
        if not hasattr(self, "components_"):
            self._start(cfg, d, float_dtype(source), source)
            self._init_dictionary(self._fit_preprocessing(source, cfg, self._rng), cfg, self._rng)
        else:
            self._check_features(d)
            self._resume(cfg)
        for b, chunk in enumerate(source.iter_chunks(cfg["batch_size"])):
            self._iterate(self._prepare(chunk), cfg, self._rng, self.n_iter_, b)

    def _fit_preprocessing(self, source: RowSource, cfg: dict[str, Any], rng: np.random.Generator) -> np.ndarray | None:
        """Fit ``preprocessor_``; returns the preprocessed initialisation sample (float64 numpy,
        up to ``batch_size`` random rows, at most ``max(4K, 16384)``) when ``init="data"``,
        else None."""
        steps = cfg["preprocessing"]
        sample = None
        if cfg["init"] == "data" or "scale" in steps:
            n = source.shape[0]
            size = min(n, cfg["batch_size"], max(4 * cfg["K"], SAMPLE_ROWS))
            pool = np.sort(rng.choice(n, size=size, replace=False))
            sample = as_matrix(source.take(pool), dtype=torch.float64, device="cpu")
        self.preprocessor_ = Preprocessor.fit(steps, source.iter_chunks(CHUNK_ROWS), sample)
        if sample is None or cfg["init"] != "data":
            return None
        return self.preprocessor_.apply(sample)[0].numpy()

    def _start(self, cfg: dict[str, Any], d: int, dtype: torch.dtype, source: RowSource) -> None:
        self.n_features_in_ = d
        self.data_info_ = source.describe()
        self.n_iter_ = 0
        self.n_steps_ = 0
        self.history_ = []
        self._dtype = dtype
        self._device = cfg["device"]

    def _resume(self, cfg: dict[str, Any]) -> None:
        self._dtype = torch.float64 if self.components_.dtype == np.float64 else torch.float32
        self._device = cfg["device"]
        self._D = torch.as_tensor(self.components_, dtype=self._dtype, device=self._device).clone()
        if getattr(self, "_replaced_at", None) is None or len(self._replaced_at) != self._D.shape[0]:
            self._replaced_at = np.full(self._D.shape[0], self.n_steps_ - GRACE, dtype=np.int64)

    def _finish(self) -> None:
        """Publish the dictionary of the last completed iteration (also after an interrupt)."""
        if getattr(self, "_D", None) is not None:
            self.components_ = self._D.detach().cpu().numpy().copy()
            self._D = None

    def _init_dictionary(self, sample: np.ndarray | None, cfg: dict[str, Any], rng: np.random.Generator) -> None:
        """K distinct rows of the (preprocessed) ``sample``, topped up with random unit vectors."""
        K, d = cfg["K"], self.n_features_in_
        atoms = np.empty((K, d), dtype=np.float64)
        filled = 0
        if sample is not None:
            norms = np.linalg.norm(sample, axis=1)
            usable = np.flatnonzero(norms > 0)
            pick = rng.choice(usable, size=min(K, usable.size), replace=False)
            atoms[: pick.size] = sample[pick] / norms[pick, None]
            filled = pick.size
        if filled < K:
            rand = rng.standard_normal((K - filled, d))
            atoms[filled:] = rand / np.linalg.norm(rand, axis=1, keepdims=True)
        self._D = torch.as_tensor(atoms, dtype=self._dtype, device=self._device)
        self._replaced_at = np.full(K, -GRACE, dtype=np.int64)

    def _iterate(
        self,
        Xb: torch.Tensor,
        cfg: dict[str, Any],
        rng: np.random.Generator,
        pass_index: int,
        batch_index: int,
        last: bool = False,
    ) -> dict[str, Any]:
        """One DB-KSVD iteration on the sample batch ``Xb``; updates ``self._D``.

        ``last``: the final iteration of a fit, where atoms are not replaced (a replaced
        atom would be returned without ever having been updated).
        """
        t0 = time.perf_counter()
        D = self._D
        bounds = _group_bounds(cfg["groups"])
        target = Xb
        new_D = D.clone()
        residuals, parts = [], []
        for lo, hi, kg in bounds:
            Dg = D[lo:hi]
            codes = self._code(target, Dg, kg, cfg)
            order = torch.as_tensor(rng.permutation(hi - lo), device=self._device)
            Dg_new, codes, R = update_atoms(
                target, Dg, codes, split_atoms(order, cfg["atom_batch_size"]), method=cfg["update"]
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
        if self.replace_unused and not last:
            for (lo, hi, _), codes, Rg in zip(bounds, parts, residuals):
                Dg = new_D[lo:hi]
                usage = atom_usage(codes)
                mark = (usage < min(MIN_USAGE, Xb.shape[0] // (hi - lo) + 1)) | near_duplicates(
                    Dg, usage, COHERENCE_THRESHOLD
                )
                if bool(mark.any()):
                    gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
                    new_D[lo:hi] = replace_atoms(Dg, Xb, Rg, mark, generator=gen)
                    self._replaced_at[lo:hi][mark.cpu().numpy()] = self.n_steps_
                    replaced += int(mark.sum())
                else:
                    recent = torch.as_tensor(self.n_steps_ - self._replaced_at[lo:hi] < GRACE, device=Dg.device)
                    swap = weakest_atom_swap(Dg, Rg, codes, protected=recent)
                    if swap is not None:
                        new_D[lo + swap[0]] = swap[1]
                        self._replaced_at[lo + swap[0]] = self.n_steps_
                        replaced += 1
        self._D = new_D
        self.n_steps_ += 1
        entry = {
            "pass": pass_index,
            "batch": batch_index,
            "rows": int(Xb.shape[0]),
            "loss": loss,
            "rel_error": rel_error,
            "replaced": replaced,
            "seconds": time.perf_counter() - t0,
        }
        self.history_.append(entry)
        return entry

    # -- using a fitted model --------------------------------------------------------------

    def _transform_chunks(self, X: Any, batch_size: int | None = None, coder: str | None = None):
        """``(rows as a tensor, codes)`` per chunk of ``X``, both on the CPU; ``coder`` replaces
        the model's own pursuit."""
        self._check_fitted()
        source = as_source(X)
        self._check_features(source.shape[1], source)
        cfg = self._validated(source.shape[1])
        # the model's own pursuit ends with a least-squares refit; a reading asked for by name is the bare algorithm
        refit = cfg["coder"] in ("mp", "threshold") if coder is None else coder == "mp"
        if coder is not None:
            cfg = {**cfg, "coder": coder}
        step = check_positive_int(batch_size, "batch_size", allow_none=True) or cfg["batch_size"]
        dtype = torch.float64 if self.components_.dtype == np.float64 else torch.float32
        D = torch.as_tensor(self.components_, dtype=dtype, device=cfg["device"])
        bounds = _group_bounds(cfg["groups"])
        # once, not once per chunk (thresholding needs none)
        grams = [None if cfg["coder"] == "threshold" and not refit else gram(D[lo:hi]) for lo, hi, _ in bounds]
        for chunk in source.iter_chunks(step):
            X_chunk = as_matrix(chunk, dtype=dtype, device=cfg["device"])
            target, norms = self._preprocessor().apply(X_chunk)
            parts = []
            for (lo, hi, kg), G in zip(bounds, grams):
                codes = self._code(target, D[lo:hi], kg, cfg, G, refit=refit)
                parts.append(codes)
                if hi < D.shape[0]:
                    target = target - codes.reconstruct(D[lo:hi])
            codes = parts[0] if len(parts) == 1 else SparseCodes.hstack(parts)
            codes = SparseCodes(codes.indices, codes.values, codes.n_atoms, norms)
            yield X_chunk.cpu(), codes.to("cpu")

    def _code(
        self,
        X: torch.Tensor,
        D: torch.Tensor,
        k: int,
        cfg: dict[str, Any],
        gram_matrix: torch.Tensor | None = None,
        refit: bool | None = None,
    ) -> SparseCodes:
        """The model's sparse coder (default: MP and thresholding with their least-squares refit)."""
        if refit is None:
            refit = cfg["coder"] in ("mp", "threshold")
        return sparse_encode(
            X, D, k, algorithm=cfg["coder"], tol=cfg["coder_tol"], refit=refit, device=D.device, gram_matrix=gram_matrix
        )

    def save(self, path: str | Path) -> Path:
        """Write the model folder (:mod:`dbksvd.modelio`) atomically."""
        self._check_fitted()
        return write_model(
            path,
            architecture=self.architecture_name,
            params=jsonable(self.get_params()),
            components=self.components_,
            preprocessor=self._preprocessor(),
            data=getattr(self, "data_info_", None),
            state={"n_iter": int(self.n_iter_), "n_steps": int(self.n_steps_), "history": self.history_},
        )


def load(path: str | Path, cls: type = None) -> DBKSVD:
    """Load a DB-KSVD model folder written by :meth:`DBKSVD.save`, checking what it holds
    (:func:`dbksvd.models.load_model` loads any architecture). ``cls``: a subclass of
    DBKSVD with its own ``architecture_name`` (the dictionary baselines)."""
    cls = cls or DBKSVD
    config, tensors, pre = read_model(path, (cls.architecture_name,))
    params = dict(config["params"])
    if params.get("groups") is not None:
        params["groups"] = [tuple(g) if isinstance(g, list) else g for g in params["groups"]]
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ModelFormatError(f"{Path(path) / 'config.json'}: unknown parameters ({_short_exc(exc)})") from None
    state = config["state"]
    model.preprocessor_ = pre
    model.components_ = np.array(tensors["components"])
    model.n_features_in_ = int(config["n_features"])
    model.data_info_ = config.get("data")
    model.n_iter_ = int(state.get("n_iter", 0))
    model.n_steps_ = int(state.get("n_steps", 0))
    model.history_ = list(state.get("history", []))
    return model


def _short_exc(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


def _group_bounds(groups: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``[(first atom, end atom, non-zeros), ...]`` of consecutive Matryoshka groups."""
    bounds, lo = [], 0
    for size, k in groups:
        bounds.append((lo, lo + size, k))
        lo += size
    return bounds


@contextlib.contextmanager
def _flush_denormals():
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
