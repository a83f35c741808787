"""Batch runs over a catalog: outputs, failures, resuming, and the same results on Ray (2 local CPUs).

The catalog holds four good 3 m scenes plus three bad ones (garbage bytes, a truncated GeoTIFF, a
scene with no acquisition time); scenes are counted with a small random density model, so the
counts are real outputs of the pipeline without any trained weights.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from affine import Affine
from shapely.geometry import box

from freightwatch.activity.run import count_scene
from freightwatch.batch import BatchConfig, BatchError, Manifest, read_failures, run_batch
from freightwatch.cli import main
from freightwatch.datasets.geo import Zone, write_geotiff, write_zones
from freightwatch.models.density import DensityModel
from freightwatch.models.detector import DetectorCard

X0, Y0 = 447000.0, 4442000.0
UTM = "EPSG:32651"
GOOD = ("g0", "g1", "g2", "g3")
BAD = {"broken": "not a readable raster", "trunc": "", "undated": "no acquisition time"}


def _scene(path: Path, seed: int, when: str | None, size: tuple[int, int] = (48, 40), gsd: float = 3.0) -> Path:
    w, h = size
    arr = np.random.default_rng(seed).integers(0, 256, (3, h, w)).astype(np.uint8)
    return write_geotiff(path, arr, UTM, Affine(gsd, 0, X0, 0, -gsd, Y0),
                         tags={"ACQUISITION_TIME": when} if when else None)


def _site(folder: Path) -> Path:
    write_zones(folder / "zones.geojson", [Zone("lot", "lot", box(X0, Y0 - 60, X0 + 60, Y0), ("truck",)),
                                           Zone("yard", "rail_yard", box(X0 + 60, Y0 - 120, X0 + 144, Y0 - 30),
                                                ("railcar",))], UTM)
    site = folder / "site.yaml"
    site.write_text("name: test_site\ncountries: [CN, KP]\ntimezone: Asia/Shanghai\nzones: zones.geojson\n")
    return site


def _catalog(folder: Path) -> Path:
    cat = folder / "catalog"
    cat.mkdir(parents=True)
    for i, name in enumerate(GOOD):
        _scene(cat / f"{name}.tif", i, f"2016-02-{10 + i}T02:30:00Z")
    (cat / "broken.tif").write_bytes(b"II*\x00 definitely not a GeoTIFF")
    whole = _scene(folder / "whole.tif", 9, "2016-02-20T02:30:00Z", size=(600, 600))
    data = whole.read_bytes()
    (cat / "trunc.tif").write_bytes(data[: len(data) // 2])
    _scene(cat / "undated.tif", 8, None)
    return cat


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    torch.manual_seed(0)
    weights = DensityModel.create().save(root / "w" / "density.safetensors")
    return {"root": root, "catalog": _catalog(root), "site": _site(root), "weights": weights}


def cli(capsys, *args: str | Path) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
    out = capsys.readouterr()
    return code, out.out, out.err


def _config(world, **kw) -> BatchConfig:
    return BatchConfig(method="density", density_weights=world["weights"], show_progress=False, **kw)


def _scene_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "scenes").glob("*.csv"))}


def _assert_same_tables(got: dict[str, bytes], ref: dict[str, bytes]) -> None:
    """The same files with the same rows; float columns equal to 1e-7 relative (a network's float
    sums depend on how many threads run it: local runs use every core, Ray actors one each)."""
    import io

    assert sorted(got) == sorted(ref)
    for name in ref:
        a, b = pd.read_csv(io.BytesIO(got[name])), pd.read_csv(io.BytesIO(ref[name]))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-7, atol=1e-9, obj=name)


@pytest.fixture(scope="module")
def local_run(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    res = run_batch(world["catalog"], world["site"], out, _config(world))
    assert res.done == 4
    return out


# -- local engine -----------------------------------------------------------------------------------
def test_cli_batch_counts_good_scenes_and_lists_the_bad(world, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "batch", world["catalog"], "--site", world["site"], "--out", out, "--method",
                            "density", "--density-weights", world["weights"])
    assert code == 3, err  # some scenes failed: the others are counted and kept
    assert "7 scene(s): 4 counted, 0 already done, 3 failed" in stdout and "failures.csv" in stdout
    assert "Traceback" not in err
    failures = {r["scene"]: r for r in read_failures(out / "failures.csv")}
    assert set(failures) == set(BAD)
    for scene, fragment in BAD.items():
        assert f"{scene}.tif" in failures[scene]["reason"] and fragment in failures[scene]["reason"]
    assert len(_scene_files(out)) == 4
    table = pd.read_csv(out / "counts.csv")
    assert sorted(table["scene"].unique()) == list(GOOD) and len(table) == 4 * 2  # lot/truck + yard/railcar
    assert {"local_date", "holiday_names", "window"} <= set(table.columns)  # calendar context added
    summary = json.loads((out / "batch.json").read_text())
    assert summary["counted"] == 4 and summary["failed"] == 3 and summary["engine"] == "local"


def test_rows_are_the_per_scene_counting_function(world, local_run) -> None:
    """The batch writes exactly what count_scene returns for each scene, no rounding."""
    from freightwatch.activity.catalog import read_catalog
    from freightwatch.activity.run import RunConfig
    from freightwatch.activity.site import load_site

    site = load_site(world["site"])
    entry = next(e for e in read_catalog(world["catalog"]) if e.scene_id == "g2")
    rows = count_scene(entry, site, density_model=DensityModel.load(world["weights"]),
                       config=RunConfig(method="density"))
    (path,) = (local_run / "scenes").glob("g2-*.csv")
    got = pd.read_csv(path)
    assert got["count"].tolist() == [r["count"] for r in rows]
    assert got["zone"].tolist() == [r["zone"] for r in rows] and set(got["method"]) == {"density"}


def test_rerun_skips_finished_scenes_and_retries_failed_ones(world, local_run) -> None:
    before = {p: p.stat().st_mtime_ns for p in (local_run / "scenes").glob("*.csv")}
    res = run_batch(world["catalog"], world["site"], local_run, _config(world))
    assert (res.done, res.skipped, len(res.failed)) == (0, 4, 3)
    assert {p: p.stat().st_mtime_ns for p in (local_run / "scenes").glob("*.csv")} == before
    res = run_batch(world["catalog"], world["site"], local_run, _config(world, retry_failed=False))
    assert (res.done, res.skipped, len(res.failed)) == (0, 7, 3)
    assert len(Manifest(local_run).latest) == 7


def _interrupting_count(entry, site, **kw):
    """count_scene, except that the scene named in $FW_TEST_INTERRUPT stands for a Ctrl-C."""
    if entry.scene_id == os.environ.get("FW_TEST_INTERRUPT"):
        raise KeyboardInterrupt
    return count_scene(entry, site, **kw)


def test_interrupted_run_keeps_finished_scenes_and_a_rerun_redoes_only_the_rest(world, tmp_path, local_run,
                                                                                 monkeypatch) -> None:
    out = tmp_path / "out"
    cfg = _config(world)
    monkeypatch.setenv("FW_TEST_INTERRUPT", "g2")
    with pytest.raises(KeyboardInterrupt):
        run_batch(world["catalog"], world["site"], out, cfg, count_fn=_interrupting_count)
    done = {s for s, r in Manifest(out).latest.items() if r.status == "done"}
    assert done == {"g0", "g1"}
    assert sorted(pd.read_csv(out / "counts.csv")["scene"].unique()) == ["g0", "g1"]  # table of what is done

    # A crash mid-write leaves a temporary file and a torn manifest line: both must be harmless.
    (out / "scenes" / ".g3-0000.csv.tmp").write_text("half a fil")
    with (out / "manifest.jsonl").open("a") as fh:
        fh.write('{"scene": "g3", "status": "do')
    monkeypatch.delenv("FW_TEST_INTERRUPT")
    res = run_batch(world["catalog"], world["site"], out, cfg, count_fn=_interrupting_count)
    assert (res.done, res.skipped) == (2, 2)
    assert not list((out / "scenes").glob(".*"))
    assert _scene_files(out) == _scene_files(local_run)  # resumed results = uninterrupted results

    # Partial or stale work is redone: a deleted output, a rewritten scene file.
    next((out / "scenes").glob("g0-*.csv")).unlink()
    scene = world["catalog"] / "g1.tif"
    os.utime(scene, ns=(scene.stat().st_atime_ns, scene.stat().st_mtime_ns + 10**9))
    res = run_batch(world["catalog"], world["site"], out, cfg, count_fn=_interrupting_count)
    assert (res.done, res.skipped) == (2, 2)
    assert _scene_files(out) == _scene_files(local_run)


def test_a_fixed_scene_leaves_the_failures(world, tmp_path) -> None:
    cat = tmp_path / "cat"
    cat.mkdir()
    _scene(cat / "a.tif", 0, "2016-03-01T02:00:00Z")
    (cat / "b.tif").write_bytes(b"junk")
    out = tmp_path / "out"
    res = run_batch(cat, world["site"], out, _config(world))
    assert [r.scene for r in res.failed] == ["b"]
    _scene(cat / "b.tif", 1, "2016-03-02T02:00:00Z")
    res = run_batch(cat, world["site"], out, _config(world))
    assert (res.done, res.skipped, res.failed) == (1, 1, [])
    assert read_failures(out / "failures.csv") == []


def test_one_batch_per_output_folder(world, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".batch.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BatchError, match="another batch is writing to this folder"):
            run_batch(world["catalog"], world["site"], out, _config(world))


def test_detector_scenes_go_through_the_batch(world, tmp_path) -> None:
    """High-resolution scenes take the detector path (an untrained network: counts are whatever it says)."""
    from freightwatch.models import ultralytics_env
    from freightwatch.models.detector import Detector

    yolo = ultralytics_env.yolo()("yolo11n.yaml", task="detect")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    yolo.model = DetectionModel(cfg="yolo11n.yaml", nc=3, verbose=False)
    yolo.model.names = {0: "truck", 1: "railcar", 2: "boat"}
    weights = Detector(yolo, DetectorCard(imgsz=64, gsd=0.5)).save(tmp_path / "det.safetensors")
    cat = tmp_path / "cat"
    cat.mkdir()
    _scene(cat / "fine.tif", 3, "2016-03-01T02:00:00Z", size=(96, 80), gsd=0.5)
    res = run_batch(cat, world["site"], tmp_path / "out", BatchConfig(weights=weights, show_progress=False))
    assert res.done == 1 and not res.failed
    table = pd.read_csv(tmp_path / "out" / "counts.csv")
    assert set(table["method"]) == {"detector"} and set(table["zone"]) == {"lot", "yard"}


# -- Ray --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (2 CPUs) for the Ray tests; run_batch uses it and leaves it running."""
    from freightwatch.batch.ray_engine import init_ray

    ray, started = init_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_ray_engine_gives_the_same_results(world, local_run, ray_session, tmp_path, capsys) -> None:
    out = tmp_path / "ray"
    code, stdout, err = cli(capsys, "batch", world["catalog"], "--site", world["site"], "--out", out, "--engine",
                            "ray", "--method", "density", "--density-weights", world["weights"])
    assert code == 3, err
    assert "4 counted" in stdout and "ray engine" in stdout
    _assert_same_tables(_scene_files(out), _scene_files(local_run))
    _assert_same_tables({"counts.csv": (out / "counts.csv").read_bytes()},
                        {"counts.csv": (local_run / "counts.csv").read_bytes()})
    assert {r["scene"] for r in read_failures(out / "failures.csv")} == set(BAD)
    stats = json.loads((out / "batch.json").read_text())["engine_stats"]
    assert stats["workers"] == 2 and 1 <= stats["peak_in_flight"] <= 4


def _crashing_count(entry, site, **kw):
    """count_scene, except that scene g1 kills its worker process outright (as a segfault would)."""
    if entry.scene_id == "g1":
        os._exit(1)
    return count_scene(entry, site, **kw)


@pytest.mark.slow
def test_ray_isolates_a_scene_that_kills_its_worker_and_bounds_in_flight(world, local_run, ray_session,
                                                                        tmp_path) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not importable on workers
    out = tmp_path / "ray"
    cfg = _config(world, engine="ray", num_workers=2, max_in_flight=2)
    res = run_batch(world["catalog"], world["site"], out, cfg, count_fn=_crashing_count)
    failed = {r.scene: r for r in res.failed}
    assert set(failed) == set(BAD) | {"g1"}
    assert "g1.tif: the worker process died" in failed["g1"].error
    assert res.done == 3 and res.engine_stats["restarts"] == 1
    assert res.engine_stats["peak_in_flight"] <= 2  # back-pressure: never more submitted than allowed
    local = _scene_files(local_run)
    _assert_same_tables(_scene_files(out), {k: v for k, v in local.items() if not k.startswith("g1-")})
