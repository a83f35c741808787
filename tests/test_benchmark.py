"""Benchmark metrics against hand-computed cases, the metrics.json schema, label formats and bad input.

A stand-in detector that finds saturated rectangles makes every expected figure computable by
hand: painted and labelled rectangles are hits, a labelled but unpainted object is a miss, a
painted but unlabelled rectangle a false detection (scored 0.6 where hits score 0.9).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from affine import Affine
from shapely.geometry import box

from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.formats import write_labels
from freightwatch.datasets.geo import Zone, write_geotiff, write_zones
from freightwatch.evaluation.benchmark import COUNT_METHODS, METRICS_KEYS, BenchmarkConfig, Models, run_benchmark
from freightwatch.evaluation.counting import COUNT_KEYS, count_metrics, count_table, within_tolerance
from freightwatch.evaluation.detection import BoxSet, best_f1, f1_at, match_image, pr_curve
from freightwatch.evaluation.samples import load_dataset
from freightwatch.models.detector import DetectorCard
from freightwatch.taxonomy import ClassMapping

CRS = "EPSG:32651"
ORIGIN = (447000.0, 4442000.0)


class BrightBoxDetector:
    """Stands in for the YOLO detector: red rectangles are trucks, blue ones boats.

    Score 0.9 for fully saturated rectangles (value > 240), 0.6 for dimmer ones.
    """

    def __init__(self, gsd: float = 0.5, imgsz: int = 256) -> None:
        self.card = DetectorCard(gsd=gsd, imgsz=imgsz, arch="bright-box")
        self.inputs: list[tuple[int, int]] = []

    def predict(self, images, conf=0.25, iou=0.5, imgsz=None, max_det=2000, device=None):
        out = []
        for im in images:
            self.inputs.append(im.shape[:2])
            anns = []
            for ch, cls in ((0, "truck"), (2, "boat")):
                mask = ((im[..., ch] > 200) & (im[..., 1] < 100)).astype(np.uint8)
                _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
                for x, y, w, h, _area in stats[1:]:
                    score = 0.9 if im[y:y + h, x:x + w, ch].mean() > 240 else 0.6
                    if score >= conf:
                        anns.append(Annotation.from_bbox(cls, (x, y, x + w, y + h), score=score))
            out.append(anns)
        return out


def _paint(arr: np.ndarray, box: tuple[int, int, int, int], cls: str, value: int = 255) -> None:
    x0, y0, x1, y1 = box
    ch = 0 if cls == "truck" else 2
    arr[:, y0:y1, x0:x1] = 0
    arr[ch, y0:y1, x0:x1] = value


def _scene(folder: Path, name: str, painted, labelled, gsd: float = 0.5, size: int = 128, seed: int = 0) -> ImageLabels:
    """Write ``folder/name`` (GeoTIFF, dark noise plus painted rectangles) and return its labels."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 90, (3, size, size)).astype(np.uint8)
    for cls, xyxy, value in painted:
        _paint(arr, xyxy, cls, value)
    transform = Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1])
    write_geotiff(folder / name, arr, CRS, transform, photometric_rgb=True)
    anns = [Annotation.from_bbox(cls, box) for cls, box in labelled]
    return ImageLabels(name, size, size, anns, gsd=gsd, crs=CRS, transform=transform)


# Image a: two trucks and a boat, all found. Image b: one truck found, one not painted (missed),
# and a dim unlabelled rectangle (a false truck at score 0.6).
A_OBJECTS = [("truck", (10, 10, 42, 16)), ("truck", (60, 70, 92, 76)), ("boat", (20, 90, 50, 104))]
B_OBJECTS = [("truck", (8, 20, 40, 26)), ("truck", (40, 100, 72, 106))]
B_FALSE = ("truck", (80, 60, 112, 66), 225)


