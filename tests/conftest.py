import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def unit_rows(rng: np.random.Generator, K: int, d: int, dtype=np.float64) -> np.ndarray:
    D = rng.standard_normal((K, d))
    return (D / np.linalg.norm(D, axis=1, keepdims=True)).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
