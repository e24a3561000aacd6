"""Labels in words instead of internal codes (issue 20: kr28, blcfauto, tf_efficientnet_lite0/rmac/ms3/512)."""
from dataclasses import replace

from core.app.catalog import RUN_COLUMNS
from core.app.comparison import run_name
from core.app.names import dataset_name, embedding_name, network_name, rerank_name
from core.config import DEFAULT_CONFIG
from core.rerank import create_reranker


def test_networks_are_named_as_their_papers_name_them():
    assert [network_name(b) for b in ("tf_efficientnet_lite0", "resnet50", "vit_b_16", "mobilenet_v3_large",
                                      "efficientnet_v2_s", "my_net")] == [
        "EfficientNet-Lite0", "ResNet-50", "ViT-B-16", "MobileNetV3-Large", "EfficientNetV2-S", "my_net"]


def test_the_default_embedding_reads_as_words():
    assert DEFAULT_CONFIG.label() == "tf_efficientnet_lite0/rmac/ms3/512"
    assert embedding_name(DEFAULT_CONFIG) == "EfficientNet-Lite0 · R-MAC · 3 scales · 512 px"
    gem = replace(DEFAULT_CONFIG, pooling="gem", gem_p=3.0, scales=(1.0,), whitening="gallery", whiten_dim=256)
    assert embedding_name(gem) == "EfficientNet-Lite0 · GeM p = 3 · 1 scale · 512 px · whitened on gallery to 256-d"


def test_a_reranking_reads_as_its_method_and_parameters():
    params = create_reranker("kreciprocal").for_gallery(250).params()
    assert rerank_name("kreciprocal", params) == f"k-reciprocal, k1 = {params['k1']}, k2 = {params['k2']}"
    assert rerank_name("none", {}) == "none" and rerank_name("", {}) == "none"
    assert "auto" not in rerank_name("blcf", create_reranker("blcf").params())    # blcf_words 0: left out
    assert dataset_name("classes") == "class folders" and dataset_name("paris6k") == "paris6k"


def test_run_names_use_the_words_when_the_runs_table_has_them():
    row = {"run_id": "r", "label": "tf_efficientnet_lite0/rmac/ms3/512", "embedding": "EfficientNet-Lite0 · R-MAC",
           "search": "exact/cosine", "rerank": "kr28", "rerank_name": "k-reciprocal, k1 = 28", "gallery": "paris6k",
           "dataset": "paris6k"}
    assert run_name(row) == "EfficientNet-Lite0 · R-MAC · k-reciprocal, k1 = 28"
    assert {"embedding", "rerank_name"} <= set(RUN_COLUMNS)
