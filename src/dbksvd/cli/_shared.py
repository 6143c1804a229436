"""What several commands do alike: open rows and models named on the command line."""

from __future__ import annotations

from typing import Any


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
