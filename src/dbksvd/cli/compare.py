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
    splice: Flag = True
    """Splice every reconstruction back into the model the rows came from and score what
    survives, next to the identity (token stores of minilm/hf:, effnet-lite0 patches and
    features; docs/metrics.md; --no-splice: skip)."""
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
    splicer = _splicer(store, X.name, split) if store is not None and cmd.splice else None
    scorers = [] if splicer is None else [splicer]
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
            scorers.append(lambda model: explanation_scores(model, ctx))
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
        scorers=scorers,
    )
    if splicer is not None:
        report["results"].append(splicer.reference())
    write_report(report, cmd.out, models)
    print(markdown_table(report["results"]), end="")
    print(f"wrote {cmd.out}/report.html, results.{{json,csv,md}}, plots and models/")
    return 0


class _Splicer:
    """The splice columns of every model on the test items, and the identity's reference row
    (one encoder and one mean activation for all models)."""

    def __init__(self, store, space: str, items, mean, encoder):
        self.store, self.space, self.items, self.mean, self.encoder = store, space, items, mean, encoder

    def _columns(self, reconstruct) -> dict:
        from ..analysis.splice import splice_metrics

        found = splice_metrics(
            self.store, self.space, reconstruct, self.items, mean_activation=self.mean, encoder=self.encoder
        )
        return {f"splice_{k}": v for k, v in found.items()}

    def __call__(self, model) -> dict:
        from ..analysis.splice import model_reconstruct

        return self._columns(model_reconstruct(model))

    def reference(self) -> dict:
        from ..analysis.splice import identity

        return {"method": "identity", "coder": "none", "status": "reference", **self._columns(identity)}


def _splicer(store, space: str, split):
    """A :class:`_Splicer` for the store's test items, or None (with a note) when its rows
    cannot be spliced."""
    import numpy as np

    from ..analysis.splice import rebuild_encoder, splice_family

    family, why = splice_family(store, space)
    if family is None:
        print(f"no splice metrics: {why.removeprefix('splice: ')}")
        return None
    item_of_row = store.item_of_row()
    items = np.unique(item_of_row[split["test"]])
    train = split["train"][:: max(1, split["train"].size // 100_000)]
    mean = np.asarray(store.space(space).take(train), dtype=np.float64).mean(axis=0)
    encoder = rebuild_encoder(store.manifest["spaces"][space]["encoder"])
    print(f"splice metrics on {items.size} test items ({family.replace('_', ' ')})")
    return _Splicer(store, space, items, mean, encoder)
