"""Property tests for the label formats: round trips and fuzzed input.

Round trips: random images with oriented boxes inside the image are written and read back; the
classes, geometry each format keeps (polygon for COCO/DOTA/YOLO-OBB, bbox for YOLO/xView) and boat
state (COCO) must survive. Fuzz: arbitrary or near-valid input never raises anything but
:class:`LabelFormatError`.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from freightwatch.datasets.annotations import Annotation, ImageLabels, LabelSet
from freightwatch.datasets.formats import (
    read_coco,
    read_dota,
    read_xview,
    read_yolo,
    write_coco,
    write_dota,
    write_xview,
    write_yolo,
)
from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import CLASSES, BoatState

ROUND_TRIP = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def annotations(draw: st.DrawFn, width: int, height: int, scores: bool) -> Annotation:
    """An oriented box wholly inside the image: its half-diagonal fits between centre and edges."""
    cls = draw(st.sampled_from(CLASSES))
    cx = draw(st.floats(4, width - 4))
    cy = draw(st.floats(4, height - 4))
    reach = min(cx, cy, width - cx, height - cy)
    r = draw(st.floats(2, reach))
    t = draw(st.floats(0.2, math.pi / 2 - 0.2))  # aspect: keeps both sides well above zero
    state = draw(st.sampled_from(list(BoatState))) if cls == "boat" else BoatState.UNKNOWN
    score = draw(st.none() | st.floats(0, 1)) if scores else None
    return Annotation.from_rotated_box(
        cls, (cx, cy), 2 * r * math.cos(t) * 0.999, 2 * r * math.sin(t) * 0.999,
        draw(st.floats(-90, 90)), state=state, score=score,
    )


@st.composite
def image_sets(draw: st.DrawFn, scores: bool = False, meta: bool = False) -> list[ImageLabels]:
    images = []
    for i in range(draw(st.integers(1, 3))):
        w, h = draw(st.integers(16, 300)), draw(st.integers(16, 300))
        anns = draw(st.lists(annotations(w, h, scores), max_size=6))
        im = ImageLabels(f"img_{i}.png", w, h, anns)
        if meta:
            gsd = draw(st.none() | st.floats(0.05, 30))
            if gsd is not None:
                im.gsd = gsd
                im.crs = draw(st.sampled_from(["EPSG:32651", "EPSG:3857"]))
                im.transform = Affine(gsd, 0, draw(st.floats(-1e6, 1e6)), 0, -gsd, draw(st.floats(-1e6, 1e6)))
            im.scene_id = draw(st.none() | st.text(max_size=10))
            im.acquired = draw(st.none() | st.datetimes(
                datetime(2000, 1, 1), datetime(2035, 1, 1), timezones=st.none() | st.just(UTC)))
        images.append(im)
    return images


def _save_images(images: list[ImageLabels], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for im in images:
        Image.new("L", (im.width, im.height)).save(folder / im.file_name)
    return folder


def _assert_same(
    written: list[ImageLabels], read: LabelSet, geometry: Callable[[Annotation], np.ndarray], atol: float,
    state: bool = False, score: bool = False,
) -> None:
    assert not read.skipped and not read.dropped
    by_stem = {Path(im.file_name).stem: im for im in read}
    assert set(by_stem) <= {Path(im.file_name).stem for im in written}
    for im in written:
        back = by_stem.get(Path(im.file_name).stem)
        if back is None:  # xView cannot represent images without objects
            assert not im.annotations
            continue
        assert [a.cls for a in back.annotations] == [a.cls for a in im.annotations]
        for a, b in zip(im.annotations, back.annotations, strict=True):
            np.testing.assert_allclose(geometry(b), geometry(a), atol=atol)
            assert b.state is (a.state if state else BoatState.UNKNOWN)
            if score:
                assert (b.score is None) == (a.score is None)
                if a.score is not None:
                    assert abs(b.score - a.score) < 1e-6


def _bbox(a: Annotation) -> np.ndarray:
    return np.array(a.bbox)


def _poly(a: Annotation) -> np.ndarray:
    return a.polygon


# --- round trips -----------------------------------------------------------------------------------


@ROUND_TRIP
@given(image_sets(scores=True, meta=True))
def test_coco_round_trip(images: list[ImageLabels]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = read_coco(write_coco(images, Path(tmp) / "c.json"))
    _assert_same(images, back, _poly, 1e-9, state=True, score=True)
    for a, b in zip(images, back, strict=True):
        assert (b.file_name, b.width, b.height, b.gsd, b.crs, b.scene_id, b.acquired) == (
            a.file_name, a.width, a.height, a.gsd, a.crs, a.scene_id, a.acquired)
        assert (a.transform is None) == (b.transform is None)
        if a.transform is not None:
            assert b.transform.almost_equals(a.transform)


@ROUND_TRIP
@given(image_sets(scores=True), st.booleans())
def test_yolo_round_trip(images: list[ImageLabels], obb: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = _save_images(images, Path(tmp) / "src")
        yml = write_yolo(images, Path(tmp) / "ds", split="val", image_source=src, obb=obb)
        back = read_yolo(yml)
    assert all(im.attrs["split"] == "val" for im in back)
    assert [(im.width, im.height) for im in back] == [(im.width, im.height) for im in images]
    _assert_same(images, back, _poly if obb else _bbox, 1e-5, score=True)


@ROUND_TRIP
@given(image_sets(), st.none() | st.floats(0.05, 30))
def test_dota_round_trip(images: list[ImageLabels], gsd: float | None) -> None:
    for im in images:
        im.gsd = gsd
    with tempfile.TemporaryDirectory() as tmp:
        src = _save_images(images, Path(tmp) / "src")
        back = read_dota(write_dota(images, Path(tmp) / "labelTxt"), image_dir=src)
    _assert_same(images, back, _poly, 1e-5)
    assert [(im.file_name, im.width, im.height, im.gsd) for im in back] == [
        (im.file_name, im.width, im.height, gsd) for im in images]


@ROUND_TRIP
@given(image_sets())
def test_xview_round_trip(images: list[ImageLabels]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        back = read_xview(write_xview(images, Path(tmp) / "x.geojson"))
    _assert_same(images, back, _bbox, 1e-5)


# --- fuzz ------------------------------------------------------------------------------------------

NUMBERISH = st.sampled_from(["0", "1", "2", "9", "-1", "0.5", "0.25", "1.5", "1e-9", "1e400", "nan", "inf",
                             "-0", "x", "ship", "large-vehicle", "gsd:", ":", "imagesource:x", "0.999"])
TOKEN = NUMBERISH | st.floats().map(str) | st.text(min_size=1, max_size=6).filter(lambda s: s.strip() == s)
LINES = st.lists(st.lists(TOKEN, max_size=11).map(" ".join), max_size=6).map("\n".join)
# Lines with the right field counts and mostly plausible numbers reach the geometry checks.
ODD = st.sampled_from(["nan", "1e400", "-0", "x", "1e-12"])
NORM = st.floats(-0.2, 1.2).map(str) | st.floats(0, 1).map(str) | ODD
PIXEL = st.floats(-20, 80).map(str) | st.integers(-5, 60).map(str) | ODD
YOLO_LINE = st.tuples(st.sampled_from(["0", "1", "2", "3", "1.0"]), st.sampled_from([4, 5, 8, 9])).flatmap(
    lambda c: st.lists(NORM, min_size=c[1], max_size=c[1]).map(lambda v: " ".join([c[0], *v])))
DOTA_LINE = st.tuples(
    st.lists(PIXEL, min_size=8, max_size=8), st.sampled_from(["ship", "large-vehicle", "plane", "1"]),
    st.sampled_from(["0", "1", "", "x"]),
).map(lambda t: " ".join([*t[0], t[1], t[2]])) | st.sampled_from(["gsd:0.5", "gsd:null", "imagesource:x"])
TEXT = st.binary(max_size=300) | LINES.map(str.encode)
YOLO_TEXT = TEXT | st.lists(YOLO_LINE, max_size=6).map(lambda ls: "\n".join(ls).encode())
DOTA_TEXT = TEXT | st.lists(DOTA_LINE, max_size=6).map(lambda ls: "\n".join(ls).encode())
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


def _reads_or_label_error(read: Callable[[bool], LabelSet]) -> None:
    for lenient in (False, True):
        try:
            result = read(lenient)
        except LabelFormatError:
            continue
        assert isinstance(result, LabelSet)


def _mutate(doc: object, path: list[int], value: object) -> object:
    """Replace the node reached by following ``path`` (indices modulo each container's size)."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    k = keys[path[0] % len(keys)]
    doc[k] = _mutate(doc[k], path[1:], value)
    return doc


def _coco_doc() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80, "gsd": 0.5,
                    "transform": [0.5, 0, 1, 0, -0.5, 2], "acquired": "2024-01-01T00:00:00"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 10],
                         "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]], "state": "docked", "score": 0.5}],
        "categories": [{"id": 1, "name": "boat"}],
    }