def _dataset(root: Path, perfect: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    labels = [_scene(root, "a.tif", [(c, b, 255) for c, b in A_OBJECTS], A_OBJECTS)]
    if not perfect:
        labels.append(_scene(root, "b.tif", [(c, b, 255) for c, b in B_OBJECTS[:1]] + [B_FALSE], B_OBJECTS, seed=1))
    write_labels(labels, root / "labels.json", "coco")
    return root / "labels.json"


def _models(tmp_path: Path, gsd: float = 0.5, imgsz: int = 256) -> Models:
    weights = tmp_path / "bright-box.bin"
    weights.write_bytes(b"stand-in detector")
    return Models(detector=BrightBoxDetector(gsd, imgsz), detector_path=weights)


def _run(tmp_path: Path, data: Path, fmt: str = "coco", cfg: BenchmarkConfig | None = None, **kw):
    ds = load_dataset(data, fmt, **kw)
    return run_benchmark(ds, tmp_path / "out", _models(tmp_path), cfg or BenchmarkConfig(examples=2,
                                                                                           show_progress=False))


# -- counting metrics ------------------------------------------------------------------------------
def test_count_metrics_by_hand():
    m = count_metrics([10, 0, 4], [12, 0.4, 3], lower=[9, 0, 4], upper=[9.5, 1, 6])
    assert set(m) == set(COUNT_KEYS) and m["n"] == 3
    assert m["mae"] == pytest.approx((2 + 0.4 + 1) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 0.16 + 1) / 3))
    assert m["rel_mae"] == pytest.approx(3.4 / 14)
    assert m["bias"] == pytest.approx((2 + 0.4 - 1) / 3)
    # 12 vs 10 is 20 % off; 0.4 vs 0 rounds to the truth; 3 vs 4 is a whole object off a small count
    assert m["within_10pct"] == pytest.approx(1 / 3)
    # 10 lies above [9, 9.5]; 0 in [0, 1]; 4 in [4, 6]
    assert m["coverage"] == pytest.approx(2 / 3) and m["mean_interval_width"] == pytest.approx(3.5 / 3)


def test_within_tolerance_edges():
    assert within_tolerance(np.array([0, 0, 20, 20, 4]), np.array([0.49, 0.51, 22, 22.5, 4.5])).tolist() == [
        True, False, True, False, True]


def test_count_metrics_without_units_or_objects():
    assert count_metrics([], [])["mae"] is None
    m = count_metrics([0, 0], [1, 0])
    assert m["rel_mae"] is None and m["mae"] == 0.5 and m["coverage"] is None


def test_count_table_pools_classes_and_skips_missing_predictions():
    rows = pd.DataFrame({"class": ["truck", "boat", "truck"], "true": [4, 1, 2], "det": [4, 0, np.nan]})
    t = count_table(rows, ["det"], ["truck", "boat"])
    assert t["det"]["truck"]["n"] == 1 and t["det"]["all"]["n"] == 2 and t["det"]["all"]["mae"] == 0.5


# -- matching, PR, F1 -------------------------------------------------------------------------------
def test_matching_pr_and_best_f1_by_hand():
    gt = BoxSet(np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10.0]]), np.zeros(3))
    pred = BoxSet(np.array([[0, 0, 10, 10], [100, 0, 110, 10], [20, 0, 30, 11], [0, 0, 10, 10.0]]),
                  np.zeros(4), np.array([0.9, 0.8, 0.7, 0.3]))
    m = match_image(gt, pred)
    # the 0.3 duplicate of the first object finds it taken: a false detection
    assert m.pred_tp.tolist() == [True, False, True, False]
    assert m.gt_score.tolist() == [0.9, 0.7, 0.0]
    assert m.counts_at(pred, gt, 0, 0.75) == (1, 1, 2)
    curve = pr_curve(pred.scores, m.pred_tp, 3)
    assert curve.precision.tolist() == pytest.approx([1, 0.5, 2 / 3, 0.5])
    assert curve.recall.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert best_f1(curve) == pytest.approx(0.7)  # F1 2/3 there, 1/2 at 0.9
    assert f1_at(pred.scores, m.pred_tp, 3, 0.7)["f1"] == pytest.approx(2 / 3)


