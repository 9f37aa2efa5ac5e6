"""Fuzzing the converters and the geometry (issue 18, item 1): round trips COCO -> JSONL -> COCO,
JSONL -> YOLO -> JSONL keep every box within half a pixel and every polygon's area within 1 %;
degenerate and hostile annotations (inverted, empty, non-finite or mistyped boxes, polygons of
fewer than 3 points or no area, broken RLE, damaged YOLO and VOC files) are reported as problems,
never crashed on. Plain check functions, as in test_fuzz_reader, so `make fuzz` runs them for longer.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from visionml import geometry
from visionml.convert import ConvertOptions, convert
from visionml.data.reader import read_dataset
from visionml.errors import VisionMLError

from .fuzzing import TRIED, blank_png, budget, json_values

HALF_PIXEL = 0.5
AREA_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-geometry")


# ----------------------------------------------------------------------------- strategies


@st.composite
def pixel_boxes(draw, width: int, height: int):
    """A box of at least a pixel inside a ``width`` x ``height`` image, in float pixels."""
    x0 = draw(st.floats(0, width - 1))
    y0 = draw(st.floats(0, height - 1))
    x1 = draw(st.floats(min(x0 + 1, width), width))
    y1 = draw(st.floats(min(y0 + 1, height), height))
    return x0, y0, x1, y1


@st.composite
def star_polygons(draw, x0: float, y0: float, x1: float, y1: float):
    """A simple polygon (points around a centre at increasing angles) inside the box, of 3-24 points."""
    n = draw(st.integers(3, 24))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
    angles = sorted(draw(st.lists(st.floats(0, 2 * math.pi, exclude_max=True), min_size=n, max_size=n,
                                  unique=True)))
    radii = draw(st.lists(st.floats(0.3, 1.0), min_size=n, max_size=n))
    return [(cx + r * rx * math.cos(a), cy + r * ry * math.sin(a)) for a, r in zip(angles, radii)]


@st.composite
def box_images(draw):
    """(width, height, [boxes in pixels]) for one image."""
    width, height = draw(st.integers(2, 8000)), draw(st.integers(2, 8000))
    return width, height, draw(st.lists(pixel_boxes(width, height), min_size=1, max_size=6))


@st.composite
def polygon_images(draw):
    """(width, height, [objects, each a list of 1-2 disjoint simple polygons in pixels]); every
    polygon at least 4 square pixels and on average half a pixel thick (area >= perimeter / 2), so
    rounding to the formats' decimals cannot reach 1 %: the area moves by at most the perimeter
    times the rounding (JSONL's 6 normalised decimals are 0.004 px of an 8,000-px side). A sliver
    thinner than that (`make fuzz` drew a 4-px^2 triangle 0.02 px thick on average) moves more."""
    width, height = draw(st.integers(16, 8000)), draw(st.integers(16, 8000))
    objects = []
    for _ in range(draw(st.integers(1, 4))):
        parts = draw(st.integers(1, 2))
        # disjoint parts: each lives in its own vertical strip of the image
        edges = np.linspace(0, width, parts + 1)
        obj = []
        for left, right in zip(edges[:-1], edges[1:]):
            bx0 = draw(st.floats(left, right - 8))
            by0 = draw(st.floats(0, height - 8))
            bx1 = draw(st.floats(bx0 + 8, right))
            by1 = draw(st.floats(by0 + 8, height))
            obj.append(draw(star_polygons(bx0, by0, bx1, by1)))
        if all(_area(p) >= max(4.0, _perimeter(p) / 2) for p in obj):
            objects.append(obj)
    if not objects:
        objects = [[[(1, 1), (9, 1), (9, 9), (1, 9)]]]
    return width, height, objects


def _area(points) -> float:
    return geometry.polygon_area_abs([np.asarray(points, dtype=np.float64)])


def _perimeter(points) -> float:
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1).sum())


# ----------------------------------------------------------------------------- helpers


class _Folder:
    """A fresh folder per example under the module's workspace, removed afterwards."""

    def __init__(self, workspace: Path):
        self.path = Path(tempfile.mkdtemp(dir=workspace))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def _coco(width: int, height: int, annotations: list[dict]) -> dict:
    return {"images": [{"id": 1, "file_name": "img.png", "width": width, "height": height}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **a}
                            for i, a in enumerate(annotations)],
            "categories": [{"id": 1, "name": "thing"}]}


