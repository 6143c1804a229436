"""Moved to :mod:`dbksvd.analysis.explain.evidence` (also exported by
:mod:`dbksvd.analysis.explain`); this name stays until the explorer imports from there."""

from .explain.evidence import AtomEvidence, atom_evidence, nearest_atoms

__all__ = ["AtomEvidence", "atom_evidence", "nearest_atoms"]
