"""Image loading: orientation, modes, boxes, and clear errors for broken files (plumbing only:
small synthetic images)."""
import io

import numpy as np
import pytest
from PIL import Image

from core.images import MAX_PIXELS, Box, ImageError, list_images, load_image


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _quadrants(w=200, h=100) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(arr)


def test_exif_orientation_is_applied(tmp_path):
    img = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = 6                          # rotate 90° clockwise for display
    path = tmp_path / "rot.jpg"
    path.write_bytes(_jpeg(img, exif=exif))
    out = load_image(path)
    assert out.size == (100, 200)             # portrait once upright
    top = np.asarray(out)[5, 50]
    assert top[0] > 200 and top[2] < 60       # red (the old left half) is now on top


def test_box_is_in_original_pixels_and_cropped_before_resizing(tmp_path):
    path = tmp_path / "q.jpg"
    path.write_bytes(_jpeg(_quadrants(800, 400)))
    crop = load_image(path, max_size=100, box=[420, 0, 800, 400])   # inside the blue half
    assert max(crop.size) == 100
    assert crop.size == (95, 100)
    px = np.asarray(crop).reshape(-1, 3).mean(0)
    assert px[2] > 200 and px[0] < 40
    small = load_image(path, max_size=1000, box=[0, 0, 50, 40])     # never upscaled
    assert small.size == (50, 40)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    base = _quadrants(64, 32)
    if mode == "I;16":
        img = Image.fromarray((np.arange(64 * 32).reshape(32, 64) * 30).astype(np.uint16))
    elif mode == "P":
        img = base.convert("P")
        img.info["transparency"] = 0
    else:
        img = base.convert(mode)
    path = tmp_path / f"img.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(path)
    out = load_image(path, max_size=32)
    assert out.mode == "RGB" and max(out.size) == 32


def test_transparency_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.save(tmp_path / "clear.png")
    assert np.asarray(load_image(tmp_path / "clear.png")).min() == 255


@pytest.mark.parametrize("content, reason", [
    (b"", "not an image"),
    (b"this is text, not a jpeg", "not an image"),
])
def test_unreadable_files_raise_a_clear_error(tmp_path, content, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(p)


def test_truncated_jpeg_raises(tmp_path):
    data = _jpeg(_quadrants(400, 300))
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(p)


def test_decompression_bomb_is_refused(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    p = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(p)          # tiny file, huge pixel count
    with pytest.raises(ImageError, match="exceeds the limit|decompression bomb"):
        load_image(p)


@pytest.mark.parametrize("box, expected", [
    ([10, 20, 30, 40], (10, 20, 30, 40)),
    ([30, 40, 10, 20], (10, 20, 30, 40)),            # reversed corners
    ([-5, -5, 30.2, 40.7], (0, 0, 31, 41)),          # outside and fractional
    ([90, 90, 500, 500], (90, 90, 100, 100)),
    ([5, 5, 5.2, 5.4], (5, 5, 6, 6)),                 # sub-pixel box: one whole pixel
])
def test_box_clamp(box, expected):
    b = Box.of(box).clamp(100, 100)
    assert (b.x1, b.y1, b.x2, b.y2) == expected


@pytest.mark.parametrize("box", [[10, 10, 10, 50], [200, 200, 300, 300], [-50, 0, -1, 50]])
def test_box_without_area_is_refused(box):
    with pytest.raises(ImageError, match="no area"):
        Box.of(box).clamp(100, 100)


def test_list_images_is_recursive_sorted_and_skips_hidden(tmp_path):
    for rel in ["b.jpg", "a/c.PNG", "a/.hidden.jpg", ".git/x.jpg", "notes.txt", "d e/ü.webp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert list_images(tmp_path) == ["a/c.PNG", "b.jpg", "d e/ü.webp"]
