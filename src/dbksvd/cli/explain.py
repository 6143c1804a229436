"""``dbksvd explain``: a description for every atom, scored on held-out items (docs/explain.md)."""

from __future__ import annotations

import os
from dataclasses import field
from pathlib import Path
from typing import Annotated

import tyro

from ..config import ExplainConfig, cli, config_dataclass
from ._shared import Device, ModelFolder, Quiet, open_model


@config_dataclass
class ExplainCommand:
    """describe every atom of a model and score the descriptions"""

    model: ModelFolder
    store: Annotated[str, tyro.conf.Positional, cli(metavar="STORE")]
    """Embedding store folder (item ids and captions come from it)."""
    out: Annotated[str, cli(metavar="DIR")]
    """Folder for atoms.jsonl, summary.json and summary.md."""
    explanation: Annotated[ExplainConfig, tyro.conf.OmitArgPrefixes, tyro.conf.arg(name="explanation")] = field(
        default_factory=ExplainConfig
    )
    """How the atoms are described and scored (dbksvd.config.ExplainConfig)."""
    space: Annotated[str | None, cli(metavar="SPACE")] = None
    """Store space of the model's rows (default: the space it was fitted on)."""
    device: Device = None
    quiet: Quiet = False


CONFIG = ExplainCommand


def run(cmd: ExplainCommand) -> int:
    from ..analysis.explain import explain, most_used_atoms, summary_table, write_explanation
    from ..data.store import EmbeddingStore, is_store
    from ..errors import InputError

    model = open_model(cmd.model, cmd.device)
    if not is_store(cmd.store):
        raise InputError(
            f"{cmd.store} is not an embedding store: explain needs the item ids and captions that `dbksvd embed` keeps"
        )
    expl = explain(model, EmbeddingStore(cmd.store), cmd.space, cmd.explanation, show_progress=not cmd.quiet)
    expl.summary["model_path"] = os.path.relpath(Path(cmd.model).resolve(), Path(cmd.out).resolve())
    write_explanation(expl, cmd.out)
    print(summary_table(expl.summary) + most_used_atoms(expl.atoms), end="")
    print(f"wrote {cmd.out}/atoms.jsonl ({len(expl.atoms)} atoms), summary.json, summary.md")
    return 0
