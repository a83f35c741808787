"""Site files, calendars and scene catalogs: what is counted where, and when each scene was taken."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import make_raster

from freightwatch.activity import calendar as calmod
from freightwatch.activity.calendar import CalendarConfig, CalendarError, SiteCalendar, Window, anchor_date
from freightwatch.activity.catalog import CatalogError, pattern_regex, read_catalog, time_from_name
from freightwatch.activity.site import SiteError, load_site
from freightwatch.datasets.geo import write_geotiff

# -- calendar -------------------------------------------------------------------------------------


def test_lunar_new_year_window_runs_to_the_lantern_festival():
    assert anchor_date("lunar_new_year", 2016) == date(2016, 2, 8)
    assert anchor_date("lantern_festival", 2016) == date(2016, 2, 22)
    cal = SiteCalendar(CalendarConfig(countries=("CN", "KP")))
    ctx = cal.context([date(2016, 1, 31), date(2016, 2, 1), date(2016, 2, 22), date(2016, 2, 23)])
    assert list(ctx["window"]) == ["", "lunar_new_year", "lunar_new_year", ""]
    assert "2016-02-01 to 2016-02-22" in ctx["window_detail"][1]


def test_make_up_working_days_weekends_and_holidays_per_country():
    cal = SiteCalendar(CalendarConfig(countries=("CN", "KP")))
    ctx = cal.context([date(2016, 2, 14), date(2016, 2, 13), date(2016, 10, 1), date(2016, 4, 15), date(2016, 3, 9)])
    sun_makeup, sat, national, day_of_sun, ordinary = (ctx.iloc[i] for i in range(5))
    assert sun_makeup["makeup_workday"] and sun_makeup["day_type"] == "workday" and not sun_makeup["weekend"]
    assert sat["weekend"] and sat["day_type"] == "saturday"
    assert national["category"] == "golden_week" and "CN: National Day" in national["holiday_names"]
    assert day_of_sun["holiday"] and "KP:" in day_of_sun["holiday_names"] and day_of_sun["category"] == "holiday"
    assert ordinary["category"] == "none" and ordinary["day_type"] == "workday" and not ordinary["holiday"]


def test_weekend_override_and_custom_windows():
    cfg = CalendarConfig(countries=("KP",), weekend={"KP": (6,)},
                         windows=(Window("trade_fair", start=date(2016, 3, 1), end=date(2016, 3, 3)),))
    ctx = SiteCalendar(cfg).context([date(2016, 3, 5), date(2016, 3, 6), date(2016, 3, 2)])
    assert list(ctx["day_type"]) == ["workday", "sunday", "workday"]  # KP: Saturday is a working day here
    assert list(ctx["window"]) == ["", "", "trade_fair"]
    with pytest.raises(CalendarError, match="anchor"):
        Window("bad", anchor="lunar-ish")


def test_unknown_country_is_an_error_and_missing_kp_calendar_falls_back(monkeypatch):
    with pytest.raises(CalendarError, match="unknown country code 'XX'"):
        SiteCalendar(CalendarConfig(countries=("CN", "XX")))
    # An older holidays release without KP: documented fallback with a warning, not an error.
    real = calmod.supported_country
    monkeypatch.setattr(calmod, "supported_country", lambda c: c != "KP" and real(c))
    cal = SiteCalendar(CalendarConfig(countries=("CN", "KP")))
    assert cal.countries == ("CN", "KP") and any("no calendar for KP" in w for w in cal.warnings)
    ctx = cal.context([date(2016, 4, 15), date(2016, 2, 10)])
    assert not ctx["holiday"][0]  # KP's Day of the Sun is unknown without its calendar
    assert ctx["window"][1] == "lunar_new_year"  # festival windows still apply


# -- site file ------------------------------------------------------------------------------------


def test_bundled_site_matches_the_synthetic_demo_site():
    from freightwatch.datasets.synthetic import SiteConfig, plan_site, site_zones

    site = load_site("border_crossing")
    assert site.countries == ("CN", "KP") and site.timezone == "Asia/Shanghai"
    cfg = SiteConfig()
    h, w = cfg.shape_px()
    layout_seq, _ = np.random.SeedSequence(cfg.seed).spawn(2)
    zones = site_zones(plan_site(w * cfg.gsd, h * cfg.gsd, cfg.activity, np.random.default_rng(layout_seq)), cfg)
    assert [z.name for z in site.zones] == [z.name for z in zones]
    assert site.zones_crs == "EPSG:32651"
    for a, b in zip(site.zones, zones, strict=True):
        assert a.classes == b.classes and a.kind == b.kind
        assert a.geometry.symmetric_difference(b.geometry).area < 1e-3 * b.geometry.area
    assert {c for _, c in site.zone_classes()} == {"truck", "railcar", "boat"}
    assert site.typical_count("lot_4", "truck") == 132


def _site_file(tmp_path: Path, **over) -> Path:
    zones = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32651"}},
             "features": [{"type": "Feature", "properties": {"name": "lot", "kind": "lot", "classes": ["truck"]},
                           "geometry": {"type": "Polygon", "coordinates": [[[447000, 4441980], [447020, 4441980],
                                                                            [447020, 4442000], [447000, 4442000],
                                                                            [447000, 4441980]]]}}]}
    (tmp_path / "zones.geojson").write_text(json.dumps(zones))
    data = {"name": "t", "countries": ["CN"], "timezone": "Asia/Shanghai", "zones": "zones.geojson", **over}
    import yaml

    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("over, message", [
    ({"countries": ["CN", "ZZ"]}, "unknown country code 'ZZ'"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"zones": "nope.geojson"}, "does not exist"),
    ({"classes": {"lot": ["car"]}}, "unknown class"),
    ({"classes": {"pier": ["boat"]}}, "not in the zones file"),
    ({"colour": "red"}, "unknown key"),
    ({"calendar": {"windows": [{"name": "x", "anchor": "someday"}]}}, "anchor"),
])
def test_bad_site_files_name_the_file_and_the_problem(tmp_path, over, message):
    p = _site_file(tmp_path, **over)
    with pytest.raises(SiteError, match=message) as err:
        load_site(p)
    assert str(p) in str(err.value)


def test_site_file_overrides(tmp_path):
    p = _site_file(tmp_path, classes={"lot": ["truck", "railcar"]}, methods={"detector_max_gsd": 2.0},
                   calendar={"weekend": {"CN": ["sun"]}})
    site = load_site(p)
    assert site.zone_classes() == [("lot", "truck"), ("lot", "railcar")]
    assert site.detector_max_gsd == 2.0 and site.calendar.weekend == {"CN": (6,)}


# -- catalogs -------------------------------------------------------------------------------------


def test_time_from_file_names():
    assert time_from_name("20160214_021234_0e0e_3B_AnalyticMS.tif") == datetime(2016, 2, 14, 2, 12, 34, tzinfo=UTC)
    assert time_from_name("S2_2016-03-01.tif") == datetime(2016, 3, 1, tzinfo=UTC)
    assert time_from_name("scene_12345678.tif") is None  # digits that are no date
    assert time_from_name("site_7_2016.tif") is None
    assert time_from_name("img-16.052.tif", ["img-%y.%j"]) == datetime(2016, 2, 21, tzinfo=UTC)
    with pytest.raises(ValueError, match="unsupported field"):
        pattern_regex("%Q")


def _scene(path: Path, tags=None, gsd=3.0) -> Path:
    return make_raster(path, size=(32, 32), gsd=gsd, tags=tags)


def test_folder_catalog_times_from_tags_sidecar_and_names_and_reports_the_rest(tmp_path):
    root = tmp_path / "cat"
    _scene(root / "a" / "PS_20160301_023000.tif")
    _scene(root / "tagged.tif", tags={"ACQUISITION_TIME": "2016-03-15T02:40:00Z"})
    _scene(root / "side.tif")
    (root / "side.json").write_text(json.dumps({"properties": {"acquired": "2016-03-22T02:35:00Z"}}))
    _scene(root / "side_mask.tif")  # a cloud mask beside its scene, not a scene
    _scene(root / "undated.tif")
    (root / "broken.tif").write_bytes(b"II*\x00garbage")
    dens = np.zeros((3, 8, 8), np.float32)
    from affine import Affine

    write_geotiff(root / "density.tif", dens, "EPSG:32651", Affine(3, 0, 0, 0, -3, 0),
                  descriptions=["truck", "railcar", "boat"])
    entries = read_catalog(root)
    by = {e.scene_id: e for e in entries}
    assert set(by) == {"a/PS_20160301_023000", "tagged", "side", "undated", "broken"}
    assert by["a/PS_20160301_023000"].time_source == "filename"
    assert by["tagged"].time == datetime(2016, 3, 15, 2, 40, tzinfo=UTC) and by["tagged"].time_source == "metadata"
    assert by["side"].time_source == "metadata" and by["side"].mask == root / "side_mask.tif"
    assert by["undated"].time is None and by["undated"].error is None and not by["undated"].usable
    assert by["broken"].error and "readable" in by["broken"].error
    assert abs(by["tagged"].gsd - 3.0) < 1e-9
    assert [e.scene_id for e in entries[:3]] == ["a/PS_20160301_023000", "tagged", "side"]  # by time


def test_csv_catalog(tmp_path):
    _scene(tmp_path / "s1.tif")
    _scene(tmp_path / "s2.tif", gsd=0.5)
    (tmp_path / "cat.csv").write_text("path,time,method,id\ns1.tif,2016-02-13T02:30:00Z,,first\n"
                                      "s2.tif,,detector,\nmissing.tif,2016-01-01,,\n")
    entries = read_catalog(tmp_path / "cat.csv")
    by = {e.scene_id: e for e in entries}
    assert by["first"].time == datetime(2016, 2, 13, 2, 30, tzinfo=UTC) and by["first"].time_source == "csv"
    assert by["s2"].time is None and by["s2"].method == "detector"
    assert by["missing"].error == "file does not exist"
    (tmp_path / "bad.csv").write_text("path,time\ns1.tif,yesterday\n")
    with pytest.raises(CatalogError, match=r"bad.csv:2: time 'yesterday'"):
        read_catalog(tmp_path / "bad.csv")
    (tmp_path / "nocol.csv").write_text("image,when\ns1.tif,2016\n")
    with pytest.raises(CatalogError, match="needs a 'path' column"):
        read_catalog(tmp_path / "nocol.csv")


def test_stac_item_collection(tmp_path):
    _scene(tmp_path / "img" / "one.tif")
    _scene(tmp_path / "img" / "one_udm.tif")
    items = [
        {"type": "Feature", "id": "one", "properties": {"datetime": "2016-02-13T02:30:00Z", "gsd": 3.0,
                                                        "eo:cloud_cover": 20},
         "assets": {"visual": {"href": "img/one.tif", "type": "image/tiff; application=geotiff"},
                    "udm": {"href": "img/one_udm.tif", "roles": ["cloud"]}}},
        {"type": "Feature", "id": "remote", "properties": {"datetime": "2016-02-20T02:30:00Z"},
         "assets": {"visual": {"href": "https://example.invalid/x.tif"}}},
    ]
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    entries = read_catalog(tmp_path / "items.json")
    one, remote = entries
    assert one.time_source == "stac" and one.mask == tmp_path / "img" / "one_udm.tif" and one.cloud_cover == 0.2
    assert remote.error and "remote asset" in remote.error
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(CatalogError, match="STAC"):
        read_catalog(tmp_path / "junk.json")
