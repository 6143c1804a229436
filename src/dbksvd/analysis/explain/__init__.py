"""A description for every atom of a dictionary, scored for faithfulness, specificity and
diversity on held-out items, next to the same numbers for random directions.

``explain(model, store)`` codes every item of the store's space with the model, splits the
items once (``describe`` / ``select`` / ``test``, by ``seed``, :mod:`dbksvd.data.splits`) and,
per atom and side (K-SVD codes are signed):

1. **evidence** (:mod:`.evidence`): usage, coefficient statistics, top items, nearest atoms;
2. **candidates** (:mod:`.describe`): phrases over-represented in the captions of the atom's
   top ``describe`` items; the vocabulary entries nearest the atom direction in the text space
   (directly when the model's space is the text space or shared with it, as CLIP's; else
   through a linear image->text bridge learned from the image-caption pairs, :mod:`.bridge`);
   the classes the atom pushes up through the encoder's classifier head;
3. **choice** (:mod:`.choice`): the candidate with the best faithfulness on the ``describe``
   and ``select`` items (every item but the test ones), preferring words no other atom holds
   within one standard error of the best; every candidate's scores on the ``test`` items are
   kept (docs/metrics.md: faithfulness = AUROC of ``sim(description, caption)`` for the items
   where the atom fires with the described sign; specificity = reciprocal rank of the atom
   among all atoms by the description's mean similarity to their top test items; diversity =
   distinct / described);
4. **records** (:mod:`.records`, :mod:`.schema`): ``atoms.jsonl`` and ``summary.json``, written
   and read through one schema each.

The pieces: :class:`~dbksvd.config.ExplainConfig` (in :mod:`dbksvd.config`), :mod:`.context` (everything about the
store that does not depend on the dictionary, prepared once; the text encoder in
:mod:`.text`), :mod:`.pipeline` (:func:`explain`, :func:`explain_model`,
:func:`explanation_scores`).

A store without captions gets descriptions from the classifier head and shared-space
vocabularies only, without scores, and the summary says so.
"""

from ...config import DEFAULT_TEXT_ENCODER, ExplainConfig
from .context import ExplainContext, explain_context
from .evidence import AtomEvidence, active_matrix, atom_evidence, nearest_atoms
from .pipeline import explain, explain_model, explanation_scores
from .records import Explanation, evidence_records, most_used_atoms, summary_table, write_explanation
from .schema import AtomRecord, ExplainSummary, read_atoms, read_summary
from .text import SharedSpace, TextSide

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "ExplainConfig",
    "Explanation",
    "explain",
    "explain_context",
    "explain_model",
    "ExplainContext",
    "write_explanation",
    "read_atoms",
    "read_summary",
    "AtomRecord",
    "ExplainSummary",
    "most_used_atoms",
    "summary_table",
    "explanation_scores",
    "evidence_records",
    "AtomEvidence",
    "atom_evidence",
    "active_matrix",
    "nearest_atoms",
    "SharedSpace",
    "TextSide",
]
