import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.chips import ChipConfig, chip_labels, export_chips, split_scenes
from freightwatch.datasets.formats.coco import read_coco
from freightwatch.datasets.formats.yolo import read_yolo
from freightwatch.datasets.tiling import tile_windows

boxes = st.lists(
    st.tuples(st.integers(0, 280), st.integers(0, 180), st.integers(2, 40), st.integers(2, 40)), max_size=25
)


def _labels(items, w=320, h=220):
    anns = [Annotation.from_bbox("truck", (x, y, min(x + bw, w), min(y + bh, h))) for x, y, bw, bh in items]
    return ImageLabels("scene.tif", w, h, anns)


@settings(max_examples=60, deadline=None)
@given(items=boxes, size=st.integers(30, 200))
def test_object_area_is_conserved_across_a_partition_into_chips(items, size):
    labels = _labels(items)
    total = sum(a.area for a in labels.annotations)
    got = 0.0
    # an exact partition (tile_windows shifts its last tile back, so it overlaps at the border)
    partition = [Window(c, r, min(size, labels.width - c), min(size, labels.height - r))
                 for r in range(0, labels.height, size) for c in range(0, labels.width, size)]
    for win in partition:
        anns, _ = chip_labels(labels, win, min_visible=0.0)
        for a in anns:
            x0, y0, x1, y1 = a.bbox
            assert x0 >= -1e-9 and y0 >= -1e-9 and x1 <= win.width + 1e-9 and y1 <= win.height + 1e-9
        got += sum(a.area for a in anns)
    assert got == pytest.approx(total, rel=1e-9, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(items=boxes)
def test_with_enough_overlap_every_object_is_whole_in_some_chip(items):
    labels = _labels(items)
    wins = tile_windows(labels.width, labels.height, 100, 45)  # overlap > largest object (40 px)
    for a in labels.annotations:
        assert any(
            a.clipped(w.col_off, w.row_off, w.col_off + w.width, w.row_off + w.height)[1] == 1.0 for w in wins
        )


def test_slivers_below_threshold_are_dropped_and_counted():
    labels = ImageLabels("s.tif", 200, 200, [Annotation.from_bbox("boat", (90, 10, 110, 30))])
    anns, slivers = chip_labels(labels, Window(0, 0, 95, 200), min_visible=0.5)  # 25% visible
    assert anns == [] and slivers == 1
    anns, slivers = chip_labels(labels, Window(0, 0, 105, 200), min_visible=0.5)  # 75% visible
    assert len(anns) == 1 and slivers == 0 and anns[0].bbox == pytest.approx((90, 10, 105, 30))


def test_split_is_by_scene_deterministic_and_never_leaves_val_empty():
    ids = [f"s{i}" for i in range(7)]
    a = split_scenes(ids, (0.8, 0.2, 0.0), seed=3)
    assert a == split_scenes(ids, (0.8, 0.2, 0.0), seed=3)
    assert set(a.values()) == {"train", "val"} and sum(v == "val" for v in a.values()) >= 1
    assert split_scenes(["x", "y"], (0.9, 0.1, 0.0)) .keys() == {"x", "y"}
    with pytest.raises(ValueError, match="cannot be split"):
        split_scenes(["only"], (0.8, 0.2, 0.0))
    with pytest.raises(ValueError, match="summing to 1"):
        split_scenes(ids, (0.5, 0.2, 0.0))


def test_export_writes_yolo_and_coco_split_by_scene(raster_factory, tmp_path):
    scenes = []
    for i in range(3):
        p = raster_factory(size=(300, 200), seed=i)
        anns = [Annotation.from_bbox("truck", (10, 10, 40, 18)), Annotation.from_bbox("railcar", (150, 150, 180, 156))]
        scenes.append((p, ImageLabels(p.name, 300, 200, anns, gsd=0.5, scene_id=f"scene{i}")))
    res = export_chips(scenes, tmp_path / "ds", ChipConfig(size=128, overlap=0.25, keep_empty=1.0,
                                                            fractions=(0.67, 0.33, 0.0)))
    assert set(res.scenes.values()) == {"train", "val"}
    yolo = read_yolo(res.data_yaml)
    by_split = {}
    for im in yolo.images:
        by_split.setdefault(im.attrs["split"], set()).add(im.file_name.split("/")[-1].split("_r")[0])
    assert by_split["train"].isdisjoint(by_split["val"])  # no scene in two splits
    coco = read_coco(res.coco["val"])
    assert len(coco.images) == res.chips["val"]
    assert coco.counts() == res.objects["val"]
    # every object of every scene appears whole in at least one chip
    assert sum(res.objects[s]["truck"] for s in res.objects) >= 3
    img = next((tmp_path / "ds" / "images" / "train").glob("*.png"))
    assert img.stat().st_size > 0


def test_mismatched_label_size_is_an_error(raster_factory, tmp_path):
    p = raster_factory(size=(100, 100))
    with pytest.raises(ValueError, match="labels are for a 50x50"):
        export_chips([(p, ImageLabels(p.name, 50, 50, [], scene_id="a"))], tmp_path / "o",
                     ChipConfig(fractions=(1.0, 0.0, 0.0)))


def test_chip_pixels_match_scene(raster_factory, tmp_path):
    import cv2
    import rasterio

    p = raster_factory(size=(150, 150))
    res = export_chips([(p, ImageLabels(p.name, 150, 150, [], scene_id="a"))], tmp_path / "o",
                       ChipConfig(size=100, overlap=0, keep_empty=1.0, fractions=(1.0, 0.0, 0.0)))
    assert res.chips["train"] == 4
    chip = cv2.cvtColor(cv2.imread(str(tmp_path / "o/images/train/a_r50_c50.png")), cv2.COLOR_BGR2RGB)
    with rasterio.open(p) as ds:
        np.testing.assert_array_equal(chip, ds.read(window=Window(50, 50, 100, 100)).transpose(1, 2, 0))
