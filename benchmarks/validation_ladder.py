"""The validation ladder: embedding and re-ranking choices on the validation protocol
(``core.evaluation.validation``), one row per choice, to pick the defaults by measurement.

    nice -n 10 .venv/bin/python benchmarks/validation_ladder.py            # every row
    nice -n 10 .venv/bin/python benchmarks/validation_ladder.py --rows 'rmac*' 'dba*'

Each row is ``validate`` of one config and one re-ranking on Paris whole and cropped, Corel-1k
and Fashion-MNIST (the 12 official Paris queries beside); each set writes a normal run. Rows
accumulate in ``artifacts/bench/validation_ladder.json`` (a row run again replaces its old
figures) and the table is printed in Markdown. Descriptors are cached per config and set, so the
re-ranking rows of an embedding cost only the re-ranking. Timings are taken on a shared 2-core
machine: the load average is recorded with every row.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import bench_dir, write_result  # noqa: E402
from core.config import DEFAULT_CONFIG, MULTI_SCALES, EmbeddingConfig  # noqa: E402
from core.evaluation.validation import BASIS_SETS, SET_NAMES, validate, validation_sets  # noqa: E402
from core.index import SearchSettings  # noqa: E402
from core.rerank import DEFAULT_RERANK, Reranker, create_reranker  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
LITE0 = EmbeddingConfig(backbone="tf_efficientnet_lite0")
MBV2 = EmbeddingConfig(backbone="mobilenet_v2")
ENSEMBLE = EmbeddingConfig(backbone="tf_efficientnet_lite0+mobilenet_v2")


def rerank_of(method: str, **params) -> Reranker:
    """The one place where the ladder names a re-ranking method and its parameters."""
    return create_reranker(method, **params)


@dataclass(frozen=True)
class Row:
    name: str
    config: EmbeddingConfig
    rerank: Reranker
    note: str = ""
    search: SearchSettings = field(default_factory=SearchSettings)


def rows() -> list[Row]:
    ss, ms = (1.0,), MULTI_SCALES
    none = rerank_of("none")
    out = [
        Row("gap", replace(LITE0, pooling="gap", scales=ss), none),
        Row("gem", replace(LITE0, pooling="gem", scales=ss), none),
        Row("rmac", replace(LITE0, pooling="rmac", scales=ss), none),
        Row("gem-ms", replace(LITE0, pooling="gem", scales=ms), none),
        Row("rmac-ms", replace(LITE0, pooling="rmac", scales=ms), none, "the default embedding before this ladder"),
        Row("mbv2-gem-ms", replace(MBV2, pooling="gem", scales=ms), none),
        Row("mbv2-rmac-ms", replace(MBV2, pooling="rmac", scales=ms), none),
        Row("rgem-ms", replace(LITE0, pooling="rgem", scales=ms), none, "SuperGlobal's regional GeM, p = 3"),
        Row("rgem4.6-ms", replace(LITE0, pooling="rgem", gem_p=4.6, scales=ms), none, "SuperGlobal's p = 4.6"),
        Row("ens-rmac-ms", replace(ENSEMBLE, pooling="rmac", scales=ms), none, "lite0 and mobilenet_v2 maps concatenated"),
        Row("ens-gem-ms", replace(ENSEMBLE, pooling="gem", scales=ms), none),
    ]
    for dim in (None, 512, 256):
        for shrink in (0.0, 0.5, 0.8):
            label = f"white-other-d{dim or 'all'}-s{shrink:g}"
            out.append(Row(label, replace(DEFAULT_CONFIG, whitening="other", whiten_dim=dim, whiten_shrinkage=shrink),
                           none, "whitening learned on another validation gallery"))
    out.append(Row("white-gallery", replace(DEFAULT_CONFIG, whitening="gallery"), none,
                   "whitening learned on the searched gallery itself (the old README row)"))
    for method in ("aqe", "alpha_qe", "dba", "dba+alpha_qe", "diffusion", "blcf", "local", "spatial"):
        old = {"aqe": dict(qe_n=5), "alpha_qe": dict(qe_n=5), "dba": dict(dba_n=5), "dba+alpha_qe": dict(dba_n=5, qe_n=5),
               "diffusion": dict(diffusion_k=15), "blcf": dict(fusion=math.inf), "local": dict(fusion=math.inf),
               "spatial": dict(fusion=math.inf)}[method]
        out.append(Row(f"old-{method}", DEFAULT_CONFIG, rerank_of(method, **old), "parameters of the 12-query tuning"))
    for method in ("alpha_qe", "dba+alpha_qe", "diffusion", "kreciprocal", "superglobal", "blcf", "local", "spatial"):
        out.append(Row(method, DEFAULT_CONFIG, rerank_of(method), "parameters by the gallery-size rules / fused"))
    out.append(Row("default", DEFAULT_CONFIG, rerank_of(DEFAULT_RERANK), "the chosen defaults, exact search"))
    out.append(Row("default-annoy", DEFAULT_CONFIG, rerank_of(DEFAULT_RERANK), "the chosen defaults over Annoy",
                   SearchSettings(method="annoy")))
    out.append(Row("ens-default", replace(ENSEMBLE, pooling="rmac", scales=ms), rerank_of(DEFAULT_RERANK),
                   "the two-network ensemble with the default re-ranking"))
    return out


def run_row(row: Row, data: Path, sets: list[str]) -> dict:
    start = time.perf_counter()
    v = validate(validation_sets(data, sets), row.config, row.search, rerank=row.rerank, log=lambda m: None)
    result = {"name": row.name, "note": row.note, **v.to_dict(), "seconds": time.perf_counter() - start,
              "load_average": list(os.getloadavg()), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    cells = "  ".join(f"{s.name} {s.map * 100:6.2f}" for s in v.scores)
    print(f"{row.name:32s} {cells}  basis {v.basis_map * 100:6.2f}  "
          f"+{max(s.rerank_ms for s in v.scores):.1f} ms/query", flush=True)
    return result


def merged(before: dict | None, after: dict) -> dict:
    """``after``, keeping the scores of ``before`` on the sets ``after`` did not run (a row may be
    run set by set), with the basis mean recomputed."""
    if before is None or before.get("embedding") != after["embedding"] or before.get("rerank") != after["rerank"]:
        return after
    ran = {s["name"] for s in after["scores"]}
    scores = [s for s in before["scores"] if s["name"] not in ran] + after["scores"]
    scores.sort(key=lambda s: SET_NAMES.index(s["name"]))
    basis = [s["map"] for s in scores if s["basis"]]
    return {**after, "scores": scores, "basis_map": sum(basis) / len(basis) if basis else float("nan")}


TITLES = {
    "gap": "GAP, one scale", "gem": "GeM (p = 3), one scale", "rmac": "R-MAC, one scale",
    "gem-ms": "GeM, scales 1, 1/√2, 1/2", "rmac-ms": "R-MAC, 3 scales (**the default embedding**)",
    "mbv2-gem-ms": "mobilenet_v2 GeM, 3 scales", "mbv2-rmac-ms": "mobilenet_v2 R-MAC, 3 scales",
    "rgem-ms": "regional GeM (SuperGlobal), 3 scales", "rgem4.6-ms": "regional GeM p = 4.6, 3 scales",
    "ens-rmac-ms": "lite0 + mobilenet_v2 ensemble, R-MAC, 3 scales", "ens-gem-ms": "ensemble, GeM, 3 scales",
    "white-gallery": "whitening learned on the searched gallery",
    "white-other-dall-s0": "whitening learned elsewhere, all dims, no shrinkage",
    "white-other-dall-s0.5": "whitening elsewhere, all dims, shrinkage 0.5",
    "white-other-dall-s0.8": "whitening elsewhere, all dims, shrinkage 0.8",
    "white-other-d512-s0": "whitening elsewhere, 512-d", "white-other-d512-s0.5": "whitening elsewhere, 512-d, shrinkage 0.5",
    "white-other-d512-s0.8": "whitening elsewhere, 512-d, shrinkage 0.8",
    "white-other-d256-s0": "whitening elsewhere, 256-d", "white-other-d256-s0.5": "whitening elsewhere, 256-d, shrinkage 0.5",
    "white-other-d256-s0.8": "whitening elsewhere, 256-d, shrinkage 0.8",
    "old-aqe": "average QE, n = 5 (12-query tuning)", "old-alpha_qe": "α-QE, n = 5 (12-query tuning)",
    "old-dba": "DBA, n = 5 (12-query tuning)", "old-dba+alpha_qe": "DBA + α-QE, n = 5 (12-query tuning)",
    "old-diffusion": "diffusion, k = 15 (12-query tuning)", "old-blcf": "BLCF search, as shipped",
    "old-local": "local windows alone, as shipped", "old-spatial": "spatial verification alone, as shipped",
    "alpha_qe": "α-QE, n by rule", "dba+alpha_qe": "DBA + α-QE, n by rule", "diffusion": "diffusion, k by rule",
    "kreciprocal": "k-reciprocal, k1 by rule", "superglobal": "SuperGlobal re-ranking, M by rule",
    "blcf": "BLCF fused (0.1), new vocabulary rule", "local": "local windows fused (0.5)",
    "spatial": "spatial verification fused (0.1)",
    "default": "**new default: R-MAC 3 scales + k-reciprocal (rules)**", "default-annoy": "new default over Annoy",
    "ens-default": "ensemble + k-reciprocal",
}


def mean(row: dict) -> str:
    """The basis mean, only when the row ran on every basis set (a mean of two is no mean)."""
    ran = {s["name"] for s in row["scores"] if s["basis"]}
    return f"{row['basis_map'] * 100:.2f}" if ran >= set(BASIS_SETS) else ""


def markdown(results: list[dict]) -> str:
    head = ["row", "Paris whole", "Paris cropped", "Corel-1k", "Fashion-MNIST", "mean", "extra ms/query",
            "embed ms/image (Paris, when cached)", "12 official queries (beside)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        by = {s["name"]: s for s in r["scores"]}

        def cell(name: str) -> str:
            return f"{by[name]['map'] * 100:.2f}" if name in by else ""
        ms = max((s["rerank_ms"] for s in r["scores"] if s["basis"]), default=0.0)
        embed = by.get("paris-whole", {}).get("embed_ms") if r["rerank"].get("method") == "none" else None
        lines.append("| " + " | ".join([TITLES.get(r["name"], r["name"]), cell("paris-whole"), cell("paris-crop"), cell("corel1k"),
                                         cell("fashion-mnist"), mean(r), f"{ms:.1f}",
                                         f"{embed:.0f}" if embed else "", cell("paris-official")]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA), help="folder with paris6k/, corel1k/, fashion-mnist/")
    p.add_argument("--rows", nargs="+", default=["*"], help="row names or glob patterns (default every row)")
    p.add_argument("--sets", nargs="+", default=list(SET_NAMES), choices=SET_NAMES)
    p.add_argument("--list", action="store_true", help="print the row names and stop")
    a = p.parse_args(argv)
    chosen = [r for r in rows() if any(fnmatch.fnmatch(r.name, pat) for pat in a.rows)]
    if a.list or not chosen:
        print("\n".join(r.name for r in rows()))
        return 0 if a.list else 2
    path = bench_dir() / "validation_ladder.json"
    for row in chosen:
        result = run_row(row, Path(a.data), a.sets)
        old = {r["name"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
        old[row.name] = merged(old.get(row.name), result)   # re-read first: another ladder process may have written
        order = [r.name for r in rows()]
        results = sorted(old.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
        write_result("validation_ladder", {"command": "python benchmarks/validation_ladder.py", "rows": results,
                                           "table": markdown(results)})
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
