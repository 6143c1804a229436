"""The ``dbksvd`` command: thin wrappers that parse, call the library, and print.

Every error is printed as one line (``dbksvd: error: ...``) without a traceback: exit status 2
for bad input and parameters, 1 for a runtime failure (an unwritable output, out of memory), 130
on Ctrl-C. Outputs are written atomically, so a failed command leaves no file behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="dbksvd", description="Sparse dictionaries for embeddings with Double-Batch K-SVD."
    )
    p.add_argument("--version", action="version", version=f"dbksvd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    emb = sub.add_parser("embed", help="embed a dataset into an on-disk store (resumable)")
    emb.add_argument("--dataset", required=True, help="emoji, fashion-mnist, folder:PATH or texts:PATH[#column]")
    emb.add_argument(
        "--encoder",
        default=None,
        help="effnet-lite0 (default for images), minilm (default for texts), clip:NAME_OR_PATH, vit:NAME_OR_PATH",
    )
    emb.add_argument(
        "--text-encoder",
        default=None,
        help="encoder for an image dataset's captions (default: the encoder's own text tower, else minilm); 'none' to skip",
    )
    emb.add_argument("--layer", type=int, default=None, help="clip/vit: embed the class token of this hidden layer")
    emb.add_argument("--out", required=True, help="store folder (a rerun resumes or reuses it)")
    emb.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    emb.add_argument("--shard-rows", type=int, default=4096, help="rows per shard (default 4096)")
    emb.add_argument("--batch-size", type=int, default=64, help="items per encoder call (default 64)")
    emb.add_argument("--device", default=None)
    emb.add_argument("--quiet", action="store_true")

    f = sub.add_parser("fit", help="learn a dictionary from an array file or a store")
    f.add_argument("input", help="embeddings (n, d): a store folder, .npy (memory-mapped), .npz or .safetensors")
    f.add_argument("--key", help="array name inside a .npz/.safetensors file")
    f.add_argument("--space", help="store space to fit (default: image when present)")
    f.add_argument(
        "--preprocessing",
        default="normalize+center+scale",
        help="none, or steps normalize, center, scale joined by '+' (default normalize+center+scale)",
    )
    f.add_argument("--atoms", type=int, required=True, help="number of atoms K")
    f.add_argument("--nnz", type=int, required=True, help="non-zeros per row k")
    f.add_argument("--out", required=True, help="model folder to write")
    f.add_argument("--iters", type=int, default=20, help="passes over the data (default 20)")
    f.add_argument("--batch-size", type=int, default=65536, help="rows per sample batch (default 65536)")
    f.add_argument("--atom-batch-size", type=int, default=None, help="atoms updated together (default K/8)")
    f.add_argument(
        "--coder",
        choices=("omp", "mp", "threshold"),
        default="omp",
        help="pursuit: omp (best reconstructions), mp, or threshold (thresholding pursuit: activations easier to describe)",
    )
    f.add_argument("--update", choices=("power", "svd"), default="power")
    f.add_argument("--groups", help="Matryoshka group sizes, e.g. 256,768 (must add up to --atoms)")
    f.add_argument(
        "--tol", type=float, default=None, help="stop when a pass improves the loss by less than this fraction"
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("encode", help="sparse-code an array file with a fitted model")
    e.add_argument("model", help="model folder written by 'dbksvd fit'")
    e.add_argument("input", help="a store folder or an array file")
    e.add_argument("--key")
    e.add_argument("--space")
    e.add_argument("--out", required=True, help=".safetensors file with 'indices' (n, k) and 'values' (n, k)")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--device", default=None)

    v = sub.add_parser("evaluate", help="reconstruction metrics of a model on an array file or a store")
    v.add_argument("model", help="model folder (any architecture)")
    v.add_argument("input", help="a store folder or an array file")
    v.add_argument("--key", help="array name inside a .npz/.safetensors file")
    v.add_argument("--space", help="store space to score (default: the space the model was fitted on)")
    v.add_argument(
        "--rows",
        help="score only these rows: a .npy of row indices, or FILE.npz#NAME (e.g. a compare report's split.npz#test)",
    )
    v.add_argument("--json", action="store_true", help="print the metrics as JSON")
    v.add_argument("--device", default=None, help="cpu, cuda, cuda:N")

    c = sub.add_parser("compare", help="DB-KSVD against SAEs and baselines on one split: table, plots, HTML")
    c.add_argument("input", help="a store folder or an array file")
    c.add_argument("--key")
    c.add_argument("--space")
    c.add_argument("--labels", help=".npy of (n,) labels for probe retention (a store's labels are used by default)")
    c.add_argument("--atoms", type=int, required=True, help="dictionary size K (every method)")
    c.add_argument("--nnz", required=True, help="comma-separated k values, e.g. 8,16,32")
    c.add_argument(
        "--methods",
        default=None,
        help="comma-separated: dbksvd, dbksvd-threshold, topk, batchtopk, relu, featurechoice, mutualchoice, "
        "sklearn, random (default: all but sklearn)",
    )
    c.add_argument("--out", required=True, help="report folder")
    c.add_argument("--iters", type=int, default=30, help="DB-KSVD passes (default 30)")
    c.add_argument("--epochs", type=int, default=50, help="SAE epochs at most (default 50, early stopping)")
    c.add_argument("--preprocessing", default="normalize+center+scale")
    c.add_argument("--no-pursuit", action="store_true", help="skip the OMP-on-SAE-decoder rows")
    c.add_argument(
        "--no-explain",
        action="store_true",
        help="skip the atom descriptions' scores (computed by default for a store with captions)",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default=None)
    c.add_argument("--quiet", action="store_true")

    x = sub.add_parser("explain", help="describe every atom of a model and score the descriptions")
    x.add_argument("model", help="model folder (DB-KSVD, SAE or baseline)")
    x.add_argument("store", help="embedding store folder (item ids and captions come from it)")
    x.add_argument("--out", required=True, help="folder for atoms.jsonl, summary.json, summary.md")
    x.add_argument("--space", help="store space of the model's rows (default: the space it was fitted on)")
    x.add_argument(
        "--vocab",
        default=None,
        help="comma-separated vocabularies: captions, imagenet, wordnet, or a text file with one entry per "
        "line (default: captions when the store has them, imagenet, wordnet)",
    )
    x.add_argument(
        "--bridge",
        choices=("auto", "ridge", "cca"),
        default="auto",
        help="image->text map when the model's space is not a text space (default auto)",
    )
    x.add_argument(
        "--text-encoder", default=None, help="for descriptions (default: the store's text encoder, else minilm)"
    )
    x.add_argument("--top", type=int, default=20, help="top items kept per atom and side (default 20)")
    x.add_argument("--min-items", type=int, default=3, help="items an atom needs on a side to be described (default 3)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--no-baseline", action="store_true", help="skip the random-direction baseline")
    x.add_argument(
        "--coder",
        choices=("own", "threshold", "omp", "mp"),
        default="own",
        help="which items an atom fires on: the model's own codes (default), or 'threshold': each "
        "item's k largest |projections| (atoms read as detectors)",
    )
    x.add_argument(
        "--allow-shared",
        action="store_true",
        help="keep each atom's best description even when another atom holds it (default: take a "
        "free one within one standard error)",
    )
    x.add_argument("--device", default=None)
    x.add_argument("--quiet", action="store_true")

    d = sub.add_parser("demo", help="the built-in offline job: embed the emoji, fit, report (or --synthetic)")
    d.add_argument("--workdir", default="runs/emoji", help="where the store and models go (default runs/emoji)")
    d.add_argument("--synthetic", action="store_true", help="instead: learn a planted dictionary and report recovery")
    d.add_argument("--samples", type=int, default=20000, help="--synthetic: training signals")
    d.add_argument("--features", type=int, default=64, help="--synthetic: dimension")
    d.add_argument("--snr", type=float, default=30.0, help="--synthetic: noise level in dB (default 30)")
    d.add_argument("--atoms", type=int, default=None, help="K (default 256)")
    d.add_argument("--nnz", type=int, default=None, help="k (default 8; 5 with --synthetic)")
    d.add_argument("--iters", type=int, default=None, help="passes (default 30; 10 with --synthetic)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default=None, help="--synthetic: also save the learned model here")
    d.add_argument("--no-serve", action="store_true", help="stop after the report instead of serving the explorer")
    d.add_argument("--host", default="127.0.0.1", help="explorer address (default 127.0.0.1: this machine only)")
    d.add_argument("--port", type=int, default=8000, help="explorer port (default 8000, or the next free one)")
    d.add_argument("--quiet", action="store_true")

    sv = sub.add_parser("serve", help="the interactive explorer of a run folder (store, models, descriptions)")
    sv.add_argument("run", help="run folder, e.g. runs/emoji (docs/explorer.md)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1; each loads the run, more serve more clients on more cores)",
    )

    ex = sub.add_parser("export-site", help="the explorer of a run folder as a static site (works from file://)")
    ex.add_argument("run", help="run folder")
    ex.add_argument("out", help="folder to write (index.html and data/)")
    ex.add_argument(
        "--max-items",
        type=int,
        default=20000,
        help="items with pages and thumbnails at most (default 20000; atoms' top items always)",
    )
    ex.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import DbksvdError

    try:
        return {
            "embed": _embed,
            "fit": _fit,
            "encode": _encode,
            "evaluate": _evaluate,
            "compare": _compare,
            "explain": _explain,
            "demo": _demo,
            "serve": _serve,
            "export-site": _export_site,
        }[args.command](args)
    except DbksvdError as exc:  # bad input or parameters
        print(f"dbksvd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dbksvd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("dbksvd: error: out of memory; use fewer atoms, a smaller --batch-size or fewer rows", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # e.g. an unwritable --out, a full disk
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"dbksvd: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE


def _load_input(path: str, key: str | None, space: str | None = None):
    """An array file (memory-mapped where possible) or one space of a store."""
    from .data.store import open_rows

    return open_rows(path, key=key, space=space)


def _embed(args: argparse.Namespace) -> int:
    from .data.datasets import get_dataset
    from .embedding import embed_dataset
    from .encoders import get_encoder

    dataset = get_dataset(args.dataset)
    name = args.encoder or ("minilm" if dataset.modality == "text" else "effnet-lite0")
    encoder = get_encoder(name, device=args.device, layer=args.layer)
    text_encoder = None
    if args.text_encoder and args.text_encoder != "none":
        text_encoder = get_encoder(args.text_encoder, device=args.device)
    try:
        store = embed_dataset(
            dataset,
            args.out,
            encoder,
            text_encoder=text_encoder,
            dtype=args.dtype,
            shard_rows=args.shard_rows,
            batch_size=args.batch_size,
            show_progress=not args.quiet,
            captions=args.text_encoder != "none",
        )
    except KeyboardInterrupt:
        from .data.store import is_store, read_manifest

        done = read_manifest(Path(args.out))["count"] if is_store(args.out) else 0
        print(
            f"dbksvd: interrupted; {done} rows are safely in {args.out}; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    m = store.manifest
    spaces = ", ".join(f"{k} {v['dim']}-d ({v['encoder'].get('name')})" for k, v in m["spaces"].items())
    skipped = sum(m["skipped"].values())
    print(f"store {args.out}: {store.count} rows of {m['dataset'].get('name')}; spaces: {spaces}")
    if skipped:
        print(f"skipped {skipped} items: " + ", ".join(f"{c} {r}" for r, c in m["skipped"].items()))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from .models import DBKSVD

    X = _load_input(args.input, args.key, args.space)
    groups = _parse_groups(args.groups) if args.groups else None
    model = DBKSVD(
        args.atoms,
        args.nnz,
        preprocessing=args.preprocessing,
        coder=args.coder,
        max_iter=args.iters,
        batch_size=args.batch_size,
        atom_batch_size=args.atom_batch_size,
        update=args.update,
        groups=groups,
        tol=args.tol,
        random_state=args.seed,
        device=args.device,
        verbose=0 if args.quiet else 1,
    )
    t0 = time.perf_counter()
    try:
        model.fit(X)
    except KeyboardInterrupt:
        if not hasattr(model, "components_") or model.n_steps_ == 0:
            print("dbksvd: interrupted before the first iteration finished; nothing written", file=sys.stderr)
            return EXIT_INTERRUPTED
        model.save(args.out)
        print(
            f"dbksvd: interrupted; saved the model after {model.n_steps_} iterations "
            f"({model.n_iter_} full passes) to {args.out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    model.save(args.out)
    last = model.history_[-1]
    print(
        f"fitted {args.atoms} atoms (k={args.nnz}) on {X.shape[0]} rows x {X.shape[1]} features in "
        f"{time.perf_counter() - t0:.1f} s, {model.n_iter_} passes; last batch rel. error {last['rel_error']:.4f}"
    )
    print(f"saved {args.out}")
    return 0


def _parse_groups(text: str, option: str = "--groups") -> list[int]:
    from .errors import ParameterError

    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise ParameterError(f"{option} must be comma-separated integers; got {text!r}") from None


def _load_model(args: argparse.Namespace):
    """The model folder named on the command line, on ``--device`` when given."""
    from .models import load_model

    model = load_model(args.model)
    if args.device is not None:
        model.set_params(device=args.device)
    return model


def _model_and_rows(args: argparse.Namespace):
    """The model folder and the rows named on the command line, checked against each other."""
    from .models import check_rows

    model = _load_model(args)
    # a store is read in the space the model was fitted on, unless --space says otherwise
    space = args.space or (getattr(model, "data_info_", None) or {}).get("space")
    X = _load_input(args.input, args.key, space)
    check_rows(model, X)
    return model, X


def _encode(args: argparse.Namespace) -> int:
    from .io import save_tensors

    model, X = _model_and_rows(args)
    codes = model.transform(X, batch_size=args.batch_size)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    tensors = {"indices": codes.indices, "values": codes.values}
    if codes.row_norms is not None:
        tensors["row_norms"] = codes.row_norms
    save_tensors(
        out, tensors, metadata={"n_atoms": str(codes.n_atoms), "format": "dbksvd-codes", "format_version": "1"}
    )
    print(f"wrote codes for {len(codes)} rows (k={codes.indices.shape[1]}, K={codes.n_atoms}) to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    model, X = _model_and_rows(args)
    name = X.describe().get("name", args.input) if hasattr(X, "describe") else args.input
    if args.rows:
        rows = _row_selection(args.rows, X.shape[0])
        X = X.to_numpy()[rows] if hasattr(X, "to_numpy") else X[rows]
        scored = f"{len(rows)} rows ({args.rows}) of {name}"
    else:
        trained = (getattr(model, "data_info_", None) or {}).get("store")
        here = X.describe().get("store") if hasattr(X, "describe") else None
        note = (
            "; the model was fitted on rows of this store, so training rows are included"
            if trained and trained == here
            else ""
        )
        scored = f"all {X.shape[0]} rows of {name}{note} (--rows selects some)"
    result = _model_metrics(model, X)
    if args.json:
        print(f"scored: {scored}", file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(f"scored: {scored}")
        _print_table(result)
    return 0


def _row_selection(spec: str, n: int):
    """Row indices from a .npy file or ``FILE.npz#NAME``, checked against ``n`` rows."""
    import numpy as np

    from .errors import InputError

    path, _, key = spec.partition("#")
    try:
        loaded = np.load(path)
        rows = loaded[key or next(iter(loaded.files))] if hasattr(loaded, "files") else loaded
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise InputError(
            f"--rows {spec}: not a readable array of row indices ({' '.join(str(exc).split())[:80]})"
        ) from None
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or rows.size == 0:
        raise InputError(
            f"--rows {spec}: expected a non-empty 1-D array of integer row indices, got {rows.dtype} {rows.shape}"
        )
    if rows.min() < 0 or rows.max() >= n:
        raise InputError(f"--rows {spec}: indices must be in [0, {n}); got {rows.min()}..{rows.max()}")
    return np.sort(rows)


