"""Atom descriptions: DB-KSVD against a TopK SAE and random directions, on the built-in data.

Claim
-----
The atoms DB-KSVD learns are at least as describable as a TopK SAE's of the same size and
sparsity (mean faithfulness, mean specificity and diversity of the chosen descriptions), and
both are far above random directions.

What it measures
----------------
Datasets (stores shared with ``benchmarks/compare.py`` under ``--stores``; embedded the first
time):

* ``emoji``: the 1,362 emoji images through effnet-lite0 (1280-d), captions their Unicode names
  (through minilm, and a linear image->caption bridge); K ``--emoji-atoms`` (256);
* ``emoji-text``: the same emoji's caption embeddings (minilm, 384-d: the model's space is the
  text space); K ``--emoji-atoms``;
* ``fashion``: ``--fashion-rows`` (20,000) Fashion-MNIST images through effnet-lite0, captions
  the class names (bridge as for emoji); K ``--fashion-atoms`` (512);
* ``wordnet``: ``--wordnet-rows`` (20,000) WordNet noun glosses through minilm (384-d; the
  glosses are the captions and the model's space is the text space); K ``--wordnet-atoms`` (1024).

Per dataset: one item split (describe 60% / select 20% / test 20%, seed 0) from
:func:`dbksvd.analysis.explain.explain_context`; DB-KSVD (``--iters`` 30 passes), a TopK SAE
(AuxK, at most ``--epochs`` 50 epochs, early stopping on the select rows) and random unit
directions, each with K atoms and k = ``--nnz`` (8) non-zeros, are fitted on the describe rows;
each atom is described from the describe rows, the description chosen on the select rows, and
faithfulness / specificity / diversity (metrics.md) computed on the test rows. The bridge's
held-out image->caption recall@1/@5 is printed with each image dataset.

How to run
----------
::

    python benchmarks/explain.py                         # all four (about half an hour on 2 cores)
    python benchmarks/explain.py --datasets emoji        # minutes

Also printed, not a target: the same DB-KSVD and SAE atoms with every item coded by
thresholding (its k largest |projections|: each atom read as a detector, no explaining away),
which separates what the dictionary contributes from what the coder does.

Targets
-------
Per dataset: DB-KSVD >= the SAE on mean faithfulness, mean specificity and diversity; each of
DB-KSVD and the SAE "far above random": faithfulness at least random's + 0.05 (AUROC) and
specificity at least 1.5 x random's.
"""

from __future__ import annotations

import argparse

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="emoji,emoji-text,fashion,wordnet")
    p.add_argument("--nnz", type=int, default=8)
    p.add_argument("--emoji-atoms", type=int, default=256)
    p.add_argument("--fashion-atoms", type=int, default=512)
    p.add_argument("--wordnet-atoms", type=int, default=1024)
    _common.add_dataset_options(p, fashion_rows=20000)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    _common.set_threads_env(ARGS.threads)

import time  # noqa: E402
from dataclasses import replace  # noqa: E402

from compare import load_store  # noqa: E402  (benchmarks/compare.py: the same stores)

METHODS = ("dbksvd", "topk", "random")


def fit(method: str, X, ctx, K: int, k: int, args):
    from dbksvd import DBKSVD
    from dbksvd.baselines import SAE, RandomDictionary

    describe, select = ctx.split["describe"], ctx.split["select"]
    if method == "dbksvd":
        return DBKSVD(K, k, max_iter=args.iters, random_state=0).fit(X[describe])
    if method == "random":
        return RandomDictionary(K, k, random_state=0).fit(X[describe])
    batch = max(16, min(4096, len(describe) // 8))
    return SAE("topk", K, k, batch_size=batch, max_epochs=args.epochs, random_state=0).fit(X[describe], X_val=X[select])


def main(args) -> None:
    import torch

    from dbksvd.analysis.explain import ExplainConfig, explain_context, explanation_scores

    torch.set_num_threads(args.threads)
    print(f"explain benchmark: datasets {args.datasets}, k {args.nnz}, {args.threads} threads; {_common.versions_line()}")
    targets = _common.Targets()
    out = {"runs": []}
    for name in args.datasets.split(","):
        store = load_store(name, args)
        space = "text" if name == "emoji-text" else store.default_space()
        K = getattr(args, f"{name.split('-')[0]}_atoms")
        t0 = time.perf_counter()
        ctx = explain_context(store, space, ExplainConfig(seed=0, baseline=False))
        X = ctx.X
        print(f"\n== {name}: {X.shape[0]} x {X.shape[1]} ({space}), K={K}, k={args.nnz}; "
              f"context {time.perf_counter() - t0:.0f} s; text space: {ctx.info.get('text_space')}")
        bridge = ctx.info.get("bridge")
        if bridge:
            print(f"   bridge {bridge['kind']} {bridge['params']}: held-out recall@1 {bridge['test']['recall@1']:.3f}, "
                  f"recall@5 {bridge['test']['recall@5']:.3f} over {bridge['test']['gallery']} captions")
        scores = {}
        detectors = replace(ctx, cfg=replace(ctx.cfg, coder="threshold"))
        for method in METHODS:
            t0 = time.perf_counter()
            model = fit(method, X, ctx, K, args.nnz, args)
            t1 = time.perf_counter()
            scores[method] = explanation_scores(model, ctx)
            print(f"   {method:<7} fit {t1 - t0:6.1f} s, explain {time.perf_counter() - t1:6.1f} s: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in scores[method].items() if v is not None))
            if method != "random":  # the same atoms read as detectors (no explaining away): not a target
                scores[f"{method} (threshold)"] = explanation_scores(model, detectors)
        rows = [[m, f"{s.get('faithfulness', float('nan')):.3f}", f"{s.get('specificity', float('nan')):.3f}",
                 f"{s['diversity']:.3f}", f"{s['described']:.3f}"] for m, s in scores.items()]
        _common.print_table(["method", "faithfulness", "specificity", "diversity", "described"], rows)
        db, sae, rnd = scores["dbksvd"], scores["topk"], scores["random"]
        for metric in ("faithfulness", "specificity", "diversity"):
            targets(f"{name}: {metric} dbksvd >= topk SAE", f"{db[metric]:.3f} vs {sae[metric]:.3f}",
                    db[metric] >= sae[metric])
        for method, s in (("dbksvd", db), ("topk", sae)):
            targets(f"{name}: {method} far above random", f"faithfulness {s['faithfulness']:.3f} vs "
                    f"{rnd['faithfulness']:.3f}, specificity {s['specificity']:.3f} vs {rnd['specificity']:.3f}",
                    s["faithfulness"] >= rnd["faithfulness"] + 0.05 and s["specificity"] >= 1.5 * rnd["specificity"])
        out["runs"].append({"dataset": name, "K": K, "k": args.nnz, "bridge": bridge, "scores": scores})
    out["targets"] = list(targets)
    _common.write_json(args.json, out)


if __name__ == "__main__":
    _common.run(main, ARGS)
