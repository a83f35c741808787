"""Counting thresholds of the bundled-detector recipe, on constructed detections."""

from pathlib import Path

from affine import Affine
from shapely.geometry import box

from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.geo import Zone
from freightwatch.models.detector import DetectorCard
from freightwatch.training import recipes

T = Affine(1, 0, 0, 0, -1, 100)


def _labels(objs):
    anns = [Annotation.from_bbox(c, (x, y, x + 4, y + 2), score=s) for c, x, y, s in objs]
    return ImageLabels("s.tif", 100, 100, anns, transform=T)


def test_calibrated_thresholds_minimise_zone_count_error(monkeypatch, tmp_path):
    zone = Zone("lot", "lot", box(0, 0, 100, 100))
    truth = _labels([("truck", 10 * k, 10, None) for k in range(6)] + [("boat", 10 * k, 50, None) for k in range(4)])
    # trucks: 6 true detections at 0.8 plus 3 false alarms at 0.4 -> any threshold in (0.4, 0.8] counts 6
    # boats: 4 true at 0.15 (a weak class) -> only a threshold <= 0.15 counts them
    pred = _labels([("truck", 10 * k, 10, 0.8) for k in range(6)] + [("truck", 10 * k, 80, 0.4) for k in range(3)]
                   + [("boat", 10 * k, 50, 0.15) for k in range(4)])
    runs = [(Path("site_a"), truth, [zone], pred)]

    class FakeDetector:
        card = DetectorCard()

    monkeypatch.setattr(recipes, "detect_sites", lambda det, sites: runs)
    monkeypatch.setattr("freightwatch.models.detector.Detector.load", staticmethod(lambda w: FakeDetector()))
    best = recipes.calibrate_count_thresholds(tmp_path / "w.safetensors", [Path("site_a")], write=False)
    assert 0.4 < best["truck"] <= 0.8
    assert best["boat"] <= 0.15
    rows = recipes._zone_errors(runs, best)
    assert {(r["class"], r["true"], r["pred"]) for r in rows} == {("truck", 6, 6), ("boat", 4, 4)}
    rows = recipes._zone_errors(runs, {"truck": 0.25, "boat": 0.25})  # a fixed threshold gets both wrong
    assert {(r["class"], r["pred"]) for r in rows} == {("truck", 9), ("boat", 0)}
    # a gain smaller than min_gain keeps the default threshold
    kept = recipes.calibrate_count_thresholds(tmp_path / "w.safetensors", [Path("site_a")], write=False, min_gain=1.01)
    assert kept == {"truck": 0.25, "railcar": 0.25, "boat": 0.25}


def test_recipe_seed_ranges_are_disjoint():
    ranges = [set(recipes.TRAIN_SEEDS), set(recipes.TEST_SEEDS), set(recipes.CALIB_SEEDS)]
    assert all(not (a & b) for i, a in enumerate(ranges) for b in ranges[i + 1:])


def test_precomputed_runs_skip_detection_and_give_the_same_thresholds(monkeypatch, tmp_path):
    zone = Zone("lot", "lot", box(0, 0, 100, 100))
    truth = _labels([("truck", 10 * k, 10, None) for k in range(6)])
    pred = _labels([("truck", 10 * k, 10, 0.8) for k in range(6)] + [("truck", 10 * k, 80, 0.4) for k in range(3)])
    runs = [(Path("site_a"), truth, [zone], pred)]

    class FakeDetector:
        card = DetectorCard()

    def no_detection(det, sites):
        raise AssertionError("sites detected again")

    monkeypatch.setattr(recipes, "detect_sites", no_detection)
    monkeypatch.setattr("freightwatch.models.detector.Detector.load", staticmethod(lambda w: FakeDetector()))
    best = recipes.calibrate_count_thresholds(tmp_path / "w.safetensors", [Path("site_a")], write=False, runs=runs)
    assert 0.4 < best["truck"] <= 0.8
    assert recipes.class_count_errors(runs, "truck", [0.25, 0.5, 0.9]) == {0.25: 3.0, 0.5: 0.0, 0.9: 6.0}