def _model_metrics(model, X) -> dict:
    from .analysis.compare import model_metrics

    return model_metrics(model, X)


def _compare(args: argparse.Namespace) -> int:
    import numpy as np

    from .analysis.compare import (
        DEFAULT_METHODS,
        CompareConfig,
        markdown_table,
        run_comparison,
        split_rows,
        write_report,
    )
    from .errors import InputError

    X = _load_input(args.input, args.key, args.space)
    labels = None
    if args.labels:
        labels = np.asarray(_load_input(args.labels, None))
        if labels.ndim != 1:
            raise InputError(f"--labels must be a 1-D array, got shape {labels.shape}")
    elif hasattr(X, "store"):
        found = [r.get("label") for r in X.store.metadata()]
        labels = np.array(found) if all(v is not None for v in found) else None
    rows = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    methods = (
        DEFAULT_METHODS if args.methods is None else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    )
    cfg = CompareConfig(
        atoms=args.atoms,
        nnz=tuple(_parse_groups(args.nnz, "--nnz")),
        methods=methods,
        seed=args.seed,
        preprocessing=args.preprocessing,
        dbksvd_iters=args.iters,
        sae_epochs=args.epochs,
        pursuit=not args.no_pursuit,
        device=args.device,
    )
    cfg.validate(*rows.shape)
    split = split_rows(rows.shape[0], cfg.test_fraction, cfg.val_fraction, cfg.seed)
    explainer = None
    if hasattr(X, "store") and not args.no_explain:
        if any(m.get("caption") for m in X.store.metadata()):
            from .analysis.explain import ExplainConfig, explain_context, explanation_scores

            print("preparing the atom descriptions (captions, bridge, vocabularies) ...")
            ctx = explain_context(
                X.store,
                X.name,
                ExplainConfig(seed=args.seed, baseline=False),
                split={"describe": split["train"], "select": split["val"], "test": split["test"]},
                show_progress=not args.quiet,
            )
            explainer = lambda model: explanation_scores(model, ctx)  # noqa: E731
        else:
            print("the store has no captions: no explanation scores")
    models = {}
    report = run_comparison(
        rows,
        cfg,
        labels,
        show_progress=not args.quiet,
        on_model=lambda name, model: models.__setitem__(name, model),
        split=split,
        explainer=explainer,
    )
    write_report(report, args.out, models)
    print(markdown_table(report["results"]), end="")
    print(f"wrote {args.out}/report.html, results.{{json,csv,md}}, plots and models/")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .analysis.explain import ExplainConfig, explain, summary_table, write_explanation
    from .data.store import EmbeddingStore, is_store
    from .errors import InputError

    model = _load_model(args)
    if not is_store(args.store):
        raise InputError(
            f"{args.store} is not an embedding store: explain needs the item ids and captions that `dbksvd embed` keeps"
        )
    vocab = None if args.vocab is None else tuple(v.strip() for v in args.vocab.split(",") if v.strip())
    cfg = ExplainConfig(
        vocabularies=vocab,
        bridge=args.bridge,
        top=args.top,
        min_items=args.min_items,
        seed=args.seed,
        text_encoder=args.text_encoder,
        baseline=not args.no_baseline,
        coder=None if args.coder == "own" else args.coder,
        distinct=not args.allow_shared,
    )
    expl = explain(model, EmbeddingStore(args.store), args.space, cfg, show_progress=not args.quiet)
    expl.summary["model_path"] = os.path.relpath(Path(args.model).resolve(), Path(args.out).resolve())
    write_explanation(expl, args.out)
    print(summary_table(expl.summary), end="")
    _print_atoms(expl.atoms)
    print(f"wrote {args.out}/atoms.jsonl ({len(expl.atoms)} atoms), summary.json, summary.md")
    return 0


