"""Class-based CBIR: a gallery folder of class subfolders (``ROOT/<class>/<image>``), where
images of the same class are relevant to each other, as in Corel-1k/Wang or CIFAR-10 studies.

Every image is a query; its positives are the other images of its class, and the query image
itself is junk (removed from its own ranking), so that a query never scores itself. Reported:
mean precision@k per class, top-k accuracy, a per-class table, and k-NN classification by a
vote of the top-k neighbours with its confusion matrix (``core.evaluation.knn``).

Images are matched to the ground truth by file stem (``core.datasets.types.resolve``), so stems must be
unique across classes; ``load_class_folders`` refuses folders where they are not. Rankings are
stored in full (n × n), which bounds class galleries to a few thousand images.

"""
from __future__ import annotations

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
    stems = Counter(stem_of(i) for ids in members.values() for i in ids)
    clashes = sorted(s for s, n in stems.items() if n > 1)
    if clashes:
        raise ValueError(f"{len(clashes)} file names occur in more than one place under {root} (e.g. "
                         f"{', '.join(clashes[:3])}); images are matched by name, so rename them to be unique")
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
