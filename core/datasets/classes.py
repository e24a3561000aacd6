"""Class-based CBIR: a gallery folder of class subfolders (``ROOT/<class>/<image>``), where
images of the same class are relevant to each other, as in Corel-1k/Wang or CIFAR-10 studies.

Every image is a query; its positives are the other images of its class, and the query image
itself is junk (removed from its own ranking), so that a query never scores itself. Reported:
mean precision@k per class, top-k accuracy, a per-class table, and k-NN classification by a
vote of the top-k neighbours with its confusion matrix (``core.evaluation.knn``).

With a separate query folder (``load_query_folders``, the seed systems' protocol: a query
folder searched against a gallery folder), every image of the query folder is a query, its
positives are the gallery images of its class, and nothing is junk.

Images are matched to the ground truth by file stem (``core.datasets.types.resolve``), so stems must be
unique across classes; ``load_class_folders`` refuses folders where they are not. Rankings are
stored in full (n × n), which bounds class galleries to a few thousand images.

"""
from __future__ import annotations

import os
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

from core.datasets.types import GroundTruth, Query, stem_of
from core.images import list_images

PROTOCOL = "classes"


def class_of(image_id: str) -> str | None:
    """The class folder of a gallery id (``coat/t10k-00019.png`` → ``coat``); None for an image
    at the top level, which belongs to no class."""
    parts = PurePosixPath(image_id).parts
    return parts[0] if len(parts) > 1 else None


