"""``dbksvd fit``: learn a DB-KSVD dictionary and write its model folder (docs/model-format.md)."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Annotated

import tyro

from ..config import DBKSVDParams, cli, config_dataclass
from . import EXIT_INTERRUPTED
from ._shared import ArrayKey, InputRows, Quiet, open_input

#: The command line's defaults: DBKSVDParams' own, but seeded (K and k stay required).
_SEEDED = DBKSVDParams(tyro.MISSING, tyro.MISSING, random_state=0)


@config_dataclass
class FitConfig:
    """learn a DB-KSVD dictionary from an array file or a store"""

    input: InputRows
    out: Annotated[str, cli(metavar="DIR")]
    """Model folder to write."""
    model: Annotated[DBKSVDParams, tyro.conf.OmitArgPrefixes, tyro.conf.arg(name="DB-KSVD", default=_SEEDED)]
    """DB-KSVD's hyperparameters (docs/algorithm.md); on the command line the seed defaults to 0,
    so that a command reruns to the same dictionary, as it always has."""
    key: ArrayKey = None
    space: Annotated[str | None, cli(metavar="SPACE")] = None
    """Store space to fit (default: image when the store has one)."""
    quiet: Quiet = False


CONFIG = FitConfig


def run(cfg: FitConfig) -> int:
    from ..models import DBKSVD

    X = open_input(cfg.input, cfg.key, cfg.space)
    params = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(DBKSVDParams)}
    model = DBKSVD(**{**params, "verbose": 0 if cfg.quiet else 1})
    t0 = time.perf_counter()
    try:
        model.fit(X)
    except KeyboardInterrupt:
        if not hasattr(model, "components_") or model.n_steps_ == 0:
            print("dbksvd: interrupted before the first iteration finished; nothing written", file=sys.stderr)
            return EXIT_INTERRUPTED
        model.save(cfg.out)
        print(
            f"dbksvd: interrupted; saved the model after {model.n_steps_} iterations "
            f"({model.n_iter_} full passes) to {cfg.out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    model.save(cfg.out)
    last = model.history_[-1]
    print(
        f"fitted {model.n_atoms} atoms (k={model.n_nonzero}) on {X.shape[0]} rows x {X.shape[1]} features in "
        f"{time.perf_counter() - t0:.1f} s, {model.n_iter_} passes; last batch rel. error {last['rel_error']:.4f}"
    )
    print(f"saved {cfg.out}")
    return 0
