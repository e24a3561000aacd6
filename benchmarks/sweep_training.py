"""The training defaults, chosen by measurement: each setting trains on 15 images a class and is
scored by the mAP of the other images of those classes, searched among themselves (every image a
query), against the off-the-shelf default embedding on the same images. Three sets with three
kinds of shift from ImageNet: Fashion-MNIST (100 test images a class, 64 px, grey clothes),
Corel-1k (10 photo classes) and the shared Paris images (5 landmarks as classes); draws with
``--seed`` (default 1, never the Corel benchmark's 0). Writes ``artifacts/bench/training_sweep.json``.

``python benchmarks/sweep_training.py --settings '{"loss": "softmax"}' '{"trainable_stages": 2}'``
runs chosen settings (JSON objects of ``TrainSettings`` fields; ``{}`` is the default).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from common import write_result

from core.cache.galleries import register_gallery
from core.config import DEFAULT_CONFIG
from core.datasets.classes import load_class_folders, split_class_folder
from core.datasets.exporters import export_fashion_mnist
from core.embed.trained import apply_model
from core.evaluation.pipeline import evaluate
from core.paths import artifacts_dir
from core.train import TrainSettings, train

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DEFAULT_SETTINGS = ['{}', '{"loss": "softmax"}', '{"loss": "arcface"}', '{"loss": "triplet"}', '{"trainable_stages": 1}',
                    '{"trainable_stages": 2}', '{"learn_gem_p": true}', '{"views": 0}']


def class_folder(name: str, work: Path) -> Path:
    """The full class folder of a set, built under ``work`` where it is derived (links, PNGs)."""
    if name == "corel":
        return SHARED / "corel1k"
    folder = work / name
    if name == "fmnist" and not folder.is_dir():
        export_fashion_mnist(folder, SHARED / "fashion-mnist", "t10k", per_class=100, size=64)
    if name == "paris" and not folder.is_dir():
        for p in sorted((SHARED / "paris6k" / "jpg").glob("*.jpg")):
            (folder / p.stem.split("_")[1]).mkdir(parents=True, exist_ok=True)
            (folder / p.stem.split("_")[1] / p.name).symlink_to(p)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["fmnist", "corel", "paris"])
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="TrainSettings fields as JSON objects")
    p.add_argument("--per-class", type=int, default=15)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    work = artifacts_dir() / "tmp" / "training-sweep"
    rows = []
    for name in args.datasets:
        split = work / f"{name}-{args.per_class}-seed{args.seed}"
        if not (split / "rest").is_dir():
            split_class_folder(class_folder(name, work), split, args.per_class, args.seed, ("train", "rest"))
        gt = load_class_folders(split / "rest")
        gallery = register_gallery(f"sweep-{name}-rest", split / "rest")
        off = evaluate(gallery, gt, DEFAULT_CONFIG, progress=False, write=False, log=lambda m: None)
        rows.append({"dataset": name, "setting": "off the shelf", "map": off.map, "p@10": off.metric("p@10")})
        print(json.dumps(rows[-1]), flush=True)
        for spec in args.settings:
            kw = json.loads(spec)
            tag = "-".join(f"{k}{v}" for k, v in kw.items()) or "default"
            start = time.perf_counter()
            result = train(split / "train", f"sweep-{name}-{tag}", TrainSettings(**kw), progress=False, restart=True,
                           log=lambda m: None)
            seconds = time.perf_counter() - start
            config = apply_model(replace(DEFAULT_CONFIG, weights=str(result.model_path)))
            s = evaluate(gallery, gt, config, progress=False, write=False, log=lambda m: None)
            t = result.card.timing
            rows.append({"dataset": name, "setting": tag, "settings": kw, "map": s.map, "p@10": s.metric("p@10"),
                         "gain_map_points": (s.map - off.map) * 100, "train_seconds": seconds,
                         "feature_cache_seconds": t.feature_cache_seconds, "epoch_seconds": t.epoch_seconds,
                         "best_epoch": t.best_epoch, "epochs_run": t.epochs_run, "load_average": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    write_result("training_sweep", {"protocol": f"train on {args.per_class} images a class (seed {args.seed}), mAP of "
                                                "the other images among themselves", "rows": rows})


if __name__ == "__main__":
    main()
