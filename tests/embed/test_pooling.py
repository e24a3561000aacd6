"""Pooling functions against hand-computed values on tiny feature maps."""
import pytest
import torch

from core.embed.pooling import gap, gem, mac, pool, rmac, rmac_regions, spoc


@pytest.fixture
def fmap():
    # one image, 2 channels, 2x2 map
    return torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]]])


def test_gap_mac_spoc(fmap):
    assert gap(fmap).tolist() == [[2.5, 2.0]]
    assert mac(fmap).tolist() == [[4.0, 8.0]]
    assert spoc(fmap).tolist() == [[10.0, 8.0]]


def test_gem_by_hand(fmap):
    # channel 0: ((1 + 8 + 27 + 64) / 4) ** (1/3) = 25 ** (1/3)
    out = gem(fmap, p=3.0)
    assert out[0, 0].item() == pytest.approx(25 ** (1 / 3), rel=1e-5)
    # p = 1 is GAP (on non-negative maps); large p tends to MAC
    assert gem(fmap, p=1.0)[0, 0].item() == pytest.approx(2.5, rel=1e-5)
    assert gem(fmap, p=60.0)[0, 0].item() == pytest.approx(4.0, rel=0.05)


def test_rmac_regions_cover_the_map_and_stay_inside():
    for h, w in [(12, 16), (16, 12), (10, 10), (3, 7), (1, 1)]:
        regions = rmac_regions(h, w)
        assert regions[0] == (0, 0, -1)
        for top, left, side in regions[1:]:
            assert 0 <= top and top + side <= h and 0 <= left and left + side <= w
    # level 1 of a 12x16 map: squares of side 12, two along the long side (overlap closest to 40 %)
    level1 = [r for r in rmac_regions(12, 16) if r[2] == 12]
    assert level1 == [(0, 0, 12), (0, 4, 12)]


def test_rmac_of_constant_map_is_sum_of_unit_vectors():
    x = torch.ones(1, 4, 6, 6)
    n = len(rmac_regions(6, 6))
    # each region's MAC is (1,1,1,1), normalised to 0.5 each; n regions summed
    assert torch.allclose(rmac(x), torch.full((1, 4), 0.5 * n))


def test_pool_by_name_rejects_unknown(fmap):
    assert torch.equal(pool(fmap, "mac"), mac(fmap))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(fmap, "vlad")


def test_rmac_equals_the_region_by_region_definition_in_any_memory_layout():
    import torch.nn.functional as F

    torch.manual_seed(0)
    for shape in [(2, 64, 12, 16), (1, 32, 16, 12), (1, 16, 3, 5), (3, 8, 7, 7)]:
        x = torch.rand(shape)
        expected = sum(F.normalize(mac(x if side < 0 else x[:, :, top:top + side, left:left + side]), dim=1, eps=1e-6)
                       for top, left, side in rmac_regions(shape[2], shape[3]))
        assert torch.allclose(rmac(x), expected, atol=1e-6)
        assert torch.allclose(rmac(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-6)
