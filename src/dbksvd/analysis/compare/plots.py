"""The plots of a comparison report (matplotlib, optional: without it the report has tables only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_plots(results: list[dict[str, Any]], usage: dict[str, list[int]], folder: Path) -> list[str]:
    """Write ``folder/pareto.png`` (test explained variance against L0, one curve per method)
    and ``folder/usage.png`` (histograms of how many test rows use each atom, at the largest
    k) and return their names; none without matplotlib or without a successful row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        return []
    methods = list(dict.fromkeys(r["method"] for r in ok))
    colors = dict(zip(methods, plt.cm.tab20(np.linspace(0, 1, max(len(methods), 2)))))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in methods:
        pts = sorted((r["l0"], r["explained_variance"]) for r in ok if r["method"] == m)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            label=m,
            color=colors[m],
            linestyle="--" if m.endswith("+omp") else "-",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L0 (mean non-zeros per row, test)")
    ax.set_ylabel("explained variance (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "pareto.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    k_max = max(r["k"] for r in ok)
    for r in ok:
        counts = usage.get(f"{r['method']}-k{r['k']}")
        if r["k"] == k_max and counts is not None:
            ax.hist(
                np.log10(np.asarray(counts) + 1), bins=30, histtype="step", label=r["method"], color=colors[r["method"]]
            )
    ax.set_xlabel(f"log10(1 + rows using the atom), test, k={k_max}")
    ax.set_ylabel("atoms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "usage.png", dpi=120)
    plt.close(fig)
    return ["pareto.png", "usage.png"]
