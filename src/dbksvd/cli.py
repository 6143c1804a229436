"""The ``dbksvd`` command: thin wrappers that parse, call the library, and print.

Every dbksvd error is printed as one line (``dbksvd: error: ...``) with exit status 2 and no
traceback; outputs are written atomically, so a failed command leaves no file behind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dbksvd", description="Sparse dictionaries for embeddings with Double-Batch K-SVD.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fit", help="learn a dictionary from an array file")
    f.add_argument("input", help="embeddings (n, d): .npy (memory-mapped), .npz or .safetensors")
    f.add_argument("--key", help="array name inside a .npz/.safetensors file")
    f.add_argument("--atoms", type=int, required=True, help="number of atoms K")
    f.add_argument("--nnz", type=int, required=True, help="non-zeros per row k")
    f.add_argument("--out", required=True, help="model folder to write")
    f.add_argument("--iters", type=int, default=20, help="passes over the data (default 20)")
    f.add_argument("--batch-size", type=int, default=65536, help="rows per sample batch (default 65536)")
    f.add_argument("--atom-batch-size", type=int, default=None, help="atoms updated together (default K/8)")
    f.add_argument("--coder", choices=("omp", "mp"), default="omp")
    f.add_argument("--update", choices=("power", "svd"), default="power")
    f.add_argument("--groups", help="Matryoshka group sizes, e.g. 256,768 (must add up to --atoms)")
    f.add_argument("--tol", type=float, default=None, help="stop when a pass improves the loss by less than this fraction")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("encode", help="sparse-code an array file with a fitted model")
    e.add_argument("model", help="model folder written by 'dbksvd fit'")
    e.add_argument("input")
    e.add_argument("--key")
    e.add_argument("--out", required=True, help=".safetensors file with 'indices' (n, k) and 'values' (n, k)")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--device", default=None)

    v = sub.add_parser("evaluate", help="reconstruction metrics of a model on an array file")
    v.add_argument("model")
    v.add_argument("input")
    v.add_argument("--key")
    v.add_argument("--json", action="store_true", help="print the metrics as JSON")
    v.add_argument("--device", default=None)

    d = sub.add_parser("demo", help="the built-in offline job: learn a planted dictionary and report")
    d.add_argument("--samples", type=int, default=20000)
    d.add_argument("--features", type=int, default=64)
    d.add_argument("--atoms", type=int, default=256)
    d.add_argument("--nnz", type=int, default=5)
    d.add_argument("--snr", type=float, default=30.0, help="noise level in dB (default 30)")
    d.add_argument("--iters", type=int, default=10)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default=None, help="also save the learned model here")
    d.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import DbksvdError

    try:
        return {"fit": _fit, "encode": _encode, "evaluate": _evaluate, "demo": _demo}[args.command](args)
    except DbksvdError as exc:
        print(f"dbksvd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _load_input(path: str, key: str | None):
    from .io import load_array

    return load_array(path, key)


def _fit(args: argparse.Namespace) -> int:
    from .ksvd import DBKSVD

    X = _load_input(args.input, args.key)
    groups = _parse_groups(args.groups) if args.groups else None
    model = DBKSVD(args.atoms, args.nnz, coder=args.coder, max_iter=args.iters, batch_size=args.batch_size,
                   atom_batch_size=args.atom_batch_size, update=args.update, groups=groups, tol=args.tol,
                   random_state=args.seed, device=args.device, verbose=0 if args.quiet else 1)
    t0 = time.perf_counter()
    try:
        model.fit(X)
    except KeyboardInterrupt:
        if not hasattr(model, "components_") or model.n_steps_ == 0:
            print("dbksvd: interrupted before the first iteration finished; nothing written", file=sys.stderr)
            return EXIT_INTERRUPTED
        model.save(args.out)
        print(f"dbksvd: interrupted; saved the model after {model.n_steps_} iterations "
              f"({model.n_iter_} full passes) to {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    model.save(args.out)
    last = model.history_[-1]
    print(f"fitted {args.atoms} atoms (k={args.nnz}) on {X.shape[0]} rows x {X.shape[1]} features in "
          f"{time.perf_counter() - t0:.1f} s, {model.n_iter_} passes; last batch rel. error {last['rel_error']:.4f}")
    print(f"saved {args.out}")
    return 0


def _parse_groups(text: str) -> list[int]:
    from .errors import ParameterError

    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise ParameterError(f"--groups must be comma-separated integers; got {text!r}") from None


def _encode(args: argparse.Namespace) -> int:
    from .io import save_tensors
    from .ksvd import load

    model = load(args.model)
    if args.device is not None:
        model.set_params(device=args.device)
    X = _load_input(args.input, args.key)
    codes = model.transform(X, batch_size=args.batch_size)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    save_tensors(out, {"indices": codes.indices, "values": codes.values},
                 metadata={"n_atoms": str(codes.n_atoms), "format": "dbksvd-codes", "format_version": "1"})
    print(f"wrote codes for {len(codes)} rows (k={codes.indices.shape[1]}, K={codes.n_atoms}) to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .ksvd import load

    model = load(args.model)
    if args.device is not None:
        model.set_params(device=args.device)
    X = _load_input(args.input, args.key)
    result = _model_metrics(model, X)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _model_metrics(model, X) -> dict:
    import numpy as np

    from . import metrics

    codes = model.transform(X)
    X_hat = model.inverse_transform(codes)
    out = {"rows": int(X.shape[0]), "features": int(X.shape[1]), "atoms": int(model.components_.shape[0])}
    out.update(metrics.reconstruction_metrics(np.asarray(X), X_hat, codes, model.components_))
    return out


def _print_table(result: dict) -> None:
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


def _demo(args: argparse.Namespace) -> int:
    from . import metrics
    from .data import make_sparse_problem
    from .ksvd import DBKSVD

    print(f"planted problem: {args.samples} signals, d={args.features}, K={args.atoms} true atoms, "
          f"k={args.nnz} per signal, SNR {args.snr:g} dB")
    n_test = max(1000, args.samples // 10)
    problem = make_sparse_problem(args.samples + n_test, args.features, args.atoms, args.nnz, snr_db=args.snr,
                                  random_state=args.seed)
    train_X, test_X = problem.X[:args.samples], problem.X[args.samples:]
    model = DBKSVD(args.atoms, args.nnz, max_iter=args.iters, batch_size=min(args.samples, 16384),
                   random_state=args.seed, verbose=0 if args.quiet else 1)
    t0 = time.perf_counter()
    model.fit(train_X)
    seconds = time.perf_counter() - t0
    codes = model.transform(test_X)
    result = {
        "fit_seconds": seconds,
        "atom_recovery": metrics.atom_recovery(problem.dictionary, model.components_),
    }
    result.update(metrics.reconstruction_metrics(test_X, model.inverse_transform(codes), codes, model.components_))
    print(f"fitted in {seconds:.1f} s ({model.n_iter_} passes); metrics on {len(test_X)} held-out signals:")
    _print_table(result)
    if args.out:
        model.save(args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
