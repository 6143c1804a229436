"""Baselines DB-KSVD is compared with: sparse autoencoders (:mod:`.sae`)."""

from .sae import ARCHITECTURES, SAE, SparseAutoencoder

__all__ = ["ARCHITECTURES", "SAE", "SparseAutoencoder"]
