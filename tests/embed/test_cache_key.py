"""The cache keys of the default embedding and of the README's configs are the names of every
user's descriptor caches: restructuring core/embed or checking checkpoints by content must not
change them (a changed key silently re-embeds every gallery). Pinned as computed before the cut."""
from __future__ import annotations

import pytest

from core.config import MULTI_SCALES, EmbeddingConfig

PINNED = [
    (EmbeddingConfig(), "d5fe14fca498"),
    (EmbeddingConfig(backbone="mobilenet_v2", pooling="gem", scales=MULTI_SCALES), "f6c6fc178180"),
    (EmbeddingConfig(whitening="gallery", whiten_dim=256, whiten_shrinkage=0.5), "6884ce9dee66"),
    (EmbeddingConfig(max_size=64), "4255af55d647"),
    (EmbeddingConfig(layer="penultimate"), "e508dd6714fd"),
    (EmbeddingConfig(precision="int8", calibration="0123456789ab"), "207a8915fa1d"),
    (EmbeddingConfig(weights="artifacts/models/flowers/model.pt", weights_digest="0123456789abcdef", layer="head"),
     "25bbb86f45ef"),
]


@pytest.mark.parametrize(("config", "key"), PINNED, ids=[c.label() for c, _ in PINNED])
def test_cache_key_is_unchanged(config: EmbeddingConfig, key: str):
    assert config.key() == key


def test_the_default_config_of_the_cli_has_the_default_key():
    from core.cli import build_parser, config_from_args

    args = build_parser().parse_args(["index", "--name", "g"])
    assert config_from_args(args).key() == EmbeddingConfig().key() == PINNED[0][1]
