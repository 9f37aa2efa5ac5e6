"""`visionml audit` as a user runs it: a planted near-duplicate and a planted training/validation
leak are found, and audit.json and the PNG plots are written."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from visionml.cli import main
from visionml.data.audit import near_pairs, popcount


def _plant(data, tmp_path):
    """Training: the sample data plus a resized, re-encoded copy of its first image under another
    name (a near-duplicate); validation: its own lines plus a byte copy of the fourth training
    image (a leak that no path comparison finds)."""
    root = tmp_path / "data"
    shutil.copytree(data["train"].parent, root)
    train_lines = (root / "train.jsonl").read_text().splitlines()
    first = json.loads(train_lines[0])
    Image.open(root / first["image_url"]).resize((150, 112)).save(root / "images" / "resized_copy.jpg", quality=70)
    copy = {**first, "image_url": "images/resized_copy.jpg"}
    copy.pop("image_details", None)
    (root / "train.jsonl").write_text("\n".join([*train_lines, json.dumps(copy)]) + "\n")
    fourth = json.loads(train_lines[3])
    shutil.copyfile(root / fourth["image_url"], root / "images" / "leaked.jpg")
    leaked = {**fourth, "image_url": "images/leaked.jpg"}
    (root / "val.jsonl").write_text((root / "val.jsonl").read_text() + json.dumps(leaked) + "\n")
    return root, first["image_url"], fourth["image_url"], len(train_lines)


def test_audit_finds_the_planted_duplicate_and_leak(det_data, tmp_path, capsys):
    root, original, leaked_from, n_train = _plant(det_data, tmp_path)
    out = tmp_path / "audit"
    assert main(["audit", str(root / "train.jsonl"), "--validation-data", str(root / "val.jsonl"),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "audit.json").read_text())

    duplicates = [sorted(m["image_url"] for m in g["images"]) for g in report["near_duplicates"]
                  if g["splits"] == ["training"]]
    assert duplicates == [sorted([original, "images/resized_copy.jpg"])]
    assert f"train.jsonl:{n_train + 1}" in printed  # the copy's line, as FILE:LINE

    assert report["train_validation_leak_count"] == 1
    (leak,) = report["train_validation_leaks"]
    assert leak["training"]["image_url"] == leaked_from and leak["validation"]["image_url"] == "images/leaked.jpg"
    assert leak["identical"] and not leak["same_file"] and leak["distance"] == 0

    balance = report["class_balance"]["training"]
    assert balance["unit"] == "boxes" and sum(balance["counts"].values()) == report["boxes"]["training"]["objects"]
    assert report["images"] == {"training": n_train + 1, "validation": 3}
    for name in ("class_balance", "box_sizes", "aspect_ratios", "image_sizes"):
        with Image.open(out / f"{name}.png") as png:
            assert png.format == "PNG" and png.width > 300


def test_audit_without_validation_data_reports_no_leak_section(cls_data, tmp_path, capsys):
    assert main(["audit", str(cls_data["train"]), "--output", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["train_validation_leaks"] is None and report["near_duplicates"] == []
    assert report["class_balance"]["training"]["unit"] == "images" and "boxes" not in report
    assert not (tmp_path / "a" / "box_sizes.png").exists()
    assert "the same image in training and validation" not in capsys.readouterr().out


def test_pigeonhole_search_finds_what_comparing_every_pair_finds():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=3000, dtype=np.int64).astype(np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, size=(3000, 3)).astype(np.uint64)
    near = base ^ flips[:, 0] ^ flips[:, 1] ^ flips[:, 2]  # each within 3 bits of its original
    hashes = np.concatenate([base, near])
    found = set(near_pairs(hashes, 4))  # 6000 hashes: the pigeonhole path
    brute = {(i, j) for i in range(len(hashes)) for j in
             (np.flatnonzero(popcount(hashes[i + 1:] ^ hashes[i]) <= 4) + i + 1).tolist()}
    assert found == brute and {(k, k + 3000) for k in range(3000)} <= found
