"""bf16 (issue 22): its own config key (float32 keys unchanged), gated like int8, refused with the
reason where the CPU has no bfloat16 units, run by OpenVINO in bfloat16 where it has them."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from core.config import DEFAULT_CONFIG, PLAIN_GEM, EmbeddingConfig
from core.embed import device as device_module
from core.embed import openvino as openvino_module
from core.embed.device import check_precision_on_device, cpu_capabilities
from core.embed.precision import FidelityReport, PrecisionRefused, require_passed


def test_float32_keys_are_unchanged_and_bf16_has_its_own():
    # the keys of caches users already have, computed before bf16 existed
    assert EmbeddingConfig().key() == "d5fe14fca498" == DEFAULT_CONFIG.key()
    assert PLAIN_GEM.key() == "7a6c7dc121af"
    bf16 = replace(DEFAULT_CONFIG, precision="bf16")
    assert bf16.key() not in {DEFAULT_CONFIG.key(), replace(DEFAULT_CONFIG, precision="int8").key(),
                              replace(DEFAULT_CONFIG, precision="float16").key()}
    assert bf16.label().endswith("/bf16") and "--precision bf16" in bf16.cli_flags()
    assert EmbeddingConfig.from_dict(bf16.to_dict()) == bf16


def report(**kw) -> FidelityReport:
    base = dict(precision="bf16", config_key="k", label="l", device="cpu", n_images=250, n_queries=195,
                min_cosine=0.9925, mean_cosine=0.9991, map_float32=0.9515, map_reduced=0.9518, validation="v")
    return FidelityReport(**{**base, **kw})


def test_bf16_is_gated_like_int8(tmp_path):
    assert report().passed
    assert "min cosine to float32 0.9890 < 0.99" in report(min_cosine=0.989).problems[0]
    assert "points below" in report(map_reduced=0.945).problems[0]
    cfg = replace(DEFAULT_CONFIG, precision="bf16")
    with pytest.raises(PrecisionRefused, match="python -m core quantize .*--precision bf16"):
        require_passed(tmp_path / "absent.json", cfg)


def test_bf16_is_refused_with_the_reason_without_bfloat16_units(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_capabilities", lambda: ("FP32", "INT8"))
    with pytest.raises(ValueError, match="bf16 inference needs bfloat16 units.*no BF16"):
        check_precision_on_device("bf16", "cpu")
    monkeypatch.setattr(device_module, "cpu_capabilities", lambda: ("BF16", "FP32", "INT8"))
    check_precision_on_device("bf16", "cpu")
    assert device_module.has_bfloat16_units("cpu")


def test_openvino_runs_bf16_near_float32_on_a_cpu_with_bfloat16_units(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    if "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bfloat16 units")
    monkeypatch.setenv("CBIR_MODEL_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3)).eval()
    x = torch.rand(1, 3, 48, 64)
    f32 = openvino_module.OpenVinoBackbone(net, 1, name="small")(x).flatten().numpy()
    bf16 = openvino_module.OpenVinoBackbone(net, 1, name="small", precision="bf16")(x).flatten().numpy()
    cosine = float(f32 @ bf16 / np.linalg.norm(f32) / np.linalg.norm(bf16))
    assert 0.99 < cosine < 1.0 and not np.array_equal(f32, bf16)      # bfloat16 really ran, close to float32
