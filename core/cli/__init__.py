"""Command line: ``python -m core {evaluate,validate,index,search,quantize,galleries,import,data,train} ...``.

One module per command (``data`` holds its family of actions), each declaring its arguments in
``add_parser`` beside its handler, which ``set_defaults(run=...)`` attaches; the argument blocks
several commands share (embedding, search, re-ranking) are declared once in ``options``. The
heavy work (extraction, indexing, evaluation) runs here with progress bars, so that the
Streamlit app only reads what it leaves in ``artifacts/``.
"""
from __future__ import annotations

import argparse
import sys

from core.cache.descriptors import CacheError
from core.cache.galleries import GalleryError
from core.cli import data, evaluate, galleries, index, quantize, search, train, transfer, validate
from core.cli.options import config_from_args
from core.datasets.download import DownloadError
from core.embed.backbones import WeightsUnavailable
from core.embed.precision import PrecisionRefused
from core.images import ImageError
from core.index import IndexMismatch

COMMANDS = (evaluate, validate, index, search, quantize, galleries, transfer, data, train)   # in --help's order
ERRORS = (GalleryError, CacheError, IndexMismatch, WeightsUnavailable, ImageError, OSError, KeyError, ValueError,
          DownloadError, PrecisionRefused)

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Content-based image retrieval: "
                                "embed galleries, build indexes, search and evaluate.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ERRORS as exc:
        # one line, whatever the input: a disk that is full, a file refused, a box that is not numbers
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
