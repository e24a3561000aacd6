"""Distractors: every image of an indexed gallery added to a benchmark's gallery as a negative.

The +R1M protocol of the revisited Oxford and Paris benchmarks appends the 1,001,001 revisitop
distractors to the dataset's images; the ground truth is unchanged (it names the dataset's own
images), so a distractor is never relevant and never junk. Any indexed gallery can play the part
(R-1M fetched with ``python -m core data fetch revisitop1m``, or the user's own photos).
"""
from __future__ import annotations

from core.cache.combined import joined
from core.cache.descriptors import Embeddings, load_embeddings
from core.config import EmbeddingConfig


def distractor_id(gallery: str, image_id: str) -> str:
    """A distractor's id in the combined gallery: ``<gallery>:<id>``, which no benchmark image is
    named, so the ground truth can never match it."""
    return f"{gallery}:{image_id}"


def with_distractors(emb: Embeddings, distractors: Embeddings) -> Embeddings:
    """``emb`` (the benchmark's gallery) followed by every image of ``distractors``: ids
    prefixed by ``distractor_id``, vectors [n + m, dim] in that order, so the benchmark's images
    keep their rows, in a store of their own written once (``core.cache.combined``), never
    joined in memory. Refuses descriptors of another dimension."""
    if distractors.dim != emb.dim:
        raise ValueError(f"distractors {distractors.gallery!r} are {distractors.dim}-d, the benchmark's "
                         f"descriptors {emb.dim}-d: index them with the same embedding flags")
    return joined(emb, distractors, [distractor_id(distractors.gallery, i) for i in distractors.ids],
                  {"distractors": {"gallery": distractors.gallery, "n_images": len(distractors.ids)}})


def load_distractors(gallery: str, config: EmbeddingConfig) -> Embeddings:
    """The descriptors of the distractor gallery under the benchmark's config (``CacheError``
    with the command that builds them when absent). A whitening learned on each gallery itself
    would map the two sets differently, so it is refused."""
    if config.whitening == "gallery":
        raise ValueError("--distractors needs one whitening for both galleries: learn it on a named gallery "
                         "(--whitening NAME) or use none")
    return load_embeddings(gallery, config)
