import json

import pytest
from shapely.geometry import Point, box

from freightwatch.datasets.geo import Zone, read_zones, write_geojson, write_zones
from freightwatch.errors import ZonesError


def test_geojson_in_scene_crs_and_wgs84_copy(tmp_path):
    geom = box(447000, 4441000, 447100, 4441050)
    paths = write_geojson(tmp_path / "d.geojson", [(geom, {"cls": "truck"})], "EPSG:32651", wgs84_copy=True)
    assert [p.name for p in paths] == ["d.geojson", "d_4326.geojson"]
    utm = json.loads(paths[0].read_text())
    assert utm["crs"]["properties"]["name"].endswith("32651")
    wgs = json.loads(paths[1].read_text())
    assert "crs" not in wgs
    lon, lat = wgs["features"][0]["geometry"]["coordinates"][0][0]
    assert 122 < lon < 123 and 40 < lat < 40.2  # UTM 51N easting 447 km lies west of its 123 E meridian


def test_zones_round_trip_and_reprojection(tmp_path):
    z = [Zone("lot_a", "lot", box(447000, 4441000, 447200, 4441100), ("truck",))]
    p = write_zones(tmp_path / "zones.geojson", z, "EPSG:32651")[0]
    zones, crs = read_zones(p)
    assert crs == "EPSG:32651" and zones[0].name == "lot_a" and zones[0].classes == ("truck",)
    assert zones[0].geometry.equals_exact(z[0].geometry, 1e-6)
    wgs, crs2 = read_zones(p, to_crs="EPSG:4326")
    assert crs2 == "EPSG:4326" and wgs[0].geometry.bounds[0] < 180
    back, _ = read_zones(p, to_crs="EPSG:32651")
    assert back[0].geometry.area == pytest.approx(20000)


def _fc(features, crs=None):
    fc = {"type": "FeatureCollection", "features": features}
    if crs:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    return json.dumps(fc)


@pytest.mark.parametrize("text,needle", [
    ("{not json", "not a readable GeoJSON"),
    (json.dumps({"type": "Feature"}), "FeatureCollection"),
    (_fc([{"type": "Feature", "properties": {"kind": "lot"}, "geometry": None}]), "no 'name'"),
    (_fc([{"type": "Feature", "properties": {"name": "a", "kind": "mall"}, "geometry": None}]), "kind 'mall'"),
    (_fc([{"type": "Feature", "properties": {"name": "a", "kind": "lot"},
           "geometry": {"type": "Point", "coordinates": [1, 2]}}]), "Polygon"),
    (_fc([{"type": "Feature", "properties": {"name": "a", "kind": "lot"}, "geometry": {"type": "Blob"}}]),
     "bad geometry"),
    (_fc([], crs="EPSG:999999"), "unrecognised 'crs'"),
])
def test_bad_zone_files(tmp_path, text, needle):
    p = tmp_path / "z.geojson"
    p.write_text(text)
    with pytest.raises(ZonesError) as err:
        read_zones(p)
    assert "z.geojson" in str(err.value) and needle in str(err.value)


def test_duplicate_zone_names(tmp_path):
    f = {"type": "Feature", "properties": {"name": "a", "kind": "lot"},
         "geometry": json.loads(json.dumps(Point(0, 0).buffer(1).__geo_interface__))}
    p = tmp_path / "z.geojson"
    p.write_text(_fc([f, f]))
    with pytest.raises(ZonesError, match="used twice"):
        read_zones(p)