def _serve(args: argparse.Namespace) -> int:
    return _serve_run(Path(args.run), args.host, args.port, workers=args.workers)


def _serve_run(run: Path, host: str, port: int, workers: int = 1, find_free_port: bool = False) -> int:
    """Serve the explorer of ``run`` until Ctrl-C (exit 0: nothing is lost, the server only reads)."""
    from .web.app import serve

    serve(
        run,
        host=host,
        port=port,
        workers=workers,
        find_free_port=find_free_port,
        on_ready=lambda url: print(f"explorer: {url}  (Ctrl-C to stop)", flush=True),
    )
    return 0


def _export_site(args: argparse.Namespace) -> int:
    from .web.export import export_site

    summary = export_site(args.run, args.out, max_items=args.max_items, show_progress=not args.quiet)
    print(
        f"wrote {args.out}/index.html ({summary['models']} models, {summary['atoms']} atoms, "
        f"{summary['items']} items); open it in a browser, no server needed"
    )
    return 0


def _print_atoms(atoms: list[dict], shown: int = 10) -> None:
    """The most used described atoms, one line each."""
    described = sorted((r for r in atoms if r["description"] is not None), key=lambda r: -r["usage"])
    if described:
        print(f"\nmost used atoms (of {len(described)} described):")
    for r in described[:shown]:
        score = "" if r["faithfulness"] is None else f"  faithfulness {r['faithfulness']:.2f}"
        print(f"  atom {r['atom']:>5} {r['side']}  {r['description'][:60]!r:<62} usage {r['usage']:.3f}{score}")


