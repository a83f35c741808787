"""Counting a catalog at a site: method by GSD, valid-pixel fractions, masked zones, problems reported."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from affine import Affine
from shapely.geometry import box

from freightwatch.activity.catalog import read_catalog
from freightwatch.activity.run import RunConfig, choose_method, count_scene, run_catalog, zone_valid_fractions
from freightwatch.activity.site import site_from_dict
from freightwatch.activity.table import COLUMNS, read_table
from freightwatch.datasets.annotations import Annotation
from freightwatch.datasets.geo import Zone, write_geotiff
from freightwatch.errors import InputFileError
from freightwatch.models.detector import DetectorCard

X0, Y0 = 447000.0, 4442000.0


class BlobDetector:
    """A stand-in detector: every bright rectangle is a truck (exercises slicing, merging and zones)."""

    def __init__(self) -> None:
        self.card = DetectorCard(gsd=0.5, imgsz=128)

    def predict(self, images, conf=0.25, iou=0.5, imgsz=None, max_det=300, device=None):
        out = []
        for img in images:
            n, _lab, st, _c = cv2.connectedComponentsWithStats((img[..., 0] > 240).astype(np.uint8))
            out.append([Annotation.from_bbox("truck", (x, y, x + w, y + h), score=0.9)
                        for x, y, w, h, a in st[1:] if a >= 6])
        return out


def _site():
    # Two lots side by side at the top of a 128 x 128 px (64 m) scene at 0.5 m.
    zones = [Zone("west", "lot", box(X0, Y0 - 30, X0 + 30, Y0), ("truck",)),
             Zone("east", "lot", box(X0 + 34, Y0 - 30, X0 + 64, Y0), ("truck",))]
    return site_from_dict({"name": "mini", "countries": ["CN"], "timezone": "Asia/Shanghai"}, zones=zones,
                          zones_crs="EPSG:32651")


def _hires(path: Path, tags=None, nodata_rows: int = 0) -> Path:
    img = np.full((3, 128, 128), 60, np.uint8)
    for cx, cy in ((10, 10), (30, 20), (40, 40), (90, 12), (100, 40)):  # 3 in west, 2 in east (pixels)
        img[:, cy:cy + 4, cx:cx + 10] = 250
    if nodata_rows:
        img[:, :nodata_rows, 64:] = 0
    return write_geotiff(path, img, "EPSG:32651", Affine(0.5, 0, X0, 0, -0.5, Y0), tags=tags,
                         nodata=0 if nodata_rows else None)


def test_detector_scene_counts_per_zone_with_interval(tmp_path):
    site = _site()
    p = _hires(tmp_path / "h.tif", tags={"ACQUISITION_TIME": "2016-02-13T02:30:00Z"})
    entry = read_catalog(tmp_path)[0]
    assert choose_method(entry, site) == "detector"
    rows = count_scene(entry, site, detector=BlobDetector())
    by = {r["zone"]: r for r in rows}
    assert set(rows[0]) >= set(COLUMNS)
    assert by["west"]["count"] == 3 and by["east"]["count"] == 2
    assert by["west"]["method"] == "detector" and by["west"]["status"] == "ok" and by["west"]["valid_fraction"] == 1
    assert by["west"]["lower"] < 3 < by["west"]["upper"]
    assert str(p) and rows[0]["time"].isoformat().startswith("2016-02-13T02:30")


def test_nodata_marks_a_zone_masked_not_zero(tmp_path):
    site = _site()
    _hires(tmp_path / "h.tif", tags={"ACQUISITION_TIME": "2016-02-13T02:30:00Z"}, nodata_rows=60)
    entry = read_catalog(tmp_path)[0]
    fr = zone_valid_fractions(entry.path, site.zones)
    assert fr["west"] == 1.0 and fr["east"] == 0.0
    by = {r["zone"]: r for r in count_scene(entry, site, detector=BlobDetector())}
    assert by["east"]["status"] == "masked" and math.isnan(by["east"]["count"])
    assert by["west"]["status"] == "ok" and by["west"]["count"] == 3


def test_cloud_mask_gives_partial_counts_scaled_to_the_zone(tmp_path):
    site = _site()
    _hires(tmp_path / "h.tif", tags={"ACQUISITION_TIME": "2016-02-13T02:30:00Z"})
    mask = np.zeros((128, 128), np.uint8)
    mask[30:60, :64] = 1  # the lower half of the west lot is under cloud
    write_geotiff(tmp_path / "h_mask.tif", mask, "EPSG:32651", Affine(0.5, 0, X0, 0, -0.5, Y0))
    entry = read_catalog(tmp_path)[0]
    assert entry.mask == tmp_path / "h_mask.tif"
    by = {r["zone"]: r for r in count_scene(entry, site, detector=BlobDetector())}
    west = by["west"]
    assert west["status"] == "partial" and 0.45 < west["valid_fraction"] < 0.55
    assert west["count_observed"] == 2  # the blob at y=40 px is under the cloud... and not seen
    assert west["count"] == pytest.approx(2 / west["valid_fraction"])


def test_density_scene_with_the_bundled_model(tmp_path):
    from freightwatch.models.density import DensityModel, bundled_density

    if not bundled_density().is_file():
        pytest.skip("bundled density weights not installed")
    site = _site()
    rng = np.random.default_rng(0)
    img = rng.integers(60, 90, (3, 40, 40)).astype(np.uint8)
    write_geotiff(tmp_path / "PS_20160301_023000.tif", img, "EPSG:32651", Affine(3.0, 0, X0, 0, -3.0, Y0))
    entry = read_catalog(tmp_path)[0]
    assert entry.time_source == "filename" and choose_method(entry, site) == "density"
    rows = count_scene(entry, site, density_model=DensityModel.load())
    assert {r["method"] for r in rows} == {"density"} and all(r["gsd"] == 3.0 for r in rows)
    for r in rows:
        assert r["status"] == "ok" and r["count"] >= 0 and r["lower"] <= r["count"] <= r["upper"]
    with pytest.raises(InputFileError, match="density weights"):
        count_scene(entry, site)


def test_run_catalog_keeps_going_and_reports_problems(tmp_path, monkeypatch):
    site = _site()
    cat = tmp_path / "cat"
    _hires(cat / "h1.tif", tags={"ACQUISITION_TIME": "2016-02-13T02:30:00Z"})
    _hires(cat / "h2.tif", tags={"ACQUISITION_TIME": "2016-03-13T02:30:00Z"})
    _hires(cat / "undated.tif")
    (cat / "broken.tif").write_bytes(b"II*\x00garbage")
    # A scene that fails while being counted (its zones miss it) must not lose the others.
    write_geotiff(cat / "elsewhere.tif", np.full((3, 32, 32), 60, np.uint8), "EPSG:32651",
                  Affine(0.5, 0, X0 + 5000, 0, -0.5, Y0), tags={"ACQUISITION_TIME": "2016-04-01T02:30:00Z"})
    entries = read_catalog(cat)
    res = run_catalog(entries, site, tmp_path / "out", detector=BlobDetector(), show_progress=False)
    problems = {p["scene"]: p["problem"] for p in res.problems}
    assert set(problems) == {"undated", "broken", "elsewhere"}
    assert "no acquisition time" in problems["undated"] and "overlaps" in problems["elsewhere"]
    assert res.methods == {"detector": 2}
    df, meta = read_table(res.files["parquet"])
    assert len(df) == 4 and meta["name"] == "mini" and meta["calendar"]["countries"] == ["CN"]
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert {"local_date", "weekday", "window"} <= set(df.columns)
    assert df.loc[df["time"] == pd.Timestamp("2016-02-13T02:30:00Z"), "window"].eq("lunar_new_year").all()
    csv, _ = read_table(res.files["csv"])
    assert len(csv) == 4 and csv["time"].dt.tz is not None
    assert (tmp_path / "out" / "run.json").is_file()


def test_missing_detector_weights_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    from freightwatch.models import detector as detmod

    monkeypatch.setattr(detmod, "bundled_detector", lambda: tmp_path / "nope.safetensors")
    _hires(tmp_path / "cat" / "h.tif", tags={"ACQUISITION_TIME": "2016-02-13T02:30:00Z"})
    with pytest.raises(InputFileError, match="no detector weights are installed"):
        run_catalog(read_catalog(tmp_path / "cat"), _site(), tmp_path / "out", RunConfig(), show_progress=False)
    assert not (tmp_path / "out" / "counts.parquet").exists()


@pytest.mark.parametrize("grid", ["north_up", "south_up", "rotated"])
def test_zone_sums_and_valid_fraction_hold_on_any_grid(tmp_path, grid):
    import rasterio
    from affine import Affine
    from shapely.geometry import box

    from freightwatch.activity.run import _masked_zone_sums, zone_valid_fractions
    from freightwatch.datasets.geo import Zone

    t = {"north_up": Affine(3, 0, 1000, 0, -3, 2000), "south_up": Affine(3, 0, 1000, 0, 3, 1700),
         "rotated": Affine.translation(1000, 2000) * Affine.rotation(30) * Affine.scale(3, -3)}[grid]
    p = tmp_path / "d.tif"
    with rasterio.open(p, "w", driver="GTiff", width=100, height=100, count=1, dtype="float32", crs="EPSG:32651",
                       transform=t) as ds:
        ds.write(np.full((1, 100, 100), 0.01, np.float32))
    with rasterio.open(p) as ds:
        x, y = ds.transform * (50, 50)
        zone = Zone("z", "lot", box(x - 30, y - 30, x + 30, y + 30))  # 20 x 20 pixels of 3 m
        assert zone_valid_fractions(p, [zone]) == {"z": pytest.approx(1.0)}
        assert _masked_zone_sums(ds, zone, None)[0] == pytest.approx(4.0, rel=0.06)