def _jsonl_objects_abs(path: Path) -> list:
    records = read_dataset(path, check_images=False).records
    assert len(records) == 1
    w, h = records[0].width, records[0].height
    return [(geometry.xyxy_norm_to_abs(o.box, w, h)[0],
             None if o.polygon is None else geometry.polygon_norm_to_abs(o.polygon, w, h)) for o in records[0].objects]


def _coco_boxes_abs(path: Path) -> list:
    doc = orjson.loads(path.read_bytes())
    return [geometry.xywh_abs_to_xyxy_abs(a["bbox"])[0] for a in doc["annotations"]]


def _coco_areas(path: Path) -> list[float]:
    doc = orjson.loads(path.read_bytes())
    return [geometry.polygon_area_abs(a["segmentation"]) for a in doc["annotations"]]


def _close_boxes(found, wanted) -> None:
    assert len(found) == len(wanted), (found, wanted)
    for got, want in zip(found, wanted):
        assert np.abs(np.asarray(got) - np.asarray(want)).max() <= HALF_PIXEL, (got, want)


def _close_areas(found, wanted) -> None:
    assert len(found) == len(wanted), (found, wanted)
    for got, want in zip(found, wanted):
        assert abs(got - want) <= AREA_TOLERANCE * want, (got, want)


# ----------------------------------------------------------------------------- the properties


def check_box_round_trip(workspace: Path, width: int, height: int, boxes: list) -> None:
    """COCO -> JSONL -> COCO and JSONL -> YOLO -> JSONL: every box back within half a pixel."""
    with _Folder(workspace) as folder:
        blank_png(folder / "img.png", width, height)
        src = folder / "in.json"
        src.write_bytes(orjson.dumps(_coco(width, height, [
            {"bbox": [x0, y0, x1 - x0, y1 - y0]} for x0, y0, x1, y1 in boxes])))
        convert(src, "coco", "jsonl", folder / "a.jsonl", ConvertOptions(task="object-detection"))
        _close_boxes([box for box, _ in _jsonl_objects_abs(folder / "a.jsonl")], boxes)
        convert(folder / "a.jsonl", "jsonl", "coco", folder / "b.json")
        _close_boxes(_coco_boxes_abs(folder / "b.json"), boxes)
        convert(folder / "a.jsonl", "jsonl", "yolo", folder / "yolo")
        convert(folder / "yolo", "yolo", "jsonl", folder / "yolo" / "c.jsonl")
        _close_boxes([box for box, _ in _jsonl_objects_abs(folder / "yolo" / "c.jsonl")], boxes)
    TRIED["box round trip"] += 1


def check_polygon_round_trip(workspace: Path, width: int, height: int, objects: list) -> None:
    """COCO polygons -> JSONL -> COCO and JSONL -> YOLO (one polygon per object, parts bridged)
    -> JSONL: every object's area back within 1 %, its box within half a pixel of the points'."""
    areas = [sum(_area(p) for p in obj) for obj in objects]
    extents = [geometry.polygon_extent_norm([np.asarray(p) for p in obj]) for obj in objects]
    with _Folder(workspace) as folder:
        blank_png(folder / "img.png", width, height)
        src = folder / "in.json"
        src.write_bytes(orjson.dumps(_coco(width, height, [
            {"segmentation": [[v for point in part for v in point] for part in obj]} for obj in objects])))
        convert(src, "coco", "jsonl", folder / "a.jsonl", ConvertOptions(task="instance-segmentation"))
        found = _jsonl_objects_abs(folder / "a.jsonl")
        _close_areas([geometry.polygon_area_abs(segs) for _, segs in found], areas)
        _close_boxes([box for box, _ in found], extents)
        convert(folder / "a.jsonl", "jsonl", "coco", folder / "b.json")
        _close_areas(_coco_areas(folder / "b.json"), areas)
        convert(folder / "a.jsonl", "jsonl", "yolo", folder / "yolo")
        convert(folder / "yolo", "yolo", "jsonl", folder / "yolo" / "c.jsonl")
        found = _jsonl_objects_abs(folder / "yolo" / "c.jsonl")
        _close_areas([geometry.polygon_area_abs(segs) for _, segs in found], areas)
        _close_boxes([box for box, _ in found], extents)
    TRIED["polygon round trip"] += 1


