"""Every bad input of issue 7, end to end: one line on stderr naming the file and the problem, exit
status 2, no traceback, and nothing already written lost. Cases the modules' own tests cover at the
API level (test_raster, test_geo, test_formats, test_density, test_train_detector) are checked here
through the command line; cases they do not cover are checked here at both levels.

The behaviour each case gets is tabulated in docs/batch.md ("Bad inputs").
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from PIL import Image
from rasterio.windows import Window
from shapely import contains_xy
from shapely.geometry import Polygon, box
from torch import nn

from freightwatch.cli import main
from freightwatch.datasets.annotations import Annotation
from freightwatch.datasets.formats import read_dota, read_xview
from freightwatch.datasets.geo import Zone, write_geojson, write_geotiff, write_zones
from freightwatch.datasets.raster import Scene, read_info
from freightwatch.errors import LabelFormatError, RasterError
from freightwatch.inference.density import DensityRunConfig, density_scene
from freightwatch.inference.detect import DetectConfig, detect_scene
from freightwatch.models.density import DensityConfig, DensityModel
from freightwatch.models.detector import DetectorCard

X0, Y0 = 447000.0, 4442000.0
UTM = "EPSG:32651"


# -- helpers ----------------------------------------------------------------------------------------
def cli(capsys, *args: str | Path) -> tuple[int, str, str]:
    """Run the CLI in this process; returns (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(result: tuple[int, str, str], names: str | Path, *fragments: str) -> str:
    """Exit 2, exactly one non-empty stderr line, naming the file and saying the problem."""
    code, _, err = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error:") and Path(names).name in line, line
    for f in fragments:
        assert f in line, line
    return line


def coarse_scene(path: Path, w: int = 48, h: int = 40, gsd: float = 3.0, crs: str | None = UTM, seed: int = 0,
                 transform: Affine | None = None, nodata: float | None = None) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(1, 256, (3, h, w), dtype=np.uint8)
    return write_geotiff(path, arr, crs, transform or Affine(gsd, 0, X0, 0, -gsd, Y0), nodata=nodata)


def zones_file(path: Path, zones: list[Zone], crs: str = UTM) -> Path:
    return write_zones(path, zones, crs)[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _ConstantNet(nn.Module):
    """Density ``value`` on every pixel: zone counts are then ``value`` x pixels, known exactly."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3, *x.shape[-2:]), self.value)


class BlobDetector:
    """A stand-in detector: each bright blob of a slice is a truck (no weights needed)."""

    def __init__(self, gsd: float = 0.5, imgsz: int = 64) -> None:
        self.card = DetectorCard(gsd=gsd, imgsz=imgsz)

    def predict(self, images, conf=0.25, iou=0.5, imgsz=None, max_det=2000, device=None):
        out = []
        for im in images:
            n, _, stats, _ = cv2.connectedComponentsWithStats((im[..., 0] > 150).astype(np.uint8), connectivity=4)
            out.append([Annotation.from_bbox("truck", (x, y, x + w, y + h), score=0.9)
                        for x, y, w, h, _ in stats[1:n]])
        return out


@pytest.fixture(scope="module")
def density_weights(tmp_path_factory) -> Path:
    """Small random density weights (3-5 m), saved the way freightwatch saves them."""
    torch.manual_seed(0)
    return DensityModel.create().save(tmp_path_factory.mktemp("dw") / "density.safetensors")


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory) -> Path:
    """An untrained YOLO11n for truck/railcar/boat at 64 px, saved as safetensors + card (no training)."""
    from freightwatch.models import ultralytics_env
    from freightwatch.models.detector import Detector

    yolo_cls = ultralytics_env.yolo()
    from ultralytics.nn.tasks import DetectionModel

    yolo = yolo_cls("yolo11n.yaml", task="detect")
    torch.manual_seed(0)
    net = DetectionModel(cfg="yolo11n.yaml", nc=3, verbose=False)
    net.names = {0: "truck", 1: "railcar", 2: "boat"}
    yolo.model = net
    return Detector(yolo, DetectorCard(imgsz=64, gsd=0.5)).save(tmp_path_factory.mktemp("det") / "det.safetensors")


# -- rasters ----------------------------------------------------------------------------------------
def _truncated(path: Path) -> Path:
    """A GeoTIFF whose header is intact but whose pixel data stops half-way."""
    rng = np.random.default_rng(1)
    good = write_geotiff(path.with_name("whole.tif"), rng.integers(0, 255, (3, 600, 600)).astype(np.uint8), UTM,
                         Affine(3, 0, X0, 0, -3, Y0))
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _typed(path: Path, dtype: str, bands: int = 3) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=bands, dtype=dtype, crs=UTM,
                       transform=Affine(3, 0, X0, 0, -3, Y0)) as ds:
        ds.write(np.ones((bands, 16, 16), dtype=dtype))
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


RASTER_CASES = {
    "text": (lambda p: _bytes(p, b"this is not an image"), "not a readable raster"),
    "png bytes": (lambda p: _bytes(p, b"\x89PNG\r\n\x1a\n" + b"x" * 64), "not a readable raster"),
    "zero-size": (lambda p: _bytes(p, b""), "file is empty (0 bytes)"),
    "missing": (lambda p: p, "file does not exist"),
    "truncated": (_truncated, "truncated file?"),
    "complex64": (lambda p: _typed(p, "complex64"), "unsupported pixel type complex64"),
    "int64": (lambda p: _typed(p, "int64"), "unsupported pixel type int64"),
    "int8": (lambda p: _typed(p, "int8"), "unsupported pixel type int8"),
    "1 band": (lambda p: _typed(p, "uint8", 1), "1 band(s): choose which make R, G, B"),
    "2 bands": (lambda p: _typed(p, "uint8", 2), "2 band(s): choose which make R, G, B (bands=(1, 1, 1)"),
    "5 bands": (lambda p: _typed(p, "uint16", 5), "5 band(s): choose which make R, G, B"),
    "all nodata": (lambda p: _all(coarse_scene(p, nodata=7), 7), "no valid pixels (all nodata)"),
}


def _all(path: Path, value: int) -> Path:
    with rasterio.open(path, "r+") as ds:
        ds.write(np.full((ds.count, ds.height, ds.width), value, np.uint8))
    return path


@pytest.mark.parametrize("case", list(RASTER_CASES))
def test_bad_rasters_one_line_error_through_density(tmp_path, capsys, density_weights, case) -> None:
    make, fragment = RASTER_CASES[case]
    scene = make(tmp_path / "scene.tif")
    res = cli(capsys, "density", scene, "--out", tmp_path / "out", "--weights", density_weights)
    line = assert_one_line_error(res, scene, fragment)
    if case == "truncated":  # the GDAL detail, not rasterio's "see previous exception"
        assert "previous exception" not in line and "TIFF" in line
    assert not list((tmp_path / "out").glob(".*"))  # no half-written temporary file left behind


def test_info_on_zero_size_and_truncated_files(tmp_path, capsys) -> None:
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    assert_one_line_error(cli(capsys, "info", empty), empty, "file is empty (0 bytes)")
    trunc = _truncated(tmp_path / "trunc.tif")
    code, out, _ = cli(capsys, "info", trunc, "--json")  # the header is intact: metadata still reads
    assert code == 0 and json.loads(out)["width"] == 600


def test_band_choice_on_the_command_line_fixes_two_band_scene(tmp_path, capsys, density_weights) -> None:
    scene = _typed(tmp_path / "two.tif", "uint8", 2)
    code, _, err = cli(capsys, "density", scene, "--out", tmp_path / "o", "--weights", density_weights, "--bands",
                       "1,1,1")
    assert code == 0, err


def test_detector_on_all_nodata_scene(tmp_path) -> None:
    arr = np.zeros((3, 100, 100), np.uint8)
    scene = write_geotiff(tmp_path / "blank.tif", arr, UTM, Affine(0.5, 0, X0, 0, -0.5, Y0), nodata=0)
    with pytest.raises(RasterError, match="blank.tif: scene has no valid pixels"):
        detect_scene(scene, BlobDetector())


def test_missing_crs(tmp_path, capsys, density_weights) -> None:
    scene = coarse_scene(tmp_path / "nocrs.tif", crs=None)
    z = zones_file(tmp_path / "zones.geojson", [Zone("lot", "lot", box(X0, Y0 - 60, X0 + 60, Y0))])
    assert_one_line_error(cli(capsys, "density", scene, "--out", tmp_path / "o", "--weights", density_weights),
                          scene, "no CRS", "--gsd")
    assert_one_line_error(cli(capsys, "density", scene, "--zones", z, "--gsd", "3", "--out", tmp_path / "o",
                              "--weights", density_weights), z, "nocrs.tif has no CRS, so zones cannot be placed")
    code, _, err = cli(capsys, "density", scene, "--gsd", "3", "--out", tmp_path / "o", "--weights", density_weights)
    assert code == 0, err  # with the GSD given, a scene without CRS is counted as a whole


# Rotated and south-up grids are handled, not refused: pixels are read as they are and every map
# output goes through the full affine transform. Zone counts must equal the density summed over the
# pixels whose centres lie in the zone, computed here independently of the pipeline.
GRIDS = {
    "north-up": Affine(3, 0, X0, 0, -3, Y0),
    "south-up": Affine(3, 0, X0, 0, 3, Y0 - 120),
    "rotated 30": Affine.translation(X0, Y0) * Affine.rotation(30) * Affine.scale(3, -3),
    "rotated 90": Affine.translation(X0, Y0) * Affine.rotation(90) * Affine.scale(3, -3),
}


@pytest.mark.parametrize("grid", list(GRIDS))
def test_rotated_and_south_up_scenes_count_exactly(tmp_path, grid) -> None:
    t = GRIDS[grid]
    w, h = 40, 30
    scene = coarse_scene(tmp_path / "s.tif", w, h, transform=t)
    info = read_info(scene)
    assert info.north_up == (grid == "north-up") and info.gsd == pytest.approx(3.0)
    cx, cy = t * (w / 2, h / 2)
    lot = box(cx - 25, cy - 25, cx + 40, cy + 20)  # cuts across the grid at an angle when rotated
    z = zones_file(tmp_path / "z.geojson", [Zone("lot", "lot", lot)])
    res = density_scene(scene, DensityModel(_ConstantNet(0.01), DensityConfig()), tmp_path / "out", z,
                        DensityRunConfig(tile=16, margin=4, show_progress=False))
    rows, cols = np.mgrid[0:h, 0:w]
    xs, ys = t * (cols + 0.5, rows + 0.5)
    expected = 0.01 * contains_xy(lot, xs, ys).sum()
    assert expected > 1
    assert res.count("lot", "truck") == pytest.approx(expected, rel=1e-5)
    assert res.count("all", "truck") == pytest.approx(0.01 * w * h, rel=1e-5)


def test_rotated_scene_detections_are_placed_in_map_coordinates(tmp_path) -> None:
    t = Affine.translation(X0, Y0) * Affine.rotation(30) * Affine.scale(0.5, -0.5)
    img = np.zeros((3, 120, 160), np.uint8)
    img[:, 50:56, 60:90] = 220  # one truck, 30 x 6 px
    scene = write_geotiff(tmp_path / "rot.tif", img, UTM, t)
    centre = Polygon([t * (60, 50), t * (90, 50), t * (90, 56), t * (60, 56)]).centroid
    # "corner" lies inside the bounding box of the rotated scene but outside the scene itself.
    footprint = read_info(scene).footprint()
    minx, _, _, maxy = footprint.envelope.bounds
    corner = box(minx + 1, maxy - 3, minx + 3, maxy - 1)
    assert not corner.intersects(footprint) and corner.within(footprint.envelope)
    z = zones_file(tmp_path / "z.geojson", [Zone("lot", "lot", centre.buffer(5)), Zone("corner", "lot", corner)])
    res = detect_scene(scene, BlobDetector(), DetectConfig(overlap=16), zones_path=z)
    assert res.counts()[("lot", "truck", "")] == 1
    (ann,) = res.labels.annotations
    assert ann.to_map(t).contains(centre)
    assert any("corner" in w and "outside the scene" in w for w in res.warnings)


def test_info_reports_north_up(tmp_path, capsys) -> None:
    scene = coarse_scene(tmp_path / "r.tif", transform=GRIDS["rotated 30"])
    code, out, _ = cli(capsys, "info", scene, "--json")
    assert code == 0 and json.loads(out)["north_up"] is False


def test_scene_smaller_than_one_slice(tmp_path, capsys, density_weights, detector_weights) -> None:
    tiny = coarse_scene(tmp_path / "tiny.tif", 9, 7)
    code, _, err = cli(capsys, "density", tiny, "--out", tmp_path / "d", "--weights", density_weights)
    assert code == 0, err
    with rasterio.open(tmp_path / "d" / "density.tif") as ds:
        assert (ds.width, ds.height) == (9, 7) and np.isfinite(ds.read()).all()
    fine = coarse_scene(tmp_path / "fine.tif", 20, 15, gsd=0.5)  # 20 x 15 px against 64 px slices
    code, _, err = cli(capsys, "detect", fine, "--out", tmp_path / "det", "--weights", detector_weights)
    assert code == 0, err
    for name in ("detections.geojson", "counts.csv", "overlay.png"):
        assert (tmp_path / "det" / name).is_file()
    img = np.zeros((3, 15, 20), np.uint8)
    img[:, 5:8, 4:14] = 220
    blob = write_geotiff(tmp_path / "blob.tif", img, UTM, Affine(0.5, 0, X0, 0, -0.5, Y0))
    res = detect_scene(blob, BlobDetector(imgsz=640))  # one truck in a scene far smaller than a slice
    assert [a.bbox for a in res.labels.annotations] == [pytest.approx((4, 5, 14, 8))]


def test_very_large_scene_is_read_in_bounded_memory(tmp_path) -> None:
    """A 40000 x 40000 x 3 scene (4.8 GB of pixels, a sparse 0.3 MB file) opens and reads by windows."""
    big = tmp_path / "big.tif"
    side = 40000
    with rasterio.open(big, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs=UTM,
                       transform=Affine(0.5, 0, X0, 0, -0.5, Y0), tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", SPARSE_OK=True, BIGTIFF="YES") as ds:
        ds.write(np.full((3, 256, 256), 200, np.uint8), window=Window(20224, 20224, 256, 256))
    assert big.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with Scene(big) as s:
            assert (s.info.width, s.info.height) == (side, side)
            rgb, mask = s.read_rgb(Window(20000, 20000, 640, 640))
            assert rgb.shape == (640, 640, 3) and (rgb[300:400, 300:400] == 200).all() and mask.all()
            s.read_rgb(Window(side - 100, side - 100, 640, 640))  # past the corner: padded, not failed
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, peak


def test_density_over_a_large_sparse_scene_keeps_memory_bounded(tmp_path) -> None:
    """4096 x 4096 px at 3 m: the whole scene would take 50 MB as uint8 and 200 MB as float32 density
    maps; tiled inference holds one tile plus its margin."""
    side = 4096
    path = tmp_path / "wide.tif"
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs=UTM,
                       nodata=0, transform=Affine(3, 0, X0, 0, -3, Y0), tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", SPARSE_OK=True) as ds:
        ds.write(np.full((3, 256, 256), 90, np.uint8), window=Window(2048, 2048, 256, 256))
    model = DensityModel(_ConstantNet(0.001), DensityConfig())
    tracemalloc.start()
    try:
        res = density_scene(path, model, tmp_path / "out", None, DensityRunConfig(show_progress=False))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.count("all", "truck") == pytest.approx(0.001 * 256 * 256, rel=1e-4)  # valid pixels only
    assert peak < 40e6, peak


def test_nothing_already_written_is_lost(tmp_path, capsys, density_weights) -> None:
    """A failed rerun into a folder of earlier results leaves them byte for byte, and no temporary files."""
    out = tmp_path / "out"
    scene = coarse_scene(tmp_path / "good.tif")
    z = zones_file(tmp_path / "z.geojson", [Zone("lot", "lot", box(X0, Y0 - 60, X0 + 60, Y0))])
    code, _, err = cli(capsys, "density", scene, "--zones", z, "--out", out, "--weights", density_weights)
    assert code == 0, err
    before = snapshot(out)
    assert {"density.tif", "counts.csv", "counts.json"} <= set(before)
    bad_zones = tmp_path / "far.geojson"
    zones_file(bad_zones, [Zone("far", "lot", box(0, 0, 10, 10))])
    for args in ([_truncated(tmp_path / "t.tif")], [scene, "--zones", bad_zones],
                 [coarse_scene(tmp_path / "fine.tif", gsd=0.5)]):
        code, _, _ = cli(capsys, "density", *args, "--out", out, "--weights", density_weights)
        assert code == 2
        assert snapshot(out) == before


# -- zones ------------------------------------------------------------------------------------------
def test_zones_that_miss_the_scene(tmp_path, capsys, density_weights) -> None:
    scene = coarse_scene(tmp_path / "s.tif")
    far = zones_file(tmp_path / "far.geojson", [Zone("far", "lot", box(X0 + 5000, Y0, X0 + 5100, Y0 + 100))])
    assert_one_line_error(cli(capsys, "density", scene, "--zones", far, "--out", tmp_path / "o", "--weights",
                              density_weights), far, "no zone overlaps the scene s.tif")
    some = zones_file(tmp_path / "some.geojson", [Zone("lot", "lot", box(X0, Y0 - 60, X0 + 60, Y0)),
                                                  Zone("far", "lot", box(X0 + 5000, Y0, X0 + 5100, Y0 + 100))])
    code, _, err = cli(capsys, "density", scene, "--zones", some, "--out", tmp_path / "o", "--weights",
                       density_weights)
    assert code == 0 and "far" in err and "not imaged" in err.replace("\n", " ")


def test_zones_in_another_crs_give_the_same_counts(tmp_path, capsys, density_weights) -> None:
    scene = coarse_scene(tmp_path / "s.tif")
    lot = box(X0 + 10, Y0 - 90, X0 + 100, Y0 - 10)
    utm = zones_file(tmp_path / "utm.geojson", [Zone("lot", "lot", lot)])
    write_geojson(tmp_path / "w.geojson", [(lot, {"name": "lot", "kind": "lot"})], UTM, wgs84_copy=True)
    wgs84 = tmp_path / "w_4326.geojson"
    counts = []
    for z in (utm, wgs84):
        code, _, err = cli(capsys, "density", scene, "--zones", z, "--out", tmp_path / z.stem, "--weights",
                           density_weights)
        assert code == 0, err
        counts.append(json.loads((tmp_path / z.stem / "counts.json").read_text())["counts"])
    assert [r["count"] for r in counts[0]] == pytest.approx([r["count"] for r in counts[1]], rel=1e-3)


def test_projected_zones_without_a_crs_member(tmp_path, capsys, density_weights) -> None:
    """UTM numbers in a file without 'crs' are read as lon/lat (RFC 7946) and cannot be placed: say so."""
    scene = coarse_scene(tmp_path / "s.tif")
    z = tmp_path / "nocrs.geojson"
    write_geojson(z, [(box(X0, Y0 - 60, X0 + 60, Y0), {"name": "lot", "kind": "lot"})], None)
    assert_one_line_error(cli(capsys, "density", scene, "--zones", z, "--out", tmp_path / "o", "--weights",
                              density_weights), z, "are not longitude/latitude", "add a 'crs' member")


def test_zone_with_unknown_class(tmp_path, capsys, density_weights) -> None:
    scene = coarse_scene(tmp_path / "s.tif")
    z = zones_file(tmp_path / "z.geojson", [Zone("lot", "lot", box(X0, Y0 - 60, X0 + 60, Y0), ("truck", "bus"))])
    assert_one_line_error(cli(capsys, "density", scene, "--zones", z, "--out", tmp_path / "o", "--weights",
                              density_weights), z, "unknown class 'bus'")


# -- labels -----------------------------------------------------------------------------------------
def _coco(images: list[dict], annotations: list[dict], categories: list[dict] | None = None) -> dict:
    return {"images": images, "annotations": annotations,
            "categories": categories or [{"id": 1, "name": "truck"}, {"id": 2, "name": "car"}]}


IMG = {"id": 1, "file_name": "a.png", "width": 100, "height": 80}
ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 8]}


def test_labels_malformed_json_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "c.json"
    bad.write_text('{"images": [1, 2,')
    assert_one_line_error(cli(capsys, "convert", bad, "--from", "coco", "--to", "dota", "--out", tmp_path / "o"),
                          bad, "JSON")


def test_coco_labels_without_image_and_image_without_labels(tmp_path, capsys) -> None:
    src = tmp_path / "c.json"
    src.write_text(json.dumps(_coco([IMG], [ANN, {**ANN, "id": 2, "image_id": 7}])))
    line = assert_one_line_error(cli(capsys, "convert", src, "--from", "coco", "--to", "dota", "--out",
                                     tmp_path / "o"), src, "image_id 7 is not among")
    assert "annotations[1]" in line
    empty_image = {**IMG, "id": 2, "file_name": "b.png"}  # an image with no objects is a valid negative
    src.write_text(json.dumps(_coco([IMG, empty_image], [ANN])))
    code, _, err = cli(capsys, "convert", src, "--from", "coco", "--to", "dota", "--out", tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "b.txt").read_text() == "" and (tmp_path / "o" / "a.txt").read_text().strip()


def test_unknown_classes_are_dropped_and_reported(tmp_path, capsys) -> None:
    src = tmp_path / "c.json"
    src.write_text(json.dumps(_coco([IMG], [ANN, {**ANN, "id": 2, "category_id": 2}])))
    code, _, err = cli(capsys, "convert", src, "--from", "coco", "--to", "coco", "--out", tmp_path / "o.json")
    assert code == 0 and "dropped 1 unmapped (car: 1)" in err
    # In YOLO a class id beyond the names list is a broken file, not an unmapped class.
    root = tmp_path / "yolo"
    Image.new("L", (50, 40)).save(_mk(root / "images" / "train" / "a.png"))
    _mk(root / "labels" / "train" / "a.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["truck", "ship"]}))
    assert_one_line_error(cli(capsys, "convert", root, "--from", "yolo", "--to", "coco", "--out",
                              tmp_path / "y.json"), "a.txt", "a.txt:1")


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_yolo_labels_without_images_through_the_cli(tmp_path, capsys) -> None:
    root = tmp_path / "yolo"
    Image.new("L", (50, 40)).save(_mk(root / "images" / "train" / "a.png"))
    Image.new("L", (50, 40)).save(root / "images" / "train" / "unlabelled.png")
    _mk(root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["truck"]}))
    assert_one_line_error(cli(capsys, "convert", root, "--from", "yolo", "--to", "coco", "--out",
                              tmp_path / "y.json"), "ghost.txt", "no image")
    code, _, err = cli(capsys, "convert", root, "--from", "yolo", "--to", "coco", "--out", tmp_path / "y.json",
                       "--lenient")
    assert code == 0 and "skipped" in err
    images = {im["file_name"] for im in json.loads((tmp_path / "y.json").read_text())["images"]}
    assert images == {"images/train/a.png", "images/train/unlabelled.png"}  # YOLO: no label file = no objects


def test_dota_images_without_labels_are_left_out_with_a_warning(tmp_path, caplog) -> None:
    labels = _mk(tmp_path / "labelTxt" / "P1.txt")
    labels.write_text("gsd:0.5\n1 1 20 1 20 5 1 5 large-vehicle 0\n")
    images = tmp_path / "images"
    for stem in ("P1", "P2", "P3"):
        Image.new("L", (50, 40)).save(_mk(images / f"{stem}.png"))
    with caplog.at_level("WARNING"):
        ls = read_dota(labels.parent, image_dir=images)
    assert [im.file_name for im in ls] == ["P1.png"]
    assert "2 image(s)" in caplog.text and "P2.png" in caplog.text and "no label file" in caplog.text


def test_xview_labels_without_images_and_images_without_labels(tmp_path) -> None:
    feats = [{"type": "Feature", "geometry": None,
              "properties": {"bounds_imcoords": "10,10,30,20", "type_id": 23, "image_id": name}}
             for name in ("1.tif", "2.tif")]
    src = tmp_path / "xview.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    images = tmp_path / "images"
    Image.new("L", (60, 40)).save(_mk(images / "1.tif"))
    Image.new("L", (60, 40)).save(images / "3.tif")  # no features: xView cannot say "no objects"
    with pytest.raises(LabelFormatError, match=r"xview.geojson: no image 2.tif in .*\(1 features\)"):
        read_xview(src, image_dir=images)
    ls = read_xview(src, image_dir=images, lenient=True)
    assert [im.file_name for im in ls] == ["1.tif"] and len(ls.skipped) == 1


# -- weights ----------------------------------------------------------------------------------------
def test_density_weights_that_are_not_weights(tmp_path, capsys, density_weights) -> None:
    scene = coarse_scene(tmp_path / "s.tif")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    junk.with_suffix(".json").write_text(density_weights.with_suffix(".json").read_text())
    run = ("density", scene, "--out", tmp_path / "o", "--weights")
    assert_one_line_error(cli(capsys, *run, junk), junk, "not a safetensors file")

    good = json.loads(density_weights.with_suffix(".json").read_text())
    w = tmp_path / "w.safetensors"
    w.write_bytes(density_weights.read_bytes())
    cfg = w.with_suffix(".json")
    for doc, fragment in [
        ({"hello": "world"}, "not a freightwatch density model config"),
        ({**good, "arch": {**good["arch"], "decoder": [8, 8, 8]}}, "do not match"),  # shapes differ
        ({**good, "classes": ["car", "bus", "truck"]}, "unknown car, bus"),          # other classes
    ]:
        cfg.write_text(json.dumps(doc))
        assert_one_line_error(cli(capsys, *run, w), cfg if "config" in fragment or "unknown" in fragment else w,
                              fragment)
    cfg.write_text("{not json")
    assert_one_line_error(cli(capsys, *run, w), cfg, "cannot read density model config")


def test_detector_weights_that_are_not_weights(tmp_path, capsys, detector_weights, density_weights) -> None:
    scene = coarse_scene(tmp_path / "s.tif", gsd=0.5)
    run = ("detect", scene, "--out", tmp_path / "o", "--weights")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_one_line_error(cli(capsys, *run, junk), junk, "not a safetensors file")
    pt = tmp_path / "junk.pt"
    pt.write_bytes(b"not a pickle")
    assert_one_line_error(cli(capsys, *run, pt), pt, "not an ultralytics checkpoint")
    other = tmp_path / "other.bin"
    other.write_bytes(b"x")
    assert_one_line_error(cli(capsys, *run, other), other, "unknown weights type")

    w = tmp_path / "det.safetensors"
    w.write_bytes(detector_weights.read_bytes())
    card = w.with_suffix(".json")
    assert_one_line_error(cli(capsys, *run, w), card, "model card (.json next to the weights) does not exist")
    good = json.loads(detector_weights.with_suffix(".json").read_text())
    for doc, fragment in [
        ({"hello": "world"}, "not a freightwatch detector card"),
        (json.loads(density_weights.with_suffix(".json").read_text()), "density model's config"),
        ({**good, "classes": ["car", "bus", "person"]}, "include none of truck, railcar, boat"),  # other classes
        ({**good, "model_yaml": {"nc": 3}}, "not a YOLO detection architecture"),
        ({**good, "classes": "truck"}, "'classes' must be a non-empty list"),
    ]:
        card.write_text(json.dumps(doc))
        assert_one_line_error(cli(capsys, *run, w), card, fragment)
    # A card for five classes on weights for three: the shapes do not match.
    card.write_text(json.dumps({**good, "classes": ["truck", "railcar", "boat", "a", "b"],
                                "model_yaml": {**good["model_yaml"], "nc": 5}}))
    assert_one_line_error(cli(capsys, *run, w), w, "do not match the architecture")


def test_card_naming_a_pt_architecture_never_downloads(tmp_path, capsys, detector_weights, monkeypatch) -> None:
    """ultralytics fetches unknown ``*.pt`` names from GitHub; the card's ``arch`` must never reach it."""
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    w = tmp_path / "det.safetensors"
    w.write_bytes(detector_weights.read_bytes())
    good = json.loads(detector_weights.with_suffix(".json").read_text())
    w.with_suffix(".json").write_text(json.dumps({**good, "arch": "yolo11x.pt"}))
    code, _, err = cli(capsys, "detect", coarse_scene(tmp_path / "s.tif", gsd=0.5), "--out", tmp_path / "o",
                       "--weights", w)
    assert code == 0, err


def test_missing_bundled_detector_is_a_clear_error(tmp_path, capsys, monkeypatch) -> None:
    from freightwatch.models import detector as detmod

    missing = tmp_path / "weights" / "detector.safetensors"  # as if the bundled file were not installed
    monkeypatch.setattr(detmod, "bundled_detector", lambda: missing)
    scene = coarse_scene(tmp_path / "s.tif", gsd=0.5)
    assert_one_line_error(cli(capsys, "detect", scene, "--out", tmp_path / "o"), missing,
                          "weights file does not exist", "make weights")


# -- batch runs: problems that stop a run before any scene (scene problems are in test_batch) ------
def test_batch_site_catalog_and_weights_problems(tmp_path, capsys, density_weights, monkeypatch) -> None:
    cat = tmp_path / "cat"
    cat.mkdir()
    coarse_scene(cat / "s_20160213.tif")
    zones_file(tmp_path / "zones.geojson", [Zone("lot", "lot", box(X0, Y0 - 60, X0 + 60, Y0))])
    site = tmp_path / "site.yaml"
    site.write_text("name: x\ncountries: [CN, XX]\ntimezone: Asia/Shanghai\nzones: zones.geojson\n")
    run = ("batch", cat, "--site", site, "--out", tmp_path / "out", "--density-weights", density_weights)
    assert_one_line_error(cli(capsys, *run), site, "XX")
    site.write_text("name: x\ncountries: [CN]\ntimezone: Asia/Shanghai\nzones: zones.geojson\n")
    missing = tmp_path / "nowhere"
    assert_one_line_error(cli(capsys, "batch", missing, "--site", site, "--out", tmp_path / "out"), missing,
                          "does not exist")
    code, _, err = cli(capsys, *run)
    assert code == 0, err
    # a 0.5 m scene needs the detector: without any detector weights, a clear error up front
    from freightwatch.models import detector as detmod

    monkeypatch.setattr(detmod, "bundled_detector", lambda: tmp_path / "no_detector.safetensors")
    coarse_scene(cat / "fine_20160214.tif", gsd=0.5)
    assert_one_line_error(cli(capsys, *run), tmp_path / "no_detector.safetensors", "--weights", "--method density")
