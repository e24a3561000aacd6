"""Revisited Oxford and Paris (Radenović, Iscen, Tolias, Avrithis, Chum, CVPR 2018).

Ground truth ships as ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` (revisitop, 0-based indices)
or as the same content in MATLAB v5 ``gnd_r*.mat`` files (1-based). Both become one
``RevisitedGnd`` with 0-based indices, then a ``GroundTruth`` under one of three protocols:

- easy:   relevant = easy;          ignored (junk) = junk ∪ hard
- medium: relevant = easy ∪ hard;   ignored = junk
- hard:   relevant = hard;          ignored = junk ∪ easy

Query images are not part of the revisited database (they are in ``qimlist``, not ``imlist``).
A gallery that holds them anyway, such as the 250-image folder in ``../shared/data`` or a
downloaded ``jpg/`` folder, must not score them, so every query image is junk for every query:
the database of the protocol is then exactly the gallery images listed in ``imlist``.

Pickles from the internet can run code when loaded; ``load_gnd`` reads them with the restricted,
allocation-bounded unpickler of ``core.datasets.safepickle``, never ``pickle.load``; a refused or
malformed file is one ``GroundTruthError`` line, never a traceback.
"""
from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import command_line
from core.datasets.safemat import UnsafeMat, load_mat
from core.datasets.safepickle import UnsafePickle, safe_load
from core.datasets.types import MAX_LABEL_FILE_BYTES, GroundTruth, GroundTruthError, Query
from core.fs import describe_error, printable, read_limited
from core.images import Box

REVISITED: tuple[str, ...] = ("roxford5k", "rparis6k")
PROTOCOLS: tuple[str, ...] = ("easy", "medium", "hard")
DEFAULT_PROTOCOL = "medium"


@dataclass(frozen=True)
class RevisitedGnd:
    """The content of a revisited ground-truth file, indices 0-based into ``imlist``."""

    imlist: list[str]
    qimlist: list[str]
    easy: list[list[int]]
    hard: list[list[int]]
    junk: list[list[int]]
    bbx: list[list | None]


def _ints(value: Any, offset: int) -> list[int]:
    return [int(v) - offset for v in np.asarray(value).ravel()]


def _box(value: Any) -> list | None:
    """The 4 values of a query box as stored (checked per query by ``Box.of``), None if absent."""
    arr = np.asarray(value).ravel() if value is not None else np.zeros(0)
    return arr.tolist() if arr.size == 4 else None


def _from_pickle(path: Path) -> RevisitedGnd:
    # read into memory first (bounded): frame and string opcodes then cannot make a file object
    # allocate the sizes they declare
    data = safe_load(io.BytesIO(read_limited(path, MAX_LABEL_FILE_BYTES)))
    gnd = data["gnd"]
    return RevisitedGnd(imlist=[str(s) for s in data["imlist"]], qimlist=[str(s) for s in data["qimlist"]],
                        easy=[_ints(g["easy"], 0) for g in gnd], hard=[_ints(g["hard"], 0) for g in gnd],
                        junk=[_ints(g["junk"], 0) for g in gnd], bbx=[_box(g.get("bbx")) for g in gnd])


def _mat_names(cells: np.ndarray) -> list[str]:
    return [str(np.asarray(c).ravel()[0]) for c in cells.ravel()]


def _from_mat(path: Path) -> RevisitedGnd:
    m = load_mat(path)
    gnd = m["gnd"].ravel()
    return RevisitedGnd(imlist=_mat_names(m["imlist"]), qimlist=_mat_names(m["qimlist"]),
                        easy=[_ints(g["easy"], 1) for g in gnd], hard=[_ints(g["hard"], 1) for g in gnd],
                        junk=[_ints(g["junk"], 1) for g in gnd], bbx=[_box(g["bbx"]) for g in gnd])


