"""Tests of the procedural border-crossing generator (freightwatch.datasets.synthetic)."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest
from shapely import contains_xy
from shapely.geometry import Polygon
from shapely.ops import unary_union

from freightwatch.datasets.formats.coco import read_coco
from freightwatch.datasets.geo import read_zones
from freightwatch.datasets.raster import Scene
from freightwatch.datasets.synthetic import SiteConfig, SyntheticSite, generate_site, write_site

SIZE = 400.0  # small sites keep the file fast; layouts shrink features to fit


@cache
def _site(seed: int = 3, gsd: float = 0.5, activity: float = 0.7) -> SyntheticSite:
    return generate_site(SiteConfig(size_m=SIZE, gsd=gsd, seed=seed, activity=activity))


def _digest(site: SyntheticSite) -> str:
    h = hashlib.sha256(site.image.tobytes())
    for a in site.labels.annotations:
        h.update(a.cls.encode())
        h.update(a.state.value.encode())
        h.update(np.round(a.polygon, 9).tobytes())
    return h.hexdigest()


def _sides_m(poly: np.ndarray, gsd: float) -> tuple[float, float]:
    """Length and width in metres of a 4-point oriented box in pixels."""
    p = np.asarray(poly) * gsd
    a, b = np.linalg.norm(p[1] - p[0]), np.linalg.norm(p[2] - p[1])
    return max(a, b), min(a, b)


def _zones_by_kind(site: SyntheticSite) -> dict[str, object]:
    kinds: dict[str, list] = {}
    for z in site.zones:
        kinds.setdefault(z.kind, []).append(z.geometry)
    return {k: unary_union(v) for k, v in kinds.items()}


def test_deterministic_per_seed() -> None:
    cfg = SiteConfig(size_m=SIZE, gsd=0.5, seed=11, activity=0.6)
    a, b = generate_site(cfg), generate_site(cfg)
    assert a.image.dtype == np.uint8 and a.image.shape == (800, 800, 3)
    assert _digest(a) == _digest(b)
    c = generate_site(SiteConfig(size_m=SIZE, gsd=0.5, seed=12, activity=0.6))
    assert _digest(c) != _digest(a)
    assert not np.array_equal(a.image, c.image)


def test_georeferencing_and_shape() -> None:
    cfg = SiteConfig(width_m=500, height_m=300, gsd=1.0, seed=2, origin=(618000.0, 4442000.0))
    site = generate_site(cfg)
    assert site.image.shape == (300, 500, 3)
    lab = site.labels
    assert (lab.width, lab.height, lab.gsd, lab.crs) == (500, 300, 1.0, "EPSG:32651")
    t = lab.transform
    assert (t.a, t.b, t.c, t.d, t.e, t.f) == (1.0, 0.0, 618000.0, 0.0, -1.0, 4442000.0)
    assert lab.scene_id and lab.file_name == "scene.tif"


@pytest.mark.parametrize("gsd", [0.5, 1.0])
def test_vehicle_sizes_are_realistic(gsd: float) -> None:
    counts: Counter[str] = Counter()
    for seed in (3, 5):
        site = _site(seed, gsd)
        for ann in site.labels.annotations:
            length, width = _sides_m(ann.polygon, gsd)
            counts[ann.cls] += 1
            if ann.cls == "truck":
                assert 14.0 <= length <= 19.0 and 2.3 <= width <= 2.8, (length, width)
            elif ann.cls == "railcar":
                assert 12.0 <= length <= 20.0 and 2.6 <= width <= 3.4, (length, width)
            else:
                assert 5.0 - 1e-6 <= length <= 60.0 + 1e-6 and 1.5 <= width <= length / 2, (length, width)
    assert counts["truck"] > 20 and counts["railcar"] > 5 and counts["boat"] >= 1


def test_same_layout_at_any_gsd() -> None:
    """Objects are placed in metres, so two GSDs give the same objects at scaled pixel positions."""
    fine, coarse = _site(3, 0.5), _site(3, 1.0)
    assert fine.labels.counts() == coarse.labels.counts()
    for a, b in zip(fine.labels.annotations, coarse.labels.annotations, strict=True):
        np.testing.assert_allclose(a.polygon * 0.5, b.polygon * 1.0, atol=1e-6)


def test_labels_inside_image_and_not_overlapping() -> None:
    for seed in (3, 5):
        site = _site(seed)
        lab = site.labels
        polys = []
        for ann in lab.annotations:
            assert ann.polygon[:, 0].min() >= 0 and ann.polygon[:, 0].max() <= lab.width
            assert ann.polygon[:, 1].min() >= 0 and ann.polygon[:, 1].max() <= lab.height
            polys.append(Polygon(ann.polygon))
        for i, p in enumerate(polys):
            for q in polys[i + 1:]:
                assert p.intersection(q).area < 0.5, "labelled objects overlap"


def test_zones_present() -> None:
    site = _site(3)
    kinds = Counter(z.kind for z in site.zones)
    assert kinds["lot"] >= 2
    for kind in ("bridge", "rail_yard", "river", "dock"):
        assert kinds[kind] >= 1, kind
    x0, y0 = site.config.origin
    ext = Polygon([(x0, y0), (x0 + SIZE, y0), (x0 + SIZE, y0 - SIZE), (x0, y0 - SIZE)]).buffer(1e-6)
    for z in site.zones:
        assert z.geometry.is_valid and ext.contains(z.geometry), z.name
    assert len({z.name for z in site.zones}) == len(site.zones)


def test_trucks_in_lots_railcars_in_yard() -> None:
    for seed in (3, 5, 8):
        site = _site(seed)
        lab = site.labels
        zones = _zones_by_kind(site)
        paved = unary_union([zones["lot"], zones["bridge"], zones["road"]])
        trucks = [a.to_map(lab.transform) for a in lab.annotations if a.cls == "truck"]
        assert trucks
        in_lot = np.mean([zones["lot"].contains(t.centroid) for t in trucks])
        on_paved = np.mean([paved.contains(t.centroid) for t in trucks])
        assert in_lot >= 0.6, in_lot
        assert on_paved >= 0.85, on_paved
        yard = zones["rail_yard"].buffer(0.01)
        for a in lab.annotations:
            if a.cls == "railcar":
                assert yard.contains(a.to_map(lab.transform))


def test_boats_docked_near_docks_undocked_in_open_water() -> None:
    seen = Counter()
    for seed in (3, 5, 7, 11):
        site = _site(seed)
        lab = site.labels
        zones = _zones_by_kind(site)
        docks, river = zones["dock"], zones["river"]
        for ann in lab.annotations:
            if ann.cls != "boat":
                continue
            g = ann.to_map(lab.transform)
            seen[ann.state.value] += 1
            if ann.state.value == "docked":
                assert g.distance(docks) <= 15.0
            else:
                assert ann.state.value == "undocked"
                assert g.intersection(river).area >= 0.99 * g.area
                assert g.distance(docks) > 15.0
    assert seen["docked"] >= 2 and seen["undocked"] >= 2, seen


def test_activity_scales_counts() -> None:
    quiet = _site(4, 1.0, 0.1).labels.counts()
    busy = _site(4, 1.0, 1.0).labels.counts()
    assert quiet["truck"] < 0.5 * busy["truck"], (quiet, busy)
    assert quiet["railcar"] <= busy["railcar"]
    assert quiet["truck"] + quiet["railcar"] + quiet["boat"] < busy["truck"] + busy["railcar"] + busy["boat"]


def test_distractors_are_not_labelled() -> None:
    total: Counter[str] = Counter()
    for seed in (3, 5, 8):
        site = _site(seed)
        assert site.layout is not None
        kinds = Counter(v.cls for v in site.layout.vehicles)
        total.update(kinds)
        assert {a.cls for a in site.labels.annotations} <= {"truck", "railcar", "boat"}
        assert len(site.labels.annotations) == kinds["truck"] + kinds["railcar"] + kinds["boat"]
    assert total["car"] > 0 and total["container"] > 0


def test_looks_like_imagery() -> None:
    """Cheap sanity on the pixels: no flat fills, nothing saturated, vehicles stand out from lots."""
    site = _site(3)
    img = site.image.astype(np.float32)
    assert 50 < img.mean() < 180
    assert (site.image == 255).mean() < 0.01 and (site.image == 0).mean() < 0.01
    # Sensor noise and texture: neighbouring pixels differ a little almost everywhere.
    assert np.abs(np.diff(img[..., 1], axis=1)).mean() > 1.0
    # The water is darker than the land around it.
    h, w = site.image.shape[:2]
    yy, xx = np.mgrid[0:h:8, 0:w:8]
    mx, my = site.labels.transform * (xx + 0.5, yy + 0.5)
    wet = contains_xy(_zones_by_kind(site)["river"], mx, my)
    sub = img[::8, ::8].mean(axis=2)
    assert sub[wet].mean() < sub[~wet].mean() - 10


def test_write_site_round_trip(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    when = datetime(2024, 5, 17, 2, 30, tzinfo=UTC)
    site = generate_site(SiteConfig(size_m=SIZE, gsd=1.0, seed=7, activity=0.8, acquired=when))
    paths = write_site(site, tmp_path / "demo")
    assert {k: p.name for k, p in paths.items()} == {
        "image": "scene.tif", "labels": "labels.json", "zones": "zones.geojson"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    with Scene(paths["image"]) as scene:
        info = scene.info
        assert info.crs == "EPSG:32651"
        assert info.gsd == pytest.approx(site.config.gsd)
        assert (info.width, info.height, info.count, info.dtype) == (400, 400, 3, "uint8")
        assert info.acquired == when
        assert info.transform == site.labels.transform
        rgb, mask = scene.read_rgb()
        assert mask.all()
        np.testing.assert_array_equal(rgb, site.image)
    labels = read_coco(paths["labels"])
    assert len(labels) == 1
    im = labels.images[0]
    assert im.file_name == "scene.tif" and im.gsd == pytest.approx(1.0) and im.crs == "EPSG:32651"
    assert im.counts() == site.labels.counts()
    assert Counter((a.cls, a.state.value) for a in im.annotations) == Counter(
        (a.cls, a.state.value) for a in site.labels.annotations)
    zones, crs = read_zones(paths["zones"])
    assert crs == "EPSG:32651"
    assert Counter(z.kind for z in zones) == Counter(z.kind for z in site.zones)


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="activity"):
        generate_site(SiteConfig(size_m=SIZE, activity=1.5))
    with pytest.raises(ValueError, match="gsd"):
        generate_site(SiteConfig(size_m=SIZE, gsd=0.0))
    with pytest.raises(ValueError, match="size_m"):
        generate_site(SiteConfig(size_m=50))


def test_zones_are_disjoint_so_counts_add_up():
    from freightwatch.datasets.synthetic import SiteConfig, generate_site

    site = generate_site(SiteConfig(size_m=600, gsd=1.0, seed=4))
    zs = site.zones
    for i, a in enumerate(zs):
        for b in zs[i + 1:]:
            assert a.geometry.intersection(b.geometry).area < 1.0, (a.name, b.name)
