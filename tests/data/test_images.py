"""check_image: header and completeness without decoding; decompression bombs cost nothing."""

from __future__ import annotations

import time
from contextlib import nullcontext

import pytest
from .jsonl_testdata import png_header_only, write_image
from PIL import Image

from visionml.data.images import DEFAULT_MAX_PIXELS, check_image, load_rgb, local_path


@pytest.mark.parametrize("fmt, name, expected", [
    ("JPEG", "a.jpg", "jpeg"), ("PNG", "a.png", "png"), ("GIF", "a.gif", "gif"),
    ("BMP", "a.bmp", "bmp"), ("WEBP", "a.webp", "webp"), ("TIFF", "a.tif", "tiff"),
])
def test_whole_images_pass(tmp_path, fmt, name, expected):
    path = write_image(tmp_path / name, size=(37, 21), fmt=fmt)
    assert check_image(path) == (37, 21, expected)


@pytest.mark.parametrize("fmt, name, cut", [
    ("JPEG", "a.jpg", 20), ("PNG", "a.png", 12), ("GIF", "a.gif", 1), ("BMP", "a.bmp", 50),
    ("WEBP", "a.webp", 10), ("TIFF", "a.tif", None),
])
def test_truncated_images_are_refused(tmp_path, fmt, name, cut):
    path = write_image(tmp_path / name, size=(64, 48), fmt=fmt)
    data = path.read_bytes()
    if cut is None:  # TIFF writes its pixels before the directory: keep the header, drop the strips
        with Image.open(path) as img:
            offset = img.tile[0][2]
        path.write_bytes(data[:offset])
    else:
        path.write_bytes(data[:-cut])
    with pytest.raises(ValueError, match="truncated|cut short"):
        check_image(path)


def test_padding_after_the_jpeg_end_marker_is_fine(tmp_path):
    path = write_image(tmp_path / "a.jpg")
    path.write_bytes(path.read_bytes() + b"\x00\x00\r\n")
    assert check_image(path)[:2] == (40, 30)


@pytest.mark.parametrize("content, words", [
    (None, "file not found"), (b"", "empty file"), (b"hello, not an image", "not an image"),
])
def test_missing_empty_and_non_image_files(tmp_path, content, words):
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=words):
        check_image(path)


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        check_image(tmp_path)


@pytest.mark.parametrize("side", [10_000, 60_000])  # 100 MP (over our cap) and 3.6 GP (over Pillow's own)
def test_decompression_bomb_refused_from_the_header_without_decoding(tmp_path, monkeypatch, side):
    bomb = png_header_only(tmp_path / "bomb.png", side, side)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("check_image must not decode pixels")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    start = time.perf_counter()
    # Between 1x and 2x its limit Pillow only warns; above, it refuses by itself.
    with pytest.warns(Image.DecompressionBombWarning) if side * side <= 2 * Image.MAX_IMAGE_PIXELS else nullcontext():
        with pytest.raises(ValueError, match="over"):
            check_image(bomb)
    assert time.perf_counter() - start < 0.5
    assert bomb.stat().st_size < 200


def test_pixel_cap_is_a_parameter(tmp_path):
    path = write_image(tmp_path / "a.png", size=(100, 100), fmt="PNG")
    assert check_image(path, max_pixels=10_000)[:2] == (100, 100)
    with pytest.raises(ValueError, match="100x100 = 10,000 pixels, over the limit of 9,999"):
        check_image(path, max_pixels=9_999)
    assert check_image(path, max_pixels=None)[:2] == (100, 100)
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_load_rgb_still_decodes_with_exif_rotation(tmp_path):
    path = tmp_path / "rot.jpg"
    img = Image.new("RGB", (40, 20), (0, 200, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(path, exif=exif)
    assert load_rgb(path).size == (20, 40)
    with pytest.raises(ValueError, match="over the limit"):
        load_rgb(path, max_pixels=100)


def test_local_path_keeps_local_files(tmp_path):
    assert local_path(str(tmp_path / "a.jpg")) == tmp_path / "a.jpg"
