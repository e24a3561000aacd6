"""PCA-whitening of global descriptors (Jégou & Chum 2012; Radenović et al.).

Learned on a set of descriptors (ideally another dataset: Oxford for Paris and back), then
applied as x ↦ normalize(P (x − μ)). Pure functions over arrays; the learned parameters are a
small dataclass saved with the cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHRINK = 1e-2     # eigenvalues are floored at SHRINK × their mean so tiny components do not explode


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray           # [D]
    projection: np.ndarray     # [d, D]

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Whiten and L2-normalise [n, D] (or [D]) descriptors."""
        y = (np.atleast_2d(x) - self.mean) @ self.projection.T
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32) if x.ndim == 2 else y[0].astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"whiten_mean": self.mean, "whiten_projection": self.projection}

    @classmethod
    def from_arrays(cls, arrays) -> Whitening:
        return cls(np.asarray(arrays["whiten_mean"]), np.asarray(arrays["whiten_projection"]))


def learn_pca_whitening(x: np.ndarray, dim: int | None = None, shrinkage: float = 0.0) -> Whitening:
    """Learn PCA-whitening from [n, D] descriptors. The output dimension is ``dim`` or, by
    default, every component the data supports (at most n − 1 and D). ``shrinkage`` s moves the
    kept eigenvalues towards their mean, (1 − s)·λ + s·mean(λ), so that directions the learning
    set barely spans are not blown up to the same weight as the main ones."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"whitening needs at least 3 descriptors, got shape {x.shape}")
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    max_dim = min(x.shape[0] - 1, x.shape[1])
    dim = max_dim if dim is None else min(dim, max_dim)
    eigval, eigvec = eigval[:dim], eigvec[:, :dim]
    eigval = (1.0 - shrinkage) * eigval + shrinkage * eigval.mean()
    eigval = np.maximum(eigval, SHRINK * eigval.mean())
    projection = (eigvec / np.sqrt(eigval)).T
    return Whitening(mean.astype(np.float32), projection.astype(np.float32))
