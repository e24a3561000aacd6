"""The OpenVINO model cache is verified (issue 21, item 3): every IR is written with the sha256
of its files and checked when read; a zeroed region, a truncation or a missing digest is
detected, the IR removed with a one-line warning and made again (float32: converted, int8:
recalibrated), and a damaged int8 IR is never taken for a calibrated one because it exists."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from core.embed.backbones import create_backbone
from core.embed.openvino import OpenVinoBackbone, convert, digest_path, ir_problem
from core.embed.precision import PrecisionRefused
from core.embed.quantize import Calibration, int8_ir_path, load_int8, quantize

pytest.importorskip("openvino")


@pytest.fixture
def model_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CBIR_MODEL_CACHE", str(tmp_path / "ov"))
    return tmp_path / "ov"


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 32, 3)).eval()


def zero_region(path: Path, start_fraction: float = 0.25, length: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * start_fraction)
    data[start:start + length] = bytes(min(length, len(data) - start))
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def outputs_of(model, x: torch.Tensor) -> np.ndarray:
    return OpenVinoBackbone(model, threads=1)(x).numpy()


def one_warning(caught: list) -> str:
    messages = [str(w.message) for w in caught if "cached OpenVINO model" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0]
    return messages[0]


@pytest.mark.parametrize("damage, part", [(zero_region, ".bin"), (truncate, ".bin"), (truncate, ".xml"),
                                          (lambda p: p.unlink(), ".sha256.json")])
def test_a_damaged_float32_ir_is_detected_removed_and_converted_again(model_cache, damage, part):
    net, x = small_net(), torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        expected = net(x).numpy()
    convert(net, name="small")
    (xml,) = model_cache.glob("small-*.xml")
    assert digest_path(xml).exists() and ir_problem(xml) is None
    damage(xml.with_suffix(part) if part != ".sha256.json" else digest_path(xml))
    assert ir_problem(xml) is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = convert(net, name="small")
    assert "removed, made again" in one_warning(caught)
    np.testing.assert_allclose(outputs_of(model, x), expected, rtol=1e-4, atol=1e-5)
    assert ir_problem(xml) is None                              # the new IR is cached with its digests


def test_an_intact_ir_is_read_without_a_warning(model_cache):
    net = small_net()
    convert(net, name="small")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(net, name="small")


def test_a_damaged_int8_ir_is_recalibrated_not_taken_for_done(model_cache, tmp_path):
    backbone = create_backbone("small_cnn", "random")
    calibration = Calibration(str(tmp_path), ("a.jpg",), "0123456789ab")
    calls = []

    def inputs():
        calls.append(1)
        rng = np.random.default_rng(0)
        return [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(4)]

    path = quantize(backbone, calibration, inputs, log=lambda _: None)
    assert path == int8_ir_path(backbone, calibration.digest) and len(calls) == 1
    assert quantize(backbone, calibration, inputs, log=lambda _: None) == path and len(calls) == 1   # reused
    truncate(path.with_suffix(".bin"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert quantize(backbone, calibration, inputs, log=lambda _: None) == path
    one_warning(caught)
    assert len(calls) == 2 and ir_problem(path) is None        # calibrated again, not taken as done
    out = outputs_of(load_int8(backbone, calibration.digest), torch.rand(1, 3, 64, 64))
    assert np.isfinite(out).all()
    zero_region(path.with_suffix(".bin"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(PrecisionRefused, match="calibrate it again"):
            load_int8(backbone, calibration.digest)             # one line, no traceback from OpenVINO
    one_warning(caught)
    assert not path.exists() and not path.with_suffix(".bin").exists()
