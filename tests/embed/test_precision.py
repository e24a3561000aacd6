"""Reduced precisions: the config hash keeps float32 keys, the fidelity gate's verdict from its
figures, device selection, calibration sets and their resolution per gallery, and many queries
from few (every positive as a query). The slow test quantises a real backbone to int8 and runs
the whole gate on real Paris images."""
import json
from dataclasses import replace

import pytest
import torch
from conftest import PARIS, copy_paris_images, require_shared

from core.cache.calibration import existing_calibration, resolve_calibration
from core.cache.galleries import register_gallery
from core.config import DEFAULT_CONFIG, PLAIN_GEM, EmbeddingConfig
from core.embed.device import check_precision_on_device, resolve_device
from core.embed.precision import FidelityReport, PrecisionRefused, require_passed, write_report
from core.embed.quantize import calibration_set, sample_evenly
from core.files import write_json


def test_float32_keys_are_unchanged_and_reduced_precisions_get_their_own():
    # the keys of caches users already have (computed before the precision field existed)
    assert DEFAULT_CONFIG.key() == "d5fe14fca498" and PLAIN_GEM.key() == "7a6c7dc121af"
    int8 = replace(DEFAULT_CONFIG, precision="int8", calibration="abc")
    keys = {DEFAULT_CONFIG.key(), int8.key(), replace(int8, calibration="abd").key(),
            replace(DEFAULT_CONFIG, precision="float16").key()}
    assert len(keys) == 4
    assert int8.label() == "tf_efficientnet_lite0/rmac/ms3/512/int8"
    assert "--precision int8" in int8.cli_flags() and "--precision" not in DEFAULT_CONFIG.cli_flags()
    assert EmbeddingConfig.from_dict(int8.to_dict()) == int8
    with pytest.raises(ValueError, match="precision"):
        EmbeddingConfig(precision="int4")
    with pytest.raises(ValueError, match="calibration"):
        EmbeddingConfig(calibration="abc")


def report(**kw) -> FidelityReport:
    base = dict(precision="int8", config_key="k", label="l", device="cpu", n_images=250, n_queries=195,
                min_cosine=0.995, mean_cosine=0.998, map_float32=0.900, map_reduced=0.897, validation="v")
    return FidelityReport(**{**base, **kw})


def test_gate_verdict_follows_the_thresholds():
    assert report().passed and report().map_drop_points == pytest.approx(0.3)
    low = report(min_cosine=0.9899)
    assert not low.passed and "min cosine to float32 0.9899 < 0.99" in low.problems[0]
    drop = report(map_reduced=0.8949)
    assert not drop.passed and "0.510 points below" in drop.problems[0]
    assert report(map_reduced=0.95).passed                    # better than float32 is no failure
    assert not report(precision="float16", min_cosine=0.9985).passed    # float16 needs 0.999
    assert FidelityReport.from_dict(json.loads(json.dumps(low.to_dict()))).problems == low.problems


def test_require_passed_refuses_without_a_passing_report(tmp_path):
    cfg = replace(DEFAULT_CONFIG, precision="int8", calibration="abc")
    path = tmp_path / "r.json"
    with pytest.raises(PrecisionRefused, match="python -m core quantize .*--precision int8"):
        require_passed(path, cfg)
    write_report(path, report(min_cosine=0.95))
    with pytest.raises(PrecisionRefused, match="min cosine to float32 0.9500"):
        require_passed(path, cfg)
    write_report(path, report())
    assert require_passed(path, cfg).passed


def test_device_resolution():
    assert resolve_device("auto", has_cuda=True) == "cuda"
    assert resolve_device("auto", has_cuda=False) == "cpu"
    assert resolve_device("cpu", has_cuda=True) == "cpu"
    assert resolve_device("cuda:1", has_cuda=True) == "cuda:1"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda", has_cuda=False)
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu", has_cuda=True)
    check_precision_on_device("int8", "cpu")
    check_precision_on_device("float16", "cuda")
    with pytest.raises(ValueError, match="OpenVINO on the CPU"):
        check_precision_on_device("int8", "cuda")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        check_precision_on_device("float16", "cpu")


