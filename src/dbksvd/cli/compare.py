"""``dbksvd compare``: DB-KSVD against SAEs and baselines on one split (docs/metrics.md)."""

from __future__ import annotations

from typing import Annotated

import tyro

from ..config import CompareConfig, Flag, cli, config_dataclass
from ._shared import ArrayKey, InputRows, Quiet, open_input


@config_dataclass
class CompareCommand:
    """DB-KSVD against SAEs and baselines on one split: table, plots, HTML"""

    input: InputRows
    out: Annotated[str, cli(metavar="DIR")]
    """Report folder: report.html, results.{json,csv,md}, plots, split.npz and models/."""
    comparison: Annotated[CompareConfig, tyro.conf.OmitArgPrefixes, tyro.conf.arg(name="comparison")]
    """What is compared (dbksvd.config.CompareConfig)."""
    key: ArrayKey = None
    space: Annotated[str | None, cli(metavar="SPACE")] = None
    """Store space to compare on (default: image when the store has one)."""
    labels: Annotated[str | None, cli(metavar="FILE")] = None
    """.npy of (n,) labels for probe retention (default: a store's labels, when every row has one)."""
    explain: Flag = True
    """Score every method's atom descriptions too, on a store with captions (--no-explain: skip)."""
    quiet: Quiet = False


CONFIG = CompareCommand


def run(cmd: CompareCommand) -> int:
    import numpy as np

    from ..analysis.compare import markdown_table, run_comparison, split_rows, write_report
    from ..data.splits import split_by_item
    from ..errors import InputError

    cfg = cmd.comparison
    X = open_input(cmd.input, cmd.key, cmd.space)
    labels = None
    if cmd.labels:
        labels = np.asarray(open_input(cmd.labels))
        if labels.ndim != 1:
            raise InputError(f"--labels must be a 1-D array, got shape {labels.shape}")
    store = getattr(X, "store", None)
    per_item = store is None or store.granularity == "item"
    if store is not None and per_item and not cmd.labels:
        found = store.columns(["label"])["label"]
        labels = np.array(found) if all(v is not None for v in found) else None
    rows = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    cfg.validate(*rows.shape)
    if per_item:
        split = split_rows(rows.shape[0], cfg.test_fraction, cfg.val_fraction, cfg.random_state)
    else:  # whole texts or images per part: no test token's context was seen in training
        split = split_by_item(store.item_of_row(), cfg.test_fraction, cfg.val_fraction, cfg.random_state)
    if labels is not None and labels.shape[0] != rows.shape[0]:
        raise InputError(f"--labels holds {labels.shape[0]} labels but the input has {rows.shape[0]} rows")
    explainer = None
    if store is not None and cmd.explain and not per_item:
        print(f"a {store.granularity} store: no explanation scores (they describe whole items)")
    elif store is not None and cmd.explain:
        if any(store.columns(["caption"])["caption"]):
            from ..analysis.explain import ExplainConfig, explain_context, explanation_scores

            print("preparing the atom descriptions (captions, bridge, vocabularies) ...")
            ctx = explain_context(
                X.store,
                X.name,
                ExplainConfig(random_state=cfg.random_state, baseline=False),
                split={"describe": split["train"], "select": split["val"], "test": split["test"]},
                show_progress=not cmd.quiet,
            )
            explainer = lambda model: explanation_scores(model, ctx)  # noqa: E731
        else:
            print("the store has no captions: no explanation scores")
    models = {}
    report = run_comparison(
        rows,
        cfg,
        labels,
        show_progress=not cmd.quiet,
        on_model=lambda name, model: models.__setitem__(name, model),
        split=split,
        explainer=explainer,
    )
    write_report(report, cmd.out, models)
    print(markdown_table(report["results"]), end="")
    print(f"wrote {cmd.out}/report.html, results.{{json,csv,md}}, plots and models/")
    return 0