def load_gnd(path: str | Path) -> RevisitedGnd:
    """Read ``gnd_r*.pkl`` (restricted unpickler) or ``gnd_r*.mat`` (scipy); ``GroundTruthError``
    with one line for a file that is refused, unreadable or not shaped like a revisited ground truth."""
    path = Path(path)
    name = printable(path.name)
    try:
        gnd = _from_pickle(path) if path.suffix == ".pkl" else _from_mat(path)
    except (UnsafePickle, UnsafeMat) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except OSError as exc:
        raise GroundTruthError(f"{name}: {describe_error(exc)}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, ValueError, AttributeError,
            MemoryError, OverflowError, NotImplementedError) as exc:
        raise GroundTruthError(f"{name}: not a revisited ground-truth file ({type(exc).__name__}: "
                               f"{printable(str(exc))[:200]})") from None
    n = len(gnd.imlist)
    for i, lists in enumerate(zip(gnd.easy, gnd.hard, gnd.junk)):
        bad = [v for lst in lists for v in lst if not 0 <= v < n]
        if bad:
            raise GroundTruthError(f"{name}: query {i + 1} lists indices {bad[:5]} outside imlist (0..{n - 1})")
    return gnd


def find_gnd(folder: str | Path, dataset: str) -> Path:
    """``gnd_<dataset>.pkl`` or ``.mat`` in ``folder`` or its parent (``--root`` may point at the
    dataset folder while the ground-truth folder defaults to ``ROOT/gt``)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    for d in (folder, folder.parent):
        for suffix in (".pkl", ".mat"):
            path = d / f"gnd_{dataset}{suffix}"
            if path.is_file():
                return path
    raise FileNotFoundError(f"no gnd_{dataset}.pkl or gnd_{dataset}.mat in {folder} or {folder.parent}; "
                            f"get it with: {command_line('data', 'fetch', dataset)}")


def protocol_sets(easy: frozenset[str], hard: frozenset[str], junk: frozenset[str],
                  protocol: str) -> tuple[frozenset[str], frozenset[str]]:
    """(relevant, ignored) of one query under ``protocol`` (the revisitop definitions)."""
    if protocol == "easy":
        return easy, junk | hard
    if protocol == "medium":
        return easy | hard, junk
    if protocol == "hard":
        return hard, junk | easy
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def landmark_of(image: str) -> str:
    """``paris_defense_000605`` → ``defense``, ``all_souls_000013`` → ``all_souls``."""
    return re.sub(r"_\d+$", "", image).removeprefix("paris_")


def revisited_ground_truth(gnd: RevisitedGnd, dataset: str, protocol: str = DEFAULT_PROTOCOL,
                           source: str = "") -> GroundTruth:
    """Queries ``q01``..``q70`` of a revisited dataset under ``protocol``; each keeps its easy,
    hard and junk name sets in ``labels``."""
    names = gnd.imlist
    query_images = frozenset(gnd.qimlist)
    queries, notes = [], []
    for i, image in enumerate(gnd.qimlist):
        easy, hard, junk = (frozenset(names[j] for j in lst) for lst in (gnd.easy[i], gnd.hard[i], gnd.junk[i]))
        positives, ignored = protocol_sets(easy, hard, junk, protocol)
        try:
            box = Box.of(gnd.bbx[i]) if gnd.bbx[i] else None
        except ValueError as exc:
            notes.append(f"q{i + 1:02d} ({printable(image)}): {exc}; query skipped")
            continue
        queries.append(Query(name=f"q{i + 1:02d}", image=image, box=box,
                             positives=positives, junk=(ignored | query_images) - positives,
                             group=landmark_of(image), labels={"easy": easy, "hard": hard, "junk": junk}))
    info = {"source": source, "n_database_listed": len(names), "n_queries_listed": len(gnd.qimlist),
            "query_images": "junk for every query (not part of the revisited database)"}
    return GroundTruth(dataset=dataset, protocol=protocol, queries=queries, notes=notes, info=info)


def load_revisited(folder: str | Path, dataset: str, protocol: str | None = None) -> GroundTruth:
    """Ground truth of ``roxford5k``/``rparis6k`` from the gnd file in (or above) ``folder``."""
    path = find_gnd(folder, dataset)
    return revisited_ground_truth(load_gnd(path), dataset, protocol or DEFAULT_PROTOCOL, source=path.name)
