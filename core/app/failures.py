"""Why a query failed: where each of its relevant images landed in a ranking, which ones it
missed, which negatives were ranked above them, and, for two runs, which images moved.

A mean AP says that a query went wrong; these say how. All ranks are 1-based positions in the
full ranking as a run stores it (``ranking.npy``: junk images included, as the search page shows
them); labels follow ``core.app.labels`` (good / ok relevant, junk ignored, bad).

"Found" is judged at ``k``, by default the number of relevant images (R-precision's cut-off: a
perfect ranking finds them all); the intruders are the negatives ranked above the last relevant
image, whatever ``k``: they are what pushed relevant images down.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.app.browse import image_group
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
    bad images ranked above its last relevant one, and how many results count as "found" (``k``)."""

    query: str
    k: int
    positives: list[RankedImage]
    intruders: list[RankedImage]
    n_intruders: int                       # all bad images above the last positive (intruders: the first ones)

    @property
    def found(self) -> list[RankedImage]:
        return [p for p in self.positives if p.rank <= self.k]

    @property
    def missed(self) -> list[RankedImage]:
        """Relevant images outside the top ``k``, best rank first."""
        return [p for p in self.positives if p.rank > self.k]


def analyse_ranking(query: Query, ranking: Sequence[int], ids: Sequence[str], k: int | None = None,
                    max_intruders: int = 40) -> QueryFailure:
    """Place the relevant images of ``query`` in ``ranking`` (gallery indices into ``ids``, best
    first, every image once), "found" within the top ``k`` (None: the number of relevant images),
    and list the bad images ranked above its last relevant image (at most ``max_intruders`` of
    them, best first; all of them are counted). A perfect ranking has no intruders."""
    order = np.asarray(ranking, dtype=np.int64)
    labels = label_results(query, [ids[i] for i in order])
    bad = np.array([lab == "bad" for lab in labels], dtype=np.int64)
    bad_so_far = np.cumsum(bad) - bad
    placed = [RankedImage(ids[int(i)], r + 1, lab, int(bad_so_far[r]))
              for r, (i, lab) in enumerate(zip(order, labels))]
    positives = [p for p in placed if p.label in RELEVANT]
    last = positives[-1].rank if positives else 0
    above = [p for p in placed[:last] if p.label == "bad"]
    return QueryFailure(query.name, len(positives) if k is None else k, positives, above[:max_intruders], len(above))


def failure_reason(failure: QueryFailure) -> str:
    """Why the query lost AP, in one line: how many negatives outrank how many relevant images,
    and the group (class folder or name prefix, ``core.app.browse``) most of them come from."""
    if not failure.positives:
        return "No relevant image of this query is in the gallery."
    outranked = sum(p.negatives_above > 0 for p in failure.positives)
    if not outranked:
        return f"A perfect ranking: all {len(failure.positives)} relevant images come before any negative."
    n = failure.n_intruders
    line = (f"{n} negative{'s' if n != 1 else ''} outrank{'s' if n == 1 else ''} {outranked} of the "
            f"{len(failure.positives)} relevant images")
    group, count = Counter(image_group(p.image_id) for p in failure.intruders).most_common(1)[0]
    if n == 1:
        line += f": a {group} image"
    elif count > 1:
        shown = len(failure.intruders)
        line += f"; {count} of {'them' if shown == n else f'the first {shown}'} are {group} images"
    return line + "."


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
