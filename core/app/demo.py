"""The embedded default gallery: a fresh machine with no data and no network can still search.

Photos that ship inside scikit-image's wheel (``skimage/data``) plus transformed copies of each
(a crop, a rotation, a colour change, a downscale) are written under
``artifacts/galleries-data/demo/images``. Its ground truth, in the Oxford/Paris text layout of
``core.datasets.types.load_oxford_paris``, makes each photo a query (its central region) whose good
images are the photo itself and its copies, so the app can score demo searches too, and
``evaluate_demo`` writes a first evaluation run of it, so that the metrics page has a run to show.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance

from core.cache.descriptors import build_embeddings
from core.cache.galleries import Gallery, register_gallery
from core.config import DEFAULT_CONFIG, EmbeddingConfig
from core.datasets import GroundTruth, load_oxford_paris
from core.embed.embedder import Embedder
from core.evaluation.pipeline import RunOptions, evaluate
from core.evaluation.summary import RunSummary
from core.images import open_image
from core.paths import artifacts_dir
from core.progress import Reporter
from core.rerank import DEFAULT_RERANK, create_reranker

DEMO_NAME = "demo"
PHOTOS: tuple[str, ...] = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                           "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg")
MAX_SIDE = 640                       # originals are stored at most this large: small and fast to embed
QUERY_REGION = (0.15, 0.15, 0.85, 0.85)   # query box, as fractions of width and height


def _crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((round(w * 0.05), round(h * 0.2), round(w * 0.75), round(h * 0.95)))


def _rotate(img: Image.Image) -> Image.Image:
    return img.rotate(15, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))


def _colour(img: Image.Image) -> Image.Image:
    img = ImageEnhance.Color(img).enhance(0.35)
    return ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.25)).enhance(0.8)


def _scale(img: Image.Image) -> Image.Image:
    return img.resize((max(32, img.width * 2 // 5), max(32, img.height * 2 // 5)), Image.Resampling.LANCZOS)


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop": _crop, "rotate": _rotate, "colour": _colour, "scale": _scale}


def skimage_photo(file_name: str) -> Image.Image:
    """A photo bundled in the scikit-image wheel, as RGB (read from disk, never fetched)."""
    import skimage

    with open_image(Path(skimage.__file__).parent / "data" / file_name) as img:
        return img.convert("RGB")


def demo_root() -> Path:
    return artifacts_dir() / "galleries-data" / DEMO_NAME


def write_demo_images(root: Path | None = None) -> tuple[Path, Path]:
    """Write the demo images and ground truth under ``root`` (default ``demo_root()``); files
    already there are kept, so their fingerprints, and the descriptor cache, stay valid.
    Returns (images folder, ground-truth folder)."""
    root = root or demo_root()
    images, gt = root / "images", root / "gt"
    images.mkdir(parents=True, exist_ok=True)
    gt.mkdir(parents=True, exist_ok=True)
    for file_name in PHOTOS:
        stem = Path(file_name).stem
        original = None
        variants = {stem: lambda img: img, **{f"{stem}-{t}": f for t, f in TRANSFORMS.items()}}
        for name, transform in variants.items():
            path = images / f"{name}.jpg"
            if path.exists():
                continue
            if original is None:
                original = skimage_photo(file_name)
                original.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            transform(original).save(path, quality=90)
        with open_image(images / f"{stem}.jpg") as img:
            w, h = img.size
        box = (QUERY_REGION[0] * w, QUERY_REGION[1] * h, QUERY_REGION[2] * w, QUERY_REGION[3] * h)
        _write_if_changed(gt / f"{stem}_1_query.txt", f"{stem} " + " ".join(f"{v:.1f}" for v in box) + "\n")
        _write_if_changed(gt / f"{stem}_1_good.txt", "".join(f"{n}\n" for n in variants))
        for label in ("ok", "junk"):
            _write_if_changed(gt / f"{stem}_1_{label}.txt", "")
    return images, gt


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def demo_ground_truth(gt_dir: Path | None = None) -> GroundTruth:
    return load_oxford_paris(gt_dir or demo_root() / "gt", DEMO_NAME)


def build_demo_gallery(config: EmbeddingConfig = DEFAULT_CONFIG, embedder: Embedder | None = None,
                       reporter: Reporter | None = None) -> Gallery:
    """Write the demo images, register the ``demo`` gallery with its ground truth and embed it
    (about 50 small images: seconds on a laptop CPU) with ``embedder`` (default: a new one);
    ``reporter`` hears the progress (default: lines printed, no bar)."""
    images, gt = write_demo_images()
    gallery = register_gallery(DEMO_NAME, images, ground_truth=gt, dataset=DEMO_NAME)
    build_embeddings(gallery, config, embedder, reporter or Reporter(bar=False))
    return gallery


def evaluate_demo(gallery: Gallery, config: EmbeddingConfig = DEFAULT_CONFIG, embedder: Embedder | None = None,
                  log: Callable[[str], None] = print) -> RunSummary:
    """An evaluation run of the demo gallery (its 10 queries, the default search and
    re-ranking), written to ``artifacts/runs/`` like any ``python -m core evaluate`` run; pass
    the ``embedder`` that built the gallery so that the network is not loaded again."""
    return evaluate(gallery, demo_ground_truth(), config, rerank=create_reranker(DEFAULT_RERANK), embedder=embedder,
                    options=RunOptions(progress=False, log=log))
