"""Property tests for the zones reader: whatever the file holds, ``read_zones`` returns zones or
raises :class:`ZonesError` (an :class:`InputFileError` naming the file), nothing else.

Inputs: arbitrary bytes, arbitrary JSON, and near-valid zone files (a valid file with one node
replaced by an arbitrary JSON value), read as they are and reprojected to a UTM CRS.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freightwatch.datasets.geo import ZONE_KINDS, read_zones
from freightwatch.errors import ZonesError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEAR = settings(FUZZ, max_examples=250)

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["Polygon", "MultiPolygon", "Point", "FeatureCollection", "Feature",
                                              "lot", "truck", "EPSG:32651", "EPSG:4326", "name", "crs"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["type", "features", "properties", "geometry", "coordinates", "name", "kind", "classes",
                         "crs"]) | st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)


def _ring(x: float, y: float, d: float) -> list[list[float]]:
    return [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]


def _zones_doc() -> dict:
    """A valid two-zone file in UTM 51N: a polygon lot and a multipolygon dock, with classes."""
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32651"}},
        "features": [
            {"type": "Feature", "properties": {"name": "lot_a", "kind": "lot", "classes": ["truck"]},
             "geometry": {"type": "Polygon", "coordinates": [_ring(447000, 4441000, 100)]}},
            {"type": "Feature", "properties": {"name": "pier", "kind": ZONE_KINDS[4]},
             "geometry": {"type": "MultiPolygon", "coordinates": [[_ring(447200, 4441000, 50)],
                                                                  [[[447300, 4441000], [447350, 4441000],
                                                                    [447300, 4441050], [447300, 4441000]]]]}},
        ],
    }


def _paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    """Every node of a JSON document, as the key/index path that reaches it."""
    out = [prefix]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out.extend(_paths(v, (*prefix, k)))
    return out


NODES = [p for p in _paths(_zones_doc()) if "coordinates" not in p[:-2]]
"""Nodes of the seed document, each equally likely to be mutated (single coordinates left out: they
would outnumber the rest)."""

DELETE = object()


def _mutate(doc: object, path: tuple, value: object) -> object:
    """Replace (or, with :data:`DELETE`, remove) the node at ``path``."""
    if not path:
        return None if value is DELETE else value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _reads_or_zones_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "zones.geojson"
        path.write_bytes(data)
        for to_crs in (None, "EPSG:32651"):
            try:
                zones, crs = read_zones(path, to_crs=to_crs)
            except ZonesError as exc:
                assert exc.path == str(path)
                assert "\n" not in str(exc) and len(str(exc)) < 600  # one line, of sane length
                continue
            assert crs is not None
            for z in zones:
                assert z.geometry.geom_type in ("Polygon", "MultiPolygon") and not z.geometry.is_empty


def test_the_seed_document_is_valid() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "z.geojson"
        path.write_text(json.dumps(_zones_doc()))
        zones, crs = read_zones(path, to_crs="EPSG:4326")
    assert [z.name for z in zones] == ["lot_a", "pier"] and crs == "EPSG:4326"


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_fuzz_zones_bytes(data: bytes) -> None:
    _reads_or_zones_error(data)


@FUZZ
@given(JSON_VALUE)
def test_fuzz_zones_any_json(value: object) -> None:
    _reads_or_zones_error(json.dumps(value).encode())


@NEAR
@given(st.lists(st.tuples(st.sampled_from(NODES), JSON_VALUE | st.just(DELETE)), min_size=1, max_size=3))
def test_fuzz_zones_near_valid(edits: list[tuple[tuple, object]]) -> None:
    doc: object = _zones_doc()
    for path, value in edits:
        try:
            doc = _mutate(doc, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier edit removed or replaced this node
            continue
    _reads_or_zones_error(json.dumps(doc).encode())


@pytest.mark.parametrize("text", [
    "[" * 100_000,                                              # nesting deeper than the JSON parser allows
    json.dumps({"type": "FeatureCollection", "features": [], "crs": {"properties": {"name": 4326.5}}}),
    json.dumps({"type": "FeatureCollection", "features": [{"properties": ["name", "kind"]}]}),
    json.dumps({"type": "FeatureCollection", "features": [
        {"properties": {"name": "a", "kind": "lot", "classes": ["car"]}, "geometry": None}]}),
    json.dumps({"type": "FeatureCollection", "features": [
        {"properties": {"name": "a", "kind": "lot"},   # a bow tie: invalid, zero area after repair
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 1], [0, 0]]]}}]}),
    json.dumps({"type": "FeatureCollection", "features": [
        {"properties": {"name": "a", "kind": "lot"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1e308, 0], [1e308, 1e308], [0, 0]]]}}]}),
])
def test_known_hard_cases_give_zones_error(text: str) -> None:
    _reads_or_zones_error(text.encode())
