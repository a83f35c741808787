"""The in-memory label representation every format reads into and writes from.

One :class:`Annotation` is one object: a class, an oriented polygon in pixel coordinates (x right,
y down, origin at the top-left corner of the top-left pixel) and the axis-aligned box derived
from it. One :class:`ImageLabels` holds the objects of an image or scene plus its georeferencing
when known. A :class:`LabelSet` is what readers return: images plus a report of what was dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from affine import Affine
from shapely.geometry import Polygon, box

from freightwatch.taxonomy import CLASSES, BoatState


@dataclass
class Annotation:
    """One labelled (or predicted) object.

    Attributes:
        cls: A freightwatch class name (one of :data:`~freightwatch.taxonomy.CLASSES`).
        polygon: ``(N, 2)`` float array of pixel coordinates, N >= 3 (4 for boxes and DOTA).
        state: Boat state; ``unknown`` for non-boats.
        score: Confidence for predictions, ``None`` for ground truth.
        attrs: Free-form extras kept through round trips where the format allows (e.g. source class).
    """

    cls: str
    polygon: np.ndarray
    state: BoatState = BoatState.UNKNOWN
    score: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"unknown class {self.cls!r}; expected one of {', '.join(CLASSES)}")
        poly = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)
        if len(poly) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(poly)}")
        self.polygon = poly
        self.state = BoatState(self.state)

    @classmethod
    def from_bbox(
        cls,
        cls_name: str,
        xyxy: tuple[float, float, float, float] | np.ndarray,
        **kwargs: Any,
    ) -> Annotation:
        """Build an annotation from an axis-aligned ``(xmin, ymin, xmax, ymax)`` box."""
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        return cls(cls_name, poly, **kwargs)

    @classmethod
    def from_rotated_box(
        cls,
        cls_name: str,
        center: tuple[float, float],
        length: float,
        width: float,
        angle_deg: float,
        **kwargs: Any,
    ) -> Annotation:
        """Build an oriented box: ``length`` along ``angle_deg`` (counter-clockwise from +x, image axes)."""
        a = np.deg2rad(angle_deg)
        u = np.array([np.cos(a), -np.sin(a)]) * length / 2  # y points down in images
        v = np.array([np.sin(a), np.cos(a)]) * width / 2
        c = np.asarray(center, dtype=np.float64)
        poly = np.stack([c - u - v, c + u - v, c + u + v, c - u + v])
        return cls(cls_name, poly, **kwargs)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Axis-aligned ``(xmin, ymin, xmax, ymax)`` in pixels."""
        x0, y0 = self.polygon.min(axis=0)
        x1, y1 = self.polygon.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the axis-aligned box (the point density targets are splatted at)."""
        x0, y0, x1, y1 = self.bbox
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def area(self) -> float:
        """Polygon area in square pixels."""
        return float(self.shape.area)

    @property
    def shape(self) -> Polygon:
        """The polygon as a shapely geometry (pixel coordinates)."""
        return Polygon(self.polygon)

    def translated(self, dx: float, dy: float) -> Annotation:
        """A copy shifted by ``(dx, dy)`` pixels."""
        return replace(self, polygon=self.polygon + np.array([dx, dy]), attrs=dict(self.attrs))

    def scaled(self, sx: float, sy: float | None = None) -> Annotation:
        """A copy with pixel coordinates multiplied (e.g. when resampling to another GSD)."""
        sy = sx if sy is None else sy
        return replace(self, polygon=self.polygon * np.array([sx, sy]), attrs=dict(self.attrs))

    def clipped(self, x0: float, y0: float, x1: float, y1: float) -> tuple[Annotation | None, float]:
        """Clip to a pixel rectangle.

        Returns:
            The clipped annotation (or ``None`` if nothing is left) and the visible fraction of
            the original area (0-1). The clipped polygon is the intersection's minimum rotated
            rectangle when the original was a 4-point polygon, so it stays a box.
        """
        shp = self.shape
        if not shp.is_valid:
            shp = shp.buffer(0)
        full = shp.area
        inter = shp.intersection(box(x0, y0, x1, y1))
        if inter.is_empty or inter.area <= 0 or full <= 0:
            return None, 0.0
        frac = float(inter.area / full)
        if frac >= 1.0 - 1e-9:
            return replace(self, attrs=dict(self.attrs)), 1.0
        geom = inter.minimum_rotated_rectangle if len(self.polygon) == 4 else inter
        if geom.geom_type != "Polygon":
            geom = geom.convex_hull
        coords = np.asarray(geom.exterior.coords)[:-1]
        # Rotated rectangles of clipped boxes can poke out a hair; keep them inside the window.
        coords[:, 0] = coords[:, 0].clip(x0, x1)
        coords[:, 1] = coords[:, 1].clip(y0, y1)
        return replace(self, polygon=coords, attrs=dict(self.attrs)), frac

    def to_map(self, transform: Affine) -> Polygon:
        """The polygon in map coordinates given the raster's affine transform."""
        xs, ys = self.polygon[:, 0], self.polygon[:, 1]
        mx, my = transform @ (xs, ys)
        return Polygon(np.column_stack([mx, my]))


@dataclass
class ImageLabels:
    """Objects of one image (a chip, tile or whole scene) and what is known of its geometry.

    Attributes:
        file_name: Image path relative to the dataset root (or absolute).
        width: Image width in pixels.
        height: Image height in pixels.
        annotations: The objects.
        gsd: Ground sample distance in metres, when known.
        crs: Coordinate reference system as a string (``EPSG:32651`` or WKT), when known.
        transform: Pixel -> map affine transform, when known.
        scene_id: Source scene, used to split datasets by scene rather than by chip.
        acquired: Acquisition time, when known.
        attrs: Free-form extras (e.g. COCO image id).
    """

    file_name: str
    width: int
    height: int
    annotations: list[Annotation] = field(default_factory=list)
    gsd: float | None = None
    crs: str | None = None
    transform: Affine | None = None
    scene_id: str | None = None
    acquired: datetime | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> Counter[str]:
        """Number of objects per class."""
        return Counter(a.cls for a in self.annotations)

    def map_geometries(self) -> list[Polygon]:
        """Each annotation's polygon in map coordinates (requires ``transform``)."""
        if self.transform is None:
            raise ValueError(f"{self.file_name}: no georeferencing (transform) for map coordinates")
        return [a.to_map(self.transform) for a in self.annotations]

    def centers(self) -> np.ndarray:
        """``(N, 2)`` array of object centres in pixels."""
        if not self.annotations:
            return np.zeros((0, 2))
        return np.array([a.center for a in self.annotations])


@dataclass
class LabelSet:
    """What a reader returns: the images plus a report of what it left out.

    Attributes:
        images: One entry per image.
        dropped: Objects dropped because their source class is unmapped, by source name.
        skipped: Malformed records skipped in lenient mode, with the reason for each.
    """

    images: list[ImageLabels] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):  # noqa: ANN204 - iterator of ImageLabels
        return iter(self.images)

    def counts(self) -> Counter[str]:
        """Objects per class over all images."""
        total: Counter[str] = Counter()
        for im in self.images:
            total.update(im.counts())
        return total

    def summary(self) -> str:
        """One line for logs: images, objects per class, dropped and skipped counts."""
        c = self.counts()
        parts = [f"{len(self.images)} images", ", ".join(f"{c.get(k, 0)} {k}" for k in CLASSES)]
        if self.dropped:
            parts.append(
                f"dropped {sum(self.dropped.values())} unmapped ("
                + ", ".join(f"{k}: {v}" for k, v in self.dropped.most_common()) + ")"
            )
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} malformed")
        return "; ".join(parts)

