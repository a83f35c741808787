"""The command line as a user runs it: one-line errors, exit codes, files written."""

import json
import subprocess
import sys

from freightwatch.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "freightwatch", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_subcommand_with_a_description(capsys):
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("info", "synth", "degrade", "convert", "chips", "demo"):
        assert cmd in res.stdout


def test_info_json(raster_factory, capsys):
    p = raster_factory(size=(40, 30), gsd=0.3)
    try:
        main(["info", str(p), "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    meta = json.loads(capsys.readouterr().out)
    assert meta["width"] == 40 and abs(meta["gsd_m"] - 0.3) < 1e-9 and meta["crs"] == "EPSG:32651"


def test_bad_raster_gives_one_line_error_and_exit_2(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    res = run_cli("info", str(bad))
    assert res.returncode == 2
    assert "broken.tif" in res.stderr and "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) <= 2


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"")
    res = run_cli("--debug", "info", str(bad))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_synth_degrade_chips_convert_end_to_end(tmp_path):
    import rasterio

    from freightwatch.datasets.formats import read_labels

    site = tmp_path / "site"
    res = run_cli("synth", "--out", str(site), "--size-m", "400", "--gsd", "1.0", "--seed", "2")
    assert res.returncode == 0, res.stderr
    for name in ("scene.tif", "labels.json", "zones.geojson"):
        assert (site / name).is_file()
    truth = read_labels(site / "labels.json", "coco")
    with rasterio.open(site / "scene.tif") as ds:
        assert ds.crs.to_epsg() == 32651 and abs(ds.res[0] - 1.0) < 1e-9

    coarse = tmp_path / "coarse"
    res = run_cli("degrade", str(site / "scene.tif"), "--labels", str(site / "labels.json"), "--gsd", "4",
                  "--out", str(coarse))
    assert res.returncode == 0, res.stderr
    with rasterio.open(coarse / "density.tif") as ds:
        assert ds.descriptions == ("truck", "railcar", "boat") and abs(ds.res[0] - 4.0) < 1e-9
        sums = ds.read().sum(axis=(1, 2))
    counts = truth.counts()
    # every object centre lies inside the coarse grid except those in the dropped sub-pixel strip
    for i, c in enumerate(("truck", "railcar", "boat")):
        assert counts[c] - 2 <= round(sums[i]) <= counts[c]

    site2 = tmp_path / "site2"
    assert run_cli("synth", "--out", str(site2), "--size-m", "400", "--gsd", "1.0", "--seed", "3").returncode == 0
    ds_dir = tmp_path / "chips"
    res = run_cli("chips", str(site), str(site2), "--out", str(ds_dir), "--size", "256", "--split", "0.5,0.5")
    assert res.returncode == 0, res.stderr
    assert (ds_dir / "data.yaml").is_file() and (ds_dir / "annotations" / "val.json").is_file()

    dota = tmp_path / "dota"
    res = run_cli("convert", str(site / "labels.json"), "--from", "coco", "--to", "dota", "--out", str(dota))
    assert res.returncode == 0, res.stderr
    back = read_labels(dota, "dota")
    assert back.counts() == counts


def test_convert_reports_malformed_line_with_file_and_line(tmp_path):
    d = tmp_path / "dota"
    d.mkdir()
    (d / "a.txt").write_text("gsd:0.5\n1 1 20 1 20 5 1 5 large-vehicle 0\n1 1 20 1 oops\n")
    res = run_cli("convert", str(d), "--from", "dota", "--to", "coco", "--out", str(tmp_path / "c.json"))
    assert res.returncode == 2 and "a.txt:3" in res.stderr
    res = run_cli("convert", str(d), "--from", "dota", "--to", "coco", "--out", str(tmp_path / "c.json"), "--lenient")
    assert res.returncode == 0 and "skipped" in res.stderr


def _exit_code(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_detect_refuses_an_unknown_precision(raster_factory, capsys):
    p = raster_factory(size=(40, 30))
    assert _exit_code(["detect", str(p), "--precision", "int4"]) == 2
    assert "precision" in capsys.readouterr().err


def test_detect_refuses_an_unknown_merge(raster_factory, capsys):
    p = raster_factory(size=(40, 30))
    assert _exit_code(["detect", str(p), "--merge", "wbf"]) == 2
    err = capsys.readouterr().err
    assert "--merge" in err and "nms-ios" in err


def test_usage_errors_exit_2_without_traceback():
    res = run_cli("detect")  # the scene argument is missing
    assert res.returncode == 2
    assert "Missing argument" in res.stderr and "Traceback" not in res.stderr


def test_gdal_cache_option_passes_through_and_defaults_to_the_library_cap(monkeypatch, raster_factory):
    import inspect

    from freightwatch.cli.density import density_cmd
    from freightwatch.cli.detect import detect_cmd
    from freightwatch.datasets.raster import DEFAULT_GDAL_CACHE_MB
    from freightwatch.inference import detect as detect_mod

    for cmd in (detect_cmd, density_cmd):
        assert inspect.signature(cmd).parameters["gdal_cache_mb"].default.default == DEFAULT_GDAL_CACHE_MB
    seen = []

    def fake_detect_scene(scene, detector, cfg, zones=None):  # stop before any model runs
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(detect_mod, "detect_scene", fake_detect_scene)
    p = raster_factory(size=(40, 30))
    for value, want in (("16", 16), ("0", None)):
        assert _exit_code(["detect", str(p), "--gdal-cache-mb", value]) == 0
        assert seen[-1].gdal_cache_mb == want


def test_detect_refuses_an_unknown_runtime_or_a_precision_it_lacks(raster_factory, capsys):
    p = raster_factory(size=(40, 30))
    assert _exit_code(["detect", str(p), "--runtime", "tensorrt"]) == 2
    assert "runtime must be one of" in capsys.readouterr().err
    assert _exit_code(["detect", str(p), "--runtime", "onnxruntime", "--precision", "bf16"]) == 2
    assert "supports precision fp32" in capsys.readouterr().err


def test_detect_class_iou_option(monkeypatch, raster_factory, capsys):
    from freightwatch.cli.detect import _parse_class_iou

    assert _parse_class_iou(None) is None and _parse_class_iou(["none"]) == {}
    assert _parse_class_iou(["railcar=0.4", "boat=0.6"]) == {"railcar": 0.4, "boat": 0.6}
    p = raster_factory(size=(40, 30))
    assert _exit_code(["detect", str(p), "--class-iou", "tank=0.4"]) == 2
    assert "--class-iou" in capsys.readouterr().err