def test_pr_curve_keeps_ties_together():
    curve = pr_curve(np.array([0.5, 0.5, 0.5]), np.array([True, False, True]), 2)
    assert curve.thresholds.tolist() == [0.5] and curve.precision.tolist() == pytest.approx([2 / 3])


# -- the pipeline, hand-computed ------------------------------------------------------------------
def test_perfect_predictions_give_ap_one_and_zero_count_error(tmp_path):
    res = _run(tmp_path, _dataset(tmp_path / "data", perfect=True))
    det = res.metrics["detection"]
    assert det["coco"]["overall"]["AP"] == pytest.approx(1.0)
    assert det["coco"]["truck"]["AP50"] == pytest.approx(1.0) and det["coco"]["boat"]["AR"] == pytest.approx(1.0)
    assert det["coco"]["railcar"]["AP"] is None  # no ground truth: NaN -> null
    for method in ("detector_best_f1", "detector_conf"):
        for cls in ("truck", "boat", "all"):
            m = res.metrics["counting"]["per_image"][method][cls]
            assert m["mae"] == 0 and m["bias"] == 0 and m["within_10pct"] == 1.0


def test_known_misses_and_false_detections_give_known_values(tmp_path):
    res = _run(tmp_path, _dataset(tmp_path / "data"))
    det = res.metrics["detection"]
    truck = det["coco"]["truck"]
    # 3 hits at 0.9 (recall 3/4 at precision 1), then the false one at 0.6: 101-point AP = 76/101
    assert truck["AP50"] == pytest.approx(76 / 101) and truck["AP"] == pytest.approx(76 / 101)
    assert truck["AR"] == pytest.approx(3 / 4) and truck["n_gt"] == 4
    assert det["coco"]["boat"]["AP"] == pytest.approx(1.0)
    pr = det["pr"]["truck"]
    assert det["thresholds"]["truck"] == pytest.approx(0.9)  # F1 6/7 there, 3/4 at 0.6
    assert (pr["best_f1"]["tp"], pr["best_f1"]["fp"], pr["best_f1"]["fn"]) == (3, 0, 1)
    assert pr["best_f1"]["f1"] == pytest.approx(6 / 7)
    assert pr["at_conf"]["precision"] == pytest.approx(3 / 4) and pr["at_conf"]["recall"] == pytest.approx(3 / 4)
    best = res.metrics["counting"]["per_image"]["detector_best_f1"]["truck"]
    # image a: 2 of 2; image b: 1 of 2 at the best-F1 threshold
    assert best["mae"] == pytest.approx(0.5) and best["bias"] == pytest.approx(-0.5)
    assert best["rmse"] == pytest.approx(math.sqrt(0.5)) and best["rel_mae"] == pytest.approx(1 / 4)
    assert best["within_10pct"] == pytest.approx(0.5) and best["pred_total"] == 3
    # at the user threshold the false truck makes up for the missed one: right count, wrong reasons
    assert res.metrics["counting"]["per_image"]["detector_conf"]["truck"]["mae"] == 0
    ex = res.metrics["examples"][0]
    assert ex["image"] == "b.tif" and (ex["tp"], ex["fp"], ex["fn"]) == (1, 0, 1)
    assert (tmp_path / "out" / ex["file"]).is_file()
    per_image = pd.read_csv(tmp_path / "out" / "counts_per_image.csv")
    b = per_image[(per_image["image"] == "b.tif") & (per_image["class"] == "truck")].iloc[0]
    assert (b["true"], b["detector_best_f1"], b["detector_conf"]) == (2, 1, 2)


