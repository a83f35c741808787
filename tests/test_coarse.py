"""Tests for the coarse-sensor simulation and density targets (freightwatch.datasets.coarse)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from freightwatch.datasets import coarse
from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.coarse import (
    SensorModel,
    coarse_shape,
    degrade_image,
    degrade_labels,
    degrade_sample,
    degrade_scene,
    density_for_window,
    density_targets,
    psf_sigma,
    scale_factors,
    splat_centers,
)
from freightwatch.datasets.geo import write_geotiff
from freightwatch.datasets.tiling import tile_windows
from freightwatch.taxonomy import CLASSES

UTM = Affine(0.5, 0.0, 550_000.0, 0.0, -0.5, 4_180_000.0)


def _labels(w: int = 600, h: int = 400, transform: Affine | None = UTM) -> ImageLabels:
    anns = [
        Annotation.from_rotated_box("truck", (100.3, 50.7), 32, 5, 10),
        Annotation.from_rotated_box("truck", (601.0, 398.5), 32, 5, 80),  # centre near the far corner
        Annotation.from_rotated_box("railcar", (300.0, 200.0), 30, 6, 90),
        Annotation.from_rotated_box("boat", (450.25, 120.75), 200, 32, 35),
        Annotation.from_bbox("boat", (0, 0, 4, 2)),
    ]
    return ImageLabels("hr.tif", w, h, anns, gsd=0.5, crs="EPSG:32610", transform=transform)


# -- geometry ----------------------------------------------------------------------------------
def test_coarse_shape_and_scale_factors() -> None:
    assert coarse_shape(2000, 1000, 0.3, 3.0) == (200, 100)
    assert coarse_shape(1001, 1003, 0.5, 3.0) == (167, 167)  # rounds (166.8, 167.2)
    assert coarse_shape(3, 3, 0.3, 5.0) == (1, 1)  # never empty
    assert scale_factors((1001, 1003), (167, 167)) == (167 / 1003, 167 / 1001)


@pytest.mark.parametrize("src", [0.15, 0.3, 0.5, 1.0])
def test_degrade_image_shape_dtype(src: float) -> None:
    img = np.random.default_rng(0).integers(0, 256, (601, 457, 3), dtype=np.uint8)
    out = degrade_image(img, src, SensorModel(gsd=3.0), np.random.default_rng(1))
    assert out.dtype == np.uint8
    assert out.shape == (*coarse_shape(601, 457, src, 3.0), 3)
    grey = degrade_image(img[..., 0].astype(np.float32), src, SensorModel(gsd=4.0), np.random.default_rng(1))
    assert grey.shape == coarse_shape(601, 457, src, 4.0)


def test_degrade_image_rejects_upsampling() -> None:
    with pytest.raises(ValueError, match="coarser"):
        degrade_image(np.zeros((10, 10, 3), np.uint8), 5.0, SensorModel(gsd=3.0))


def test_degrade_labels_preserves_map_coordinates() -> None:
    labels = _labels(w=1003, h=1001)
    h, w = coarse_shape(labels.height, labels.width, 0.5, 3.0)
    out = degrade_labels(labels, 3.0, (h, w))
    assert (out.width, out.height) == (w, h)
    assert out.crs == labels.crs and len(out.annotations) == len(labels.annotations)
    # Scene corners map to the same ground point ...
    for (x0, y0), (x1, y1) in [((0, 0), (0, 0)), ((labels.width, labels.height), (w, h)), ((labels.width, 0), (w, 0))]:
        np.testing.assert_allclose(labels.transform * (x0, y0), out.transform * (x1, y1), atol=1e-6)
    # ... and so do object centres and polygons.
    for a, b in zip(labels.annotations, out.annotations, strict=True):
        np.testing.assert_allclose(labels.transform * a.center, out.transform * b.center, atol=1e-6)
        assert a.to_map(labels.transform).equals_exact(b.to_map(out.transform), 1e-6)
    assert out.gsd == pytest.approx(3.0, rel=0.01)
    assert out.transform.a == pytest.approx(0.5 * labels.width / w)


# -- PSF / MTF ---------------------------------------------------------------------------------
def test_sensor_model_validation_and_random() -> None:
    with pytest.raises(ValueError):
        SensorModel(mtf_nyquist=1.2)
    with pytest.raises(ValueError):
        SensorModel(noise_band_corr=1.5)
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    for _ in range(20):
        s = SensorModel.random(rng, gsd_range=(3.0, 5.0))
        assert 3.0 <= s.gsd <= 5.0 and 0.05 <= s.mtf_nyquist <= 0.35
        out = degrade_image(img, 0.3, s, rng)
        assert out.shape == (*coarse_shape(300, 300, 0.3, s.gsd), 3)


@pytest.mark.parametrize("mtf", [0.1, 0.2, 0.3, 0.4])
def test_psf_sigma_matches_mtf_at_nyquist(mtf: float) -> None:
    """Blur an impulse and read the MTF at the target Nyquist frequency off its FFT."""
    src, k = 0.5, 6  # 6 source pixels per target pixel: target Nyquist = 1/12 cycles per source pixel
    n = 1200
    impulse = np.zeros(n)
    impulse[n // 2] = 1.0
    sensor = SensorModel(gsd=src * k, mtf_nyquist=mtf)

    def mtf_at_nyquist(psf: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(psf))
        return float(spec[n // (2 * k)] / spec[0])

    # The Gaussian alone (the textbook formula).
    s = psf_sigma(sensor, src, pixel_aperture=False)
    x = np.arange(n) - n // 2
    gauss = np.exp(-0.5 * (x / s) ** 2)
    assert mtf_at_nyquist(gauss) == pytest.approx(mtf, abs=0.01)
    assert s == pytest.approx(math.sqrt(-2 * math.log(mtf)) / math.pi * k)
    # Default: the Gaussian plus the target pixel's box footprint make the system MTF.
    s = psf_sigma(sensor, src)
    system = np.convolve(np.exp(-0.5 * (x / s) ** 2), np.ones(k), mode="same")
    assert mtf_at_nyquist(system) == pytest.approx(mtf, abs=0.02)


@pytest.mark.parametrize(
    ("src", "mtf"), [(0.5, 0.1), (0.5, 0.3), (0.3, 0.2), (0.15, 0.35), (0.31, 0.1), (0.23, 0.25), (1.0, 0.15)]
)
def test_degrade_image_system_mtf(src: float, mtf: float) -> None:
    """End to end: a grating at the target Nyquist comes out with amplitude ``mtf`` (integer and
    non-integer factors, with and without the intermediate reduction)."""
    gsd, amp, n = 3.0, 120.0, 60
    big = round(n * gsd / src)
    x = (np.arange(big) + 0.5) * n / big  # source pixel centres in target pixels
    row = 128 + amp * np.cos(np.pi * (x - 0.5))  # peaks on target pixel centres
    img = np.repeat(np.tile(row, (round(8 * gsd / src), 1))[..., None], 3, axis=2).astype(np.float32)
    out = degrade_image(img, src, SensorModel(gsd=gsd, mtf_nyquist=mtf, noise_std=0), out_shape=(8, n))
    prof = out[..., 1].astype(float).mean(axis=0)[4:-4]  # away from the reflected borders
    assert np.abs(prof - 128).mean() / amp == pytest.approx(mtf, abs=0.012)


def test_valid_mask_prevents_bleeding() -> None:
    img = np.full((300, 300, 3), 200, np.uint8)
    valid = np.ones((300, 300), bool)
    valid[:, :150] = False
    img[~valid] = 0
    out = degrade_image(img, 0.5, SensorModel(noise_std=0), valid=valid)
    assert (out[:, :25] == 0).all()
    assert (out[:, 25:] >= 199).all()  # no dark halo next to the nodata


def test_jpeg_and_radiometry() -> None:
    img = np.full((120, 120, 3), 100, np.uint8)
    s = SensorModel(gsd=3.0, noise_std=0, gain=(1.1, 1.0, 0.9), offset=(5, 0, -5), gamma=1.0, jpeg_quality=90)
    out = degrade_image(img, 0.5, s)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), [115, 100, 85], atol=2)


# -- density targets -----------------------------------------------------------------------------
def _coord(size: int) -> st.SearchStrategy[float]:
    edge = st.sampled_from([0.0, float(size), size - 1e-9, 1e-9, -1e-9, size / 2, 0.5, size - 0.5])
    return st.one_of(edge, st.floats(-3.0, size + 3.0), st.integers(0, size).map(float))


@st.composite
def _objects(draw: st.DrawFn, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 40))
    pts = [(draw(_coord(w)), draw(_coord(h))) for _ in range(n)]
    ids = [draw(st.integers(0, len(CLASSES) - 1)) for _ in range(n)]
    return np.array(pts, dtype=float).reshape(-1, 2), np.array(ids, dtype=int)


def _inside_counts(c: np.ndarray, ids: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    inside = (c[:, 0] >= x0) & (c[:, 0] < x0 + w) & (c[:, 1] >= y0) & (c[:, 1] < y0 + h)
    return np.bincount(ids[inside], minlength=len(CLASSES))


@settings(max_examples=60, deadline=None)
@given(
    dims=st.tuples(st.integers(1, 48), st.integers(1, 48)).flatmap(
        lambda wh: st.tuples(st.just(wh), _objects(*wh))
    ),
    sigma=st.sampled_from([0.0, 0.05, 0.5, 1.0, 2.5, 6.0]),
)
def test_density_integrates_to_counts(dims, sigma: float) -> None:
    (w, h), (c, ids) = dims
    d = splat_centers(c, ids, (h, w), sigma)
    assert d.shape == (len(CLASSES), h, w) and d.dtype == np.float32
    assert (d >= 0).all()
    np.testing.assert_allclose(d.sum(axis=(1, 2)), _inside_counts(c, ids, 0, 0, w, h), atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 4), st.integers(1, 4), st.sampled_from([5, 8, 16])).flatmap(
        lambda g: st.tuples(st.just(g), _objects(g[0] * g[2], g[1] * g[2]))
    ),
    sigma=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_tiled_density_adds_up(grid, sigma: float) -> None:
    (nx, ny, size), (c, ids) = grid
    W, H = nx * size, ny * size
    anns = [Annotation.from_bbox(CLASSES[i], (x - 1, y - 0.5, x + 1, y + 0.5))
            for (x, y), i in zip(c, ids, strict=True)]
    labels = ImageLabels("s.tif", W, H, anns)
    c = labels.centers().reshape(-1, 2)  # what the targets use (box centres round a little)
    total = np.zeros(len(CLASSES))
    for win in tile_windows(W, H, size, overlap=0):
        d = density_for_window(labels, win, sigma)
        assert d.shape == (len(CLASSES), size, size)
        expect = _inside_counts(c, ids, int(win.col_off), int(win.row_off), size, size)
        np.testing.assert_allclose(d.sum(axis=(1, 2)), expect, atol=1e-3)
        total += d.sum(axis=(1, 2))
    np.testing.assert_allclose(total, _inside_counts(c, ids, 0, 0, W, H), atol=1e-3)
    np.testing.assert_allclose(total, density_targets(labels, sigma=sigma).sum(axis=(1, 2)), atol=1e-3)


def test_density_subpixel_centre_and_classes() -> None:
    labels = ImageLabels("x", 40, 30, [Annotation.from_bbox("boat", (10.2, 11.0, 14.5, 13.1))])
    d = density_targets(labels, sigma=1.5)
    assert d[0].sum() == 0 and d[1].sum() == 0 and d[2].sum() == pytest.approx(1.0, abs=1e-5)
    yy, xx = np.mgrid[0:30, 0:40] + 0.5  # pixel centres
    cx, cy = (d[2] * xx).sum(), (d[2] * yy).sum()
    assert (cx, cy) == pytest.approx(labels.annotations[0].center, abs=1e-3)
    # Only the requested classes, in the requested order.
    assert density_targets(labels, sigma=1.0, classes=("boat",)).shape == (1, 30, 40)


def test_density_many_objects_fast_enough() -> None:
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 500, (20000, 2))
    d = splat_centers(c, rng.integers(0, 3, 20000), (500, 500), 1.0, chunk=4096)
    assert d.sum() == pytest.approx(20000, abs=1e-2)


def test_degrade_sample_consistent() -> None:
    labels = _labels()
    img = np.random.default_rng(0).integers(0, 256, (labels.height, labels.width, 3), dtype=np.uint8)
    out, lab, dens = degrade_sample(img, labels, SensorModel(gsd=3.0), np.random.default_rng(0))
    assert out.shape[:2] == (lab.height, lab.width) == dens.shape[1:]
    centres = np.array([a.center for a in lab.annotations])
    inside = (centres[:, 0] < lab.width) & (centres[:, 1] < lab.height)
    assert dens.sum() == pytest.approx(inside.sum(), abs=1e-3)


# -- scenes --------------------------------------------------------------------------------------
def _write_scene(path, w: int = 603, h: int = 409) -> None:
    rng = np.random.default_rng(0)
    img = (rng.integers(60, 200, (3, h, w))).astype(np.uint8)
    tags = {"ACQUISITION_TIME": "2024-05-01T18:30:00+00:00"}
    write_geotiff(path, img, "EPSG:32610", UTM, tags=tags, photometric_rgb=True)


def test_degrade_scene_writes_geotiffs(tmp_path) -> None:
    src = tmp_path / "hr.tif"
    _write_scene(src)
    labels = _labels(603, 409)
    paths = degrade_scene(src, labels, 3.0, tmp_path / "out", seed=1)
    assert paths["scene"].name == "scene.tif" and paths["density"].name == "density.tif"
    with rasterio.open(paths["scene"]) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "uint8"
        assert ds.crs.to_epsg() == 32610
        assert ds.res == pytest.approx((3.0, 3.0))
        assert (ds.width, ds.height) == (100, 68)  # whole 3 m pixels inside 301.5 x 204.5 m
        assert ds.transform * (0, 0) == pytest.approx(UTM * (0, 0))
        assert ds.tags()["ACQUISITION_TIME"].startswith("2024-05-01T18:30:00")
        transform = ds.transform
    with rasterio.open(paths["density"]) as ds:
        assert ds.count == len(CLASSES) and ds.dtypes[0] == "float32"
        assert ds.descriptions == CLASSES
        assert ds.transform == transform and ds.crs.to_epsg() == 32610
        dens = ds.read()
    # The truck centred at x = 601 source px lies in the dropped strip (the grid covers 600 px): gone.
    in_grid = [a for a in labels.annotations if a.center[0] < 600 and a.center[1] < 408]
    np.testing.assert_allclose(dens.sum(axis=(1, 2)), [sum(a.cls == c for a in in_grid) for c in CLASSES], atol=1e-3)
    # Map centres survive in the written labels.
    if "labels" in paths:
        coco = json.loads(paths["labels"].read_text())
        assert len(coco["annotations"]) == len(in_grid)
        assert coco["images"][0]["file_name"] == "scene.tif"


def test_degrade_scene_blocks_match_whole(tmp_path, monkeypatch) -> None:
    """Processing in blocks with halos gives the same image as in one piece."""
    src = tmp_path / "hr.tif"
    _write_scene(src)
    sensor = SensorModel(noise_std=0)
    whole = degrade_scene(src, _labels(603, 409), 3.0, tmp_path / "a", sensor=sensor)
    monkeypatch.setattr(coarse, "_SOURCE_BLOCK", 150)  # 25 x 25 target pixels per block
    blocks = degrade_scene(src, _labels(603, 409), 3.0, tmp_path / "b", sensor=sensor)
    with rasterio.open(whole["scene"]) as a, rasterio.open(blocks["scene"]) as b:
        diff = np.abs(a.read().astype(int) - b.read().astype(int))
        assert a.transform == b.transform
    assert diff.max() <= 1


def test_degrade_scene_rejects_mismatched_labels(tmp_path) -> None:
    src = tmp_path / "hr.tif"
    _write_scene(src)
    with pytest.raises(ValueError, match="labels are for"):
        degrade_scene(src, _labels(600, 400), 3.0, tmp_path / "out")


def test_acquired_from_labels_when_scene_has_none(tmp_path) -> None:
    src = tmp_path / "hr.tif"
    write_geotiff(src, np.full((3, 120, 120), 90, np.uint8), "EPSG:32610", UTM)
    labels = ImageLabels("hr.tif", 120, 120, [], gsd=0.5, acquired=datetime(2023, 1, 2, tzinfo=UTC))
    paths = degrade_scene(src, labels, 4.0, tmp_path / "out")
    with rasterio.open(paths["scene"]) as ds:
        assert ds.tags()["ACQUISITION_TIME"].startswith("2023-01-02")
        assert ds.res == pytest.approx((4.0, 4.0))
