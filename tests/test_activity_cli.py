"""`freightwatch activity` as a user runs it: simulate, compare --json, report, calendar, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from freightwatch.cli import main


def _main(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


@pytest.fixture(scope="module")
def sim_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "sim"
    _main(["activity", "simulate", "--site", "border_crossing", "--start", "2015-01-01", "--end", "2016-12-31",
           "--shock", "2016-07-01:-0.4", "--seed", "3", "--zone", "lot_1", "--zone", "river",
           "--highres-date", "2015-01-28", "--highres-date", "2016-02-13", "--out", str(out)])
    return out


def test_simulate_writes_parquet_and_csv_with_truth(sim_table):
    import pandas as pd

    pq = pd.read_parquet(sim_table.with_suffix(".parquet"))
    csv = pd.read_csv(sim_table.with_suffix(".csv"))
    assert len(pq) == len(csv) > 100
    assert {"site", "zone", "class", "time", "count", "lower", "upper", "method", "gsd", "valid_fraction", "status",
            "expected", "true_count"} <= set(csv.columns)
    assert csv["time"].str.endswith("Z").all() and set(csv["zone"]) == {"lot_1", "river"}


def test_compare_json_contract(sim_table, capsys):
    _main(["activity", "compare", str(sim_table) + ".csv", "--zone", "lot_1", "--class", "truck",
           "--before", "2015-01-28", "--after", "2016-02-13", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert isinstance(d["naive_change"], float) and isinstance(d["adjusted_change"], float)
    assert len(d["adjusted_ci"]) == 2 and d["adjusted_ci"][0] < d["adjusted_ci"][1]
    assert d["confounded"] is True and any("Lunar New Year" in r for r in d["reasons"])
    _main(["activity", "compare", str(sim_table) + ".parquet", "--zone", "lot_1", "--class", "truck",
           "--before", "2016-01-01:2016-06-30", "--after", "2016-07-01:2016-12-31"])
    text = capsys.readouterr().out
    assert "calendar-adjusted change" in text and "naive change" in text


def test_report_writes_markdown_html_and_charts(sim_table, tmp_path):
    out = tmp_path / "rep"
    _main(["activity", "report", str(sim_table) + ".parquet", "--out", str(out), "--zone", "lot_1",
           "--before", "2015-01-28", "--after", "2016-02-13", "--reference", "2015-01-01:2016-06-30"])
    md = (out / "report.md").read_text()
    assert "![counts_lot_1_truck.png](counts_lot_1_truck.png)" in md and "| zone | class | before |" in md
    assert "YES" in md  # the holiday comparison is confounded
    png = out / "counts_lot_1_truck.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "<img src=\"counts_lot_1_truck.png\"" in (out / "report.html").read_text()
    import pandas as pd

    an = pd.read_csv(out / "anomalies.csv")
    assert (an["kind"] == "period").any() and (pd.to_datetime(an.loc[an["kind"] == "period", "start"])
                                               >= "2016-06-01").all()


def test_baseline_anomalies_and_calendar_commands(sim_table, tmp_path, capsys):
    _main(["activity", "baseline", str(sim_table) + ".parquet", "--out", str(tmp_path / "b"),
           "--reference", "2015-01-01:2016-06-30"])
    model = json.loads((tmp_path / "b" / "model.json").read_text())
    assert {m["zone"] for m in model["models"]} == {"lot_1", "river"}
    import pandas as pd

    exp = pd.read_csv(tmp_path / "b" / "expected.csv")
    assert {"expected", "lower", "upper", "category"} <= set(exp.columns)
    assert len(exp) == 2 * exp["local_date"].nunique() > 700
    capsys.readouterr()
    _main(["activity", "anomalies", str(sim_table) + ".parquet", "--reference", "2015-01-01:2016-06-30", "--json"])
    assert any(a["kind"] == "period" for a in json.loads(capsys.readouterr().out))
    _main(["activity", "calendar", "--site", "border_crossing", "--start", "2016-01-25", "--end", "2016-02-29"])
    text = capsys.readouterr().out
    assert "Lunar New Year" in text and "make-up working day" in text and "KP:" in text


def test_csv_without_site_needs_site_option_and_errors_are_one_line(sim_table, tmp_path):
    import pandas as pd

    df = pd.read_csv(str(sim_table) + ".csv")
    df["site"] = "somewhere"
    df.to_csv(tmp_path / "t.csv", index=False)
    res = subprocess.run([sys.executable, "-m", "freightwatch", "activity", "compare", str(tmp_path / "t.csv"),
                          "--zone", "lot_1", "--class", "truck", "--before", "2015-01-28", "--after", "2016-02-13"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "pass --site" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "freightwatch", "activity", "simulate", "--site", "nowhere.yaml",
                          "--start", "2016-01-01", "--end", "2016-02-01", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "nowhere.yaml" in res.stderr and "does not exist" in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) <= 2
