"""Which calibration an int8 config of a gallery uses, so that every command finds the same one.

An int8 config names its calibration by digest (``EmbeddingConfig.calibration``). A command
given ``--precision int8`` without ``--calibration`` takes the calibration of the gallery's
existing int8 cache of the same settings (the latest updated, when there are several): adding
photos to a folder must not recalibrate the network and re-embed everything. A gallery without
one is calibrated on its own images.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.cache.descriptors import gallery_caches
from core.cache.galleries import Gallery
from core.config import EmbeddingConfig
from core.embed.quantize import Calibration, calibration_set


def existing_calibration(gallery: str, config: EmbeddingConfig) -> str | None:
    """Digest of the calibration of the latest int8 cache of ``gallery`` that equals ``config``
    but for its calibration; None when there is none."""
    want = replace(config.base(), calibration="")
    found = []
    for info in gallery_caches(gallery):
        other = info.config
        if other.precision == "int8" and other.calibration and replace(other.base(), calibration="") == want:
            found.append((info.updated, other.calibration))
    return max(found)[1] if found else None


def resolve_calibration(gallery: Gallery, config: EmbeddingConfig,
                        folder: str | Path | None = None) -> tuple[EmbeddingConfig, Calibration | None]:
    """``config`` with its calibration digest filled in, and the calibration images when they
    must be (re)measured: those of ``folder`` when given, else the gallery's existing int8
    calibration (no images needed), else a sample of the gallery's own images. Other precisions
    pass through unchanged."""
    if config.precision != "int8":
        return config, None
    if folder is None and not config.calibration:
        digest = existing_calibration(gallery.name, config)
        if digest:
            return replace(config, calibration=digest), None
    if folder is None and config.calibration:
        return config, None
    calibration = calibration_set(folder or gallery.root, config.scales, config.max_size)
    return replace(config, calibration=calibration.digest), calibration