def _xview_doc() -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []},
         "properties": {"bounds_imcoords": "10,10,30,20", "type_id": 40, "image_id": "1.tif"}}]}


@FUZZ
@given(TEXT)
def test_fuzz_coco_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.json"
        path.write_bytes(data)
        _reads_or_label_error(lambda lenient: read_coco(path, lenient=lenient))


@FUZZ
@given(st.lists(st.integers(0, 50), max_size=5), JSON_VALUE)
def test_fuzz_coco_near_valid(where: list[int], value: object) -> None:
    doc = _mutate(_coco_doc(), where, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.json"
        path.write_text(json.dumps(doc))
        _reads_or_label_error(lambda lenient: read_coco(path, lenient=lenient))


@FUZZ
@given(TEXT)
def test_fuzz_xview_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.geojson"
        path.write_bytes(data)
        _reads_or_label_error(lambda lenient: read_xview(path, lenient=lenient))


@FUZZ
@given(st.lists(st.integers(0, 50), max_size=5), JSON_VALUE)
def test_fuzz_xview_near_valid(where: list[int], value: object) -> None:
    doc = _mutate(_xview_doc(), where, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.geojson"
        path.write_text(json.dumps(doc))
        _reads_or_label_error(lambda lenient: read_xview(path, lenient=lenient))


@FUZZ
@given(DOTA_TEXT, st.booleans())
def test_fuzz_dota(data: bytes, with_image: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "labelTxt"
        labels.mkdir()
        (labels / "P1.txt").write_bytes(data)
        image_dir = None
        if with_image:
            image_dir = Path(tmp) / "images"
            image_dir.mkdir()
            Image.new("L", (50, 40)).save(image_dir / "P1.png")
        _reads_or_label_error(lambda lenient: read_dota(labels, lenient=lenient, image_dir=image_dir))


@FUZZ
@given(YOLO_TEXT, st.none() | st.none() | TEXT | JSON_VALUE.map(lambda v: yaml.safe_dump(v).encode()))
def test_fuzz_yolo(label: bytes, data_yaml: bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images" / "train").mkdir(parents=True)
        (root / "labels" / "train").mkdir(parents=True)
        Image.new("L", (50, 40)).save(root / "images" / "train" / "a.png")
        (root / "labels" / "train" / "a.txt").write_bytes(label)
        if data_yaml is None:
            data_yaml = yaml.safe_dump({"train": "images/train", "names": ["ship", "truck", "x"]}).encode()
        (root / "data.yaml").write_bytes(data_yaml)
        _reads_or_label_error(lambda lenient: read_yolo(root, lenient=lenient))
