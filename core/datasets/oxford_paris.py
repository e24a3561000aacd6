"""The original Oxford5k / Paris6k text ground truth (``<landmark>_<n>_{query,good,ok,junk}.txt``)."""
from __future__ import annotations

import re
from pathlib import Path

from core.datasets.types import GroundTruth, Query
from core.images import Box

GT_QUERY = re.compile(r"^(?P<name>.+)_(?P<n>\d+)_query\.txt$")
OXFORD_PREFIX = "oxc1_"


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def load_oxford_paris(gt_dir: str | Path, dataset: str) -> GroundTruth:
    """Load the original Oxford5k/Paris6k text ground truth:
    ``<landmark>_<n>_{query,good,ok,junk}.txt``. Positives are good ∪ ok (Paris good files are
    empty); the query line is ``<image> x1 y1 x2 y2`` with an optional ``oxc1_`` prefix.
    Missing label files and duplicate entries are recorded in ``notes``, not fatal."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder {gt_dir} does not exist")
    queries, notes = [], []
    for qfile in sorted(gt_dir.glob("*_query.txt")):
        m = GT_QUERY.match(qfile.name)
        if not m:
            continue
        stem = qfile.name[: -len("_query.txt")]
        fields = qfile.read_text().split()
        if len(fields) != 5:
            notes.append(f"{qfile.name}: expected 'image x1 y1 x2 y2', got {' '.join(fields)!r}; skipped")
            continue
        image = fields[0].removeprefix(OXFORD_PREFIX)
        lists = {}
        for label in ("good", "ok", "junk"):
            path = gt_dir / f"{stem}_{label}.txt"
            if not path.exists():
                notes.append(f"{path.name} is missing; treated as empty")
            names = _read_names(path)
            if len(names) != len(set(names)):
                notes.append(f"{path.name}: {len(names) - len(set(names))} duplicate entries ignored")
            lists[label] = frozenset(names)
        positives = lists["good"] | lists["ok"]
        queries.append(Query(name=stem, image=image, box=Box.of([float(v) for v in fields[1:]]),
                             positives=positives, junk=lists["junk"] - positives, group=m["name"],
                             labels={"good": lists["good"], "ok": lists["ok"], "junk": lists["junk"]}))
    if not queries:
        raise FileNotFoundError(f"no *_query.txt files in {gt_dir}")
    queries.sort(key=lambda q: (q.group, int(GT_QUERY.match(q.name + "_query.txt")["n"])))
    listed = set().union(*(q.positives | q.junk | {q.image} for q in queries))
    return GroundTruth(dataset=dataset, protocol="classic", queries=queries, notes=notes,
                       info={"source": str(gt_dir), "n_queries_listed": len(queries), "n_images_listed": len(listed)})
