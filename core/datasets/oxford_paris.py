"""The original Oxford5k / Paris6k text ground truth (``<landmark>_<n>_{query,good,ok,junk}.txt``)."""
from __future__ import annotations

import re
from pathlib import Path

from core.datasets.types import GroundTruth, GroundTruthError, Query, read_label_text
from core.fs import is_utf8, printable
from core.images import Box

GT_QUERY = re.compile(r"^(?P<name>.+)_(?P<n>\d+)_query\.txt$")
OXFORD_PREFIX = "oxc1_"


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in read_label_text(path).splitlines() if line.strip()]


def load_oxford_paris(gt_dir: str | Path, dataset: str) -> GroundTruth:
    """Load the original Oxford5k/Paris6k text ground truth:
    ``<landmark>_<n>_{query,good,ok,junk}.txt``. Positives are good ∪ ok (Paris good files are
    empty); the query line is ``<image> x1 y1 x2 y2`` with an optional ``oxc1_`` prefix.
    Missing label files and duplicate entries are recorded in ``notes``, not fatal; a query whose
    box is not 4 finite numbers with an area, or whose files cannot be read as text, is skipped
    with a one-line note."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder {gt_dir} does not exist")
    queries, notes = [], []
    for qfile in sorted(gt_dir.glob("*_query.txt")):
        m = GT_QUERY.match(qfile.name)
        if not m:
            continue
        stem = qfile.name[: -len("_query.txt")]
        if not is_utf8(stem):
            notes.append(f"{printable(qfile.name)}: file name is not valid UTF-8; query skipped")
            continue
        try:
            fields = read_label_text(qfile).split()
            if len(fields) != 5:
                raise GroundTruthError(f"{printable(qfile.name)}: expected 'image x1 y1 x2 y2', "
                                       f"got {printable(' '.join(fields))[:200]!r}")
            try:
                box = Box.of(fields[1:])
            except ValueError as exc:
                raise GroundTruthError(f"{printable(qfile.name)}: {exc}") from None
            lists = {}
            for label in ("good", "ok", "junk"):
                path = gt_dir / f"{stem}_{label}.txt"
                if not path.exists() and not path.is_symlink():
                    notes.append(f"{printable(path.name)} is missing; treated as empty")
                    lists[label] = frozenset()
                    continue
                names = _read_names(path)
                if len(names) != len(set(names)):
                    notes.append(f"{printable(path.name)}: {len(names) - len(set(names))} duplicate entries ignored")
                lists[label] = frozenset(names)
        except GroundTruthError as exc:
            notes.append(f"{exc}; query skipped")
            continue
        image = fields[0].removeprefix(OXFORD_PREFIX)
        positives = lists["good"] | lists["ok"]
        queries.append(Query(name=stem, image=image, box=box,
                             positives=positives, junk=lists["junk"] - positives, group=m["name"],
                             labels={"good": lists["good"], "ok": lists["ok"], "junk": lists["junk"]}))
    if not queries:
        raise FileNotFoundError(f"no usable *_query.txt files in {gt_dir}"
                                + (f" ({'; '.join(notes[:3])})" if notes else ""))
    queries.sort(key=lambda q: (q.group, int(GT_QUERY.match(q.name + "_query.txt")["n"])))
    listed = set().union(*(q.positives | q.junk | {q.image} for q in queries))
    return GroundTruth(dataset=dataset, protocol="classic", queries=queries, notes=notes,
                       info={"source": str(gt_dir), "n_queries_listed": len(queries), "n_images_listed": len(listed)})
