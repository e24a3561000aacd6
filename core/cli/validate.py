"""``validate``: one config on the validation protocol's sets, written as one run per set and a table."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import options
from core.evaluation.validation import SET_NAMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="the validation protocol: many queries on several image kinds (for defaults)",
                       description="Evaluate one config on the validation sets: every positive Paris image as a query "
                                   "of its landmark, whole and cropped to a seeded random 30-70%% box; Corel-1k and a "
                                   "Fashion-MNIST export as class galleries; the 12 official Paris queries beside. "
                                   "Writes one run per set and artifacts/validation/<id>/{validation.json,table.md}.")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"),
                   help="data folder holding paris6k/, corel1k/, fashion-mnist/ (default ../shared/data)")
    p.add_argument("--sets", nargs="+", default=list(SET_NAMES), choices=SET_NAMES, help="sets to run (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random query boxes (default 0)")
    options.add_retrieval_args(p)
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from core.evaluation.validation import table, validate, validation_sets, write_validation

    sets = validation_sets(a.data, a.sets, a.seed)
    v = validate(sets, options.config_from_args(a), options.settings_from_args(a), options.rerank_from_args(a),
                 progress=not a.quiet)
    directory = write_validation([v], v.label.replace("/", "-"))
    print(table([v]))
    for s in v.scores:
        print(f"  {s.name}: {s.n_queries} queries on {s.n_images} images, run {s.run_id}"
              + ("" if s.basis else "  (reported beside, not a basis for choosing)"))
    print(f"validation written to {directory}")
    return 0
