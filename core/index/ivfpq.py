"""A compressed index for galleries too large for the other compressed one (``ivfsq``): faiss
IVF-PQ, each vector stored as ``pq_m`` one-byte product-quantisation codes (128 bytes instead of
5,120 for a 1280-d float32 vector), its candidates re-scored exactly (``core.index.ivf``).

PQ's codebooks are learned on a sample of the gallery: vectors unlike that sample (the
benchmark's 250 photos among 1M derived distractors) are coded coarsely, and with 16,384
candidates re-scored and every cell searched RParis6k +1M reached 85.2 mAP against exact
search's 87.5 (``ivfsq``'s per-dimension codes: 87.6). It is the default only where even 4-bit
scalar codes exceed the index's memory (``core.index.choice``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from core.index.ivf import IvfIndex, IvfParams


def default_sub_quantisers(dim: int) -> int:
    """The largest divisor of ``dim`` up to 128: 128 one-byte codes for 1280, 512 or 2048
    dimensions (at 1M derived 1280-d vectors 64 codes left recall@10 at 0.825 even with 1,024
    candidates re-scored and every cell searched; 128 codes with 4,096 re-scored gave 0.997 at
    nprobe 2, benchmarks/bench_scale_index.py)."""
    return max(m for m in range(1, min(128, dim) + 1) if dim % m == 0)


@dataclass(frozen=True)
class IvfPqParams(IvfParams):
    """``pq_m`` (one-byte codes per vector; must divide the dimension) 0: ``default_sub_quantisers``."""

    minimums: ClassVar[dict[str, int]] = {**IvfParams.minimums, "pq_m": 0}
    pq_m: int = 0


class IvfPqIndex(IvfIndex):
    """A faiss IVF-PQ index of one gallery, its candidates re-scored from the exact vectors."""

    name = "ivfpq"
    title = "IVF-PQ (faiss)"
    Params = IvfPqParams

    code_field = ("pq", "pq_m")

    @classmethod
    def codes(cls, n_items: int, dim: int, n_sample: int, params: IvfPqParams) -> str:
        pq_m = params.pq_m or default_sub_quantisers(dim)
        if dim % pq_m:
            raise ValueError(f"IVF-PQ pq_m {pq_m} does not divide the dimension {dim}; choose a divisor (--pq-m)")
        nbits = max(1, min(8, int(math.log2(max(2, n_sample // 39)))))  # 39 training points a code, as faiss asks
        return f"PQ{pq_m}x{nbits}"

    @classmethod
    def _prepare(cls, index: Any, seed: int) -> None:
        index.cp.seed = index.pq.cp.seed = seed
        index.pq.cp.niter = 10                      # as the coarse k-means: candidates are re-scored exactly anyway
        index.do_polysemous_training = False        # Hamming pre-filtering we never use: 20x the training time
