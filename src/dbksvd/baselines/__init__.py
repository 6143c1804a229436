"""Baselines DB-KSVD is compared with: sparse autoencoders (:mod:`.sae`), random directions
and scikit-learn's MiniBatchDictionaryLearning (:mod:`.classical`)."""

from .classical import MiniBatchDictionary, RandomDictionary
from .sae import ARCHITECTURES, SAE, SparseAutoencoder

__all__ = ["ARCHITECTURES", "SAE", "SparseAutoencoder", "RandomDictionary", "MiniBatchDictionary"]
