from dataclasses import replace

import pytest

from core.config import EmbeddingConfig
from core.index.annoy import AnnoyParams


def test_key_is_stable_and_changes_with_every_field():
    base = EmbeddingConfig(pooling="gem")
    assert EmbeddingConfig().key() == EmbeddingConfig().key()
    assert base.key() == EmbeddingConfig.from_dict(base.to_dict()).key()
    variants = [replace(base, backbone="mobilenet_v2"), replace(base, weights="random"),
                replace(base, pooling="mac"), replace(base, gem_p=4.0), replace(base, scales=(1.0, 0.5)),
                replace(base, whitening="gallery"), replace(base, whiten_dim=64, whitening="gallery"),
                replace(base, max_size=1024)]
    keys = {v.key() for v in variants} | {base.key()}
    assert len(keys) == len(variants) + 1


def test_gem_p_does_not_split_other_poolings():
    assert EmbeddingConfig(pooling="mac", gem_p=3).key() == EmbeddingConfig(pooling="mac", gem_p=5).key()


def test_base_drops_whitening_and_label_is_readable():
    c = EmbeddingConfig(pooling="gem", whitening="gallery", whiten_dim=128, scales=(1, 0.7071, 0.5))
    assert c.base().whitening == "none" and c.base().whiten_dim is None
    assert c.label() == "tf_efficientnet_lite0/gem3/ms3/512/white-gallery128"
    assert EmbeddingConfig(scales=(1.0,)).label() == "tf_efficientnet_lite0/rmac/ss/512"


def test_invalid_values_are_refused():
    with pytest.raises(ValueError):
        EmbeddingConfig(scales=(0.0,))
    with pytest.raises(ValueError):
        EmbeddingConfig(max_size=4)
    with pytest.raises(ValueError):
        AnnoyParams(n_trees=0)