def _print_table(result: dict) -> None:
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


def _demo(args: argparse.Namespace) -> int:
    return _demo_synthetic(args) if args.synthetic else _demo_emoji(args)


def _demo_emoji(args: argparse.Namespace) -> int:
    """Embed the emoji (images: effnet-lite0, captions: minilm), fit one dictionary per space
    on 80% of the rows (and the image space again with the thresholding pursuit and as a TopK
    SAE), report held-out metrics, describe the image atoms, then serve the explorer. A rerun
    reuses the store."""
    import numpy as np

    from .analysis.compare import CompareConfig, make_model
    from .data.datasets import get_dataset
    from .embedding import embed_dataset
    from .encoders import get_encoder
    from .io import atomic_path
    from .models import DBKSVD

    K, k, iters = args.atoms or 256, args.nnz or 8, args.iters or 30
    work = Path(args.workdir)
    t0 = time.perf_counter()
    steps = 5 if args.no_serve else 6
    print(f"1/{steps} embedding the emoji dataset into {work / 'store'} (images: effnet-lite0, captions: minilm)")
    store = embed_dataset(
        get_dataset("emoji"),
        work / "store",
        get_encoder("effnet-lite0"),
        text_encoder=get_encoder("minilm"),
        show_progress=not args.quiet,
    )
    print(f"    {store.count} emoji ready ({time.perf_counter() - t0:.0f} s)")
    order = np.random.default_rng(args.seed).permutation(store.count)
    n_train = int(0.8 * store.count)
    train, test = np.sort(order[:n_train]), np.sort(order[n_train:])
    # the image space three times: OMP (the best reconstructions), the thresholding pursuit
    # (detector supports: the more describable atoms, BENCHMARKS.md) and a TopK SAE to compare
    fits = [(name, "omp", f"model-{name}") for name in store.spaces]
    if "image" in store.spaces:
        fits += [("image", "threshold", "model-image-threshold"), ("image", "topk", "model-image-topk")]
    print(
        f"2/{steps} fitting {K} atoms, k={k}, on {n_train} embeddings per model ({iters} DB-KSVD passes): "
        + ", ".join(f"{f} ({c})" for _, c, f in fits)
    )
    results = {}
    for name, coder, folder in fits:
        space = store.space(name)
        X = space.to_numpy()
        if coder == "topk":
            model = make_model("topk", K, k, CompareConfig(atoms=K, nnz=(k,), seed=args.seed), n_train)
        else:
            model = DBKSVD(K, k, coder=coder, max_iter=iters, random_state=args.seed, verbose=0 if args.quiet else 1)
        model.fit(X[train])
        model.data_info_ = {**space.describe(), "rows": n_train, "split": f"train (80%, seed {args.seed})"}
        model.save(work / folder)
        results[folder] = _model_metrics(model, X[test])
    print(
        f"3/{steps} held-out metrics ({len(test)} emoji), in {time.perf_counter() - t0:.0f} s; models in {work}/model-*:"
    )
    _print_columns({f.removeprefix("model-"): r for f, r in results.items()})
    with atomic_path(work / "metrics.json") as tmp:
        tmp.write_text(
            json.dumps(
                {"split": f"test (20%, seed {args.seed})", "test_rows": test.tolist(), "models": results},
                indent=1,
                default=float,
            )
            + "\n"
        )
    from .analysis.explain import ExplainConfig, explain, summary_table, write_explanation
    from .models import load_model

    print(
        f"\n4/{steps} describing the image atoms (captions, ImageNet head, WordNet nouns, through an "
        "image->caption bridge) and scoring the descriptions on held-out emoji"
    )
    for folder in [f for name, _, f in fits if name == "image"]:
        expl = explain(
            load_model(work / folder), store, "image", ExplainConfig(seed=args.seed), show_progress=not args.quiet
        )
        out = work / folder.replace("model-", "atoms-")
        expl.summary["model_path"] = f"../{folder}"
        write_explanation(expl, out)
        print(f"\n{folder}:")
        print(summary_table(expl.summary), end="")
        _print_atoms(expl.atoms)
        print(f"atoms and descriptions: {out}/atoms.jsonl")
    print(f"\n5/{steps} done in {time.perf_counter() - t0:.0f} s")
    if args.no_serve:
        return 0
    print(f"6/{steps} serving the explorer of {work} (Ctrl-C stops it)")
    return _serve_run(work, args.host, args.port, find_free_port=True)


