"""Pascal VOC -> JSONL on real files: six BCCD images (tests/fixtures/bccd, MIT licence), two of
which carry a zero-size box, as in the original data set."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from .helpers import cli, make_image, read_jsonl, validate_ok

BCCD = Path(__file__).resolve().parents[1] / "fixtures" / "bccd"


def xml_boxes(xml: Path) -> list[tuple]:
    root = ET.parse(xml).getroot()
    return [(o.findtext("name"), *(float(o.findtext(f"bndbox/{k}"))
                                   for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")]


def test_bccd_zero_size_boxes_stop_the_conversion(tmp_path, capsys):
    out = tmp_path / "bccd.jsonl"
    assert cli("convert", BCCD, "--from", "voc", "--to", "jsonl", "-o", out) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "BloodImage_00338.xml: object 13 'RBC': box [504, 337, 504, 337] has zero area" in err
    assert "BloodImage_00343.xml: object 4 'RBC': box [181, 329, 181, 329] has zero area" in err
    assert not out.exists()


def test_bccd_skip_invalid_keeps_every_other_box_exactly(tmp_path, capsys):
    out = tmp_path / "bccd.jsonl"
    assert cli("convert", BCCD, "--from", "voc", "--to", "jsonl", "-o", out, "--skip-invalid") == 0
    printed = capsys.readouterr()
    assert "truncated were kept" in printed.out and "has zero area" in printed.err
    lines = read_jsonl(out)
    assert len(lines) == 6
    for line in lines:
        xml = BCCD / "Annotations" / (Path(line["image_url"]).stem + ".xml")
        want = [b for b in xml_boxes(xml) if b[1] < b[3]]
        got = [(o["label"], o["topX"] * 640, o["topY"] * 480, o["bottomX"] * 640,
                o["bottomY"] * 480) for o in line["label"]]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g[0] == w[0] and max(abs(a - b) for a, b in zip(g[1:], w[1:])) <= 0.5
    validate_ok(out, "image_object_detection")


def test_voc_folder_of_xml_with_images_option_and_difficult(tmp_path, capsys):
    xml_dir, img_dir = tmp_path / "xml", tmp_path / "pics"
    xml_dir.mkdir()
    make_image(img_dir / "p.png", 120, 80)
    (xml_dir / "p.xml").write_text(
        "<annotation><filename>p.png</filename>"  # no <size>: taken from the image
        "<object><name>cup</name><difficult>1</difficult>"
        "<bndbox><xmin>10</xmin><ymin>10</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>"
        "<object><name>jar</name>"
        "<bndbox><xmin>0</xmin><ymin>0</ymin><xmax>120</xmax><ymax>80</ymax></bndbox></object>"
        "</annotation>")
    results = {}
    for mode in ("keep", "crowd", "drop"):
        out = tmp_path / f"{mode}.jsonl"
        assert cli("convert", xml_dir, "--from", "voc", "--to", "jsonl", "-o", out, "--images",
                   img_dir, "--voc-difficult", mode) == 0
        results[mode] = [(o["label"], o["isCrowd"]) for o in read_jsonl(out)[0]["label"]]
        validate_ok(out)
    assert results == {"keep": [("cup", 0), ("jar", 0)], "crowd": [("cup", 1), ("jar", 0)],
                       "drop": [("jar", 0)]}
    assert "1 object(s) marked difficult were kept as normal objects" in capsys.readouterr().out


def test_voc_size_that_disagrees_with_the_image_is_reported(tmp_path, capsys):
    make_image(tmp_path / "JPEGImages" / "a.jpg", 100, 50)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>50</width><height>100</height></size>"
        "</annotation>")
    assert cli("convert", tmp_path, "--from", "voc", "--to", "jsonl", "-o",
               tmp_path / "o.jsonl") == 1
    assert "annotated size 50x100 differs from the image" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bccd_converts_validates_and_trains(tmp_path):
    # Training validates each epoch through visionml.metrics.evaluate, built separately.
    pytest.importorskip("visionml.metrics.evaluate", reason="visionml.metrics.evaluate is not built yet")
    data = tmp_path / "bccd"
    shutil.copytree(BCCD, data)
    jsonl = data / "train.jsonl"
    assert cli("convert", data, "--from", "voc", "--to", "jsonl", "-o", jsonl, "--skip-invalid") == 0
    assert all(not Path(ln["image_url"]).is_absolute() for ln in read_jsonl(jsonl))
    validate_ok(jsonl, "image_object_detection")
    run = tmp_path / "run"
    assert cli("train", "--task", "image_object_detection", "--training-data", jsonl,
               "--validation-data", jsonl, "--no-pretrained", "--preset", "cpu",
               "--set", "number_of_epochs=1", "--set", "min_size=128", "--set", "max_size=160",
               "--set", "training_batch_size=2", "--output", run, "--seed", "0") == 0
    manifest = orjson.loads((run / "model" / "visionml.json").read_bytes())
    assert manifest["labels"] == ["Platelets", "RBC", "WBC"]
    assert "mean_average_precision" in orjson.loads((run / "metrics.json").read_bytes())