def test_embedder_refuses_an_unchecked_precision(tmp_path, monkeypatch):
    from core.embed.embedder import Embedder

    monkeypatch.setenv("CBIR_MODEL_CACHE", str(tmp_path))
    with pytest.raises(PrecisionRefused, match="not been checked"):
        Embedder(replace(PLAIN_GEM, precision="int8", calibration="abc"), device="cpu")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        Embedder(replace(PLAIN_GEM, precision="float16"), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Embedder(PLAIN_GEM, device="cuda")
        assert Embedder(PLAIN_GEM, device="auto").device == "cpu"


def test_sample_evenly_spreads_over_the_list():
    assert sample_evenly(list("abcdefghij"), 5) == list("acegi")
    assert sample_evenly(list("abc"), 5) == list("abc")


def test_calibration_digest_follows_images_and_input_sizes(tmp_path):
    folder = copy_paris_images(tmp_path / "cal", 4)
    a = calibration_set(folder, (1.0,), 512)
    assert len(a.files) == 4 and a == calibration_set(folder, (1.0,), 512)
    assert calibration_set(folder, (1.0, 0.5), 512).digest != a.digest
    assert calibration_set(folder, (1.0,), 256).digest != a.digest
    assert len(calibration_set(folder, (1.0,), 512, n=2).files) == 2
    first = sorted(folder.iterdir())[0]
    first.write_bytes((PARIS / "jpg" / "paris_louvre_000081.jpg").read_bytes())
    assert calibration_set(folder, (1.0,), 512).digest != a.digest
    with pytest.raises(ValueError, match="no images"):
        calibration_set(tmp_path / "cal" / "nothing", (1.0,), 512)


def test_a_gallery_keeps_its_int8_calibration(artifacts, tmp_path):
    from core.cache.descriptors import cache_dir

    folder = copy_paris_images(tmp_path / "photos", 3)
    gallery = register_gallery("photos", folder)
    int8 = replace(PLAIN_GEM, precision="int8")
    cfg, cal = resolve_calibration(gallery, int8)                  # first time: the gallery's own images
    assert cal is not None and cfg.calibration == cal.digest and cal.folder == str(folder)
    for digest, updated in (("000000000001", "2026-01-01T00:00:00"), (cfg.calibration, "2026-02-01T00:00:00")):
        made = replace(int8, calibration=digest)
        write_json(cache_dir("photos", made) / "meta.json", {"config": made.to_dict(), "updated": updated})
    assert existing_calibration("photos", int8) == cfg.calibration  # the latest updated one
    (folder / "new.jpg").write_bytes((PARIS / "jpg" / "paris_louvre_000081.jpg").read_bytes())
    again, cal = resolve_calibration(gallery, int8)                 # a photo added: no recalibration
    assert again == cfg and cal is None
    other, cal = resolve_calibration(gallery, int8, folder=folder)  # asked for: measured again
    assert cal is not None and other.calibration != cfg.calibration
    assert resolve_calibration(gallery, PLAIN_GEM) == (PLAIN_GEM, None)


@pytest.mark.slow
def test_int8_quantisation_and_gate_on_real_images(artifacts, tmp_path, monkeypatch):
    """The whole int8 path on real images at a small size: calibrate, quantise, measure the
    gate on a small labelled folder, embed with the gated network."""
    pytest.importorskip("nncf")
    require_shared()
    from core.embed.embedder import Embedder
    from core.evaluation.fidelity import ensure_precision

    monkeypatch.setenv("CBIR_MODEL_CACHE", str(tmp_path / "models"))
    validation = tmp_path / "paris"
    copy_paris_images(validation / "jpg", 40, step=6)
    (validation / "gt").symlink_to(PARIS / "gt")
    cfg = replace(PLAIN_GEM, max_size=192)
    calibration = calibration_set(PARIS / "jpg", cfg.scales, cfg.max_size, n=30)
    int8 = replace(cfg, precision="int8", calibration=calibration.digest)
    report = None
    try:
        report = ensure_precision(int8, calibration, validation, device="cpu", progress=False, log=lambda m: None)
    except PrecisionRefused:
        pass
    written = FidelityReport.from_dict(json.loads(next((tmp_path / "models" / "fidelity").glob("*.json")).read_text()))
    assert written.n_images == 40 and written.n_queries > 20 and 0.9 < written.min_cosine <= 1.0
    assert written.calibration["digest"] == calibration.digest
    if report is None:                       # refused: the embedder refuses too, with the figures
        with pytest.raises(PrecisionRefused, match="refused"):
            Embedder(int8, device="cpu")
        return
    embedder = Embedder(int8, device="cpu")
    ref = Embedder(cfg, device="cpu", backend="openvino")
    path = str(sorted((PARIS / "jpg").glob("*.jpg"))[1])
    assert float(embedder.embed_image(path) @ ref.embed_image(path)) >= 0.99