def _print_columns(results: dict[str, dict]) -> None:
    names = list(results)
    keys = [key for key in results[names[0]] if all(key in r for r in results.values())]
    width = max(len(key) for key in keys)
    print(f"{'':<{width}}  " + "  ".join(f"{n:>10}" for n in names))
    for key in keys:
        cells = [results[n][key] for n in names]
        print(f"{key:<{width}}  " + "  ".join(f"{c:>10.4f}" if isinstance(c, float) else f"{c!s:>10}" for c in cells))


def _demo_synthetic(args: argparse.Namespace) -> int:
    from . import metrics
    from .data import make_sparse_problem
    from .models import DBKSVD

    args.atoms, args.nnz, args.iters = args.atoms or 256, args.nnz or 5, args.iters or 10
    print(
        f"planted problem: {args.samples} signals, d={args.features}, K={args.atoms} true atoms, "
        f"k={args.nnz} per signal, SNR {args.snr:g} dB"
    )
    n_test = max(1000, args.samples // 10)
    problem = make_sparse_problem(
        args.samples + n_test, args.features, args.atoms, args.nnz, snr_db=args.snr, random_state=args.seed
    )
    train_X, test_X = problem.X[: args.samples], problem.X[args.samples :]
    model = DBKSVD(
        args.atoms,
        args.nnz,
        preprocessing="none",
        max_iter=args.iters,
        batch_size=min(args.samples, 16384),
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
    )
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
