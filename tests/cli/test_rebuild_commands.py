"""The rebuild commands printed in messages parse back to the same config. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

import shlex

import numpy as np
import pytest
from conftest import SMALL, SMALL_FLAGS, run_core

from core.cache.descriptors import CacheError, Embeddings, load_embeddings
from core.cli import build_parser, config_from_args
from core.config import DEFAULT_CONFIG, PLAIN_GEM, EmbeddingConfig
from core.index import IndexMismatch
from core.index.annoy import AnnoyIndex, AnnoyParams

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


@pytest.mark.parametrize("config", [
    DEFAULT_CONFIG, PLAIN_GEM, EmbeddingConfig(pooling="gem", gem_p=2.718281828, scales=(1.0, 2 ** -0.5, 0.5, 1 / 3)),
    EmbeddingConfig(weights="/tmp/my weights/it's.pth", whitening="other-gallery", whiten_dim=64, max_size=300),
    EmbeddingConfig(whitening="gallery", pooling="mac")], ids=lambda c: c.label())
def test_printed_rebuild_flags_parse_back_to_the_same_config(config):
    args = build_parser().parse_args(["index", "--name", "g", *shlex.split(config.cli_flags())])
    assert config_from_args(args) == config and config_from_args(args).key() == config.key()


def _command_in(message: str) -> list[str]:
    return shlex.split(message.split("python -m core ", 1)[1])


def test_rebuild_commands_in_error_messages_reproduce_the_config(artifacts, tmp_path):
    with pytest.raises(CacheError) as err:
        load_embeddings("g", DEFAULT_CONFIG)
    assert config_from_args(build_parser().parse_args(_command_in(str(err.value)))).key() == DEFAULT_CONFIG.key()
    params = AnnoyParams(n_trees=7)
    with pytest.raises(IndexMismatch) as err:
        AnnoyIndex.load(Embeddings("g", PLAIN_GEM, ["a"], np.zeros((1, 8), np.float32), tmp_path), "euclidean", params)
    args = build_parser().parse_args(_command_in(str(err.value)))
    assert config_from_args(args).key() == PLAIN_GEM.key() and (args.index, args.metric, args.n_trees) == ("annoy", "euclidean", 7)
