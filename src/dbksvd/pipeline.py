"""The built-in offline job (``dbksvd demo``): :class:`DemoConfig`, :func:`run_demo` on the
emoji and :func:`run_synthetic` on a planted dictionary.

``run_demo`` embeds the emoji (images: effnet-lite0, captions: minilm), fits one dictionary per
space on 80% of the rows (and the image space again with the thresholding pursuit and as a TopK
SAE), writes their held-out metrics (``metrics.json``), describes the image atoms and leaves a
run folder the explorer serves (docs/explorer.md). A rerun reuses the store.

Heavy libraries are imported inside the functions: ``dbksvd demo --help`` reads this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from .config import Count, Flag, Seed, cli, config_dataclass

#: The emoji demo's defaults (the synthetic one's are in :func:`run_synthetic`).
DEMO_ATOMS, DEMO_NONZERO, DEMO_ITERS = 256, 8, 30
TRAIN_FRACTION = 0.8


@config_dataclass
class DemoConfig:
    """the built-in offline job: embed the emoji, fit, report, serve (or --synthetic)"""

    workdir: Annotated[str, cli(metavar="DIR")] = "runs/emoji"
    """Where the store, the models, metrics.json and the descriptions go (the run folder)."""
    synthetic: Flag = False
    """Instead: learn a planted dictionary and report how well it is recovered."""
    samples: Annotated[Count, cli(metavar="N")] = 20000
    """--synthetic: training signals (1,000 or a tenth more are held out)."""
    features: Annotated[Count, cli(metavar="D")] = 64
    """--synthetic: dimension of the signals."""
    snr: float = 30.0
    """--synthetic: signal-to-noise ratio in dB."""
    n_atoms: Annotated[Count | None, cli("--atoms", metavar="K")] = None
    """K, atoms per dictionary (default 256)."""
    n_nonzero: Annotated[Count | None, cli("--nnz", metavar="k")] = None
    """k, atoms per row (default 8; 5 with --synthetic)."""
    max_iter: Annotated[Count | None, cli("--iters", metavar="N")] = None
    """DB-KSVD passes (default 30; 10 with --synthetic)."""
    random_state: Annotated[Seed, cli("--seed", metavar="SEED")] = 0
    """Seed of the split and of every model."""
    out: Annotated[str | None, cli(metavar="DIR")] = None
    """--synthetic: also save the learned model here."""
    serve: Flag = True
    """Serve the explorer of the run folder at the end (--no-serve: stop after the report)."""
    host: str = "127.0.0.1"
    """Explorer address (127.0.0.1: this machine only)."""
    port: Annotated[int, cli(metavar="PORT")] = 8000
    """Explorer port (or the next free one)."""
    quiet: Flag = False
    """No progress bars."""


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """The emoji job of ``cfg`` (see the module docstring); ``say`` gets every line of the
    report. Returns each model folder's held-out metrics (as in ``metrics.json``)."""
    from .analysis.compare import CompareConfig, make_model, metrics_columns, model_metrics, write_heldout_metrics
    from .analysis.explain import ExplainConfig, explain, most_used_atoms, summary_table, write_explanation
    from .data.datasets import get_dataset
    from .data.splits import permutation_split
    from .embedding import embed_dataset
    from .encoders import get_encoder
    from .models import DBKSVD, load_model

    K, k, iters = cfg.n_atoms or DEMO_ATOMS, cfg.n_nonzero or DEMO_NONZERO, cfg.max_iter or DEMO_ITERS
    work, seed, progress = Path(cfg.workdir), cfg.random_state, not cfg.quiet
    t0 = time.perf_counter()
    steps = 6 if cfg.serve else 5
    say(f"1/{steps} embedding the emoji dataset into {work / 'store'} (images: effnet-lite0, captions: minilm)")
    store = embed_dataset(
        get_dataset("emoji"),
        work / "store",
        get_encoder("effnet-lite0"),
        text_encoder=get_encoder("minilm"),
        show_progress=progress,
    )
    say(f"    {store.count} emoji ready ({time.perf_counter() - t0:.0f} s)")
    n_train = int(TRAIN_FRACTION * store.count)
    split = permutation_split(store.count, seed, [("train", n_train), ("test", None)])
    train, test = split["train"], split["test"]
    # the image space three times: OMP (the best reconstructions), the thresholding pursuit
    # (detector supports: the more describable atoms, BENCHMARKS.md) and a TopK SAE to compare
    fits = [(name, "omp", f"model-{name}") for name in store.spaces]
    if "image" in store.spaces:
        fits += [("image", "threshold", "model-image-threshold"), ("image", "topk", "model-image-topk")]
    say(
        f"2/{steps} fitting {K} atoms, k={k}, on {n_train} embeddings per model ({iters} DB-KSVD passes): "
        + ", ".join(f"{f} ({c})" for _, c, f in fits)
    )
    results = {}
    for name, coder, folder in fits:
        space = store.space(name)
        X = space.to_numpy()
        if coder == "topk":
            model = make_model("topk", K, k, CompareConfig(n_atoms=K, n_nonzero=(k,), random_state=seed), n_train)
        else:
            model = DBKSVD(K, k, coder=coder, max_iter=iters, random_state=seed, verbose=int(progress))
        model.fit(X[train])
        model.data_info_ = {**space.describe(), "rows": n_train, "split": f"train (80%, seed {seed})"}
        model.save(work / folder)
        results[folder] = model_metrics(model, X[test])
    say(
        f"3/{steps} held-out metrics ({len(test)} emoji), in {time.perf_counter() - t0:.0f} s; models in {work}/model-*:"
    )
    say(metrics_columns({f.removeprefix("model-"): r for f, r in results.items()}).rstrip("\n"))
    write_heldout_metrics(work / "metrics.json", f"test (20%, seed {seed})", test, results)
    say(
        f"\n4/{steps} describing the image atoms (captions, ImageNet head, WordNet nouns, through an "
        "image->caption bridge) and scoring the descriptions on held-out emoji"
    )
    for folder in [f for name, _, f in fits if name == "image"]:
        expl = explain(
            load_model(work / folder), store, "image", ExplainConfig(random_state=seed), show_progress=progress
        )
        out = work / folder.replace("model-", "atoms-")
        expl.summary["model_path"] = f"../{folder}"
        write_explanation(expl, out)
        say(f"\n{folder}:")
        say((summary_table(expl.summary) + most_used_atoms(expl.atoms)).rstrip("\n"))
        say(f"atoms and descriptions: {out}/atoms.jsonl")
    say(f"\n5/{steps} done in {time.perf_counter() - t0:.0f} s")
    return results


