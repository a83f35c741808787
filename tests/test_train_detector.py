"""Training runs offline for one epoch on a tiny set and produces weights that load without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import make_raster

from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.chips import ChipConfig
from freightwatch.datasets.formats.coco import write_coco
from freightwatch.errors import InputFileError
from freightwatch.models.detector import Detector
from freightwatch.training.detector import DetectorTrainConfig, nadir_augmentations, train_detector


def _tiny_config():
    return DetectorTrainConfig(epochs=1, imgsz=128, batch=4, workers=0,
                               chip=ChipConfig(size=128, overlap=0.25, keep_empty=1.0, fractions=(0.67, 0.33, 0.0)))


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    for i in range(3):
        d = root / f"s{i}"
        d.mkdir()
        p = make_raster(d / "scene.tif", size=(256, 256), seed=i)
        with rasterio.open(p, "r+") as ds:
            a = ds.read()
            a[:, 50:60, 40:100] = 250
            ds.write(a)
        lab = ImageLabels("scene.tif", 256, 256, [Annotation.from_bbox("truck", (40, 50, 100, 60))], gsd=0.5,
                          scene_id=f"s{i}")
        write_coco([lab], d / "labels.json")
    return root


@pytest.fixture(scope="module")
def tiny_run(tiny_scenes, tmp_path_factory):
    return train_detector(tiny_scenes, tmp_path_factory.mktemp("run"), _tiny_config())


def test_same_seed_gives_identical_weights(tiny_scenes, tiny_run, tmp_path):
    again = train_detector(tiny_scenes, tmp_path / "again", _tiny_config())
    assert again.weights.read_bytes() == tiny_run.weights.read_bytes()


def test_one_epoch_writes_safetensors_card_and_metrics(tiny_run):
    assert tiny_run.weights.suffix == ".safetensors" and tiny_run.weights.stat().st_size > 100_000
    card = json.loads(tiny_run.card.read_text())
    assert card["classes"] == ["truck", "railcar", "boat"] and card["gsd"] == 0.5 and card["epochs"] == 1
    assert card["model_yaml"]["nc"] == 3
    assert "RandomRotate90" in card["extra"]["augmentations"]
    assert "metrics" in json.loads(tiny_run.metrics.read_text())


def test_weights_load_without_unpickling_and_predict(tiny_run, monkeypatch):
    import pickle

    import torch

    def forbidden(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    det = Detector.load(tiny_run.weights)
    preds = det.predict([np.zeros((128, 128, 3), np.uint8)] * 2, conf=0.5)
    assert len(preds) == 2


def test_bad_weights_files(tmp_path, tiny_run):
    with pytest.raises(InputFileError, match="does not exist"):
        Detector.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    junk.with_suffix(".json").write_text(tiny_run.card.read_text())
    with pytest.raises(InputFileError, match="junk.safetensors"):
        Detector.load(junk)
    card = json.loads(tiny_run.card.read_text())
    card["model_yaml"]["nc"] = 5
    card["classes"] = ["a", "b", "c", "d", "e"]
    mism = tmp_path / "mism.safetensors"
    mism.write_bytes(tiny_run.weights.read_bytes())
    mism.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(InputFileError, match="do not match"):
        Detector.load(mism)
    pt = tmp_path / "x.pt"
    pt.write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="not an ultralytics checkpoint"):
        Detector.load(pt)


def test_augmentations_keep_boxes_consistent():
    import albumentations as A

    img = np.zeros((64, 64, 3), np.uint8)
    img[10:20, 30:50] = 255
    t = A.Compose(nadir_augmentations(), bbox_params=A.BboxParams(format="pascal_voc", label_fields=["c"]), seed=1)
    for _ in range(10):
        r = t(image=img, bboxes=[(30, 10, 50, 20)], c=[0])
        (x0, y0, x1, y1), = r["bboxes"]
        patch = r["image"][int(y0) + 1: int(y1) - 1, int(x0) + 1: int(x1) - 1]
        assert patch.mean() > 100  # the box still frames the bright object after rotation/flip


def test_detect_cli_writes_the_interface_files(tiny_run, tmp_path):
    import csv
    import subprocess
    import sys

    from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site

    site = write_site(generate_site(SiteConfig(size_m=300, gsd=0.5, seed=5)), tmp_path / "site")
    out = tmp_path / "det"
    res = subprocess.run([sys.executable, "-m", "freightwatch", "detect", str(site["image"]), "--zones",
                          str(site["zones"]), "--out", str(out), "--weights", str(tiny_run.weights)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for name in ("detections.geojson", "detections_4326.geojson", "counts.csv", "counts.json", "overlay.png"):
        assert (out / name).is_file(), name
    assert csv.DictReader((out / "counts.csv").open()).fieldnames == ["zone", "class", "state", "count"]
    bad = subprocess.run([sys.executable, "-m", "freightwatch", "detect", str(tmp_path / "missing.tif"),
                          "--weights", str(tiny_run.weights), "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.tif" in bad.stderr and "Traceback" not in bad.stderr


def test_finetunes_from_freightwatch_safetensors_without_pickle(tiny_scenes, tiny_run, tmp_path):
    """A .safetensors detector is a valid starting point: with a zero learning rate its weights stay put."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    # Perturbed weights nobody could reach from a fresh random init: the result must carry them.
    init = load_file(str(tiny_run.weights))
    gen = torch.Generator().manual_seed(0)
    init = {k: (v + 0.05 * torch.randn(v.shape, generator=gen).to(v.dtype)) if k.endswith("conv.weight") else v
            for k, v in init.items()}
    start = tmp_path / "start" / "detector.safetensors"
    start.parent.mkdir()
    save_file(init, str(start))
    shutil.copy2(tiny_run.card, start.with_suffix(".json"))
    cfg = _tiny_config()
    cfg.weights = start
    cfg.extra = {"optimizer": "SGD", "lr0": 0.0, "warmup_epochs": 0}  # "auto" would pick its own lr
    res = train_detector(tiny_scenes, tmp_path / "ft", cfg)
    tuned = load_file(str(res.weights))
    convs = [k for k in init if k.endswith("conv.weight")]
    assert len(convs) > 50 and set(init) == set(tuned)
    for k in convs:
        np.testing.assert_allclose(tuned[k].float().numpy(), init[k].float().numpy(), atol=2e-3, err_msg=k)
    assert json.loads(res.card.read_text())["base_weights"] == str(start)
