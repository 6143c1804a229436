"""``dbksvd evaluate``: a model's reconstruction, code and dictionary metrics (docs/metrics.md)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

from ..config import Flag, cli, config_dataclass
from ._shared import ArrayKey, Device, InputRows, ModelFolder, open_model_and_rows


@config_dataclass
class EvaluateConfig:
    """reconstruction metrics of a model on an array file or a store"""

    model: ModelFolder
    input: InputRows
    key: ArrayKey = None
    space: Annotated[str | None, cli(metavar="SPACE")] = None
    """Store space to score (default: the space the model was fitted on)."""
    rows: Annotated[str | None, cli(metavar="FILE")] = None
    """Score only these rows: a .npy of row indices, or FILE.npz#NAME (e.g. a compare report's
    split.npz#test)."""
    splice: Flag = False
    """Also splice the reconstructions of the scored items back into the model their rows
    came from, next to the identity (token stores of minilm/hf:, effnet-lite0 patches and
    features; docs/metrics.md)."""
    json: Flag = False
    """Print the metrics as JSON (and which rows were scored on stderr)."""
    device: Device = None


CONFIG = EvaluateConfig


def run(cfg: EvaluateConfig) -> int:
    from ..analysis.compare import metrics_lines, model_metrics

    model, X = open_model_and_rows(cfg.model, cfg.input, cfg.key, cfg.space, cfg.device)
    name = X.describe().get("name", cfg.input) if hasattr(X, "describe") else cfg.input
    store = getattr(X, "store", None)
    if cfg.splice and store is None:
        from ..errors import ParameterError

        raise ParameterError("--splice needs a store (it reruns the model the rows came from)")
    space = X.name if store is not None else None
    rows = None
    if cfg.rows:
        rows = row_selection(cfg.rows, X.shape[0])
        X = X.to_numpy()[rows] if hasattr(X, "to_numpy") else X[rows]
        scored = f"{len(rows)} rows ({cfg.rows}) of {name}"
    else:
        trained = (getattr(model, "data_info_", None) or {}).get("store")
        here = X.describe().get("store") if hasattr(X, "describe") else None
        note = (
            "; the model was fitted on rows of this store, so training rows are included"
            if trained and trained == here
            else ""
        )
        scored = f"all {X.shape[0]} rows of {name}{note} (--rows selects some)"
    result = model_metrics(model, X)
    if cfg.splice:
        result.update(_splice_columns(model, store, space, rows))
    if cfg.json:
        print(f"scored: {scored}", file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(f"scored: {scored}")
        print(metrics_lines(result), end="")
    return 0


def _splice_columns(model: Any, store: Any, space: str, rows: Any) -> dict[str, Any]:
    """``splice_*`` of the model and ``identity_splice_*`` of the identity on the items of
    ``rows`` (all items when None)."""
    import numpy as np

    from ..analysis.splice import identity, model_reconstruct, splice_family, splice_metrics

    family, why = splice_family(store, space)
    if family is None:
        return {"splice_note": why}
    items = np.unique(store.item_of_row()[rows]) if rows is not None else np.arange(store.n_items)
    found = splice_metrics(store, space, {"model": model_reconstruct(model), "identity": identity}, items)
    return {
        **{f"splice_{k}": v for k, v in found["model"].items()},
        **{f"identity_splice_{k}": v for k, v in found["identity"].items()},
    }


def row_selection(spec: str, n: int) -> Any:
    """Row indices (sorted) from a .npy file or ``FILE.npz#NAME``, checked against ``n`` rows."""
    import numpy as np

    from ..errors import InputError

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