def load_class_folders(root: str | Path) -> GroundTruth:
    """Ground truth of a folder of class subfolders: one query per classed image."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"class folder {root} does not exist")
    members: dict[str, list[str]] = defaultdict(list)
    loose = 0
    for image_id in list_images(root):
        cls = class_of(image_id)
        if cls is None:
            loose += 1
        else:
            members[cls].append(image_id)
    if not members:
        raise FileNotFoundError(f"no images in class subfolders of {root} (expected ROOT/<class>/<image>)")
    refuse_name_clashes(members, root)
    notes = [f"{loose} images outside class folders: ranked as negatives, never queries"] if loose else []
    singles = sorted(c for c, ids in members.items() if len(ids) == 1)
    if singles:
        notes.append(f"classes with a single image have no positives and are skipped: {', '.join(singles)}")
    queries = []
    for cls in sorted(members):
        names = frozenset(stem_of(i) for i in members[cls])
        for image_id in members[cls]:
            stem = stem_of(image_id)
            queries.append(Query(name=image_id, image=stem, box=None, positives=names - {stem},
                                 junk=frozenset({stem}), group=cls))
    info = {"root": str(root), "n_classes": len(members),
            "class_sizes": {c: len(v) for c, v in sorted(members.items())}, "n_unclassed_images": loose}
    return GroundTruth(dataset="classes", protocol=PROTOCOL, queries=queries, notes=notes, info=info)


def class_members(root: str | Path) -> dict[str, list[str]]:
    """Image ids of each class subfolder of ``root``, sorted (images at the top level are left out)."""
    members: dict[str, list[str]] = defaultdict(list)
    for image_id in list_images(root):
        cls = class_of(image_id)
        if cls is not None:
            members[cls].append(image_id)
    return dict(sorted(members.items()))


def refuse_name_clashes(members: dict[str, list[str]], root: Path) -> None:
    """Images are matched to the ground truth by file stem, so a stem under two classes of
    ``root`` would be relevant to both: refused with a message that names examples."""
    stems = Counter(stem_of(i) for ids in members.values() for i in ids)
    clashes = sorted(s for s, n in stems.items() if n > 1)
    if clashes:
        raise ValueError(f"{len(clashes)} file names occur in more than one place under {root} (e.g. "
                         f"{', '.join(clashes[:3])}); images are matched by name, so rename them to be unique")


def split_class_folder(root: str | Path, out: str | Path, per_class: int, seed: int = 0,
                       names: tuple[str, str] = ("gallery", "queries")) -> dict[str, dict[str, int]]:
    """Split a class folder in two: ``out/<names[0]>/<class>/`` gets ``per_class`` images of each
    class drawn at random (``seed``), ``out/<names[1]>/<class>/`` the others, as symbolic links
    to the originals (copies where links are not allowed). Corel-1k's published protocol is
    ``per_class=90``: 90 images to train on and search, 10 queries. A class with no more than
    ``per_class`` images goes wholly to the first folder. Returns the counts per folder and class."""
    root, out = Path(root).resolve(), Path(out)
    check_split_arguments(root, out, per_class, names)
    members = class_members(root)
    if not members:
        raise FileNotFoundError(f"no images in class subfolders of {root} (expected ROOT/<class>/<image>)")
    rng = random.Random(seed)
    counts: dict[str, dict[str, int]] = {n: {} for n in names}
    for cls, ids in members.items():
        chosen = set(rng.sample(ids, min(per_class, len(ids))))
        for image_id in ids:
            name = names[0] if image_id in chosen else names[1]
            target = out / name / image_id
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(root / image_id, target)
            except OSError:
                shutil.copy2(root / image_id, target)
            counts[name][cls] = counts[name].get(cls, 0) + 1
    return counts


def check_split_arguments(root: Path, out: Path, per_class: int, names: tuple[str, str]) -> None:
    """Refuse, before anything is written, a split that would not give two separate folders under
    ``out``: names that are equal, empty, not a single folder name (``a/b``, ``..``) or hidden; an
    ``out`` inside ``root`` (the input would then hold its own split); a ``per_class`` below 1;
    an output folder that exists already."""
    if per_class < 1:
        raise ValueError(f"--per-class must be at least 1, got {per_class}")
    for name in names:
        if not name or name in (".", "..") or name.startswith(".") or "/" in name or os.sep in name:
            raise ValueError(f"--names {name!r} is not a plain folder name (no '/', not empty, '.' or '..')")
    if names[0] == names[1]:
        raise ValueError(f"--names must differ (both are {names[0]!r}): the queries would join the gallery")
    resolved = out.resolve()
    if resolved == root or root in resolved.parents:
        raise ValueError(f"--out {out} is inside --root {root}: the split would become part of its own input; "
                         f"choose an --out outside it")
    for name in names:
        if (out / name).exists():
            raise FileExistsError(f"{out / name} exists already; choose another --out or delete it")


def load_query_folders(gallery_root: str | Path, queries_root: str | Path) -> GroundTruth:
    """Ground truth of a query folder against a separate gallery folder, both made of class
    subfolders: each query image's positives are the gallery images of the class of the same
    name. Queries are named by their id under ``queries_root`` (``GroundTruth.query_root``);
    query classes that the gallery lacks have no positives and are skipped, with a note."""
    gallery_root, queries_root = Path(gallery_root), Path(queries_root)
    for folder in (gallery_root, queries_root):
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder {folder} does not exist")
    gallery, queries = class_members(gallery_root), class_members(queries_root)
    if not queries:
        raise FileNotFoundError(f"no images in class subfolders of {queries_root} (expected QUERIES/<class>/<image>)")
    refuse_name_clashes(gallery, gallery_root)
    missing = sorted(set(queries) - set(gallery))
    notes = [f"query classes with no gallery folder, skipped: {', '.join(missing)}"] if missing else []
    out = [Query(name=image_id, image=stem_of(image_id), box=None,
                 positives=frozenset(stem_of(i) for i in gallery.get(cls, [])), group=cls)
           for cls, ids in queries.items() for image_id in ids]
    info = {"root": str(gallery_root), "queries_root": str(queries_root), "n_classes": len(gallery),
            "class_sizes": {c: len(v) for c, v in gallery.items()},
            "query_class_sizes": {c: len(v) for c, v in queries.items()}}
    return GroundTruth(dataset="classes", protocol=PROTOCOL, queries=out, notes=notes, info=info,
                       query_root=queries_root.resolve())
