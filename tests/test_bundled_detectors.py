"""The bundled detectors: stored under the size limit, loaded without pickle, counting synthetic trucks."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from freightwatch.models.detector import BUNDLED_DETECTORS, BUNDLED_DIR, Detector, bundled_detector

DEFAULT = BUNDLED_DIR / "detector.safetensors"


@pytest.mark.skipif(not DEFAULT.is_file(), reason="no bundled detector (make weights)")
@pytest.mark.parametrize("name", ["bundled", "bundled-synthetic"])
def test_bundled_detector_loads_without_pickle_and_counts_trucks_in_a_synthetic_lot(name, monkeypatch):
    from freightwatch.datasets.synthetic import SiteConfig, generate_site

    path = bundled_detector(name)
    assert path.stat().st_size < 10_000_000  # the bundle limit

    def boom(*a, **k):
        raise AssertionError("loading must not unpickle")

    for mod, fn in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(mod, fn, boom)
    det = Detector.load(name)
    assert det.card.classes == ["truck", "railcar", "boat"] and det.card.gsd == 0.5
    assert set(det.card.count_conf) == {"truck", "railcar", "boat"}
    site = generate_site(SiteConfig(size_m=300.0, gsd=0.5, seed=4242, activity=0.8))
    true = sum(a.cls == "truck" for a in site.labels.annotations)
    anns = det.predict([site.image], conf=det.card.count_conf["truck"], imgsz=608)[0]
    found = sum(a.cls == "truck" for a in anns)
    assert true >= 10 and abs(found - true) <= max(3, 0.25 * true), (found, true)


@pytest.mark.skipif(not DEFAULT.is_file(), reason="no bundled detector (make weights)")
def test_the_default_is_the_compact_real_transfer_model_and_its_figures_ship_with_it():
    det = Detector.load(None)
    assert det.card.extra["storage"]["max_bytes"] < 10_000_000  # stored by `freightwatch compact`
    assert det.card.class_iou == {"railcar": 0.4}
    acc = json.loads((BUNDLED_DIR / "detector_accuracy.json").read_text())
    assert acc["real"]["ships_valid"]["boats"] == 357 and acc["real"]["ships_valid"]["boat_AP50"] >= 0.5
    assert acc["synthetic"]["conf"] == det.card.count_conf  # measured with the thresholds it ships with
    for cls in ("truck", "railcar", "boat"):  # the synthetic targets it kept to replace the synthetic-only model
        assert acc["synthetic"]["coco"][cls]["AP50"] >= 0.85 and acc["synthetic"]["zone_count_rel_error"][cls] <= 0.10


def test_bundled_names_stand_for_the_packaged_files(tmp_path, monkeypatch):
    from freightwatch.errors import InputFileError

    assert BUNDLED_DETECTORS["bundled-real"] == BUNDLED_DETECTORS["bundled"]  # the old name still works
    if DEFAULT.is_file():
        assert Detector.load("bundled-real").card.count_conf == Detector.load(DEFAULT).card.count_conf
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match="does not exist"):
        Detector.load("bundled-reel")
