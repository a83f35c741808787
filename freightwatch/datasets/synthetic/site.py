"""Putting a synthetic site together: layout + rendering + labels + zones, and writing it to disk."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from affine import Affine
from shapely import affinity
from shapely.geometry import MultiPolygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.formats.coco import write_coco
from freightwatch.datasets.geo import Zone, write_geotiff, write_zones
from freightwatch.datasets.synthetic.layout import Layout, plan_site
from freightwatch.datasets.synthetic.render import render_layout

# Top-left corner of the default site: the Dandong (CN) / Sinuiju (KP) crossing of the Yalu,
# UTM zone 51N. The Sino-Korean Friendship Bridge is near (618917, 4441743).
DEFAULT_ORIGIN: tuple[float, float] = (618400.0, 4442250.0)


@dataclass
class SiteConfig:
    """What to generate.

    Attributes:
        size_m: Side of the square site in metres (used where ``width_m``/``height_m`` are unset).
        gsd: Ground sample distance, metres per pixel.
        seed: Random seed; the same config gives byte-identical output.
        activity: 0-1, how busy the site is: lot occupancy, trains, boats, queues.
        origin: Map coordinates (easting, northing) of the image's top-left corner, in ``crs``.
        crs: Projected CRS with metre units.
        acquired: Acquisition time written to the GeoTIFF and labels, if any.
        width_m: Site width in metres (overrides ``size_m``).
        height_m: Site height in metres (overrides ``size_m``).
    """

    size_m: float = 1000.0
    gsd: float = 0.5
    seed: int = 0
    activity: float = 0.7
    origin: tuple[float, float] = DEFAULT_ORIGIN
    crs: str = "EPSG:32651"
    acquired: datetime | None = None
    width_m: float | None = None
    height_m: float | None = None

    def shape_px(self) -> tuple[int, int]:
        """Image ``(height, width)`` in pixels."""
        w = self.width_m if self.width_m is not None else self.size_m
        h = self.height_m if self.height_m is not None else self.size_m
        return max(1, int(round(h / self.gsd))), max(1, int(round(w / self.gsd)))

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot make a site."""
        if not self.gsd > 0:
            raise ValueError(f"gsd must be positive, got {self.gsd}")
        for name in ("size_m", "width_m", "height_m"):
            v = getattr(self, name)
            if v is not None and not v >= 300:
                raise ValueError(f"{name} must be at least 300 m (room for a river, lots and a yard), got {v}")
        if not 0.0 <= self.activity <= 1.0:
            raise ValueError(f"activity must be within [0, 1], got {self.activity}")
        if not 0.05 <= self.gsd <= 5.0:
            raise ValueError(f"gsd must be within [0.05, 5] m, got {self.gsd}")

    @property
    def transform(self) -> Affine:
        """North-up pixel -> map transform."""
        return Affine(self.gsd, 0.0, float(self.origin[0]), 0.0, -self.gsd, float(self.origin[1]))

    @property
    def scene_id(self) -> str:
        """A name identifying the scene (seed, GSD, activity)."""
        return f"synthetic-s{self.seed}-g{self.gsd:g}-a{self.activity:g}"


@dataclass
class SyntheticSite:
    """A generated site.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: The labelled trucks, railcars and boats (pixel polygons) with georeferencing.
        zones: Lots, bridge, rail yard, river, docks and main roads in the scene CRS.
        config: The config it was made from.
        layout: The underlying geometry in site metres (for debugging and extra tests).
    """

    image: np.ndarray
    labels: ImageLabels
    zones: list[Zone]
    config: SiteConfig
    layout: Layout | None = field(default=None, repr=False)


