"""The coarse-imagery density model: network, weights files, tiled inference, zone counts, training."""

from __future__ import annotations

import csv
import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry import Polygon, box
from torch import nn

from freightwatch.cli import main
from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.formats.coco import write_coco
from freightwatch.datasets.geo import Zone, write_geotiff, write_zones
from freightwatch.errors import FreightwatchError, InputFileError
from freightwatch.inference.density import CSV_COLUMNS, DensityRunConfig, density_scene
from freightwatch.models.density import (
    DensityConfig,
    DensityModel,
    DensityNet,
    bundled_density,
    conformal_quantiles,
    count_interval,
)
from freightwatch.taxonomy import CLASSES
from freightwatch.training.density import (
    DensityTrainConfig,
    ZoneCount,
    calibrate_intervals,
    density_loss,
    train_density,
    zone_truth,
)

X0, Y0 = 447000.0, 4442000.0


def _scene(path: Path, w: int, h: int, gsd: float = 3.0, crs: str | None = "EPSG:32651", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
    return write_geotiff(path, arr, crs, Affine(gsd, 0, X0, 0, -gsd, Y0), photometric_rgb=True)


class _PointwiseNet(nn.Module):
    """Density that depends on each pixel alone: tiling can then be checked exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, :3]) * 0.01


class _ConstantNet(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3, *x.shape[-2:]), self.value)


def _model(net: nn.Module, interval: dict | None = None) -> DensityModel:
    return DensityModel(net, DensityConfig(interval=interval))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_model() -> DensityModel:
    torch.manual_seed(0)
    m = DensityModel.create()
    with torch.no_grad():  # random, non-trivial weights so outputs differ from pixel to pixel
        for p in m.net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    m.net.eval()
    return m


# -- network --------------------------------------------------------------------------------------
def test_density_maps_are_non_negative_and_on_the_input_grid(small_model: DensityModel) -> None:
    img = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    with torch.no_grad():
        small_model.net.head.bias.fill_(-0.05)  # some pre-activations negative, some positive
        out = small_model.predict(img)
        small_model.net.head.bias.fill_(0.1)
    assert out.shape == (3, 37, 53) and out.dtype == np.float32
    assert (out >= 0).all() and (out == 0).any() and (out > 0).any()


def test_test_time_augmentation(small_model: DensityModel) -> None:
    img = np.random.default_rng(4).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    pointwise = _model(_PointwiseNet())
    np.testing.assert_allclose(pointwise.predict(img, tta=True), pointwise.predict(img), rtol=1e-6)
    out = small_model.predict(img, tta=True)
    assert out.shape == (3, 24, 40) and (out >= 0).all()


def test_four_band_model_and_pretrained_encoder(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from torchvision.models import mobilenet_v2

    enc = tmp_path / "mnv2.safetensors"
    save_file({k: v.contiguous() for k, v in mobilenet_v2().features.state_dict().items()}, str(enc))
    m = DensityModel.create(DensityConfig.for_bands(4), pretrained=enc)
    assert m.net.encoder[0][0].weight.shape[1] == 4
    out = m.predict(np.zeros((16, 16, 4), np.uint8))
    assert out.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="bands"):
        m.predict(np.zeros((16, 16, 3), np.uint8))


def test_model_is_small() -> None:
    m = DensityModel.create()
    assert m.num_parameters() < 2_500_000  # float32: < 10 MB


# -- weights files --------------------------------------------------------------------------------
def test_save_load_round_trip_without_unpickling(tmp_path: Path, small_model: DensityModel, monkeypatch) -> None:
    path = small_model.save(tmp_path / "d.safetensors")
    assert path.with_suffix(".json").is_file()
    # readable like the card beside it (safetensors alone leaves its temporary file's 0600)
    assert path.stat().st_mode & 0o777 == path.with_suffix(".json").stat().st_mode & 0o777

    def boom(*a, **k):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(torch, "load", boom)
    loaded = DensityModel.load(path)
    img = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(img), small_model.predict(img))
    assert loaded.config.classes == list(CLASSES)


def test_bad_weights_and_configs_are_clear_errors(tmp_path: Path, small_model: DensityModel) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        DensityModel.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file at all")
    junk.with_suffix(".json").write_text(small_model.config.to_json())
    with pytest.raises(InputFileError, match="not a safetensors"):
        DensityModel.load(junk)

    path = small_model.save(tmp_path / "ok.safetensors")
    cfg_path = path.with_suffix(".json")
    good = json.loads(cfg_path.read_text())

    cfg_path.write_text(json.dumps({**good, "arch": {**good["arch"], "decoder": [8, 8, 8]}}))
    with pytest.raises(InputFileError, match="do not match"):
        DensityModel.load(path)
    cfg_path.write_text(json.dumps({**good, "classes": ["truck", "boat"]}))
    with pytest.raises(InputFileError, match="do not match"):
        DensityModel.load(path)
    cfg_path.write_text(json.dumps({**good, "classes": ["car", "bus", "truck"]}))
    with pytest.raises(InputFileError, match="classes"):
        DensityModel.load(path)
    cfg_path.write_text(json.dumps({"classes": ["truck"]}))
    with pytest.raises(InputFileError, match="not a freightwatch density model config"):
        DensityModel.load(path)
    cfg_path.unlink()
    with pytest.raises(InputFileError, match="config"):
        DensityModel.load(path)


def test_bundled_weights_load_when_present() -> None:
    if not bundled_density().is_file():
        pytest.skip("bundled density weights not built (make weights)")
    m = DensityModel.load()
    assert m.config.classes == list(CLASSES) and m.config.interval
    assert bundled_density().stat().st_size < 10 * 1024 * 1024


# -- tiled inference ------------------------------------------------------------------------------
def test_tiled_density_equals_whole_image_and_counts_integrate_it(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "s.tif", 203, 150)
    model = _model(_PointwiseNet())
    zone = Zone("yard", "rail_yard", Polygon([(X0 + 30, Y0 - 20), (X0 + 400, Y0 - 60), (X0 + 200, Y0 - 380)]))
    res = density_scene(scene, model, tmp_path / "out", [zone], DensityRunConfig(tile=64, margin=8))

    from freightwatch.datasets.raster import Scene

    with Scene(scene) as sc:
        img, _ = sc.read_rgb()
    whole = model.predict(img)
    with rasterio.open(res.density) as ds:
        dens = ds.read()
        assert ds.transform == Affine(3.0, 0, X0, 0, -3.0, Y0) and ds.crs.to_epsg() == 32651
        assert list(ds.descriptions) == list(CLASSES) and ds.dtypes[0] == "float32"
        inside = geometry_mask([zone.geometry], out_shape=(ds.height, ds.width), transform=ds.transform, invert=True)
    # Same map as one pass over the whole image: no tile counted twice, none shifted.
    np.testing.assert_allclose(dens, whole, rtol=1e-6, atol=1e-9)
    for i, c in enumerate(CLASSES):
        assert res.count("all", c) == pytest.approx(float(whole[i].sum(dtype=np.float64)), rel=1e-6)
        assert res.count("yard", c) == pytest.approx(float(dens[i][inside].sum(dtype=np.float64)), rel=1e-6)


def test_tiled_real_network_close_to_whole_image(tmp_path: Path, small_model: DensityModel) -> None:
    scene = _scene(tmp_path / "s.tif", 150, 140, seed=3)
    res = density_scene(scene, small_model, tmp_path / "out", None, DensityRunConfig(tile=64, margin=64))
    from freightwatch.datasets.raster import Scene

    with Scene(scene) as sc:
        img, _ = sc.read_rgb()
    whole = small_model.predict(img)
    with rasterio.open(res.density) as ds:
        dens = ds.read()
    assert dens.sum() == pytest.approx(float(whole.sum()), rel=0.02)


def test_zone_counts_on_a_known_scene(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "s.tif", 100, 80)
    model = _model(_ConstantNet(0.25))
    # Pixel-aligned rectangle: columns 10-29, rows 5-14 -> 200 pixel centres.
    rect = Zone("lot_a", "lot", box(X0 + 30, Y0 - 45, X0 + 90, Y0 - 15), ("truck",))
    outside = Zone("far", "lot", box(X0 + 5000, Y0 - 5000, X0 + 5100, Y0 - 4900))
    zones_path = write_zones(tmp_path / "zones.geojson", [rect, outside], "EPSG:32651")[0]
    res = density_scene(scene, model, tmp_path / "out", zones_path, DensityRunConfig(tile=32, margin=4))
    assert res.count("lot_a", "truck") == pytest.approx(50.0)
    assert res.count("far", "boat") == 0.0
    assert res.count("all", "railcar") == pytest.approx(0.25 * 100 * 80)


def test_gsd_refusal_and_force(tmp_path: Path) -> None:
    model = _model(_ConstantNet(0.0))
    fine = _scene(tmp_path / "fine.tif", 40, 40, gsd=0.5)
    with pytest.raises(InputFileError, match="fine.tif.*outside") as exc:
        density_scene(fine, model, tmp_path / "o1")
    assert isinstance(exc.value, FreightwatchError)
    res = density_scene(fine, model, tmp_path / "o2", config=DensityRunConfig(force=True))
    assert res.warnings and (tmp_path / "o2" / "density.tif").is_file()
    nocrs = _scene(tmp_path / "nocrs.tif", 40, 40, crs=None)
    with pytest.raises(InputFileError, match="nocrs.tif.*--gsd"):
        density_scene(nocrs, model, tmp_path / "o3")
    assert density_scene(nocrs, model, tmp_path / "o4", config=DensityRunConfig(gsd=3.0)).gsd == 3.0
    assert density_scene(_scene(tmp_path / "c.tif", 40, 40, gsd=5.5), model, tmp_path / "o5").gsd == 5.5


# -- intervals ------------------------------------------------------------------------------------
def test_conformal_interval_covers_new_draws() -> None:
    rng = np.random.default_rng(0)
    cal = rng.normal(0.05, 0.1, 400)
    lo, hi = conformal_quantiles(cal, 0.9)
    new = rng.normal(0.05, 0.1, 20000)
    assert 0.87 < np.mean((new >= lo) & (new <= hi)) < 0.93
    interval = {"k": 5.0, "coverage": 0.9, "gsd_nodes": [3.0, 5.0],
                "residuals": {"truck": [sorted(cal.tolist()), sorted((2 * cal).tolist())]},
                "scale": {"truck": [1.0, 1.0]}}
    lo3, hi3 = count_interval(interval, 100.0, "truck", 3.0)
    lo5, hi5 = count_interval(interval, 100.0, "truck", 5.0)
    assert lo3 < 100 < hi3 and hi5 - lo5 == pytest.approx(2 * (hi3 - lo3))
    assert count_interval(interval, 0.0, "truck", 4.0)[0] == 0.0  # clipped at zero
    one_sided = {**interval, "residuals": {"truck": [[-0.3, -0.2, -0.1]] * 2}}  # always an overcount
    lo, hi = count_interval(one_sided, 10.0, "truck", 3.0)
    assert lo < 10.0 <= hi  # the interval still contains the estimate
    assert np.isnan(count_interval(None, 10.0, "truck", 3.0)[0])


def test_calibration_scale_and_intervals_from_zone_counts() -> None:
    rng = np.random.default_rng(1)
    counts = []
    for i in range(300):
        true = float(rng.integers(5, 150))
        pred = true * 0.8 * float(rng.normal(1, 0.1))  # a model that undercounts by 20 %
        counts.append(ZoneCount(f"s{i}", 3.0, "lot", "lot", "truck", True, pred, true))
    for i in range(60):  # a zone kind the model does badly on
        counts.append(ZoneCount(f"b{i}", 3.0, "bridge", "bridge", "truck", True, 2.0, float(rng.integers(5, 25))))
    cal = calibrate_intervals(counts, [3.0], classes=["truck"])
    assert set(cal["residuals_by_kind"]["truck"]) == {"lot", "bridge"}
    model = _model(_ConstantNet(0.0), cal)
    assert model.corrected_count(80.0, "truck", 3.0) == pytest.approx(100.0, rel=0.1)
    lot = model.count_interval(100.0, "truck", 3.0, kind="lot")
    bridge = model.count_interval(100.0, "truck", 3.0, kind="bridge")
    pooled = model.count_interval(100.0, "truck", 3.0, kind="unknown-kind")
    assert lot[1] - lot[0] < pooled[1] - pooled[0] < bridge[1] - bridge[0]


def test_zone_truth_counts_centres() -> None:
    t = Affine(3.0, 0, X0, 0, -3.0, Y0)
    anns = [Annotation.from_bbox("truck", (1, 1, 3, 2)), Annotation.from_bbox("truck", (50, 50, 52, 51)),
            Annotation.from_bbox("boat", (10, 10, 12, 12))]
    lab = ImageLabels("s.tif", 60, 60, anns, gsd=3.0, transform=t)
    z = Zone("z", "lot", box(X0, Y0 - 60, X0 + 60, Y0))  # pixels 0-19
    truth = zone_truth(lab, [z])
    assert truth[("z", "truck")] == 1 and truth[("z", "boat")] == 1 and truth[("all", "truck")] == 2


def test_loss_is_zero_for_a_perfect_map_and_respects_the_mask() -> None:
    t = torch.rand(2, 3, 32, 32) * 0.1
    v = torch.ones(2, 32, 32, dtype=torch.bool)
    assert float(density_loss(t, t, v)[0]) == 0.0
    v[:, :, 16:] = False
    p = t.clone()
    p[..., 16:] += 1.0  # errors only where masked out
    assert float(density_loss(p, t, v)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(density_loss(t * 2, t, v)[0]) > 0


# -- training -------------------------------------------------------------------------------------
def _hr_scene_folder(root: Path, w: int = 360, h: int = 360, n: int = 25, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / f"site{seed}"
    img = rng.integers(60, 120, (3, h, w), dtype=np.uint8)
    anns = []
    for i in range(n):
        x, y = rng.uniform(20, w - 20), rng.uniform(20, h - 20)
        img[:, int(y) - 2:int(y) + 2, int(x) - 12:int(x) + 12] = 230
        anns.append(Annotation.from_bbox(CLASSES[i % 3], (x - 12, y - 2, x + 12, y + 2)))
    t = Affine(0.5, 0, X0, 0, -0.5, Y0)
    write_geotiff(folder / "scene.tif", img, "EPSG:32651", t, photometric_rgb=True)
    write_coco([ImageLabels("scene.tif", w, h, anns, gsd=0.5, crs="EPSG:32651", transform=t)], folder / "labels.json")
    return folder


def _tiny_cfg(**kw) -> DensityTrainConfig:
    return DensityTrainConfig(**{"epochs": 1, "steps_per_epoch": 2, "batch": 2, "crop": 32, "threads": 1,
                                 "show_progress": False, **kw})


def test_one_epoch_training_is_deterministic_and_loads(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = [_hr_scene_folder(tmp_path / "data", seed=0), _hr_scene_folder(tmp_path / "data", seed=1)]
    r1 = train_density(data, tmp_path / "run1", _tiny_cfg(seed=7))
    r2 = train_density([tmp_path / "data"], tmp_path / "run2", _tiny_cfg(seed=7))
    w1, w2 = load_file(str(r1.weights)), load_file(str(r2.weights))
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    metrics = json.loads(r1.metrics.read_text())
    assert metrics["history"][0]["epoch"] == 1 and np.isfinite(metrics["final"]["loss"])
    assert (tmp_path / "run1" / "checkpoints" / "epoch_001.safetensors").is_file()
    m = DensityModel.load(r1.weights)
    assert m.config.gsd_range == (3.0, 5.0) and m.config.training["config"]["seed"] == 7
    r3 = train_density(data, tmp_path / "run3", _tiny_cfg(seed=8))
    assert not torch.equal(load_file(str(r3.weights))["head.weight"], w1["head.weight"])


def test_class_focus_centres_crops_on_the_named_class(tmp_path: Path) -> None:
    from freightwatch.training.density import DensitySampler, _as_scenes

    cfg = _tiny_cfg(object_focus=1.0, sparse_boost=0.0)
    scenes = _as_scenes([_hr_scene_folder(tmp_path / "data", n=30, seed=3)], cfg, None)

    def railcar_share(focus: dict[str, float] | None) -> float:
        sampler = DensitySampler(scenes, replace(cfg, class_focus=focus))
        rng, hits = np.random.default_rng(0), 0
        src = sampler.sources[0]
        for _ in range(200):
            x0, y0 = sampler._origin(src, 40, rng)
            hits += any(a.cls == "railcar" for a in src.crop_labels(x0, y0, 40, 40).annotations)
        sampler.close()
        return hits / 200

    assert railcar_share({"railcar": 1, "truck": 0, "boat": 0}) == 1.0  # every crop holds its centre object
    assert railcar_share({"railcar": 5}) > railcar_share(None) + 0.2
    with pytest.raises(FreightwatchError, match="class_focus"):
        DensitySampler(scenes, replace(cfg, class_focus={"tank": 2}))
    with pytest.raises(FreightwatchError, match="class_focus"):
        DensitySampler(scenes, replace(cfg, class_focus={"truck": 0, "railcar": 0, "boat": 0}))


def test_coarse_point_training(tmp_path: Path) -> None:
    folder = tmp_path / "coarse"
    _scene(folder / "scene.tif", 64, 64, gsd=4.0)
    pts = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "truck"}, "geometry": {"type": "Point",
                                                                            "coordinates": [X0 + 40.0, Y0 - 40.0]}},
        {"type": "Feature", "properties": {"class": "Barge"}, "geometry": {"type": "Point",
                                                                            "coordinates": [X0 + 120.0, Y0 - 80.0]}},
    ]}
    (folder / "points.geojson").write_text(json.dumps(pts))
    res = train_density([folder], tmp_path / "run", _tiny_cfg(coarse=True, label_format="points",
                                                             labels_name="points.geojson"))
    assert DensityModel.load(res.weights).config.training["mode"] == "coarse points"
    # A high-resolution scene cannot be used in coarse-simulation mode the other way round.
    with pytest.raises(InputFileError, match="coarser"):
        train_density([folder], tmp_path / "bad", _tiny_cfg(label_format="points", labels_name="points.geojson"))


# -- command line ---------------------------------------------------------------------------------
def _run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None)


def test_cli_density_writes_map_and_counts(tmp_path: Path, small_model: DensityModel) -> None:
    weights = small_model.save(tmp_path / "w" / "density.safetensors")
    scene = _scene(tmp_path / "scene.tif", 90, 70)
    zones = write_zones(tmp_path / "zones.geojson", [
        Zone("lot_1", "lot", box(X0 + 10, Y0 - 100, X0 + 100, Y0 - 10), ("truck",)),
        Zone("yard", "rail_yard", box(X0 + 100, Y0 - 200, X0 + 250, Y0 - 50), ("railcar",)),
    ], "EPSG:32651")[0]
    out = tmp_path / "out"
    _run(["density", str(scene), "--zones", str(zones), "--out", str(out), "--weights", str(weights),
          "--tile", "32"])
    with rasterio.open(out / "density.tif") as ds:
        assert ds.count == 3 and list(ds.descriptions) == list(CLASSES) and (ds.width, ds.height) == (90, 70)
        total = ds.read().sum(axis=(1, 2), dtype=np.float64)
    with (out / "counts.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS == ("zone", "class", "count", "lower", "upper")
    assert [r[0] for r in rows[1:]] == ["all"] * 3 + ["lot_1"] * 3 + ["yard"] * 3
    assert float(rows[1][2]) == pytest.approx(total[0], abs=0.01)
    meta = json.loads((out / "counts.json").read_text())
    assert meta["units"] == "objects per pixel" and len(meta["counts"]) == 9


def test_cli_refuses_fine_scene_with_one_line_error(tmp_path: Path, small_model: DensityModel, capsys) -> None:
    weights = small_model.save(tmp_path / "density.safetensors")
    scene = _scene(tmp_path / "fine.tif", 40, 40, gsd=0.5)
    with pytest.raises(SystemExit) as exc:
        main(["density", str(scene), "--out", str(tmp_path / "o"), "--weights", str(weights)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "fine.tif" in err and "--force" in err
    _run(["density", str(scene), "--out", str(tmp_path / "o"), "--weights", str(weights), "--force"])
    assert (tmp_path / "o" / "counts.csv").is_file()


def test_cli_train_density(tmp_path: Path) -> None:
    data = _hr_scene_folder(tmp_path / "data")
    _run(["train", "density", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--steps", "1",
          "--batch", "2", "--crop", "32", "--threads", "1", "--val", str(data), "--class-focus", "railcar=3"])
    trained = DensityModel.load(tmp_path / "run" / "density.safetensors")
    assert trained.num_parameters() > 0 and trained.config.training["config"]["class_focus"] == {"railcar": 3.0}
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert set(final["val"]) == set(CLASSES) and final["val"]["truck"]["crop_mae"] >= 0
    assert isinstance(DensityNet(), nn.Module)
    with pytest.raises(SystemExit) as exc:
        main(["train", "density", str(data), "--out", str(tmp_path / "bad"), "--class-focus", "railcar"])
    assert exc.value.code == 2


def test_tta_follows_the_calibration_unless_asked_and_warns_when_it_differs(tmp_path: Path, monkeypatch) -> None:
    model = DensityModel.load(None)  # the bundled weights carry a calibration, with its tta flag
    calibrated = bool(model.config.interval["tta"])
    scene = _scene(tmp_path / "scene.tif", 64, 64)
    seen: list[bool] = []
    real = model.predict

    def spy(img, valid=None, tta=False):
        seen.append(tta)
        return real(img, valid, tta=tta)

    monkeypatch.setattr(model, "predict", spy)
    res = density_scene(scene, model, tmp_path / "a", None, DensityRunConfig(show_progress=False))
    assert set(seen) == {calibrated} and not any("test-time" in w for w in res.warnings)
    seen.clear()
    res = density_scene(scene, model, tmp_path / "b", None, DensityRunConfig(tta=not calibrated, show_progress=False))
    assert set(seen) == {not calibrated}
    assert any("calibrated with test-time augmentation" in w for w in res.warnings)
    # the command line passes --tta / --no-tta through
    import freightwatch.inference.density as dens

    got: list[bool | None] = []

    def fake(scene, out, weights, zones, cfg):
        got.append(cfg.tta)
        raise SystemExit(0)

    monkeypatch.setattr(dens, "density_to_dir", fake)
    for flag, want in (("--tta", True), ("--no-tta", False), (None, None)):
        _run(["density", str(scene), "--out", str(tmp_path / "c")] + ([flag] if flag else []))
        assert got[-1] is want
