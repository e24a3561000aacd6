"""Why a query failed: where each of its relevant images landed in a ranking, which ones it
missed, which negatives were ranked above them, and, for two runs, which images moved.

A mean AP says that a query went wrong; these say how. All ranks are 1-based positions in the
full ranking as a run stores it (``ranking.npy``: junk images included, as the search page shows
them); labels follow ``core.app.labels`` (good / ok relevant, junk ignored, bad).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.app.labels import label_results
from core.datasets import Query
from core.evaluation.runs import Run

RELEVANT = ("good", "ok")


@dataclass(frozen=True)
class RankedImage:
    """A gallery image at its place in one ranking; ``negatives_above`` counts the bad images
    ranked before it (junk not counted)."""

    image_id: str
    rank: int
    label: str
    negatives_above: int


@dataclass(frozen=True)
class QueryFailure:
    """One query of one ranking: every relevant image present with its rank (best first), the
    bad images ranked above its first missed one, and how many results count as "found" (``k``)."""

    query: str
    k: int
    positives: list[RankedImage]
    intruders: list[RankedImage]
    n_intruders: int                       # all bad images above the first missed positive (intruders: the first ones)

    @property
    def found(self) -> list[RankedImage]:
        return [p for p in self.positives if p.rank <= self.k]

    @property
    def missed(self) -> list[RankedImage]:
        """Relevant images outside the top ``k``, best rank first."""
        return [p for p in self.positives if p.rank > self.k]


def analyse_ranking(query: Query, ranking: Sequence[int], ids: Sequence[str], k: int = 10,
                    max_intruders: int = 20) -> QueryFailure:
    """Place the relevant images of ``query`` in ``ranking`` (gallery indices into ``ids``, best
    first, every image once) and list the bad images ranked above its first relevant image
    outside the top ``k`` (at most ``max_intruders`` of them, best first; all of them are counted).
    With nothing missed there are no intruders."""
    order = np.asarray(ranking, dtype=np.int64)
    labels = label_results(query, [ids[i] for i in order])
    bad_so_far = np.cumsum([lab == "bad" for lab in labels]) - np.array([lab == "bad" for lab in labels])
    placed = [RankedImage(ids[int(i)], r + 1, lab, int(bad_so_far[r]))
              for r, (i, lab) in enumerate(zip(order, labels))]
    positives = [p for p in placed if p.label in RELEVANT]
    first_missed = next((p.rank for p in positives if p.rank > k), None)
    above = [p for p in placed[:first_missed - 1] if p.label == "bad"] if first_missed else []
    return QueryFailure(query.name, k, positives, above[:max_intruders], len(above))


@dataclass(frozen=True)
class Move:
    """An image whose rank differs between two rankings of the same query (None: absent from
    that run's gallery). ``gain`` > 0: ranked higher (better) in the second run."""

    image_id: str
    label: str
    rank_a: int | None
    rank_b: int | None

    @property
    def gain(self) -> int | None:
        return None if self.rank_a is None or self.rank_b is None else self.rank_a - self.rank_b


def rank_moves(query: Query, ids_a: Sequence[str], ranking_a: Sequence[int], ids_b: Sequence[str],
               ranking_b: Sequence[int], top: int = 20) -> list[Move]:
    """Images in the top ``top`` of either ranking whose rank changed from run A to run B,
    matched by gallery id; the largest moves first (images missing from one run last)."""
    rank_of_a = {ids_a[int(i)]: r + 1 for r, i in enumerate(ranking_a)}
    rank_of_b = {ids_b[int(i)]: r + 1 for r, i in enumerate(ranking_b)}
    shown = dict.fromkeys([ids_a[int(i)] for i in ranking_a[:top]] + [ids_b[int(i)] for i in ranking_b[:top]])
    labels = dict(zip(shown, label_results(query, list(shown))))
    moves = [Move(i, labels[i], rank_of_a.get(i), rank_of_b.get(i)) for i in shown
             if rank_of_a.get(i) != rank_of_b.get(i)]
    return sorted(moves, key=lambda m: (m.gain is None, -abs(m.gain or 0), m.rank_b or 0))


def ranking_of(run: Run, query: str) -> np.ndarray | None:
    """The stored full ranking of ``query`` in ``run`` (rows of ``ranking.npy`` follow
    ``per_query.csv``); None when the run did not evaluate it."""
    rows = run.per_query.index[run.per_query["query"] == query]
    return np.asarray(run.ranking[int(rows[0])]) if len(rows) else None


def gallery_root(run: Run) -> Path:
    """The folder the run's image ids are relative to (ids may have class subfolders)."""
    return Path(run.summary.gallery_root)