def run_synthetic(cfg: DemoConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Learn a planted dictionary (``cfg.n_atoms`` atoms, default 256, of ``cfg.features``
    dimensions; ``cfg.n_nonzero`` per signal, default 5) from ``cfg.samples`` noisy signals and
    report atom recovery and the reconstruction metrics on held-out signals."""
    from . import metrics
    from .analysis.compare import metrics_lines
    from .data import make_sparse_problem
    from .models import DBKSVD

    K, k, iters = cfg.n_atoms or 256, cfg.n_nonzero or 5, cfg.max_iter or 10
    say(
        f"planted problem: {cfg.samples} signals, d={cfg.features}, K={K} true atoms, "
        f"k={k} per signal, SNR {cfg.snr:g} dB"
    )
    n_test = max(1000, cfg.samples // 10)
    problem = make_sparse_problem(
        cfg.samples + n_test, cfg.features, K, k, snr_db=cfg.snr, random_state=cfg.random_state
    )
    train_X, test_X = problem.X[: cfg.samples], problem.X[cfg.samples :]
    model = DBKSVD(
        K,
        k,
        preprocessing="none",
        max_iter=iters,
        batch_size=min(cfg.samples, 16384),
        random_state=cfg.random_state,
        verbose=0 if cfg.quiet else 1,
    )
    t0 = time.perf_counter()
    model.fit(train_X)
    seconds = time.perf_counter() - t0
    codes = model.transform(test_X)
    result = {"fit_seconds": seconds, "atom_recovery": metrics.atom_recovery(problem.dictionary, model.components_)}
    result.update(metrics.reconstruction_metrics(test_X, model.inverse_transform(codes), codes, model.components_))
    say(f"fitted in {seconds:.1f} s ({model.n_iter_} passes); metrics on {len(test_X)} held-out signals:")
    say(metrics_lines(result).rstrip("\n"))
    if cfg.out:
        model.save(cfg.out)
        say(f"saved {cfg.out}")
    return result