def test_calibrate_counting_picks_a_lower_iou_only_where_it_gains(monkeypatch, tmp_path):
    """Railcars: at IoU 0.5 a shadow box beside each true one survives NMS, at 0.4 it does not;
    trucks are the same at every IoU, so they keep the default."""
    zone = Zone("yard", "rail_yard", box(0, 0, 100, 100))
    truth = _labels([("railcar", 10 * k, 10, None) for k in range(5)] + [("truck", 10 * k, 60, None) for k in range(4)])
    trucks = [("truck", 10 * k, 60, 0.8) for k in range(4)]
    railcars = [("railcar", 10 * k, 10, 0.8) for k in range(5)]
    shadows = [("railcar", 10 * k + 1, 11, 0.8) for k in range(5)]  # as confident: no threshold helps
    by_iou = {0.5: _labels(trucks + railcars + shadows), 0.4: _labels(trucks + railcars),
              0.3: _labels(trucks + railcars[:3])}
    seen = []

    def fake_detect(det, sites, iou=None):
        seen.append(iou)
        return [(Path("site_a"), truth, [zone], by_iou[iou])]

    class FakeDetector:
        def __init__(self):
            self.card = DetectorCard()

    fake = FakeDetector()
    monkeypatch.setattr(recipes, "detect_sites", fake_detect)
    monkeypatch.setattr("freightwatch.models.detector.Detector.load", staticmethod(lambda w: fake))
    weights = tmp_path / "w.safetensors"
    count_conf, class_iou = recipes.calibrate_counting(weights, [Path("site_a")])
    assert sorted(seen) == [0.3, 0.4, 0.5]
    assert class_iou == {"railcar": 0.4}  # trucks and boats keep 0.5: no gain there
    assert count_conf["truck"] == 0.25
    card = DetectorCard.load(weights.with_suffix(".json"))
    assert card.class_iou == {"railcar": 0.4} and card.extra["count_calibration"]["sites"] == ["site_a"]
    # detections a caller already holds are reused, the missing IoUs detected and handed back
    seen.clear()
    runs_at = {0.5: fake_detect(None, None, 0.5)}
    seen.clear()
    again = recipes.calibrate_counting(weights, [Path("site_a")], write=False, runs_at=runs_at)
    assert again == (count_conf, class_iou) and sorted(seen) == [0.3, 0.4] and sorted(runs_at) == [0.3, 0.4, 0.5]


def test_recipe_chips_are_written_without_training(tmp_path):
    """The real-transfer recipe starts from a clean checkout: sites and chips only, no training run."""
    r = recipes.DetectorRecipe(n_train=1, n_val=1, n_test=1, n_calib=1, size_m=300.0, gsd=2.0, imgsz=96)
    root = recipes.prepare_recipe_chips(tmp_path, r)
    assert root == tmp_path.resolve() / "run" / "dataset"
    assert (root / "data.yaml").is_file()
    assert list((root / "images" / "train").glob("*")) and list((root / "images" / "val").glob("*"))
    assert [p.name for p in sorted((tmp_path / "sites").iterdir())] == ["site_1000", "site_1001"]
    assert [p.name for p in (tmp_path / "test_sites").iterdir()] == ["site_9000"]
    assert [p.name for p in (tmp_path / "calib_sites").iterdir()] == ["site_8000"]
    assert not (tmp_path / "run" / "weights").exists()  # nothing was trained
    # the training scene folder links exactly the recipe's training sites, also when run again
    again = recipes.prepare_recipe_chips(tmp_path, r)
    assert again == root and sorted(p.name for p in (tmp_path / "train_scenes").iterdir()) == [
        "site_1000", "site_1001"]
