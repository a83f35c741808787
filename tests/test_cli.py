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
