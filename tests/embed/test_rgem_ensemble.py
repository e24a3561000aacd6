"""Regional GeM pooling (SuperGlobal) by hand, and the two-network ensemble backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.embed.pooling import pool, rgem


def test_regional_gem_by_hand_and_on_constant_maps():
    x = torch.tensor([[[[1.0, 0.0, 0.0]]]])                    # [1, 1, 1, 3], replicate padding to 5x7
    # L^2.5 of 5x5 windows / 25^0.4: 15, 10 and 5 ones -> 0.6^0.4, 0.4^0.4, 0.2^0.4
    lp = np.array([0.6, 0.4, 0.2]) ** 0.4
    expected = np.mean(0.5 * lp + 0.5 * np.array([1.0, 0.0, 0.0]))             # then GeM with p = 1: the mean
    assert float(rgem(x, p=1.0)) == pytest.approx(expected, abs=1e-5)
    constant = torch.full((2, 4, 2, 3), 0.7)
    torch.testing.assert_close(pool(constant, "rgem", 3.0), torch.full((2, 4), 0.7))


@pytest.mark.slow
def test_ensemble_backbone_concatenates_both_networks_descriptors():
    from core.config import EmbeddingConfig
    from core.embed.embedder import Embedder

    x = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    cfg = EmbeddingConfig(backbone="tf_efficientnet_lite0+mobilenet_v2", pooling="gem", scales=(1.0,))
    both = Embedder(cfg, backend="torch").embed_tensor(x)
    assert both.shape == (2560,)
    for part, name in ((both[:1280], "tf_efficientnet_lite0"), (both[1280:], "mobilenet_v2")):
        alone = Embedder(EmbeddingConfig(backbone=name, pooling="gem", scales=(1.0,)), backend="torch").embed_tensor(x)
        assert float(part @ alone) / np.linalg.norm(part) == pytest.approx(1.0, abs=1e-4)
        assert 0.5 < np.linalg.norm(part) < 0.85                    # each network weighs about the same
