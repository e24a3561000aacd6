"""Corel-1k with the published protocol: per class, 90 images to train on and to search, the
other 10 as queries (100 queries), precision@10 per class; off-the-shelf default embedding
against the model fine-tuned by ``python -m core train`` with its default settings, beside the
published figures (fine-tuned VGG-19 fc7: 0.929; AlexNet transfer learning: 0.958), with the
training time (and its ratio to one off-the-shelf embedding pass over the same images, measured in
the same run) and the load average. Writes ``artifacts/bench/corel.json``.

The split is drawn with ``--seed`` (default 0) by ``core.datasets.classes.split_class_folder``, as
``python -m core data split --per-class 90 --seed 0`` does; the training defaults were chosen on
other data and another split (README, "Training"), never on this one. Cosine search on
L2-normalised descriptors ranks exactly as the published Euclidean distance does.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from common import write_result

from core.cache.galleries import register_gallery
from core.config import DEFAULT_CONFIG
from core.datasets.classes import load_query_folders, split_class_folder
from core.embed.trained import apply_model
from core.evaluation.pipeline import evaluate
from core.paths import artifacts_dir
from core.train import TrainSettings, train

DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "corel1k"
# Published per-class precision@10 of the fine-tuned VGG-19 (fc7, Euclidean), under the Corel names
PUBLISHED_VGG19 = {"Africa": 0.920, "Beach": 0.710, "Buildings": 1.000, "Buses": 1.000, "Dinosaurs": 0.980,
                   "Elephants": 1.000, "Flowers": 1.000, "Food": 0.680, "Horses": 1.000, "Mountains": 1.000}
PUBLISHED_NAMES = {"Beach": "Beaches", "Buses": "Bus", "Food": "Foods", "Buildings": "Monuments"}
PUBLISHED_OVERALL = {"vgg19_fc7_finetuned": 0.929, "alexnet_transfer": 0.9583, "vgg16_features": 0.9458}


def per_class_p10(run_dir: str) -> dict[str, float]:
    return pd.read_csv(Path(run_dir) / "classes.csv").set_index("class")["p@10"].to_dict()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="Corel-1k class folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the 90/10 split (default 0)")
    p.add_argument("--name", default=None, help="model name (default corel-seed<SEED>)")
    args = p.parse_args()
    split = artifacts_dir() / "tmp" / f"corel-split-seed{args.seed}"
    if not (split / "queries").is_dir():
        split_class_folder(args.root, split, 90, args.seed)
    gallery_root, queries_root = split / "gallery", split / "queries"
    gt = load_query_folders(gallery_root, queries_root)
    gallery = register_gallery(f"corel-gallery-seed{args.seed}", gallery_root)
    name = args.name or f"corel-seed{args.seed}"
    load = {"start": list(os.getloadavg())}

    off = evaluate(gallery, gt, DEFAULT_CONFIG, progress=False)
    offline_pass_s = off.extraction_seconds or 0.0
    load["after_off_the_shelf"] = list(os.getloadavg())
    settings = TrainSettings()
    start = time.perf_counter()
    result = train(gallery_root, name, settings, progress=False, restart=True)
    train_s = time.perf_counter() - start
    load["after_training"] = list(os.getloadavg())
    tuned_config = apply_model(replace(DEFAULT_CONFIG, weights=str(result.model_path)))
    tuned = evaluate(gallery, gt, tuned_config, progress=False)
    load["end"] = list(os.getloadavg())

    off_c, tuned_c = per_class_p10(off.run_dir), per_class_p10(tuned.run_dir)
    rows = [{"class": c, "published_name": PUBLISHED_NAMES.get(c, c), "off_the_shelf": off_c[c],
             "fine_tuned": tuned_c[c], "published_vgg19_fc7": PUBLISHED_VGG19[c]} for c in sorted(off_c)]
    overall = {"off_the_shelf": off.metric("p@10"), "fine_tuned": tuned.metric("p@10"), **PUBLISHED_OVERALL,
               "off_the_shelf_map": off.map, "fine_tuned_map": tuned.map}
    t = result.card.timing
    best = max(PUBLISHED_OVERALL.values())
    write_result("corel", {
        "protocol": "Corel-1k, per class 90 images to train on and search and 10 queries (100 queries); "
                    "precision@10 per class, relevant = same class; cosine on L2-normalised descriptors",
        "split_seed": args.seed, "n_gallery": off.n_images, "n_queries": off.n_queries,
        "per_class": rows, "overall": overall,
        "acceptance": {"fine_tuned_above_every_published": tuned.metric("p@10") > best,
                       "fine_tuned_above_off_the_shelf": tuned.metric("p@10") > off.metric("p@10")},
        "embeddings": {"off_the_shelf": off.embedding_label, "fine_tuned": tuned.embedding_label},
        "training": {"settings": settings.to_dict(), "seconds": train_s, "feature_cache_seconds": t.feature_cache_seconds,
                     "epoch_seconds": t.epoch_seconds, "best_epoch": t.best_epoch, "epochs_run": t.epochs_run,
                     "n_train": result.card.data.n_train, "n_val": result.card.data.n_val,
                     "threads": t.threads,
                     "off_the_shelf_gallery_embedding_seconds": offline_pass_s,
                     "training_over_off_the_shelf_embedding": train_s / offline_pass_s if offline_pass_s else None},
        "load_average": load,
        "runs": {"off_the_shelf": off.run_id, "fine_tuned": tuned.run_id},
        "commands": [
            f"python -m core data split --root {args.root} --out data/corel-split --per-class 90 --seed {args.seed}",
            "python -m core evaluate --dataset classes --root data/corel-split/gallery --queries "
            "data/corel-split/queries --name corel-gallery",
            f"python -m core train --root data/corel-split/gallery --name {name}",
            "python -m core evaluate --dataset classes --root data/corel-split/gallery --queries "
            f"data/corel-split/queries --name corel-gallery --weights artifacts/models/{name}/model.pt"],
    })
    table = pd.DataFrame(rows).set_index("class")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"overall P@10: off the shelf {off.metric('p@10'):.3f}, fine-tuned {tuned.metric('p@10'):.3f}; published "
          + ", ".join(f"{k} {v:.3f}" for k, v in PUBLISHED_OVERALL.items()))
    print(f"training {train_s:.0f} s (features {t.feature_cache_seconds:.0f} s, epochs {t.epoch_seconds:.0f} s), "
          f"load average {load['after_training']}")


if __name__ == "__main__":
    main()
