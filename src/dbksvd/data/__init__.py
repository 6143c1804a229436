"""Data sources: the planted synthetic problem (more datasets and the embedding store later)."""

from .synthetic import SparseProblem, make_sparse_problem

__all__ = ["SparseProblem", "make_sparse_problem"]