def generate_site(config: SiteConfig | None = None) -> SyntheticSite:
    """Generate a synthetic border-crossing scene with labels and zones.

    Args:
        config: What to generate (defaults: 1000 m at 0.5 m, seed 0).

    Returns:
        The :class:`SyntheticSite`.

    Raises:
        ValueError: invalid config values.
    """
    cfg = config or SiteConfig()
    cfg.validate()
    h, w = cfg.shape_px()
    # Separate streams: changing how things are drawn must not move where they are.
    layout_seq, render_seq = np.random.SeedSequence(int(cfg.seed)).spawn(2)
    layout = plan_site(w * cfg.gsd, h * cfg.gsd, cfg.activity, np.random.default_rng(layout_seq))
    image = render_layout(layout, cfg.gsd, np.random.default_rng(render_seq))
    anns = []
    for v in layout.labelled():
        poly = v.corners() / cfg.gsd
        state = v.state if v.cls == "boat" else "unknown"
        anns.append(Annotation(v.cls, poly, state=state, attrs={"kind": v.kind}))
    labels = ImageLabels(
        file_name="scene.tif", width=w, height=h, annotations=anns, gsd=cfg.gsd, crs=cfg.crs,
        transform=cfg.transform, scene_id=cfg.scene_id, acquired=cfg.acquired,
        attrs={"synthetic": True, "seed": int(cfg.seed), "activity": float(cfg.activity)},
    )
    return SyntheticSite(image, labels, site_zones(layout, cfg), cfg, layout)


def site_zones(layout: Layout, config: SiteConfig) -> list[Zone]:
    """The site's zones in map coordinates, clipped to the image."""
    frame = box(0, 0, layout.width_m, layout.height_m)
    ox, oy = float(config.origin[0]), float(config.origin[1])

    def to_map(geom: BaseGeometry) -> BaseGeometry | None:
        g = geom.intersection(frame)
        polys = [p for p in ([g] if g.geom_type == "Polygon" else getattr(g, "geoms", [])) if
                 p.geom_type == "Polygon" and p.area > 1.0]
        if not polys:
            return None
        g = polys[0] if len(polys) == 1 else MultiPolygon(polys)
        # Site metres (y down) -> map (northing up).
        return affinity.affine_transform(g, [1.0, 0.0, 0.0, -1.0, ox, oy])

    zones: list[Zone] = []

    def add(name: str, kind: str, geom: BaseGeometry, classes: tuple[str, ...]) -> None:
        g = to_map(geom)
        if g is not None:
            zones.append(Zone(name, kind, g, classes))

    # Zones are disjoint (the bridge deck is cut out of the river and the roads, docks out of the
    # river) so per-zone counts add up and no object or density pixel is counted twice.
    deck = layout.bridge.deck
    docks = unary_union([d.polygon for d in layout.docks]) if layout.docks else None
    for lot in layout.lots:
        add(lot.name, "lot", lot.polygon, ("truck",))
    add("bridge", "bridge", deck, ("truck",))
    add("rail_yard", "rail_yard", layout.yard.polygon, ("railcar",))
    water = layout.water.difference(deck)
    add("river", "river", water.difference(docks) if docks is not None else water, ("boat",))
    for dock in layout.docks:
        add(dock.name, "dock", dock.polygon, ("boat",))
    mains = [r.polygon() for r in layout.roads if r.kind == "main"]
    if mains:
        add("main_roads", "road", unary_union(mains).difference(deck), ("truck",))
    return zones


def write_site(site: SyntheticSite, out_dir: str | Path) -> dict[str, Path]:
    """Write ``scene.tif`` (RGB GeoTIFF), ``labels.json`` (COCO) and ``zones.geojson``.

    Args:
        site: A generated site.
        out_dir: Output folder (created).

    Returns:
        ``{"image": ..., "labels": ..., "zones": ...}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = site.config
    tags = {"FREIGHTWATCH_SYNTHETIC": site.labels.scene_id or "synthetic"}
    if cfg.acquired is not None:
        tags["ACQUISITION_TIME"] = cfg.acquired.isoformat()
    image_path = write_geotiff(out / "scene.tif", np.ascontiguousarray(site.image.transpose(2, 0, 1)), cfg.crs,
                               site.labels.transform or cfg.transform, tags=tags, photometric_rgb=True)
    labels_path = write_coco([replace(site.labels, file_name="scene.tif")], out / "labels.json")
    zones_path = write_zones(out / "zones.geojson", site.zones, cfg.crs)[0]
    return {"image": image_path, "labels": labels_path, "zones": zones_path}

