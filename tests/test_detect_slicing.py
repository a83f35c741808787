"""Sliced detection machinery, with a deterministic blob detector standing in for YOLO.

The stand-in finds bright rectangles with connected components, so these tests check slicing,
batching, merging across slice borders, zone counting and boat states exactly, independent of
any trained weights.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from freightwatch.datasets.annotations import Annotation
from freightwatch.datasets.geo import Zone, write_geotiff, write_zones
from freightwatch.errors import RasterError, ZonesError
from freightwatch.inference.detect import DetectConfig, detect_scene, write_detections
from freightwatch.inference.merge import merge_slice_detections, nms_merge
from freightwatch.models.detector import DetectorCard

GSD = 0.5
ORIGIN = (447000.0, 4442000.0)
TRANSFORM = Affine(GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1])


class BlobDetector:
    """Bright blobs -> boxes; value 200 = truck, 120 = boat (by mean brightness)."""

    def __init__(self, gsd: float = GSD, imgsz: int = 64) -> None:
        self.card = DetectorCard(gsd=gsd, imgsz=imgsz)
        self.calls: list[int] = []

    def predict(self, images, conf=0.25, iou=0.5, imgsz=None, max_det=2000, device=None):
        self.calls.append(len(images))
        out = []
        for im in images:
            g = im[..., 0]
            n, lab, stats, _ = cv2.connectedComponentsWithStats((g > 60).astype(np.uint8), connectivity=4)
            anns = []
            for k in range(1, n):
                x, y, w, h, _area = stats[k]
                mean = g[lab == k].mean()
                cls = "truck" if mean > 160 else "boat"
                anns.append(Annotation.from_bbox(cls, (x, y, x + w, y + h), score=0.9))
            out.append(anns)
        return out


def _scene(tmp_path, objects, size=(300, 200)):
    w, h = size
    img = np.zeros((3, h, w), np.uint8)
    for cls, (x0, y0, x1, y1) in objects:
        img[:, y0:y1, x0:x1] = 200 if cls == "truck" else 120
    return write_geotiff(tmp_path / "scene.tif", img, "EPSG:32651", TRANSFORM)


def test_objects_straddling_slice_borders_are_found_exactly_once(tmp_path):
    # 64 px slices with 32 px overlap start at 0, 32, 64, ...: objects (<= 30 px) across those borders
    objects = [("truck", (40, 10, 70, 16)), ("truck", (90, 100, 120, 106)), ("truck", (140, 44, 146, 74)),
               ("boat", (180, 150, 200, 158)), ("truck", (250, 180, 280, 186))]
    scene = _scene(tmp_path, objects)
    det = BlobDetector()
    res = detect_scene(scene, det, DetectConfig(overlap=32, batch=5))
    got = sorted(tuple(round(v) for v in a.bbox) for a in res.labels.annotations)
    assert got == sorted(b for _, b in objects)
    assert max(det.calls) <= 5 and sum(det.calls) > 10  # batched slices, many of them


class ScoredBlobDetector(BlobDetector):
    """Like a trained detector, more confident in a whole view than in a border-cut one."""

    def predict(self, images, **kw):
        out = super().predict(images, **kw)
        for anns in out:
            for a in anns:
                x0, y0, x1, y1 = a.bbox
                a.score = 0.5 + 0.4 * min(1.0, (x1 - x0) * (y1 - y0) / 180.0)
        return out


@pytest.mark.parametrize("merge", ["nms-ios", "nms-iou"])
def test_nms_merges_count_each_straddling_object_once(tmp_path, merge):
    objects = [("truck", (40, 10, 70, 16)), ("truck", (90, 100, 120, 106)), ("truck", (140, 44, 146, 74)),
               ("boat", (180, 150, 200, 158)), ("truck", (250, 180, 280, 186))]
    scene = _scene(tmp_path, objects)
    # intersection-over-smaller removes a partial view inside the whole one; IoU needs a low threshold
    cfg = DetectConfig(overlap=32, batch=5, merge=merge, merge_threshold=0.7 if merge == "nms-ios" else 0.1)
    res = detect_scene(scene, ScoredBlobDetector(), cfg)
    assert sorted(a.cls for a in res.labels.annotations) == sorted(c for c, _ in objects)
    centres = res.labels.centers()
    for _, (x0, y0, x1, y1) in objects:  # each object has exactly one box centred on it
        cx, cy = centres[:, 0], centres[:, 1]
        inside = (cx > x0 - 1) & (cx < x1 + 1) & (cy > y0 - 1) & (cy < y1 + 1)
        assert inside.sum() == 1


def test_unknown_merge_is_refused(tmp_path):
    scene = _scene(tmp_path, [("truck", (40, 10, 70, 16))])
    with pytest.raises(ValueError, match="merge must be one of"):
        detect_scene(scene, BlobDetector(), DetectConfig(merge="wbf"))


def _reference_nms(boxes, scores, classes, metric, thr):
    """Textbook greedy NMS, O(n^2): the definition nms_merge must reproduce."""
    order = sorted(range(len(boxes)), key=lambda k: -scores[k])
    keep = []
    for k in order:
        ok = True
        for m in keep:
            if classes[m] != classes[k]:
                continue
            a, b = boxes[m], boxes[k]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            aa, ab = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
            ov = inter / min(aa, ab) if metric == "ios" else inter / (aa + ab - inter)
            if ov > thr:
                ok = False
                break
        if ok:
            keep.append(k)
    return sorted(keep)


@pytest.mark.parametrize(("metric", "thr"), [("ios", 0.7), ("iou", 0.5), ("iou", 0.2)])
def test_nms_merge_is_greedy_nms(metric, thr):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(4, 30, (300, 2))
    boxes = np.hstack([xy, xy + wh])
    scores = rng.permutation(300) / 300.0  # distinct, so the greedy order is unique
    classes = rng.integers(0, 3, 300)
    keep, kept = nms_merge(boxes, scores, classes, metric=metric, threshold=thr)
    assert keep.tolist() == _reference_nms(boxes, scores, classes, metric, thr)
    np.testing.assert_array_equal(kept, boxes[keep])
    assert 0 < len(keep) < 300
    with pytest.raises(ValueError, match="metric"):
        nms_merge(boxes, scores, classes, metric="giou")


def test_merge_prefers_whole_views_and_keeps_distinct_neighbours():
    boxes = np.array([[0, 0, 10, 4], [0, 0, 6, 4], [11, 0, 21, 4], [100, 100, 110, 104]], float)
    scores = np.array([0.6, 0.95, 0.9, 0.9])
    classes = np.array([0, 0, 0, 2])
    cut = np.array([False, True, False, False])
    keep, kept = merge_slice_detections(boxes, scores, classes, cut)
    assert keep.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(kept, boxes[[0, 2, 3]])


def test_partial_views_of_an_object_larger_than_the_overlap_are_joined():
    boxes = np.array([[40, 10, 64, 16], [48, 10, 70, 16]], float)  # both cut, one at each slice border
    keep, kept = merge_slice_detections(boxes, np.array([0.8, 0.9]), np.array([0, 0]), np.array([True, True]))
    assert keep.tolist() == [1] and kept.tolist() == [[40, 10, 70, 16]]


def test_different_classes_never_suppress_each_other():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    keep, _ = merge_slice_detections(boxes, np.array([0.9, 0.8]), np.array([0, 2]), np.zeros(2, bool))
    assert keep.tolist() == [0, 1]


def _map_box(x0, y0, x1, y1):
    (mx0, my0), (mx1, my1) = TRANSFORM @ (x0, y0), TRANSFORM @ (x1, y1)
    return box(min(mx0, mx1), min(my0, my1), max(mx0, mx1), max(my0, my1))


def test_zone_counts_and_boat_states(tmp_path):
    objects = [("truck", (10, 10, 40, 16)), ("truck", (10, 30, 40, 36)), ("truck", (200, 10, 230, 16)),
               ("boat", (100, 120, 120, 126)),   # 2 px (1 m) from the dock -> docked
               ("boat", (100, 175, 120, 181))]   # ~27 m from the dock, on the river -> undocked
    scene = _scene(tmp_path, objects)
    zones = [Zone("lot_a", "lot", _map_box(0, 0, 60, 60)),
             Zone("pier", "dock", _map_box(80, 100, 140, 118)),
             Zone("river", "river", _map_box(0, 118, 300, 200))]
    zp = write_zones(tmp_path / "zones.geojson", zones, "EPSG:32651")[0]
    res = detect_scene(scene, BlobDetector(), DetectConfig(overlap=16), zones_path=zp)
    counts = res.counts()
    assert counts[("lot_a", "truck", "")] == 2 and counts[("outside", "truck", "")] == 1
    assert counts[("river", "boat", "docked")] == 1 and counts[("river", "boat", "undocked")] == 1
    files = write_detections(res, scene, tmp_path / "out")
    rows = list(csv.DictReader(files["counts_csv"].open()))
    assert set(rows[0]) == {"zone", "class", "state", "count"}
    gj = json.loads(files["detections"].read_text())
    assert len(gj["features"]) == 5 and gj["crs"]["properties"]["name"].endswith("32651")
    props = {f["properties"]["state"] for f in gj["features"] if f["properties"]["class"] == "boat"}
    assert props == {"docked", "undocked"}
    wgs = json.loads(files["detections_4326"].read_text())
    lon, lat = wgs["features"][0]["geometry"]["coordinates"][0][0]
    assert 122 < lon < 123 and 40 < lat < 40.2
    assert files["overlay"].stat().st_size > 0


def test_without_zones_boats_are_unknown(tmp_path):
    scene = _scene(tmp_path, [("boat", (100, 120, 120, 126))])
    res = detect_scene(scene, BlobDetector(), DetectConfig(overlap=16))
    assert [a.state.value for a in res.labels.annotations] == ["unknown"]


def test_gsd_mismatch_warns_and_resample_rescales(tmp_path):
    scene = _scene(tmp_path, [("truck", (40, 40, 100, 52))])
    res = detect_scene(scene, BlobDetector(gsd=1.0), DetectConfig(overlap=16))
    assert any("far from the detector" in w for w in res.warnings)
    res = detect_scene(scene, BlobDetector(gsd=1.0), DetectConfig(overlap=16, resample=True))
    (b,) = [a.bbox for a in res.labels.annotations]
    assert b == pytest.approx((40, 40, 100, 52), abs=2.5)  # boxes mapped back to scene pixels


def test_zones_errors(tmp_path):
    scene = _scene(tmp_path, [])
    far = write_zones(tmp_path / "far.geojson", [Zone("x", "lot", box(0, 0, 10, 10))], "EPSG:32651")[0]
    with pytest.raises(ZonesError, match="no zone overlaps"):
        detect_scene(scene, BlobDetector(), zones_path=far)
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:999999"}},'
                   ' "features": []}')
    with pytest.raises(ZonesError, match="bad.geojson"):
        detect_scene(scene, BlobDetector(), zones_path=bad)
    nocrs = write_geotiff(tmp_path / "nocrs.tif", np.zeros((3, 50, 50), np.uint8), None, Affine(1, 0, 5, 0, -1, 5))
    ok = write_zones(tmp_path / "z.geojson", [Zone("x", "lot", box(0, 0, 10, 10))], "EPSG:32651")[0]
    with pytest.raises(RasterError, match="no CRS"):
        detect_scene(nocrs, BlobDetector(), zones_path=ok)


def test_zones_in_another_crs_are_reprojected(tmp_path):
    from freightwatch.datasets.geo import write_geojson

    scene = _scene(tmp_path, [("truck", (10, 10, 40, 16))])
    lot = _map_box(0, 0, 60, 60)
    zp = tmp_path / "zones_wgs84.geojson"
    # write in EPSG:4326 (a GeoJSON without a crs member is WGS84 by RFC 7946)
    write_geojson(tmp_path / "tmp.geojson", [(lot, {"name": "lot_a", "kind": "lot"})], "EPSG:32651", wgs84_copy=True)
    (tmp_path / "tmp_4326.geojson").rename(zp)
    res = detect_scene(scene, BlobDetector(), DetectConfig(overlap=16), zones_path=zp)
    assert res.counts()[("lot_a", "truck", "")] == 1


def test_card_count_thresholds_apply_per_class_unless_conf_given(tmp_path):
    scene = _scene(tmp_path, [("truck", (10, 10, 40, 16)), ("boat", (100, 120, 120, 126))])
    det = BlobDetector()  # scores every blob 0.9
    det.card.count_conf = {"truck": 0.95, "boat": 0.5}
    res = detect_scene(scene, det, DetectConfig(overlap=16))
    assert [a.cls for a in res.labels.annotations] == ["boat"]  # the truck's 0.9 is below its 0.95
    res = detect_scene(scene, det, DetectConfig(overlap=16, conf=0.3))
    assert sorted(a.cls for a in res.labels.annotations) == ["boat", "truck"]


def test_scene_is_scanned_under_a_bounded_gdal_cache(tmp_path, monkeypatch):
    import rasterio.env

    from freightwatch.datasets import raster

    seen: list[str | None] = []
    orig = raster.Scene.read_rgb

    def spy(self, window):
        seen.append(rasterio.env.get_gdal_config("GDAL_CACHEMAX"))
        return orig(self, window)

    monkeypatch.setattr(raster.Scene, "read_rgb", spy)
    scene = _scene(tmp_path, [("truck", (40, 10, 70, 16))])
    detect_scene(scene, BlobDetector(), DetectConfig(overlap=32, gdal_cache_mb=32))
    assert seen and all(int(v) == 32 * 2**20 for v in seen)


_SCAN = """
import sys
from freightwatch.datasets.raster import Scene, bounded_gdal_cache
from freightwatch.datasets.tiling import tile_windows
def peak_mb():  # VmHWM: ru_maxrss would carry the parent's peak across fork + exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
cap = None if sys.argv[2] == "none" else int(sys.argv[2])
with bounded_gdal_cache(cap), Scene(sys.argv[1]) as s:
    s.read_rgb(tile_windows(s.info.width, s.info.height, 256, 32)[0])
    before = peak_mb()
    for w in tile_windows(s.info.width, s.info.height, 256, 32):
        s.read_rgb(w)
