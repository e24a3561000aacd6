"""The fidelity gate of reduced precisions: int8, float16 or bf16 descriptors are used only once a
measured report says they keep retrieval.

A report (``FidelityReport``) is written by ``core.evaluation.fidelity`` after embedding a
labelled validation set at float32 and at the reduced precision; it is stored in the model cache
under the config's key, the weights' digest and the device, and every ``Embedder`` of a reduced
precision reads it first (``require_passed``): without a passing report it refuses to run, with
the figures that failed.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import EmbeddingConfig, command_line
from core.files import write_json

# Thresholds of the gate (issue 15): every validation descriptor within cosine 0.99 of float32
# for int8 and bf16 (issue 22; 0.999 for float16), and mAP at most half a point below float32's.
MIN_COSINE = {"int8": 0.99, "float16": 0.999, "bf16": 0.99}
MAX_MAP_DROP_POINTS = 0.5


class PrecisionRefused(RuntimeError):
    """A reduced precision without a passing fidelity report."""


@dataclass
class FidelityReport:
    """Measured agreement of a reduced precision with float32 on a labelled validation set."""

    precision: str
    config_key: str
    label: str
    device: str
    n_images: int                   # validation images embedded at both precisions
    n_queries: int                  # queries of the mAP (every positive image of the validation set)
    min_cosine: float               # worst cosine between a float32 descriptor and its reduced twin
    mean_cosine: float
    map_float32: float              # mAP in [0, 1]
    map_reduced: float
    validation: str                 # folder of the validation images
    seconds: float = 0.0
    images_in_calibration: int = 0  # validation images that were also calibration images (int8)
    calibration: dict = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    @property
    def map_drop_points(self) -> float:
        return (self.map_float32 - self.map_reduced) * 100

    @property
    def problems(self) -> list[str]:
        """What fails the gate; empty when it passes."""
        out = []
        threshold = MIN_COSINE[self.precision]
        if self.min_cosine < threshold:
            out.append(f"min cosine to float32 {self.min_cosine:.4f} < {threshold} "
                       f"(mean {self.mean_cosine:.4f}, {self.n_images} images)")
        if self.map_drop_points > MAX_MAP_DROP_POINTS:
            out.append(f"mAP {self.map_reduced * 100:.2f} is {self.map_drop_points:.3f} points below float32's "
                       f"{self.map_float32 * 100:.2f} (at most {MAX_MAP_DROP_POINTS} allowed, {self.n_queries} queries)")
        return out

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "passed" if self.passed else "REFUSED: " + "; ".join(self.problems)
        return (f"{self.precision} {self.label} on {self.device}: min cosine {self.min_cosine:.4f} "
                f"(mean {self.mean_cosine:.4f}) over {self.n_images} images; mAP {self.map_reduced * 100:.2f} vs "
                f"float32 {self.map_float32 * 100:.2f} ({-self.map_drop_points:+.2f}) over {self.n_queries} queries; "
                f"{verdict}")

    def to_dict(self) -> dict:
        return {**asdict(self), "map_drop_points": self.map_drop_points, "passed": self.passed,
                "problems": self.problems}

    @classmethod
    def from_dict(cls, data: dict) -> FidelityReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def report_path(cache_dir: Path, config: EmbeddingConfig, weights_digest: str, device: str) -> Path:
    """Where the report of ``config`` (its key holds precision and calibration) with these weights
    on ``device`` lives under ``cache_dir`` (the model cache)."""
    return Path(cache_dir) / "fidelity" / f"{config.key()}-{weights_digest}-{device}.json"


def write_report(path: Path, report: FidelityReport) -> None:
    write_json(path, report.to_dict())


def read_report(path: Path) -> FidelityReport | None:
    return FidelityReport.from_dict(json.loads(Path(path).read_text())) if Path(path).exists() else None


def require_passed(path: Path, config: EmbeddingConfig) -> FidelityReport:
    """The passing report at ``path``; ``PrecisionRefused`` when it is absent or failed."""
    report = read_report(path)
    check = command_line("quantize", config.cli_flags(), "--calibration FOLDER" if config.precision == "int8" else "")
    if report is None:
        raise PrecisionRefused(f"{config.precision} descriptors of {config.label()} have not been checked against "
                               f"float32 yet; measure them with: {check}")
    if not report.passed:
        raise PrecisionRefused(f"{config.precision} refused for {config.label()}: {'; '.join(report.problems)} "
                               f"(measured {report.timestamp}); use --precision float32")
    return report