def test_user_thresholds_default_to_the_cards_counting_thresholds(tmp_path):
    """Without --conf, counts at the user threshold are those `freightwatch detect` would give."""
    data = _dataset(tmp_path / "data")
    ds = load_dataset(data, "coco")
    models = _models(tmp_path)
    models.detector.card.count_conf = {"truck": 0.7}  # calibrated: above the false truck's 0.6
    res = run_benchmark(ds, tmp_path / "card", models, BenchmarkConfig(examples=0, show_progress=False))
    det = res.metrics["detection"]
    assert det["user_thresholds"] == {"truck": 0.7, "railcar": 0.25, "boat": 0.25}
    assert det["pr"]["truck"]["at_conf"]["threshold"] == pytest.approx(0.7)
    per_image = pd.read_csv(tmp_path / "card" / "counts_per_image.csv")
    b = per_image[(per_image["image"] == "b.tif") & (per_image["class"] == "truck")].iloc[0]
    assert b["detector_conf"] == 1  # the false truck is below the card's threshold
    # --conf still sets one threshold for every class
    res = run_benchmark(ds, tmp_path / "conf", models, BenchmarkConfig(conf=0.25, examples=0, show_progress=False))
    assert res.metrics["detection"]["user_thresholds"] == dict.fromkeys(("truck", "railcar", "boat"), 0.25)
    per_image = pd.read_csv(tmp_path / "conf" / "counts_per_image.csv")
    b = per_image[(per_image["image"] == "b.tif") & (per_image["class"] == "truck")].iloc[0]
    assert b["detector_conf"] == 2


def test_counts_per_zone(tmp_path):
    data = _dataset(tmp_path / "data")
    # the west half of each image (x < 32 m) holds a's first truck and its boat, and both of b's trucks
    left = Zone("west", "lot", box(ORIGIN[0], ORIGIN[1] - 64, ORIGIN[0] + 32, ORIGIN[1]))
    write_zones(tmp_path / "zones.geojson", [left], CRS)
    res = _run(tmp_path, data, zones=tmp_path / "zones.geojson")
    zone = res.metrics["counting"]["per_zone"]["detector_best_f1"]
    assert zone["truck"]["true_total"] == 3 and zone["boat"]["true_total"] == 1
    # b's second truck (centre x 56 px = 28 m) was never painted: the west zone misses one truck
    assert zone["truck"]["pred_total"] == 2
    assert (tmp_path / "out" / "count_scatter_zones.png").is_file()


def test_scenes_too_large_to_hold_are_streamed_with_the_same_results(tmp_path):
    from freightwatch.models.density import DensityModel, bundled_density

    if not bundled_density().is_file():
        pytest.skip("bundled density weights absent")
    data = _dataset(tmp_path / "data")
    models = _models(tmp_path)
    models.density, models.density_path = DensityModel.load(), bundled_density()
    ds = load_dataset(data, "coco")
    held = run_benchmark(ds, tmp_path / "held", models, BenchmarkConfig(examples=1, show_progress=False))
    streamed = run_benchmark(ds, tmp_path / "streamed", models,
                             BenchmarkConfig(examples=1, show_progress=False, max_pixels=1000))
    assert streamed.metrics["detection"]["coco"] == held.metrics["detection"]["coco"]
    for m in ("detector_best_f1", "detector_conf"):
        assert streamed.metrics["counting"]["per_image"][m] == held.metrics["counting"]["per_image"][m]
    # degrade_scene keeps whole 3 m pixels (126 of 128 px) and draws other noise: close, not equal
    dens = streamed.metrics["counting"]["per_image"]["density"]["all"]
    assert dens["n"] == 6 and dens["pred_total"] > 0 and streamed.metrics["density"]["modes"] == {"degraded": 2}


