"""INRIA Holidays (Jégou, Douze, Schmid, ECCV 2008): 1491 holiday photos in 500 groups.

Image ``XXXXYY.jpg`` belongs to group ``XXXX``; the first image of each group (the smallest
name, ``XXXX00``) is the query and the other images of its group are its positives. The query
image is in the gallery but, as in the official evaluation, is not scored: it is its own junk.

The ground truth comes from ``gnd_holidays.mat`` (the cnnimageretrieval layout: ``imlist``,
1-based ``qidx``, ``gnd.ok``/``gnd.junk``) when present, else from the image names themselves
(``holidays_images.dat`` of the official evaluation package, or the ``jpg/`` folder).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from core.config import command_line
from core.datasets.safemat import UnsafeMat, load_mat
from core.datasets.types import GroundTruth, GroundTruthError, Query, read_label_text
from core.fs import printable
from core.images import list_images

MAT_NAME = "gnd_holidays.mat"
LIST_NAME = "holidays_images.dat"


def group_of(name: str) -> str:
    """``100302`` → ``1003``: Holidays names are the group number followed by two digits."""
    return PurePosixPath(name).stem[:-2]


def _query(image: str, positives: Iterable[str]) -> Query:
    return Query(name=image, image=image, box=None, positives=frozenset(positives), junk=frozenset({image}),
                 group=group_of(image))


def holidays_from_names(names: Iterable[str], source: str = "image names") -> GroundTruth:
    """Ground truth derived from Holidays file names (stems or ``.jpg`` names)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        stem = PurePosixPath(name).stem
        groups[group_of(stem)].append(stem)
    queries = []
    for group in sorted(groups):
        first, *rest = sorted(groups[group])
        queries.append(_query(first, rest))
    n = sum(len(v) for v in groups.values())
    return GroundTruth(dataset="holidays", protocol="holidays", queries=queries,
                       info={"source": source, "n_images_listed": n, "n_queries_listed": len(queries)})


def holidays_from_mat(path: str | Path) -> GroundTruth:
    """Ground truth of ``gnd_holidays.mat``; ``GroundTruthError`` (one line) for a file that is
    not one."""
    name = printable(Path(path).name)
    try:
        m = load_mat(path)
        names = [str(np.asarray(c).ravel()[0]) for c in m["imlist"].ravel()]
        queries = []
        for qidx, g in zip(m["qidx"].ravel(), m["gnd"].ravel()):
            image = names[int(qidx) - 1]
            ok = [names[int(j) - 1] for j in np.asarray(g["ok"]).ravel()]
            junk = {names[int(j) - 1] for j in np.asarray(g["junk"]).ravel()}
            if junk != {image}:
                raise GroundTruthError(f"{name}: query {image} has junk {sorted(junk)}, expected only itself")
            queries.append(_query(image, ok))
    except UnsafeMat as exc:
        raise UnsafeMat(f"{name}: {exc}") from None
    except GroundTruthError:
        raise
    except (OSError, KeyError, IndexError, TypeError, ValueError, NotImplementedError) as exc:
        raise GroundTruthError(f"{name}: not a Holidays ground-truth file ({type(exc).__name__}: "
                               f"{printable(str(exc))[:200]})") from None
    return GroundTruth(dataset="holidays", protocol="holidays", queries=queries,
                       info={"source": Path(path).name, "n_images_listed": len(names),
                             "n_queries_listed": len(queries)})


def load_holidays(folder: str | Path) -> GroundTruth:
    """Holidays ground truth from ``folder`` (or its parent): the .mat file, else the official
    image list, else the images of ``folder`` (or ``folder/jpg``)."""
    folder = Path(folder)
    for d in (folder, folder.parent):
        if (d / MAT_NAME).is_file():
            return holidays_from_mat(d / MAT_NAME)
        if (d / LIST_NAME).is_file():
            return holidays_from_names(read_label_text(d / LIST_NAME).split(), source=LIST_NAME)
    images = folder / "jpg" if (folder / "jpg").is_dir() else folder
    names = list_images(images) if images.is_dir() else []
    if not names:
        raise FileNotFoundError(f"no {MAT_NAME}, {LIST_NAME} or Holidays images in {folder}; "
                                f"get them with: {command_line('data', 'fetch holidays')}")
    return holidays_from_names(names, source=f"names of the images in {images}")