print(peak_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for peak memory")
def test_scan_memory_does_not_grow_with_the_scene(tmp_path):
    """A full window-by-window scan of a 108 MB (decoded) compressed scene stays within the GDAL
    cap; GDAL's default cache (5 % of RAM) keeps every decoded block."""
    import subprocess
    import sys

    import rasterio

    n = 6000
    path = tmp_path / "big.tif"
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 3, "dtype": "uint8", "crs": "EPSG:32651",
               "transform": TRANSFORM, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    band = np.broadcast_to((np.arange(n, dtype=np.uint16) % 251).astype(np.uint8), (3, 1000, n))
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, n, 1000):  # compressed blocks: the cache holds them decoded, 108 MB in all
            dst.write(band, window=((r, r + 1000), (0, n)))

    def growth(cap: str) -> float:
        out = subprocess.run([sys.executable, "-c", _SCAN, str(path), cap], capture_output=True, text=True,
                             check=True)
        return float(out.stdout.strip().splitlines()[-1])

    g16, gnone = growth("16"), growth("none")
    assert g16 < 50  # MB: cap plus a few windows
    assert gnone > 90  # the unbounded cache holds most of the scene (shows the test can fail)


def test_partial_merge_takes_one_iou_threshold_per_class():
    # two overlapping pairs (IoU 0.6), one truck pair (class 0) and one railcar pair (class 1)
    boxes = np.array([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [50, 0, 60, 10], [52.5, 0, 62.5, 10]], float)
    scores, classes, cut = np.array([0.9, 0.8, 0.9, 0.8]), np.array([0, 0, 1, 1]), np.zeros(4, bool)
    keep, _ = merge_slice_detections(boxes, scores, classes, cut, iou_thr=np.array([0.7, 0.5, 0.5]), ios_thr=0.95)
    assert keep.tolist() == [0, 1, 2]  # the trucks survive 0.7, the railcars do not survive 0.5
    keep, _ = merge_slice_detections(boxes, scores, classes, cut, iou_thr=0.5, ios_thr=0.95)
    assert keep.tolist() == [0, 2]


class IouRecorder(BlobDetector):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.ious = []

    def predict(self, images, conf=0.25, iou=0.5, **kw):
        self.ious.append(iou)
        return super().predict(images, conf=conf, **kw)


def test_card_class_iou_reaches_the_detector_unless_overridden(tmp_path):
    scene = _scene(tmp_path, [("truck", (40, 10, 70, 16))])
    det = IouRecorder()
    det.card.class_iou = {"railcar": 0.4}
    detect_scene(scene, det, DetectConfig(overlap=32))
    assert det.ious[0] == {"truck": 0.5, "railcar": 0.4, "boat": 0.5}
    det.ious.clear()
    detect_scene(scene, det, DetectConfig(overlap=32, iou=0.6, class_iou={}))
    assert set(det.ious) == {0.6}  # one number: every class the same