def test_images_are_resampled_to_the_detector_gsd_and_padded_not_scaled(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # a 1 m image: the stand-in detector trained at 0.5 m must see it at 2x, 256 px padded to 256
    lab = _scene(data, "a.tif", [("truck", (10, 10, 42, 16), 255)], [("truck", (10, 10, 42, 16))], gsd=1.0, size=100)
    write_labels([lab], data / "labels.json", "coco")
    models = _models(tmp_path)
    res = run_benchmark(load_dataset(data / "labels.json", "coco"), tmp_path / "out", models,
                        BenchmarkConfig(examples=0, show_progress=False))
    assert models.detector.inputs == [(224, 224)]  # 200 px resampled, padded to a multiple of 32
    assert res.metrics["detection"]["coco"]["truck"]["AP50"] == pytest.approx(1.0)


# -- schema ---------------------------------------------------------------------------------------
REQUIRED = {
    "data": {"path", "format", "mapping", "images", "images_evaluated", "images_left_out", "left_out", "objects",
             "dropped_unmapped", "skipped_records", "gsd_m", "gsd_source", "width_px", "height_px",
             "images_with_zones", "zones"},
    "detection": {"coco", "pr", "thresholds", "user_thresholds", "iou_match", "min_score", "max_dets",
                  "size_buckets_px2"},
    "counting": {"methods", "per_image", "per_zone", "per_zone_note"},
    "models": {"detector", "density"},
    "versions": {"freightwatch", "python", "platform", "numpy", "pycocotools"},
    "settings": {"conf", "iou", "min_score", "gsd", "density_gsd", "coverage", "sweep", "tolerance", "count_methods"},
}
COCO_KEYS = {"AP", "AP50", "AP75", "AR", "n_gt", "AP_tiny", "AP_small", "AP_medium", "AP_large", "AR_tiny",
             "AR_small", "AR_medium", "AR_large"}


def test_metrics_json_schema_is_stable(tmp_path):
    _run(tmp_path, _dataset(tmp_path / "data"))
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert tuple(m) == METRICS_KEYS
    assert m["schema"] == "freightwatch-benchmark/1"
    for key, sub in REQUIRED.items():
        assert sub <= set(m[key]), (key, sub - set(m[key]))
    for cls in ("overall", "truck", "railcar", "boat"):
        assert set(m["detection"]["coco"][cls]) == COCO_KEYS
    assert m["detection"]["size_buckets_px2"] == {"tiny": [0, 256], "small": [256, 2304], "medium": [2304, 16384],
                                                  "large": [16384, 1e10]}
    assert set(m["detection"]["pr"]["truck"]) == {"n_gt", "n_det", "best_f1", "at_conf", "note"}
    assert set(m["detection"]["pr"]["truck"]["best_f1"]) == {"threshold", "precision", "recall", "f1", "tp", "fp",
                                                             "fn"}
    assert m["counting"]["methods"] == ["detector_best_f1", "detector_conf"]
    assert set(COUNT_METHODS) >= set(m["counting"]["per_image"])
    for per in m["counting"]["per_image"].values():
        assert set(per) == {"truck", "railcar", "boat", "all"}
        assert all(set(v) == set(COUNT_KEYS) for v in per.values())
    assert set(m["models"]["detector"]) == {"weights", "sha256", "card"} and m["models"]["density"] is None
    assert m["sweep"] is None and m["density"] is None
    for name in ("report", "metrics", "pr_curves", "count_scatter", "examples", "counts_per_image"):
        assert (tmp_path / "out" / m["files"][name]).is_file(), name
    text = (tmp_path / "out" / "report.md").read_text()
    for heading in ("## Data", "## Detection", "## Counting", "### Per image", "## Examples", "## Versions"):
        assert heading in text
    assert "tiny < 16^2 px²" in text  # the size buckets are stated


# -- formats and bad input ------------------------------------------------------------------------
def test_dota_layout_with_builtin_mapping(tmp_path):
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    lab = _scene(root / "images", "P0001.tif", [(c, b, 255) for c, b in A_OBJECTS], A_OBJECTS)
    write_labels([lab], root / "labelTxt", "dota")  # truck -> large-vehicle, boat -> ship
    # PNG images and no GSD in the files: --gsd says it
    rgb = cv2.imread(str(root / "images" / "P0001.tif"))
    cv2.imwrite(str(root / "images" / "P0001.png"), rgb)
    (root / "images" / "P0001.tif").unlink()
    lines = [ln for ln in (root / "labelTxt" / "P0001.txt").read_text().splitlines() if not ln.startswith("gsd")]
    (root / "labelTxt" / "P0001.txt").write_text("\n".join(lines + ["1 1 5 1 5 5 1 5 plane 0"]) + "\n")
    ds = load_dataset(root, "dota", mapping=ClassMapping.dota())
    assert len(ds.samples) == 1 and ds.dropped == {"plane": 1}
    res = run_benchmark(ds, tmp_path / "out", _models(tmp_path),
                        BenchmarkConfig(gsd=0.5, examples=0, show_progress=False))
    assert res.metrics["data"]["gsd_source"] == {"option": 1}
    assert res.metrics["detection"]["coco"]["overall"]["AP50"] == pytest.approx(1.0)


def test_xview_geojson_with_train_images_beside_it(tmp_path):
    root = tmp_path / "xview"
    (root / "train_images").mkdir(parents=True)
    lab = _scene(root / "train_images", "104.tif", [(c, b, 255) for c, b in A_OBJECTS], A_OBJECTS)
    write_labels([lab], root / "xView_train.geojson", "xview")
    res = _run(tmp_path, root / "xView_train.geojson", "xview", mapping=ClassMapping.xview())
    assert res.metrics["data"]["gsd_source"] == {"file": 1}  # a GeoTIFF: the GSD comes from its CRS
    assert res.metrics["data"]["objects"] == {"truck": 2, "railcar": 0, "boat": 1}
    assert res.metrics["detection"]["coco"]["overall"]["AP"] == pytest.approx(1.0)


def test_yolo_and_chip_layouts_find_their_images(tmp_path):
    from freightwatch.datasets.chips import ChipConfig, export_chips

    data = tmp_path / "scene"
    data.mkdir()
    lab = _scene(data, "scene.tif", [(c, b, 255) for c, b in A_OBJECTS], A_OBJECTS)
    lab.scene_id = "s"
    export_chips([(data / "scene.tif", lab)], tmp_path / "chips",
                 ChipConfig(size=64, overlap=0, keep_empty=1.0, fractions=(1, 0, 0)))
    coco = load_dataset(tmp_path / "chips" / "annotations" / "train.json", "coco")
    yolo = load_dataset(tmp_path / "chips", "yolo")
    assert len(coco.samples) == len(yolo.samples) == 4 and not coco.missing
    assert {s.image for s in coco.samples} == {s.image for s in yolo.samples}


def test_a_bad_image_is_left_out_and_the_rest_evaluated(tmp_path):
    data = _dataset(tmp_path / "data")
    (tmp_path / "data" / "b.tif").write_bytes(b"II*\x00truncated")
    res = _run(tmp_path, data)
    d = res.metrics["data"]
    assert d["images_evaluated"] == 1 and d["images_left_out"] == 1 and d["left_out"][0]["image"] == "b.tif"
    assert res.metrics["detection"]["coco"]["truck"]["AP50"] == pytest.approx(1.0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "freightwatch", "benchmark", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("case", ["missing", "format", "mapping"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    data = _dataset(tmp_path / "data")
    args = {"missing": ["--data", str(tmp_path / "nope.json"), "--format", "coco"],
            "format": ["--data", str(data), "--format", "pascal"],
            "mapping": ["--data", str(data), "--format", "coco", "--mapping", "no-such-mapping"]}[case]
    res = _cli(*args, "--out", str(tmp_path / "out"), "--no-detector")
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert {"missing": "nope.json", "format": "pascal", "mapping": "no-such-mapping"}[case] in lines[0]


def test_copying_a_dataset_keeps_paths_relative(tmp_path):
    data = _dataset(tmp_path / "data")
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    ds = load_dataset(tmp_path / "moved" / data.name, "coco")
    assert all(s.image.parent == tmp_path / "moved" for s in ds.samples)
