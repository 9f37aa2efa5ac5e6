"""The one decoder: base64 with and without line breaks, JSON items, paths, bytes, PIL."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image

from visionml.predict.decode import DecodeError, b64decode, decode_image, filename_of, parse_score_item

from tests.support import image_bytes


def test_base64_with_and_without_line_breaks_and_data_uri_decode_alike():
    data = image_bytes()
    forms = [base64.encodebytes(data).decode(), base64.b64encode(data).decode(),
             "data:image/jpeg;base64," + base64.b64encode(data).decode(),
             base64.encodebytes(data).decode().replace("\n", "\r\n")]
    assert "\n" in forms[0]
    assert all(b64decode(f) == data for f in forms)


@pytest.mark.parametrize("text", ["", "   ", "not base64!", "abc", "héllo"])
def test_not_base64_is_refused(text):
    with pytest.raises(DecodeError, match="not base64"):
        b64decode(text)


def test_json_item_carries_explainability():
    encoded = base64.encodebytes(image_bytes()).decode()
    item = parse_score_item(json.dumps({"image_base64": encoded, "model_explainability": True,
                                        "xai_parameters": {"xai_algorithm": "xrai"}}))
    assert item.image == image_bytes()
    assert item.model_explainability is True and item.xai_parameters == {"xai_algorithm": "xrai"}
    plain = parse_score_item(encoded)
    assert plain.model_explainability is False and plain.xai_parameters == {}
    assert parse_score_item([encoded]).image == image_bytes()  # a pandas "split" row


@pytest.mark.parametrize("item, message", [
    ('{"image_base64": ', "not valid JSON"),
    (json.dumps({"model_explainability": True}), "image_base64"),
    (json.dumps({"image_base64": "aGk=", "model_explainability": "maybe"}), "true or false"),
    (json.dumps({"image_base64": "aGk=", "xai_parameters": [1]}), "xai_parameters"),
    (3.5, "base64 string"),
])
def test_bad_items_say_what_is_wrong(item, message):
    with pytest.raises(DecodeError, match=message):
        parse_score_item(item)


def test_every_input_kind_gives_the_same_pixels(tmp_path):
    data = image_bytes(fmt="PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    reference = decode_image(data)
    for src in (str(path), path, base64.b64encode(data).decode(), Image.open(path)):
        image = decode_image(src)
        assert image.mode == "RGB" and image.tobytes() == reference.tobytes()
    assert filename_of(str(path), 3) == str(path)
    assert filename_of(data, 3) == "image_3"


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert decode_image(str(path)).size == (20, 40)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(DecodeError, match="not a readable image"):
        decode_image(b"plain text")
    with pytest.raises(DecodeError, match="no such file"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(DecodeError, match="over the limit"):
        decode_image(image_bytes(100, 100), max_pixels=5000)
