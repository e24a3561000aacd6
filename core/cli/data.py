"""``data``: download benchmarks, export Fashion-MNIST or CIFAR-10 to class folders, split a class
folder. Each action declares its arguments beside its handler."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.cli.options import add_quiet
from core.datasets.download import CATALOGUE
from core.datasets.exporters import export_cifar10, export_fashion_mnist


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download benchmarks from their official hosts, export Fashion-MNIST or CIFAR-10, "
                                    "split a class folder")
    actions = p.add_subparsers(dest="action", required=True)
    _add_download_parsers(actions)
    _add_export_parsers(actions)
    _add_split_parser(actions)


def _add_download_parsers(actions: argparse._SubParsersAction) -> None:
    listing = actions.add_parser("list", help="the datasets the downloader knows, with their URLs")
    fetching = actions.add_parser("fetch", help="download (resuming) and unpack a dataset into DIR/NAME",
                                  description="Files go to DIR/_downloads (kept, so roxford5k reuses oxford5k's "
                                              "images), then are unpacked into DIR/NAME/jpg and DIR/NAME/gt.")
    fetching.add_argument("dataset", choices=sorted(CATALOGUE))
    fetching.add_argument("--with-r1m", action="store_true",
                          help="also fetch the R-1M distractor list (roxford5k, rparis6k)")
    fetching.add_argument("--parts", metavar="RANGE",
                          help="revisitop1m: the image archives to fetch, e.g. 1-10 (about 100k images) or 1-5,8 "
                               "(default all 100; each is deleted once unpacked)")
    add_quiet(fetching)
    for sp in (listing, fetching):
        sp.add_argument("--dir", default="data", help="data folder (default data/)")
        sp.add_argument("--base-url", help="fetch every file from this URL instead of the official hosts (a mirror)")
    listing.set_defaults(run=run_list)
    fetching.set_defaults(run=run_fetch)


def run_list(a: argparse.Namespace) -> int:
    from core.datasets.download import resources_of

    for spec in CATALOGUE.values():
        folder = Path(a.dir) / spec.name
        print(f"{spec.name}: {spec.description}{f'  [in {folder}]' if folder.is_dir() else ''}")
        for r in resources_of(spec.name, tuple(spec.extras)):
            print(f"  {r.url(a.base_url)}  ->  {spec.name}/{r.into or '.'}{' (unpacked)' if r.extract else ''}")
    return 0


def run_fetch(a: argparse.Namespace) -> int:
    from core.datasets.download import fetch, parse_parts

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
    return 0


@dataclass(frozen=True)
class Exporter:
    """One ``data export-*`` action: its help, where it reads by default, its splits, the side of
    the original images and the function that writes the class folders."""

    action: str
    help: str
    description: str
    source_help: str
    splits: list[str]
    side: int
    title: str
    export: Callable[[str, str | None, str, int, int], dict[str, int]]


EXPORTERS = (
    Exporter("export-fashion-mnist", "write Fashion-MNIST images as PNGs in class folders",
             "A real labelled gallery for class-based evaluation (--dataset classes).",
             "folder of the IDX .gz files (default: Debian's /usr/share/datasets/fashion-mnist)", ["t10k", "train"],
             28, "Fashion-MNIST", export_fashion_mnist),
    Exporter("export-cifar10", "write CIFAR-10 images as PNGs in class folders",
             "From the python batches that `data fetch cifar10` downloads (read with a restricted unpickler: "
             "pickles can run code).", "folder of the batches (default data/cifar10/batches)", ["test", "train"],
             32, "CIFAR-10", export_cifar10),
)


def _add_export_parsers(actions: argparse._SubParsersAction) -> None:
    for e in EXPORTERS:
        sp = actions.add_parser(e.action, help=e.help, description=e.description)
        sp.add_argument("--out", required=True, help="output folder (OUT/<class>/<split>-<index>.png)")
        sp.add_argument("--source", help=e.source_help)
        sp.add_argument("--split", default=e.splits[0], choices=e.splits, help=f"split (default {e.splits[0]})")
        sp.add_argument("--per-class", type=int, default=100, help="images per class (default 100)")
        sp.add_argument("--size", type=int, default=64, help=f"side in pixels after upscaling from {e.side} (default 64)")
        sp.set_defaults(run=run_export, exporter=e)


def run_export(a: argparse.Namespace) -> int:
    counts = a.exporter.export(a.out, a.source, a.split, a.per_class, a.size)
    print(f"{sum(counts.values())} {a.exporter.title} {a.split} images in {len(counts)} class folders under {a.out} "
          f"({a.size} px): {', '.join(f'{c} {n}' for c, n in counts.items())}")
    print(f"evaluate with: python -m core evaluate --dataset classes --root {a.out} --max-size {a.size}")
    return 0


def _add_split_parser(actions: argparse._SubParsersAction) -> None:
    sp = actions.add_parser("split", help="split a class folder into two folders of links (train/search and queries)",
                            description="PER_CLASS images of each class drawn at random go to OUT/NAME1/<class>/, the "
                                        "others to OUT/NAME2/<class>/ (symbolic links). Corel-1k's published "
                                        "protocol: --per-class 90 (90 to train on and search, 10 queries).")
    sp.add_argument("--root", required=True, help="class folder to split")
    sp.add_argument("--out", required=True, help="where the two folders are created")
    sp.add_argument("--per-class", type=int, required=True, help="images of each class in the first folder")
    sp.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    sp.add_argument("--names", nargs=2, default=["gallery", "queries"], metavar=("NAME1", "NAME2"),
                    help="two different plain folder names under OUT (default gallery queries)")
    sp.set_defaults(run=run_split)


def run_split(a: argparse.Namespace) -> int:
    from core.datasets.classes import split_class_folder

    counts = split_class_folder(a.root, a.out, a.per_class, a.seed, tuple(a.names))
    for name, per_class in counts.items():
        print(f"{Path(a.out) / name}: {sum(per_class.values())} images in {len(per_class)} classes")
    return 0