def check_pure_round_trips(width: int, height: int, boxes: list) -> None:
    """The geometry functions invert each other to float precision."""
    b = np.asarray(boxes, dtype=np.float64)
    scale = max(width, height) * 1e-9
    norm = geometry.xyxy_abs_to_norm(b, width, height)
    assert np.allclose(geometry.xyxy_norm_to_abs(norm, width, height), b, atol=scale)
    assert np.allclose(geometry.xywh_abs_to_xyxy_abs(geometry.xyxy_abs_to_xywh_abs(b)), b, atol=scale)
    assert np.allclose(geometry.cxcywh_norm_to_xyxy_norm(geometry.xyxy_norm_to_cxcywh_norm(norm)), norm, atol=1e-12)
    corners = [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)] for x0, y0, x1, y1 in boxes]
    segs = geometry.polygon_norm_to_abs(geometry.polygon_abs_to_norm(corners, width, height), width, height)
    for seg, corner, (x0, y0, x1, y1) in zip(segs, corners, boxes):
        assert np.allclose(seg, corner, atol=scale)
        assert math.isclose(geometry.polygon_area_abs([seg]), (x1 - x0) * (y1 - y0), rel_tol=1e-9)
    TRIED["geometry"] += 1


def check_mask_outline(mask: np.ndarray) -> None:
    """A mask traced along its pixel edges and rasterised again covers the same pixels, within 1 %
    of its area (holes filled first, as the schema cannot hold them)."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask)
    polygons = geometry.mask_to_polygons_edges_abs(mask)
    back = geometry.polygons_abs_to_mask(polygons, *mask.shape)
    assert abs(int(back.sum()) - int(filled.sum())) <= AREA_TOLERANCE * filled.sum(), (back.sum(), filled.sum())
    TRIED["mask outline"] += 1


_bad_numbers = st.one_of(st.floats(allow_nan=False), st.integers(-10**6, 10**6), st.sampled_from(
    [0, -1, 1e308, -1e308, 2**64, "3", "", None, True, [], {}]), json_values)
coco_annotations = st.fixed_dictionaries({}, optional={
    "bbox": st.one_of(st.lists(_bad_numbers, max_size=5), json_values),
    "segmentation": st.one_of(st.lists(st.lists(_bad_numbers, max_size=8), max_size=3),
                              st.fixed_dictionaries({"counts": st.one_of(st.text(max_size=20),
                                                                         st.lists(st.integers(-5, 500), max_size=8),
                                                                         json_values),
                                                     "size": st.one_of(st.just([24, 32]), json_values)}),
                              json_values),
    "category_id": st.one_of(st.just(1), json_values), "image_id": st.one_of(st.just(1), json_values),
    "iscrowd": st.one_of(st.sampled_from([0, 1]), json_values), "id": json_values})
coco_images = st.fixed_dictionaries({"id": st.one_of(st.just(1), json_values)}, optional={
    "file_name": st.one_of(st.sampled_from(["img.png", "missing.png", "../img.png", "sub/../img.png"]), json_values),
    "width": st.one_of(st.just(32), _bad_numbers), "height": st.one_of(st.just(24), _bad_numbers)})
coco_documents = st.one_of(
    st.fixed_dictionaries({"images": st.lists(coco_images, max_size=3),
                           "annotations": st.lists(st.one_of(coco_annotations, json_values), max_size=5),
                           "categories": st.one_of(st.just([{"id": 1, "name": "thing"}]),
                                                   st.lists(st.fixed_dictionaries({}, optional={
                                                       "id": json_values, "name": json_values}), max_size=3),
                                                   json_values)}),
    json_values)


def _assert_written_objects_valid(path: Path, task: str | None) -> None:
    """What a converter writes, the reader takes: boxes inside [0, 1] with area."""
    for record in read_dataset(path, task or "object-detection", check_images=False).records:
        for obj in record.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, obj


def check_coco_document(workspace: Path, doc, task: str | None, skip_invalid: bool) -> None:
    """Any COCO document: converted, or refused with a VisionMLError listing the problems."""
    with _Folder(workspace) as folder:
        (folder / "img.png").write_bytes(_SMALL_PNG)
        src = folder / "in.json"
        src.write_bytes(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS) if not _has_big_int(doc)
                        else b"{}")
        try:
            convert(src, "coco", "jsonl", folder / "out.jsonl", ConvertOptions(task=task, skip_invalid=skip_invalid))
        except VisionMLError as exc:
            assert str(exc)
        else:
            _assert_written_objects_valid(folder / "out.jsonl", task)
    TRIED["coco document"] += 1


def check_yolo_labels(workspace: Path, text: bytes, names: list[str], task: str | None, skip_invalid: bool) -> None:
    """Any YOLO label file: converted, or refused with a VisionMLError naming the file and line."""
    with _Folder(workspace) as folder:
        (folder / "images").mkdir()
        (folder / "labels").mkdir()
        (folder / "images" / "img.png").write_bytes(_SMALL_PNG)
        (folder / "labels" / "img.txt").write_bytes(text)
        (folder / "classes.txt").write_text("".join(n + "\n" for n in names))
        try:
            convert(folder, "yolo", "jsonl", folder / "out.jsonl", ConvertOptions(task=task, skip_invalid=skip_invalid))
        except VisionMLError as exc:
            assert str(exc)
        else:
            _assert_written_objects_valid(folder / "out.jsonl", task)
    TRIED["yolo labels"] += 1


def check_voc_file(workspace: Path, xml: bytes, skip_invalid: bool) -> None:
    """Any VOC XML file: converted, or refused with a VisionMLError."""
    with _Folder(workspace) as folder:
        (folder / "img.png").write_bytes(_SMALL_PNG)
        (folder / "img.xml").write_bytes(xml)
        try:
            convert(folder, "voc", "jsonl", folder / "out.jsonl", ConvertOptions(skip_invalid=skip_invalid))
        except VisionMLError as exc:
            assert str(exc)
        else:
            _assert_written_objects_valid(folder / "out.jsonl", None)
    TRIED["voc file"] += 1


def check_csv_labels(workspace: Path, text: bytes, task: str | None, skip_invalid: bool) -> None:
    """Any CSV of image names and labels: converted, or refused with a VisionMLError."""
    with _Folder(workspace) as folder:
        (folder / "img.png").write_bytes(_SMALL_PNG)
        (folder / "labels.csv").write_bytes(text)
        try:
            convert(folder / "labels.csv", "csv", "jsonl", folder / "out.jsonl",
                    ConvertOptions(task=task, skip_invalid=skip_invalid))
        except VisionMLError as exc:
            assert str(exc)
        else:
            assert read_dataset(folder / "out.jsonl", task or "multilabel", check_images=False).records
    TRIED["csv labels"] += 1


def check_instance_masks(workspace: Path, ids: np.ndarray, mode: str, task: str | None, skip_invalid: bool) -> None:
    """Any instance-id mask PNG (speckles, lines, one-pixel instances, ids up to 65535): polygons or
    boxes that the reader takes, or problems; never a crash."""
    from PIL import Image

    with _Folder(workspace) as folder:
        (folder / "images").mkdir()
        (folder / "masks").mkdir()
        h, w = ids.shape
        blank_png(folder / "images" / "a.png", w, h)
        Image.fromarray(ids.astype(np.uint8 if mode == "L" else np.uint16)).save(folder / "masks" / "a_mask.png")
        try:
            convert(folder, "masks", "jsonl", folder / "out.jsonl", ConvertOptions(task=task, skip_invalid=skip_invalid))
        except VisionMLError as exc:
            assert str(exc)
        else:
            _assert_written_objects_valid(folder / "out.jsonl", task or "instance-segmentation")
    TRIED["instance masks"] += 1


def _has_big_int(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**64
    if isinstance(value, list):
        return any(map(_has_big_int, value))
    if isinstance(value, dict):
        return any(map(_has_big_int, value.values()))
    return False


def _small_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (120, 120, 120)).save(buf, format="PNG")
    return buf.getvalue()


_SMALL_PNG = _small_png()

_yolo_tokens = st.sampled_from(["0", "1", "7", "-1", "0.5", "0.25", "1.5", "-0.2", "nan", "inf", "1e9", "x", "",
                                "0x1", "1_0", "٣"])
yolo_texts = st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(_yolo_tokens, max_size=9).map(" ".join), max_size=6).map(lambda ls: "\n".join(ls).encode()))

_voc_values = st.sampled_from(["0", "1", "10", "31", "32", "33", "-5", "1e9", "nan", "inf", "abc", "", "3.5"])


@st.composite
def voc_documents(draw) -> bytes:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    objects = "".join(
        f"<object><name>{draw(st.sampled_from(['cat', '', ' dog ', '&amp;']))}</name>"
        f"<difficult>{draw(_voc_values)}</difficult><bndbox>"
        + "".join(f"<{k}>{draw(_voc_values)}</{k}>" for k in draw(st.permutations(["xmin", "ymin", "xmax", "ymax"]))[
            :draw(st.integers(0, 4))])
        + "</bndbox></object>" for _ in range(draw(st.integers(0, 3))))
    return (f"<annotation><filename>{draw(st.sampled_from(['img.png', 'missing.png', '', '../img.png']))}</filename>"
            f"<size><width>{draw(_voc_values)}</width><height>{draw(_voc_values)}</height></size>"
            f"{objects}</annotation>").encode()


_csv_cells = st.one_of(st.sampled_from(["img.png", "img", "missing.png", "../img.png", "cat", "dog cat", "", "0", "1",
                                         "2", '"', "a,b", " ", "\x00", "filename", "labels"]), st.text(max_size=6))
csv_texts = st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(_csv_cells, max_size=4).map(",".join), max_size=5).map(
        lambda rows: ("\n".join(["filename,labels"] + rows)).encode("utf-8", "surrogatepass")),
    st.lists(st.lists(_csv_cells, max_size=4).map(",".join), max_size=5).map(
        lambda rows: ("\n".join(["filename,cat,dog"] + rows)).encode("utf-8", "surrogatepass")))


@st.composite
def instance_ids(draw) -> np.ndarray:
    """Small id masks: random speckle, thin lines, single pixels and blocks of many ids."""
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        values = draw(st.lists(st.integers(0, 3), min_size=h * w, max_size=h * w))
        return np.array(values, dtype=np.int64).reshape(h, w)
    ids = np.zeros((h, w), dtype=np.int64)
    for n in range(draw(st.integers(0, 5))):
        y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y, h - 1)), draw(st.integers(x, w - 1))
        ids[y:y1 + 1, x:x1 + 1] = draw(st.sampled_from([1, 2, 7, 255, 256, 65535])) if kind == 3 else n + 1
    return ids


@st.composite
def blob_masks(draw) -> np.ndarray:
    """A mask of a few overlapping rectangles and discs, each at least 3 pixels across."""
    h, w = draw(st.integers(8, 96)), draw(st.integers(8, 96))
    mask = np.zeros((h, w), dtype=bool)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(draw(st.integers(1, 4))):
        x0, y0 = draw(st.integers(0, w - 3)), draw(st.integers(0, h - 3))
        x1, y1 = draw(st.integers(x0 + 3, w)), draw(st.integers(y0 + 3, h))
        if draw(st.booleans()):
            mask[y0:y1, x0:x1] = True
        else:
            cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, max(1.5, min(x1 - x0, y1 - y0) / 2)
            mask |= (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
    return mask


# ----------------------------------------------------------------------------- the suite's runs


@budget(20, deadline_s=20)
@given(image=box_images())
@example(image=(2, 2, [(0.0, 0.0, 1.0, 1.0)]))
@example(image=(7999, 3, [(7997.6, 0.4, 7999.0, 2.9)]))
def test_boxes_survive_coco_jsonl_yolo_round_trips_within_half_a_pixel(workspace, image):
    check_box_round_trip(workspace, *image)


@budget(20, deadline_s=20)
@given(image=polygon_images())
def test_polygon_areas_survive_coco_jsonl_yolo_round_trips_within_one_percent(workspace, image):
    check_polygon_round_trip(workspace, *image)


@budget(60)
@given(image=box_images())
@example(image=(2646, 2647, [(2644.8122350515882, 2646.0, 2646.0, 2647.0)]))  # make fuzz: the shoelace's cancellation
def test_geometry_conversions_invert_each_other(image):
    check_pure_round_trips(*image)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under numpy 2
@budget(25)
@given(mask=blob_masks())
def test_mask_outlines_cover_the_mask_within_one_percent(mask):
    check_mask_outline(mask)


@budget(60)
@given(doc=coco_documents, task=st.sampled_from([None, "object-detection", "instance-segmentation"]),
       skip_invalid=st.booleans())
@example(doc=_coco(32, 24, [{"bbox": ["1", 2, 3, 4]}]), task="object-detection", skip_invalid=True)
@example(doc=_coco(32, 24, [{"bbox": [1, 2, 3, None]}]), task="object-detection", skip_invalid=True)
@example(doc=_coco("32", 24, [{"bbox": [1, 2, 3, 4]}]), task=None, skip_invalid=True)
@example(doc={"images": [{"file_name": "img.png"}], "categories": [{"id": 1, "name": "a"}]}, task=None,
         skip_invalid=True)
@example(doc={"images": [], "categories": [{"id": 1, "name": "a"}, {"id": "2", "name": "b"}]}, task=None,
         skip_invalid=True)
@example(doc={"images": [], "annotations": [[]], "categories": []}, task=None, skip_invalid=True)
@example(doc=_coco(32, 24, [{"segmentation": [[1, 1, 5, 5, 9, 9]]}]), task=None, skip_invalid=True)
@example(doc=_coco(32, 24, [{"segmentation": {"counts": "@@@", "size": [24, 32]}}]), task=None, skip_invalid=True)
def test_any_coco_document_is_converted_or_refused_with_its_problems(workspace, doc, task, skip_invalid):
    check_coco_document(workspace, doc, task, skip_invalid)


@budget(40)
@given(text=yolo_texts, names=st.lists(st.sampled_from(["cat", "dog", "x y"]), min_size=1, max_size=3),
       task=st.sampled_from([None, "object-detection", "instance-segmentation"]), skip_invalid=st.booleans())
@example(text=b"0 0.5 0.5 0.2 0.2\n\x80\n", names=["cat"], task=None, skip_invalid=True)
def test_any_yolo_label_file_is_converted_or_refused_with_its_problems(workspace, text, names, task, skip_invalid):
    check_yolo_labels(workspace, text, names, task, skip_invalid)


@budget(30)
@given(xml=voc_documents(), skip_invalid=st.booleans())
@example(xml=b"<annotation><filename>img.png</filename><size><width>0</width><height>inf</height></size></annotation>",
         skip_invalid=False)
def test_any_voc_file_is_converted_or_refused_with_its_problems(workspace, xml, skip_invalid):
    check_voc_file(workspace, xml, skip_invalid)


@budget(40)
@given(text=csv_texts, task=st.sampled_from([None, "multiclass", "multilabel"]), skip_invalid=st.booleans())
@example(text=b"\x00,\nimg.png,\x00\nimg.png,", task=None, skip_invalid=False)  # make fuzz: one image on two rows
def test_any_csv_of_labels_is_converted_or_refused_with_its_problems(workspace, text, task, skip_invalid):
    check_csv_labels(workspace, text, task, skip_invalid)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under numpy 2
@budget(40)
@given(ids=instance_ids(), mode=st.sampled_from(["L", "I;16"]),
       task=st.sampled_from([None, "object-detection", "instance-segmentation"]), skip_invalid=st.booleans())
def test_any_instance_mask_is_converted_or_refused_with_its_problems(workspace, ids, mode, task, skip_invalid):
    check_instance_masks(workspace, ids if mode == "I;16" else ids % 256, mode, task, skip_invalid)
