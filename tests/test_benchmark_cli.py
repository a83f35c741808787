"""``freightwatch benchmark`` end to end on CPU: a tiny detector trained here, the bundled density
model, synthetic scenes with zones, and the GSD sweep; plus the real DOTA sample when present."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED

from freightwatch.cli import main
from freightwatch.datasets.chips import ChipConfig
from freightwatch.datasets.formats import read_labels
from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site
from freightwatch.evaluation.sweep import ROW_KEYS
from freightwatch.models.density import bundled_density
from freightwatch.training.detector import DetectorTrainConfig, train_detector

pytestmark = pytest.mark.skipif(not bundled_density().is_file(), reason="bundled density weights absent")


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    for i in range(2):
        write_site(generate_site(SiteConfig(size_m=300, gsd=0.5, seed=40 + i, activity=1.0)), root / f"site_{i}")
    return root


@pytest.fixture(scope="module")
def tiny_detector(sites, tmp_path_factory):
    cfg = DetectorTrainConfig(epochs=1, imgsz=128, batch=8, workers=0,
                              chip=ChipConfig(size=128, overlap=0.0, keep_empty=0.0, fractions=(0.5, 0.5, 0.0)))
    return train_detector(sites, tmp_path_factory.mktemp("det"), cfg).weights


def _main(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_sweep_end_to_end_via_the_cli(sites, tiny_detector, tmp_path):
    out = tmp_path / "bench"
    rc = _main("benchmark", "--data", str(sites), "--format", "coco", "--weights", str(tiny_detector), "--out",
               str(out), "--gsd-sweep", "0.25,0.5,1,3", "--examples", "2")
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    for name in ("report.md", "pr_curves.png", "count_scatter.png", "count_scatter_zones.png", "gsd_sweep.png",
                 "examples.png", "counts_per_zone.csv", "sweep_counts.csv"):
        assert (out / name).stat().st_size > 1000, name
    truth = {c: 0 for c in ("truck", "railcar", "boat")}
    for d in sorted(sites.iterdir()):
        for c, n in read_labels(d / "labels.json", "coco").counts().items():
            truth[c] += n
    assert m["data"]["objects"] == truth and m["data"]["images_evaluated"] == 2
    assert m["data"]["images_with_zones"] == 2
    assert m["counting"]["methods"] == ["detector_best_f1", "detector_conf", "density"]
    assert m["counting"]["per_zone"]["density"]["truck"]["n"] > 0
    # the density model ran on the 0.5 m scenes degraded to its 3 m lower bound, with intervals
    assert m["density"]["modes"] == {"degraded": 2} and m["density"]["gsd_m"]["max"] == 3.0
    assert m["counting"]["per_image"]["density"]["all"]["coverage"] is not None
    sw = m["sweep"]
    assert sw["gsds"] == [0.25, 0.5, 1.0, 3.0]
    # 0.25 m is finer than the 0.5 m scenes: skipped for both, with the reason
    assert sw["n_skipped"] == 2 and all("finer" in s["reason"] for s in sw["skipped"])
    rows = {(r["gsd"], r["method"], r["class"]): r for r in sw["rows"]}
    assert all(set(r) == set(ROW_KEYS) for r in sw["rows"])
    for g in (0.5, 1.0, 3.0):
        for meth in ("detector_best_f1", "detector_conf", "density"):
            r = rows[(g, meth, "all")]
            assert r["n"] == 6 and r["true_total"] == sum(truth.values())
    assert rows[(3.0, "density", "truck")]["in_range"] is True
    assert rows[(0.5, "density", "truck")]["in_range"] is False
    assert rows[(0.5, "detector_best_f1", "truck")]["in_range"] is None
    text = (out / "report.md").read_text()
    assert "## GSD sweep" in text and "![count error vs GSD](gsd_sweep.png)" in text and "### Per zone" in text


@pytest.mark.skipif(not (SHARED / "data" / "dota8").is_dir(), reason="real DOTA sample (../shared) absent")
def test_real_dota_sample_through_the_dota_mapping(tiny_detector, tmp_path):
    out = tmp_path / "dota"
    rc = _main("benchmark", "--data", str(SHARED / "data" / "dota8"), "--format", "yolo", "--mapping", "dota",
               "--weights", str(tiny_detector), "--gsd", "0.15", "--out", str(out), "--examples", "1")
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    d = m["data"]
    # DOTA's ship -> boat, large vehicle -> truck; every other class is dropped and reported
    assert d["images_evaluated"] == 8 and d["objects"]["boat"] >= 100 and d["objects"]["railcar"] == 0
    assert "small vehicle" in d["dropped_unmapped"] and d["gsd_source"] == {"option": 8}
    assert m["detection"]["coco"]["boat"]["n_gt"] == d["objects"]["boat"]
    boat = m["counting"]["per_image"]["density"]["boat"]
    assert boat["n"] == 8 and boat["true_total"] == d["objects"]["boat"] and boat["pred_total"] > 0
