"""What several commands do alike: open rows and models named on the command line."""

from __future__ import annotations

from typing import Annotated, Any

import tyro

from ..config import Flag

# The options several commands take, each with its help text once.
InputRows = Annotated[
    str,
    tyro.conf.Positional,
    tyro.conf.arg(metavar="INPUT", help="Rows (n, d): a store folder or an array file (.npy, .npz, .safetensors)."),
]
ModelFolder = Annotated[
    str,
    tyro.conf.Positional,
    tyro.conf.arg(metavar="MODEL", help="Model folder of any architecture (dbksvd fit, compare's models/, an SAE)."),
]
ArrayKey = Annotated[
    str | None, tyro.conf.arg(metavar="NAME", help="Array name inside a .npz or .safetensors file with several.")
]
Device = Annotated[
    str | None,
    tyro.conf.arg(metavar="DEVICE", help="cpu, cuda, cuda:N (default: the model's own, else cuda when present)."),
]
Quiet = Annotated[Flag, tyro.conf.arg(help="No progress bars.")]


def open_input(path: str, key: str | None = None, space: str | None = None) -> Any:
    """An array file (memory-mapped where possible) or one space of a store."""
    from ..data.store import open_rows

    return open_rows(path, key=key, space=space)


def open_model(path: str, device: str | None = None) -> Any:
    """The model folder at ``path`` (any architecture), on ``device`` when given."""
    from ..models import load_model

    model = load_model(path)
    if device is not None:
        model.set_params(device=device)
    return model


def open_model_and_rows(model_path: str, input: str, key: str | None, space: str | None, device: str | None):
    """The model and the rows, checked against each other; a store is read in the space the
    model was fitted on unless ``space`` says otherwise."""
    from ..models import check_rows

    model = open_model(model_path, device)
    space = space or (getattr(model, "data_info_", None) or {}).get("space")
    X = open_input(input, key, space)
    check_rows(model, X)
    return model, X
