"""The bundled real-transfer detector loads without pickle and still finds synthetic trucks."""

from __future__ import annotations

import json

import pytest

from freightwatch.models.detector import BUNDLED_DIR, Detector

REAL = BUNDLED_DIR / "detector_real.safetensors"


@pytest.mark.skipif(not REAL.is_file(), reason="no bundled real-transfer detector")
def test_real_transfer_detector_loads_and_counts_trucks_in_a_synthetic_lot():
    from freightwatch.datasets.synthetic import SiteConfig, generate_site

    det = Detector.load(REAL)
    assert det.card.classes == ["truck", "railcar", "boat"] and det.card.gsd == 0.5
    assert set(det.card.count_conf) == {"truck", "railcar", "boat"}
    site = generate_site(SiteConfig(size_m=300.0, gsd=0.5, seed=4242, activity=0.8))
    rgb = site.image  # (H, W, 3) uint8, 600 x 600 px
    true = sum(a.cls == "truck" for a in site.labels.annotations)
    anns = det.predict([rgb], conf=det.card.count_conf["truck"], imgsz=608)[0]
    found = sum(a.cls == "truck" for a in anns)
    assert true >= 10 and abs(found - true) <= max(3, 0.25 * true), (found, true)
    acc = json.loads((BUNDLED_DIR / "detector_real_accuracy.json").read_text())
    assert acc["real"]["ships_valid"]["boats"] == 357


@pytest.mark.skipif(not REAL.is_file(), reason="no bundled real-transfer detector")
def test_bundled_names_stand_for_the_packaged_files(tmp_path, monkeypatch):
    from freightwatch.errors import InputFileError

    assert Detector.load("bundled-real").card.count_conf == Detector.load(REAL).card.count_conf
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match="does not exist"):
        Detector.load("bundled-reel")
