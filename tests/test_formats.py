"""Label format readers/writers: bad input, mappings, metadata and real-data smoke checks."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from PIL import Image

from freightwatch.datasets.annotations import Annotation, ImageLabels, LabelSet
from freightwatch.datasets.formats import (
    FORMATS,
    read_coco,
    read_dota,
    read_labels,
    read_xview,
    read_yolo,
    write_coco,
    write_dota,
    write_labels,
    write_xview,
    write_yolo,
)
from freightwatch.datasets.formats.coco import CATEGORY_IDS
from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import BoatState, ClassMapping

SHARED = Path(__file__).resolve().parents[2] / "shared"
DOTA8 = SHARED / "data" / "dota8"


def _image(path: Path, size: tuple[int, int] = (100, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size).save(path)
    return path


def _assert_error(exc: LabelFormatError, path: Path, where: str | int) -> None:
    """The message names the file and the line (int) or record (str)."""
    msg = str(exc)
    assert path.name in msg
    if isinstance(where, int):
        assert exc.line == where
        assert f"{path.name}:{where}:" in msg
    else:
        assert where in msg


def _sample_images() -> list[ImageLabels]:
    return [
        ImageLabels(
            "a.png", 100, 80,
            [
                Annotation.from_rotated_box("boat", (50, 40), 30, 10, 30, state=BoatState.DOCKED),
                Annotation.from_bbox("truck", (5, 5, 20, 12)),
                Annotation.from_bbox("railcar", (60, 60, 90, 70), score=0.75),
            ],
            gsd=np.float64(0.5), crs="EPSG:32651", transform=Affine(0.5, 0, 447000, 0, -0.5, 4442000), scene_id="s1",
            acquired=datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
        ),
        ImageLabels("b.png", 64, 64, []),
    ]


# --- COCO ------------------------------------------------------------------------------------------


def _coco_doc() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 40, 10, 10], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "truck"}, {"id": 3, "name": "boat"}, {"id": 7, "name": "small-vehicle"}],
    }


def _write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


COCO_BAD_ANNOTATIONS = [
    ({"bbox": None}, "missing required key bbox"),
    ({"bbox": [1, 2, 3]}, "bbox must be 4 numbers"),
    ({"bbox": [1, "x", 3, 4]}, "not a number"),
    ({"bbox": [1, float("nan"), 3, 4]}, "not finite"),
    ({"bbox": [90, 10, 20, 10]}, "outside"),
    ({"bbox": [10, 10, 0, 10]}, "zero or negative"),
    ({"bbox": [10, 10, -5, 10]}, "zero or negative"),
    ({"category_id": 42}, "unknown category_id 42"),
    ({"image_id": 9}, "image_id 9"),
    ({"state": "sunk"}, "state 'sunk'"),
    ({"segmentation": [[1, 2, 3, 4, 5]]}, "even number"),
    ({"segmentation": [[10, 10, 11, 11, 12, 12]]}, "zero area"),
    ({"score": "high"}, "not a number"),
]


@pytest.mark.parametrize(("change", "fragment"), COCO_BAD_ANNOTATIONS)
def test_coco_bad_annotation(tmp_path: Path, change: dict, fragment: str) -> None:
    doc = _coco_doc()
    ann = doc["annotations"][1]
    for key, value in change.items():
        if value is None:
            ann.pop(key)
        else:
            ann[key] = value
    path = _write_json(tmp_path / "labels.json", doc)
    with pytest.raises(LabelFormatError) as info:
        read_coco(path)
    _assert_error(info.value, path, "annotations[1] (id 2)")
    assert fragment in str(info.value)

    lenient = read_coco(path, lenient=True)
    assert len(lenient.skipped) == 1
    assert "annotations[1] (id 2)" in lenient.skipped[0] and path.name in lenient.skipped[0]
    assert lenient.counts() == Counter({"boat": 1})


def test_coco_bad_image_record(tmp_path: Path) -> None:
    doc = _coco_doc()
    del doc["images"][0]["width"]
    path = _write_json(tmp_path / "labels.json", doc)
    with pytest.raises(LabelFormatError, match=r"images\[0\] \(id 1\): missing required key width"):
        read_coco(path)
    lenient = read_coco(path, lenient=True)
    # The image is skipped, and with it its annotations (reported, not silently lost).
    assert len(lenient.images) == 0 and len(lenient.skipped) == 3


def test_coco_whole_file_errors_always_raise(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(LabelFormatError) as info:
        read_coco(bad, lenient=True)
    _assert_error(info.value, bad, 2)
    assert "invalid JSON" in str(info.value)

    doc = _coco_doc()
    del doc["images"]
    path = _write_json(tmp_path / "noimages.json", doc)
    with pytest.raises(LabelFormatError, match="missing required key 'images'"):
        read_coco(path, lenient=True)

    doc = _coco_doc()
    doc["categories"] = []
    path = _write_json(tmp_path / "nocats.json", doc)
    with pytest.raises(LabelFormatError, match="no categories"):
        read_coco(path, lenient=True)

    doc = _coco_doc()
    doc["categories"].append({"id": 1, "name": "again"})
    path = _write_json(tmp_path / "dupcats.json", doc)
    with pytest.raises(LabelFormatError, match=r"categories\[3\].*duplicate category id 1"):
        read_coco(path, lenient=True)

    with pytest.raises(LabelFormatError, match="cannot read"):
        read_coco(tmp_path / "missing.json")
    (tmp_path / "latin1.json").write_bytes(b'{"images": "\xe9"}')
    with pytest.raises(LabelFormatError, match="cannot read"):
        read_coco(tmp_path / "latin1.json")


def test_coco_unmapped_dropped_and_counted(tmp_path: Path) -> None:
    doc = _coco_doc()
    doc["annotations"] += [
        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
        {"id": 4, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
        {"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1},
    ]
    ls = read_coco(_write_json(tmp_path / "l.json", doc))
    assert ls.dropped == Counter({"small-vehicle": 2, "boat (iscrowd)": 1})
    assert ls.counts() == Counter({"boat": 1, "truck": 1})
    assert not ls.skipped


def test_coco_segmentation_state_and_rle(tmp_path: Path) -> None:
    doc = _coco_doc()
    doc["annotations"][0]["segmentation"] = [[10, 15, 20, 10, 30, 15, 20, 20], [0, 0, 1, 0, 1, 1]]
    doc["annotations"][0]["attributes"] = {"state": "undocked"}
    doc["annotations"][1]["segmentation"] = {"size": [80, 100], "counts": "abc"}
    ls = read_coco(_write_json(tmp_path / "l.json", doc))
    boat, truck = ls.images[0].annotations
    np.testing.assert_allclose(boat.polygon, [[10, 15], [20, 10], [30, 15], [20, 20]])
    assert boat.state is BoatState.UNDOCKED
    assert truck.bbox == (40, 40, 50, 50)  # RLE -> bbox fallback
    assert boat.attrs["coco_id"] == 1 and ls.images[0].attrs["coco_id"] == 1


def test_coco_tolerance_clips(tmp_path: Path) -> None:
    doc = _coco_doc()
    doc["annotations"][1]["bbox"] = [-0.5, 70, 10, 10.8]  # 0.5 / 0.8 px out: within 1 px
    ls = read_coco(_write_json(tmp_path / "l.json", doc))
    assert ls.images[0].annotations[1].bbox == (0, 70, 9.5, 80)


def test_coco_metadata_and_transform_order(tmp_path: Path) -> None:
    images = _sample_images()
    path = write_coco(images, tmp_path / "out" / "coco.json", indent=1)
    raw = json.loads(path.read_text())
    assert [c["id"] for c in raw["categories"]] == [1, 2, 3]
    assert CATEGORY_IDS == {"truck": 1, "railcar": 2, "boat": 3}
    assert raw["images"][0]["transform"] == [0.5, 0, 447000, 0, -0.5, 4442000]  # affine order a..f
    assert raw["annotations"][0]["state"] == "docked"
    assert "score" not in raw["annotations"][0] and raw["annotations"][2]["score"] == 0.75
    back = read_coco(path)
    a, b = back.images
    assert (a.gsd, a.crs, a.scene_id, a.acquired) == (0.5, "EPSG:32651", "s1", images[0].acquired)
    assert a.transform == images[0].transform
    assert (b.width, b.height, b.annotations) == (64, 64, [])
    assert [x.cls for x in a.annotations] == ["boat", "truck", "railcar"]
    assert a.annotations[2].score == 0.75


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside pycocotools.mask (numpy 2)
def test_coco_loads_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    path = write_coco(_sample_images(), tmp_path / "coco.json")
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["truck", "railcar", "boat"]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == 3
    mask = coco.annToMask(anns[0])  # the oriented polygon rasterises
    assert mask.shape == (80, 100) and 200 < mask.sum() < 400  # 30 x 10 box


# --- YOLO ------------------------------------------------------------------------------------------


def _yolo_root(tmp_path: Path, lines: list[str], names: object = None) -> tuple[Path, Path]:
    root = tmp_path / "ds"
    _image(root / "images" / "train" / "a.jpg", (200, 100))
    label = root / "labels" / "train" / "a.txt"
    label.parent.mkdir(parents=True)
    label.write_text("\n".join(lines) + "\n")
    data = {"path": str(root), "train": "images/train",
            "names": names if names is not None else {0: "large-vehicle", 1: "ship", 2: "small-vehicle"}}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root, label


YOLO_BAD_LINES = [
    ("0 0.5 0.5 0.1", "expected 5 fields"),
    ("0 0.5 0.5 0.1 0.1 0.9 0.1", "expected 5 fields"),
    ("0 0.5 abc 0.1 0.1", "not a number"),
    ("0 0.5 nan 0.1 0.1", "not finite"),
    ("x 0.5 0.5 0.1 0.1", "class id is not a number"),
    ("0.5 0.5 0.5 0.1 0.1", "not an integer"),
    ("0 0.99 0.5 0.1 0.1", "outside"),
    ("0 0.5 0.5 0 0.1", "zero or negative"),
    ("0 0.5 0.5 0.1 -0.1", "zero or negative"),
    ("7 0.5 0.5 0.1 0.1", "unknown class id 7"),
    ("-1 0.5 0.5 0.1 0.1", "unknown class id -1"),
    ("0 0.5 0.5 0.1 0.1 1.5", "confidence"),
    ("1 1.5 1.5 1.6 1.5 1.6 1.6 1.5 1.6", "outside"),
    ("1 0.1 0.1 0.2 0.2 0.3 0.3 0.4 0.4", "zero area"),
    ("1 0.1 0.1 90 0.1 90 0.2 0.1 0.2", "far outside"),
]


@pytest.mark.parametrize(("line", "fragment"), YOLO_BAD_LINES)
def test_yolo_bad_line(tmp_path: Path, line: str, fragment: str) -> None:
    root, label = _yolo_root(tmp_path, ["1 0.5 0.5 0.2 0.2", line])
    with pytest.raises(LabelFormatError) as info:
        read_yolo(root)
    _assert_error(info.value, label, 2)
    assert fragment in str(info.value)
    ls = read_yolo(root, lenient=True)
    assert len(ls.skipped) == 1 and f"{label.name}:2:" in ls.skipped[0]
    assert ls.counts() == Counter({"boat": 1})


def test_yolo_lenient_counts_all_skips(tmp_path: Path) -> None:
    bad = [line for line, _ in YOLO_BAD_LINES]
    root, _ = _yolo_root(tmp_path, ["1 0.5 0.5 0.2 0.2", *bad, "0 0.2 0.2 0.1 0.1", "2 0.3 0.3 0.1 0.1"])
    ls = read_yolo(root, lenient=True)
    assert len(ls.skipped) == len(bad)
    assert ls.counts() == Counter({"boat": 1, "truck": 1})
    assert ls.dropped == Counter({"small-vehicle": 1})


def test_yolo_obb_tolerance_and_overhang(tmp_path: Path) -> None:
    root, _ = _yolo_root(tmp_path, [
        "0 0.4995 0.5 1.0 0.5",                               # 0.5e-3 out on the left: clipped
        "1 0.9 0.1 1.05 0.1 1.05 0.2 0.9 0.2",                 # cut by the edge: clipped, 2/3 visible
        "1 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2 0.8",               # OBB + confidence
    ], names=["truck", "boat"])
    (truck,), (clipped, scored) = ([a for a in read_yolo(root).images[0].annotations if a.cls == c]
                                   for c in ("truck", "boat"))
    assert truck.bbox[0] == 0
    assert clipped.bbox[2] == pytest.approx(200)
    assert clipped.attrs["visible_fraction"] == pytest.approx(2 / 3)
    assert scored.score == pytest.approx(0.8)


def test_yolo_orphan_label_and_missing_label(tmp_path: Path) -> None:
    root, _ = _yolo_root(tmp_path, ["1 0.5 0.5 0.2 0.2"])
    _image(root / "images" / "train" / "empty.png")  # no label file: an image without objects
    orphan = root / "labels" / "train" / "ghost.txt"
    orphan.write_text("1 0.5 0.5 0.2 0.2\n")
    with pytest.raises(LabelFormatError) as info:
        read_yolo(root)
    assert "ghost.txt" in str(info.value) and "no image" in str(info.value)
    ls = read_yolo(root, lenient=True)
    assert len(ls.skipped) == 1 and "ghost.txt" in ls.skipped[0]
    assert {im.file_name: len(im.annotations) for im in ls} == {
        "images/train/a.jpg": 1, "images/train/empty.png": 0}
    assert ls.images[1].width == 100 and ls.images[1].height == 80


def test_yolo_whole_file_errors(tmp_path: Path) -> None:
    root, _ = _yolo_root(tmp_path, ["1 0.5 0.5 0.2 0.2"])
    yml = root / "data.yaml"
    yml.write_text(yaml.safe_dump({"train": "images/train"}))
    with pytest.raises(LabelFormatError, match="missing 'names'"):
        read_yolo(root, lenient=True)
    yml.write_text("names: [a, b\ntrain: x\n")
    with pytest.raises(LabelFormatError, match="invalid YAML"):
        read_yolo(yml, lenient=True)
    yml.write_text(yaml.safe_dump({"train": "images/nope", "names": ["a"]}))
    with pytest.raises(LabelFormatError, match="does not exist"):
        read_yolo(root)
    with pytest.raises(LabelFormatError, match="no 'val' split"):
        read_yolo(root, split="val")
    with pytest.raises(LabelFormatError):
        read_yolo(tmp_path / "nothing-here")


def test_yolo_write_merges_splits(tmp_path: Path) -> None:
    images = _sample_images()
    src = tmp_path / "src"
    for im in images:
        _image(src / im.file_name, (im.width, im.height))
    root = tmp_path / "yolo"
    write_yolo(images[:1], root, split="train", image_source=src)
    yml = write_yolo(images[1:], root, split="val", image_source=src, obb=True)
    data = yaml.safe_load(yml.read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {0: "truck", 1: "railcar", 2: "boat"}
    assert (root / "labels" / "train" / "a.txt").read_text().splitlines()[2].startswith("1 ")
    ls = read_yolo(root)
    assert [(im.file_name, im.attrs["split"]) for im in ls] == [
        ("images/train/a.png", "train"), ("images/val/b.png", "val")]
    assert ls.images[0].annotations[2].score == pytest.approx(0.75)
    assert [im.file_name for im in read_yolo(yml, split="val")] == ["images/val/b.png"]

    (root / "data.yaml").write_text(yaml.safe_dump({"names": ["car"], "train": "images/train"}))
    with pytest.raises(LabelFormatError, match="differ"):
        write_yolo(images, root)
    with pytest.raises(ValueError, match="share"):
        write_yolo([images[0], ImageLabels("x/a.jpg", 10, 10)], tmp_path / "other")


@pytest.mark.skipif(not DOTA8.is_dir(), reason="needs ../shared/data/dota8")
def test_yolo_reads_real_dota8() -> None:
    names = yaml.safe_load((DOTA8 / "dota8.yaml").read_text())["names"]
    raw: Counter[str] = Counter()
    for txt in (DOTA8 / "labels").rglob("*.txt"):
        raw.update(names[int(line.split()[0])] for line in txt.read_text().splitlines() if line.strip())
    ls = read_yolo(DOTA8)
    assert len(ls) == 8 and not ls.skipped
    assert {im.attrs["split"] for im in ls} == {"train", "val"}
    assert all((im.width, im.height) == (1024, 1024) for im in ls)
    assert ls.counts()["boat"] == raw["ship"] > 0
    assert ls.counts()["truck"] == raw["large vehicle"]
    assert ClassMapping.builtin()("large vehicle") == "truck"
    assert ls.dropped == Counter({k: v for k, v in raw.items() if k not in ("ship", "large vehicle")})
    for im in ls:
        for ann in im.annotations:
            x0, y0, x1, y1 = ann.bbox
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height


# --- DOTA ------------------------------------------------------------------------------------------

DOTA_GOOD = "10 10 30 10 30 20 10 20 ship 0"

DOTA_BAD_LINES = [
    ("10 10 30 10 30 20 10 20", "expected 10 fields"),
    ("10 10 30 10 30 20 10 20 ship 0 extra", "expected 10 fields"),
    ("10 10 30 x 30 20 10 20 ship 0", "not a number"),
    ("10 10 30 inf 30 20 10 20 ship 0", "not finite"),
    ("10 10 30 10 30 20 10 20 ship hard", "difficult is not a number"),
    ("10 10 30 10 30 20 10 20 12 0", "class name expected"),
    ("10 10 20 20 30 30 40 40 ship 0", "zero area"),
    ("10 10 10 10 10 10 10 10 ship 0", "zero area"),
    ("-900 10 -890 10 -890 20 -900 20 ship 0", "far outside"),
    ("gsd:abc", "gsd is not a number"),
    ("gsd:-1", "not positive"),
]


def _dota_dir(tmp_path: Path, lines: list[str], stem: str = "P0001") -> Path:
    d = tmp_path / "labelTxt"
    d.mkdir(exist_ok=True)
    (d / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return d


@pytest.mark.parametrize(("line", "fragment"), DOTA_BAD_LINES)
def test_dota_bad_line(tmp_path: Path, line: str, fragment: str) -> None:
    d = _dota_dir(tmp_path, [DOTA_GOOD, line])
    with pytest.raises(LabelFormatError) as info:
        read_dota(d)
    _assert_error(info.value, d / "P0001.txt", 2)
    assert fragment in str(info.value)
    ls = read_dota(d, lenient=True)
    assert len(ls.skipped) == 1 and "P0001.txt:2:" in ls.skipped[0]
    assert ls.counts() == Counter({"boat": 1})


def test_dota_outside_image_needs_image_size(tmp_path: Path) -> None:
    d = _dota_dir(tmp_path, [DOTA_GOOD, "200 10 230 10 230 20 200 20 ship 0"])
    _image(tmp_path / "images" / "P0001.png", (100, 80))
    with pytest.raises(LabelFormatError, match="outside") as info:
        read_dota(d, image_dir=tmp_path / "images")
    _assert_error(info.value, d / "P0001.txt", 2)
    ls = read_dota(d, image_dir=tmp_path / "images", lenient=True)
    assert (ls.images[0].width, ls.images[0].height) == (100, 80) and len(ls.skipped) == 1
    # Without the image the size is the labels' extent, so the same line is fine.
    guessed = read_dota(d)
    assert (guessed.images[0].width, guessed.images[0].height) == (230, 20)
    assert guessed.images[0].attrs["size_from_labels"] is True


def test_dota_header_unmapped_and_overhang(tmp_path: Path) -> None:
    d = _dota_dir(tmp_path, [
        "imagesource:GoogleEarth", "gsd:0.146343590398", DOTA_GOOD,
        "40 10 60 10 60 20 40 20 small-vehicle 1", "40 30 60 30 60 40 40 40 small-vehicle 0",
        "1 1 5 1 5 5 1 5 large-vehicle 1", "90 50 110 50 110 60 90 60 ship",
    ])
    _image(tmp_path / "img" / "P0001.tif", (100, 80))
    ls = read_dota(d, image_dir=tmp_path / "img")
    im = ls.images[0]
    assert im.gsd == pytest.approx(0.146343590398) and im.attrs["imagesource"] == "GoogleEarth"
    assert im.file_name == "P0001.tif"
    assert ls.dropped == Counter({"small-vehicle": 2})
    assert [a.cls for a in im.annotations] == ["boat", "truck", "boat"]
    assert im.annotations[1].attrs["difficult"] == 1
    cut = im.annotations[2]
    assert cut.bbox[2] == pytest.approx(100) and cut.attrs["visible_fraction"] == pytest.approx(0.5)
    assert read_dota(_dota_dir(tmp_path, ["gsd:null", DOTA_GOOD], "P2")).images[1].gsd is None


def test_dota_missing_image_and_write_names(tmp_path: Path) -> None:
    d = _dota_dir(tmp_path, [DOTA_GOOD])
    (tmp_path / "img").mkdir()
    with pytest.raises(LabelFormatError, match="no image P0001"):
        read_dota(d, image_dir=tmp_path / "img")
    assert len(read_dota(d, image_dir=tmp_path / "img", lenient=True).skipped) == 1
    with pytest.raises(LabelFormatError):
        read_dota(tmp_path / "missing")

    out = write_dota(_sample_images(), tmp_path / "out")
    lines = (out / "a.txt").read_text().splitlines()
    assert lines[0] == "gsd:0.5"
    assert [ln.split()[8:] for ln in lines[1:]] == [["ship", "0"], ["large-vehicle", "0"], ["railcar", "0"]]
    assert (out / "b.txt").read_text() == ""
    back = read_dota(out)
    assert [a.cls for a in back.images[0].annotations] == ["boat", "truck", "railcar"]
    assert all(a.state is BoatState.UNKNOWN for a in back.images[0].annotations)  # DOTA has no state


# --- xView -----------------------------------------------------------------------------------------


def _feature(bounds: object = "10,10,30,20", type_id: object = 40, image_id: object = "1.tif") -> dict:
    return {"type": "Feature", "geometry": None,
            "properties": {"bounds_imcoords": bounds, "type_id": type_id, "image_id": image_id}}


XVIEW_BAD_FEATURES = [
    ({"properties": {"type_id": 40, "image_id": "1.tif"}}, "missing required property bounds_imcoords"),
    ("not a feature", "expected a Feature"),
    (_feature(bounds="10,10,30"), "bounds_imcoords must be"),
    (_feature(bounds="10,a,30,20"), "not a number"),
    (_feature(bounds="10,nan,30,20"), "not finite"),
    (_feature(bounds="30,10,10,20"), "zero or negative"),
    (_feature(bounds="10,10,10,20"), "zero or negative"),
    (_feature(bounds="-50,10,-20,20"), "outside"),
    (_feature(type_id=999), "unknown type_id 999"),
    (_feature(type_id="boat"), "type_id is not a number"),
    (_feature(image_id=""), "image_id must be"),
]


@pytest.mark.parametrize(("feature", "fragment"), XVIEW_BAD_FEATURES)
def test_xview_bad_feature(tmp_path: Path, feature: object, fragment: str) -> None:
    path = _write_json(tmp_path / "xview.geojson",
                       {"type": "FeatureCollection", "features": [_feature(), feature]})
    with pytest.raises(LabelFormatError) as info:
        read_xview(path)
    _assert_error(info.value, path, "features[1]")
    assert fragment in str(info.value)
    ls = read_xview(path, lenient=True)
    assert len(ls.skipped) == 1 and "features[1]" in ls.skipped[0]
    assert ls.counts() == Counter({"boat": 1})


def test_xview_whole_file_and_unmapped(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection",\n\n "features": [}')
    with pytest.raises(LabelFormatError) as info:
        read_xview(bad, lenient=True)
    _assert_error(info.value, bad, 3)
    with pytest.raises(LabelFormatError, match="features"):
        read_xview(_write_json(tmp_path / "nofeat.geojson", {"type": "FeatureCollection"}), lenient=True)

    path = _write_json(tmp_path / "x.geojson", {"type": "FeatureCollection", "features": [
        _feature(), _feature(type_id=18), _feature(type_id=18), _feature(type_id=75),
        _feature(type_id=23, image_id="2.tif"), _feature(type_id=20),
    ]})
    ls = read_xview(path)
    assert ls.dropped == Counter({"Small Car": 2, "xView type 75": 1, "Pickup Truck": 1})
    assert [(im.file_name, dict(im.counts())) for im in ls] == [("1.tif", {"boat": 1}), ("2.tif", {"truck": 1})]
    assert ls.images[0].attrs["size_from_labels"] and (ls.images[0].width, ls.images[0].height) == (30, 20)


def test_xview_georeferenced_roundtrip(tmp_path: Path) -> None:
    import rasterio
    from pyproj import Transformer

    images = _sample_images()
    path = write_xview(images, tmp_path / "out.geojson")
    feats = json.loads(path.read_text())["features"]
    assert [f["properties"]["type_id"] for f in feats] == [40, 23, 33]
    assert feats[1]["properties"]["bounds_imcoords"] == "5,5,20,12"
    lon, lat = feats[1]["geometry"]["coordinates"][0][0]
    x, y = images[0].transform * (5, 5)
    assert Transformer.from_crs("EPSG:32651", "EPSG:4326", always_xy=True).transform(x, y) == (
        pytest.approx(lon), pytest.approx(lat))

    img_dir = tmp_path / "img"
    img_dir.mkdir()
    with rasterio.open(img_dir / "a.png".replace(".png", ".tif"), "w", driver="GTiff", width=100, height=80,
                       count=1, dtype="uint8", crs="EPSG:32651", transform=images[0].transform) as dst:
        dst.write(np.zeros((1, 80, 100), np.uint8))
    back = read_xview(path, image_dir=img_dir)  # image_id a.png found as a.tif by stem
    im = back.images[0]
    assert (im.width, im.height, im.crs, im.transform) == (100, 80, "EPSG:32651", images[0].transform)
    assert im.annotations[1].attrs["map_geometry"] == feats[1]["geometry"]
    # Written again without georeferencing, the read map geometry passes through.
    again = json.loads(write_xview([ImageLabels("a.png", 100, 80, im.annotations)], tmp_path / "2.json")
                       .read_text())["features"]
    assert again[1]["geometry"] == feats[1]["geometry"]
    assert json.loads(write_xview(
        [ImageLabels("c.png", 10, 10, [Annotation.from_bbox("boat", (1, 1, 5, 5))])], tmp_path / "3.json"
    ).read_text())["features"][0]["geometry"] is None


def test_xview_keeps_specific_type(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "x.geojson", {"type": "FeatureCollection", "features": [
        _feature(type_id=51), _feature(type_id=38)]})
    out = write_xview(read_xview(path), tmp_path / "y.geojson")
    assert [f["properties"]["type_id"] for f in json.loads(out.read_text())["features"]] == [51, 38]


# --- dispatcher ------------------------------------------------------------------------------------


def test_dispatcher_all_formats(tmp_path: Path) -> None:
    images = _sample_images()
    src = tmp_path / "src"
    for im in images:
        _image(src / im.file_name, (im.width, im.height))
    targets = {"coco": tmp_path / "c.json", "yolo": tmp_path / "yolo", "dota": tmp_path / "dota",
               "xview": tmp_path / "x.geojson"}
    extra = {"yolo": {"image_source": src}}
    for fmt in FORMATS:
        written = write_labels(LabelSet(images), targets[fmt], fmt, **extra.get(fmt, {}))
        assert written.exists()
        kw = {"image_dir": src} if fmt in ("dota", "xview") else {}
        ls = read_labels(targets[fmt], fmt.upper(), **kw)
        assert ls.counts() == Counter({"boat": 1, "truck": 1, "railcar": 1}), fmt
        assert (ls.images[0].width, ls.images[0].height) == (100, 80), fmt
    with pytest.raises(ValueError, match="unknown label format"):
        read_labels(targets["coco"], "voc")
    with pytest.raises(TypeError, match="by keyword"):
        read_dota(targets["dota"], src)  # type: ignore[arg-type]
