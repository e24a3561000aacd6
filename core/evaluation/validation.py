"""The validation protocol: many queries on several kinds of image, the basis for choosing defaults.

Sets (``validation_sets``), each evaluated by the normal pipeline into a normal run:

- ``paris-whole``: the 250 shared Paris images; every positive image queries the other positives
  of its landmark (``core.datasets.validation.landmark_queries``), the query image itself junk;
- ``paris-crop``: the same queries cropped to a seeded random box covering 30–70 % of the image;
- ``corel1k``: Corel-1k, 10 classes of 100 photos, every image a query of its class;
- ``fashion-mnist``: a Fashion-MNIST class-folder export (100 per class, 64 px), the same way;
- ``paris-official`` (reported beside, never a basis of choice): the 12 official Paris queries
  whose image is in the gallery, cropped by their boxes.

``validate`` runs one embedding config, search and re-ranking over the sets and returns a
``Validation``: one ``SetScore`` per set, with the run it wrote. The descriptors of every set
(gallery images and cropped queries) are cached, so a second re-ranking of the same config costs
only the re-ranking.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from core.cache.descriptors import Embeddings, build_embeddings
from core.cache.galleries import Gallery, checked_gallery, register_gallery
from core.config import EmbeddingConfig
from core.datasets import GroundTruth, ResolvedQuery, dataset_layout, load_ground_truth, resolve, stem_of
from core.datasets.classes import load_class_folders
from core.datasets.exporters import export_fashion_mnist
from core.datasets.validation import VALIDATION_PROTOCOL, landmark_queries, random_boxes
from core.embed.embedder import Embedder
from core.evaluation.metrics import score_query
from core.evaluation.pipeline import RunOptions, evaluate, query_vectors
from core.evaluation.runs import claim_folder, new_run_id
from core.files import write_json, write_text
from core.images import image_size, list_images
from core.index import SearchSettings
from core.paths import artifacts_dir
from core.progress import Reporter
from core.rerank import Reranker, create_reranker

SET_NAMES = ("paris-whole", "paris-crop", "corel1k", "fashion-mnist", "paris-official")
BASIS_SETS = SET_NAMES[:4]
FASHION_PER_CLASS = 100
FASHION_SIZE = 64
# Whitening learned "elsewhere" (``--whitening other``): each set's gallery learns it on another
# photo gallery, never on itself (Fashion-MNIST is no photo set, so it never teaches the others).
WHITEN_SOURCE = {"paris6k": "corel1k", "corel1k": "paris6k", "fashion-mnist": "corel1k"}
OTHER = "other"


@dataclass(frozen=True)
class ValidationSet:
    """One set: a gallery, its ground truth, and whether it counts when defaults are chosen."""

    name: str
    gallery: Gallery
    ground_truth: GroundTruth
    basis: bool = True


def paris_sets(root: str | Path, seed: int = 0) -> list[ValidationSet]:
    """``paris-whole``, ``paris-crop`` and ``paris-official`` over the images of ``root``
    (Paris6k layout: ``root/jpg``, ``root/gt``); the gallery is not yet registered."""
    layout = dataset_layout(root)
    gallery = checked_gallery("paris6k", layout.images, layout.ground_truth, "paris6k")
    gt = load_ground_truth("paris6k", layout.ground_truth)
    ids = list_images(layout.images)
    present = {stem_of(i) for i in ids}
    sizes = {stem_of(i): image_size(layout.images / i) for i in ids}
    whole = landmark_queries(gt, present, f"{VALIDATION_PROTOCOL}-whole")
    crop = landmark_queries(gt, present, f"{VALIDATION_PROTOCOL}-crop", random_boxes(sizes, seed))
    return [ValidationSet("paris-whole", gallery, whole), ValidationSet("paris-crop", gallery, crop),
            ValidationSet("paris-official", gallery, gt, basis=False)]


def class_set(name: str, root: str | Path) -> ValidationSet:
    """A folder of class subfolders as a set (gallery named ``name``, not yet registered)."""
    gallery = checked_gallery(name, root, root, "classes")
    return ValidationSet(name, gallery, load_class_folders(root))


def fashion_folder(source: str | Path | None = None) -> Path:
    """The Fashion-MNIST export the protocol uses (``artifacts/data/fashion-mnist``, written on
    first use from the IDX files in ``source``; a re-export rewrites nothing that is unchanged)."""
    out = artifacts_dir() / "data" / "fashion-mnist"
    export_fashion_mnist(out, source, per_class=FASHION_PER_CLASS, size=FASHION_SIZE)
    return out


def validation_sets(data: str | Path, names: Sequence[str] = SET_NAMES, seed: int = 0) -> list[ValidationSet]:
    """The named sets from a data folder laid out like ``../shared/data`` (``paris6k/``,
    ``corel1k/``, ``fashion-mnist/``)."""
    unknown = sorted(set(names) - set(SET_NAMES))
    if unknown:
        raise ValueError(f"unknown validation sets {unknown}; choose from {', '.join(SET_NAMES)}")
    data = Path(data)
    found: list[ValidationSet] = []
    if any(n.startswith("paris") for n in names):
        found += paris_sets(data / "paris6k", seed)
    if "corel1k" in names:
        found.append(class_set("corel1k", data / "corel1k"))
    if "fashion-mnist" in names:
        found.append(class_set("fashion-mnist", fashion_folder(data / "fashion-mnist")))
    return sorted(_registered([s for s in found if s.name in names]), key=lambda s: SET_NAMES.index(s.name))


def _registered(sets: list[ValidationSet]) -> list[ValidationSet]:
    """``sets`` with their galleries registered: only once every set has loaded, so that a wrong
    data folder leaves no gallery pointing at it."""
    galleries = {s.gallery.name: s.gallery for s in sets}
    done = {n: register_gallery(g.name, g.root, g.ground_truth, g.dataset) for n, g in galleries.items()}
    return [replace(s, gallery=done[s.gallery.name]) for s in sets]


def config_for(config: EmbeddingConfig, gallery: str) -> EmbeddingConfig:
    """``config`` with ``whitening="other"`` resolved to the gallery's ``WHITEN_SOURCE``."""
    if config.whitening != OTHER:
        return config
    if gallery not in WHITEN_SOURCE:
        raise ValueError(f"no other gallery to learn whitening on for {gallery!r}; known: {sorted(WHITEN_SOURCE)}")
    return replace(config, whitening=WHITEN_SOURCE[gallery])


