"""Many queries from few: every positive image of a ground truth as a query of its own.

The 12 official Paris queries usable on the shipped images are too few to tell a 0.5-point mAP
change from noise; taking each listed positive (the whole image, no box) as a query, with the
other positives of its query as relevant and itself ignored, gives a few hundred. The fidelity
gate of reduced precisions (``core.evaluation.fidelity``) and default choices use it.
"""
from __future__ import annotations

from core.datasets.types import GroundTruth, Query


def positives_as_queries(gt: GroundTruth) -> GroundTruth:
    """One query per (positive image, positive set) of ``gt``: relevant = the other positives,
    junk = the query's junk plus the image itself (so it does not find itself). Queries that
    share their label sets (the five of a Paris landmark) give each image once."""
    seen: set[tuple[str, frozenset[str], frozenset[str]]] = set()
    out = []
    for q in gt.queries:
        for image in sorted(q.positives):
            key = (image, q.positives, q.junk)
            if key in seen or len(q.positives) < 2:
                continue
            seen.add(key)
            out.append(Query(name=f"{q.name}/{image}", image=image, box=None, positives=q.positives - {image},
                             junk=q.junk | {image}, group=q.group))
    return GroundTruth(gt.dataset, f"{gt.protocol}, every positive as a query", out, list(gt.notes),
                       {**gt.info, "n_source_queries": len(gt.queries)})