@dataclass
class SetArrays:
    """A set as arrays, for re-ranking sweeps on cached descriptors: query vectors, gallery
    vectors and the resolved queries (positives and junk as gallery indices)."""

    name: str
    queries: np.ndarray
    database: np.ndarray
    resolved: list[ResolvedQuery]
    embeddings: Embeddings | None = None       # the cache they came from (re-rankers' context)

    def map(self, ranking: np.ndarray) -> float:
        """Mean AP of full rankings [q, n] (rows in ``resolved`` order)."""
        return float(np.mean([score_query(r, q.positives, q.junk).ap for r, q in zip(ranking, self.resolved)]))


def set_arrays(vs: ValidationSet, config: EmbeddingConfig, embedder: Embedder | None = None) -> SetArrays:
    """``vs`` under ``config`` as arrays (descriptors from the caches, built when missing)."""
    config = config_for(config, vs.gallery.name)
    embedder = embedder or Embedder(config.base())
    emb = build_embeddings(vs.gallery, config, embedder, Reporter.quiet())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = resolve(vs.ground_truth, emb.ids)
    queries, refused, _ = query_vectors(emb, res, embedder, vs.gallery)
    kept = [rq for i, rq in enumerate(res.queries) if i not in refused]
    return SetArrays(vs.name, queries, emb.vectors, kept, emb)


@dataclass(frozen=True)
class SetScore:
    """One set's result: mean AP and what the re-ranking cost, and the run written."""

    name: str
    basis: bool
    map: float
    n_queries: int
    n_images: int
    rerank_ms: float                 # extra milliseconds per query of the re-ranking
    rerank_offline_seconds: float    # its once-per-gallery part
    embed_ms: float | None           # gallery extraction time per image (when the cache was built)
    run_id: str


@dataclass
class Validation:
    """A config's scores on the validation sets."""

    label: str
    embedding: dict
    search: dict
    rerank: dict
    scores: list[SetScore] = field(default_factory=list)

    def score(self, name: str) -> SetScore | None:
        return next((s for s in self.scores if s.name == name), None)

    @property
    def basis_map(self) -> float:
        """Mean of the basis sets' mAPs (each set weighs the same, whatever its query count)."""
        values = [s.map for s in self.scores if s.basis]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "basis_map": self.basis_map}


def validate(sets: Sequence[ValidationSet], config: EmbeddingConfig, settings: SearchSettings | None = None,
             rerank: Reranker | None = None, progress: bool = False,
             log: Callable[[str], None] = print) -> Validation:
    """Evaluate ``config`` (``whitening="other"`` allowed), ``settings`` and ``rerank`` on each
    set; every set writes a normal run. One network serves all the sets."""
    settings = settings or SearchSettings()
    rerank = rerank or create_reranker("none")
    embedder = Embedder(config.base())
    out = Validation(label=config.label() + (f"+{rerank.label()}" if rerank.label() else ""),
                     embedding=config.to_dict(), search={"method": settings.method, "metric": settings.metric},
                     rerank=rerank.params())
    for vs in sets:
        s = evaluate(vs.gallery, vs.ground_truth, config_for(config, vs.gallery.name), settings, rerank, embedder,
                     RunOptions(progress=progress, log=log))
        ips = s.images_per_second
        out.scores.append(SetScore(vs.name, vs.basis, s.map, s.n_queries, s.n_images,
                                   s.rerank.extra_ms_per_query, s.rerank.offline_seconds,
                                   1000.0 / ips if ips else None, s.run_id))
    return out


def table(rows: Sequence[Validation]) -> str:
    """A Markdown table: one row per validation, mAP per set (percent), basis mean, re-ranking ms."""
    names = [n for n in SET_NAMES if any(r.score(n) for r in rows)]
    head = ["config", *names, "mean (basis)", "extra ms/query"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r.score(n).map * 100:.2f}" if r.score(n) else "" for n in names]
        ms = max((s.rerank_ms for s in r.scores if s.basis), default=0.0)
        lines.append("| " + " | ".join([r.label, *cells, f"{r.basis_map * 100:.2f}", f"{ms:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def write_validation(rows: Sequence[Validation], name: str) -> Path:
    """``artifacts/validation/<timestamp>-<name>-<random>/``: ``validation.json`` (every row, with
    run ids) and ``table.md``. The folder is written under a hidden name and renamed when both
    files are complete, and its name is unique: two validations at once never share one."""
    directory = artifacts_dir() / "validation" / new_run_id("validation", name)
    partial = claim_folder(directory.parent, f".{directory.name}.partial")
    write_json(partial / "validation.json", {"rows": [r.to_dict() for r in rows], "basis_sets": list(BASIS_SETS)})
    write_text(partial / "table.md", table(rows))
    partial.rename(directory)
    return directory


def load_validation(path: str | Path) -> list[dict]:
    """The rows of a written validation (``validation.json`` or its folder)."""
    path = Path(path)
    return json.loads((path / "validation.json" if path.is_dir() else path).read_text())["rows"]
