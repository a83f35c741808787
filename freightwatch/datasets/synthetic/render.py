"""Drawing a :class:`~freightwatch.datasets.synthetic.layout.Layout` as an overhead RGB image.

Everything is specified in metres and converted with the GSD, so any resolution works. Drawing
uses OpenCV anti-aliased polygons with 1/16 px fixed-point vertices on a uint8 canvas; textures
are applied in row chunks so memory stays near one uint8 copy of the image plus small buffers.

Order: ground cover (fields, water, pavements, roads, tracks) -> texture pass (per-material noise)
-> cast shadows (one mask, so overlapping shadows do not darken twice) -> objects -> trees ->
sensor effects (haze, 0.5 px blur, softer chroma as in pan-sharpened products, noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from freightwatch.datasets.synthetic.layout import RAILCAR_KINDS, Box, Building, Layout, Vehicle

_SHIFT = 4
_ONE = 1 << _SHIFT
_CHUNK = 512

# Materials of the ground-cover map: each gets its own texture in the texture pass.
GROUND, GRASS, VILLAGE, FIELD, WATER, CONCRETE, ASPHALT, BALLAST, MUD, LOT, SOIL, DECK = range(12)
# (coarse luminance, fine blotches, grain, chroma) amplitudes per material.
_TEX = np.array([
    [0.10, 0.07, 0.045, 0.0],   # GROUND (colour computed in the pass)
    [0.08, 0.08, 0.05, 0.0],    # GRASS
    [0.08, 0.06, 0.05, 0.0],    # VILLAGE
    [0.05, 0.05, 0.035, 0.03],  # FIELD
    [0.03, 0.0, 0.012, 0.0],    # WATER (own ripple texture)
    [0.035, 0.03, 0.03, 0.01],  # CONCRETE
    [0.05, 0.04, 0.04, 0.0],    # ASPHALT
    [0.05, 0.06, 0.11, 0.02],   # BALLAST
    [0.07, 0.07, 0.05, 0.02],   # MUD
    [0.045, 0.05, 0.03, 0.0],   # LOT (stains)
    [0.06, 0.06, 0.06, 0.02],   # SOIL
    [0.03, 0.03, 0.03, 0.0],    # DECK
], dtype=np.float32)

CONTAINER_COLOURS = np.array([
    (140, 70, 56), (112, 128, 140), (56, 86, 128), (66, 104, 80), (184, 116, 62), (146, 146, 144),
    (212, 212, 206), (182, 160, 84), (108, 54, 50), (60, 104, 106), (92, 68, 56), (156, 80, 58),
    (196, 196, 192), (124, 124, 122),
], dtype=np.float32)
CAB_COLOURS = np.array([
    (168, 52, 46), (52, 78, 142), (222, 222, 218), (206, 170, 62), (196, 116, 50), (56, 106, 72),
    (166, 168, 172), (40, 54, 90), (222, 222, 218), (118, 40, 38), (210, 210, 206),
], dtype=np.float32)
CAR_COLOURS = np.array([
    (232, 232, 230), (230, 230, 228), (180, 182, 186), (150, 152, 156), (40, 40, 44), (28, 30, 34),
    (150, 30, 30), (40, 60, 120), (110, 90, 70), (210, 205, 190),
], dtype=np.float32)
ROOF_COLOURS = {
    "blue": (82, 116, 152), "grey": (146, 148, 150), "white": (208, 210, 210), "teal": (84, 132, 128),
    "rust": (136, 96, 80), "tile": (142, 92, 74), "red": (150, 84, 68), "concrete": (158, 156, 150),
}


def _rgb(c: Iterable[float]) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in c)
    return (min(max(r, 0.0), 255.0), min(max(g, 0.0), 255.0), min(max(b, 0.0), 255.0))


def _shade(c: Sequence[float], k: float) -> tuple[float, float, float]:
    return _rgb(np.asarray(c, dtype=np.float32) * k)


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, float, float]:
    return _rgb(np.asarray(a, dtype=np.float32) * (1 - t) + np.asarray(b, dtype=np.float32) * t)


class _Noise:
    """Deterministic noise fields evaluated by row chunk.

    Coarse octaves are Gaussian-smoothed random grids evaluated as ``Wy @ G @ Wx.T`` (separable, so a
    chunk costs one small matrix product and nothing is held at full resolution); fine textures are
    periodic tiles repeated over the image.
    """

    def __init__(self, rng: np.random.Generator, h: int, w: int, gsd: float) -> None:
        self.h, self.w, self.gsd = h, w, gsd
        self.rng = rng
        self.lum = [self._octave(s) for s in (180.0, 60.0, 20.0)]
        self.lum_w = (0.55, 0.35, 0.25)
        self.chroma = [self._octave(s) for s in (260.0, 90.0)]
        self.chroma_w = (0.7, 0.4)
        self.fine = self._tile(512, 1.6 / gsd)
        self.grain = self._tile(509, 0.0)

    def _weights(self, n: int, cell_px: float) -> np.ndarray:
        m = int(math.ceil(n / cell_px)) + 6
        x = (np.arange(n, dtype=np.float64) + 0.5) / cell_px + 3.0
        j = np.arange(m, dtype=np.float64)
        wgt = np.exp(-0.5 * ((x[:, None] - j[None, :]) / 0.75) ** 2)
        wgt /= np.sqrt((wgt**2).sum(axis=1, keepdims=True))  # unit variance everywhere
        return wgt.astype(np.float32)

    def _octave(self, scale_m: float) -> tuple[np.ndarray, np.ndarray]:
        cell = max(scale_m / self.gsd, 2.0)
        wy = self._weights(self.h, cell)
        wx = self._weights(self.w, cell)
        g = self.rng.standard_normal((wy.shape[1], wx.shape[1])).astype(np.float32)
        return (wy @ g).astype(np.float32), np.ascontiguousarray(wx.T)

    def _tile(self, n: int, sigma_px: float, aniso: tuple[float, float] | None = None) -> np.ndarray:
        t = self.rng.standard_normal((n, n)).astype(np.float32)
        if aniso is not None:
            t = _periodic_aniso(t, *aniso)
        elif sigma_px > 0.3:
            p = int(math.ceil(3 * sigma_px)) + 1
            big = np.pad(t, p, mode="wrap")
            t = cv2.GaussianBlur(big, (0, 0), sigma_px)[p:-p, p:-p]
        return (t / (t.std() + 1e-6)).astype(np.float32)

    def ripple_tile(self, angle: float) -> np.ndarray:
        """Periodic water-ripple noise, elongated across ``angle`` (wind waves)."""
        return self._tile(384, 0.0, aniso=(angle + math.pi / 2, max(0.7, 0.8 / self.gsd)))

    @staticmethod
    def field(oct_list: list[tuple[np.ndarray, np.ndarray]], weights: Sequence[float], r0: int, r1: int) -> np.ndarray:
        out = None
        for (a, bt), wt in zip(oct_list, weights, strict=True):
            part = (a[r0:r1] @ bt) * wt
            out = part if out is None else out + part
        assert out is not None
        return out

    def tile_rows(self, tile: np.ndarray, r0: int, r1: int, dx: int = 0) -> np.ndarray:
        n = tile.shape[0]
        rows = np.arange(r0, r1) % n
        cols = (np.arange(self.w) + dx) % tile.shape[1]
        return tile[rows][:, cols]


def _periodic_aniso(t: np.ndarray, angle: float, length_px: float) -> np.ndarray:
    """Blur a periodic tile with a line kernel at ``angle`` (streaky ripples), keeping it periodic."""
    k = max(3, int(round(length_px * 4)) | 1)
    ker = np.zeros((k, k), np.float32)
    c = k // 2
    dx, dy = math.cos(angle), math.sin(angle)
    cv2.line(ker, (int(round(c - dx * c)), int(round(c - dy * c))), (int(round(c + dx * c)), int(round(c + dy * c))),
             1.0, 1, cv2.LINE_AA)
    ker /= ker.sum()
    p = k
    big = np.pad(t, p, mode="wrap")
    big = cv2.GaussianBlur(big, (0, 0), 0.7)
    out = cv2.filter2D(big, -1, ker)[p:-p, p:-p]
    return out


class Renderer:
    """Renders a layout at a given GSD.

    Args:
        layout: What to draw (site metres).
        gsd: Metres per pixel.
        rng: Generator for the scene look (palette, noise); per-object looks use each object's seed.
    """

    def __init__(self, layout: Layout, gsd: float, rng: np.random.Generator) -> None:
        self.L = layout
        self.gsd = float(gsd)
        self.rng = rng
        self.w = int(round(layout.width_m / gsd))
        self.h = int(round(layout.height_m / gsd))
        self.img = np.zeros((self.h, self.w, 3), np.uint8)
        self.mat = np.zeros((self.h, self.w), np.uint8)
        self.shadow = np.zeros((self.h, self.w), np.uint8)
        self.sun = layout.sun
        self._palette()

    # -- palette ---------------------------------------------------------------------------------
    def _palette(self) -> None:
        rng = self.rng
        season = rng.choice(["summer", "late_summer", "autumn", "spring"], p=[0.4, 0.25, 0.2, 0.15])
        self.season = str(season)
        grass = {"summer": (84, 104, 60), "late_summer": (104, 112, 70), "autumn": (128, 120, 82),
                 "spring": (112, 112, 84)}[self.season]
        soil = {"summer": (132, 120, 96), "late_summer": (142, 128, 100), "autumn": (148, 132, 106),
                "spring": (140, 126, 104)}[self.season]
        self.grass = np.array(grass, np.float32) * rng.uniform(0.94, 1.06)
        self.soil = np.array(soil, np.float32) * rng.uniform(0.94, 1.06)
        self.concrete = np.array((168, 166, 158), np.float32) * rng.uniform(0.92, 1.04)
        self.asphalt = np.array((84, 86, 90), np.float32) * rng.uniform(0.9, 1.1)
        # The Yalu runs green-grey to brownish; scenes vary.
        t = rng.uniform(0, 1)
        self.water_deep = np.array(_mix((40, 62, 66), (70, 72, 60), t), np.float32)
        self.water_shallow = np.array(_mix((72, 86, 78), (110, 104, 84), t), np.float32)
        self.haze = float(rng.uniform(0.0, 0.14))
        self.tint = np.array([rng.uniform(0.96, 1.03), 1.0, rng.uniform(0.97, 1.06)], np.float32)

    # -- primitives ------------------------------------------------------------------------------
    def _px(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2) / self.gsd - 0.5  # cv2 samples pixel centres
        return np.round(p * _ONE).astype(np.int32)

    def _rings(self, geom: BaseGeometry | np.ndarray) -> list[np.ndarray]:
        if isinstance(geom, np.ndarray):
            return [self._px(geom)]
        polys = [geom] if geom.geom_type == "Polygon" else [g for g in getattr(geom, "geoms", []) if
                                                           g.geom_type == "Polygon"]
        rings = []
        for p in polys:
            if p.is_empty:
                continue
            rings.append(self._px(np.asarray(p.exterior.coords)))
            rings += [self._px(np.asarray(r.coords)) for r in p.interiors]
        return rings

    def fill(self, geom: BaseGeometry | np.ndarray, colour: Sequence[float], mat: int | None = None,
             target: np.ndarray | None = None) -> None:
        """Fill a polygon (site metres) with a colour, and mark its material."""
        rings = self._rings(geom)
        if not rings:
            return
        img = self.img if target is None else target
        cv2.fillPoly(img, rings, _rgb(colour) if img.ndim == 3 else colour, cv2.LINE_AA, _SHIFT)
        if mat is not None:
            cv2.fillPoly(self.mat, rings, int(mat), cv2.LINE_8, _SHIFT)

    def line(self, p: np.ndarray, q: np.ndarray, width_m: float, colour: Sequence[float],
             under: Sequence[float] | None = None, target: np.ndarray | None = None) -> None:
        """A line ``width_m`` wide; thinner than a pixel it is drawn 1 px wide at partial strength."""
        wpx = width_m / self.gsd
        img = self.img if target is None else target
        col: Sequence[float] | float = colour
        if wpx < 1.0 and under is not None:
            col = _mix(under, colour, max(wpx, 0.0) ** 0.8)
        a, b = self._px(np.array([p, q]))
        th = max(1, int(round(wpx)))
        if wpx >= 1.5:
            d = np.asarray(q, float) - np.asarray(p, float)
            n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9) * width_m / 2
            poly = np.array([p + n, q + n, q - n, p - n])
            cv2.fillPoly(img, [self._px(poly)], _rgb(col) if img.ndim == 3 else col, cv2.LINE_AA, _SHIFT)
            return
        cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), _rgb(col) if img.ndim == 3 else col,
                 th, cv2.LINE_AA, _SHIFT)

    def local_fill(self, obj: Box, pts: np.ndarray, colour: Sequence[float], target: np.ndarray | None = None) -> None:
        """Fill a polygon given in the object's local ``(s, t)`` metres."""
        self.fill(obj.to_site(np.asarray(pts, dtype=np.float64)), colour, target=target)

    def local_rect(self, obj: Box, s0: float, s1: float, t0: float, t1: float, colour: Sequence[float]) -> None:
        self.local_fill(obj, np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]]), colour)

    def cast(self, footprint: np.ndarray, height: float, clip: BaseGeometry | None = None) -> None:
        """Add the shadow of a prism (site polygon, height) to the shadow mask, optionally clipped."""
        shadow = _prism_shadow(footprint, self.sun.shadow(height))
        if clip is not None:
            self.fill(shadow.intersection(clip), 255, target=self.shadow)
            return
        cv2.fillPoly(self.shadow, [self._px(np.asarray(shadow.exterior.coords))], 255, cv2.LINE_AA, _SHIFT)

    # -- ground ----------------------------------------------------------------------------------
    def _ground(self) -> None:
        L = self.L
        self.img[:] = _rgb(self.grass)
        self.mat[:] = GROUND
        for p in L.patches:
            self._patch(p.polygon, p.kind, p.params)
        self.fill(L.shore, _mix(self.soil, (150, 140, 118), 0.4), MUD)
        self._water()
        for lot in L.lots:
            base = self.asphalt * 1.12 if lot.asphalt else self.concrete * 0.97
            self.fill(lot.polygon, base, LOT)
        for d in L.docks:
            self.fill(d.polygon, self.concrete * 1.02, CONCRETE)
        self._roads()
        self._yard()
        self._lot_marks()
        self._bridge_deck()
        self._docks_detail()

    def _patch(self, geom: BaseGeometry, kind: str, params: dict) -> None:
        if kind == "grass":
            self.fill(geom, self.grass, GRASS)
        elif kind == "village":
            self.fill(geom, self.soil, VILLAGE)
        elif kind == "concrete":
            self.fill(geom, self.concrete * 0.95, CONCRETE)
        elif kind == "carpark":
            self.fill(geom, self.asphalt * 1.1, ASPHALT)
        elif kind == "gravel":
            self.fill(geom, _mix(self.soil, (150, 148, 140), 0.55), SOIL)
        elif kind == "heap":
            col = {"coal": (40, 40, 42), "sand": (176, 158, 120), "gravel": (140, 136, 128),
                   "ore": (128, 84, 64)}[params["material"]]
            self.fill(geom, col, SOIL)
            # Lit towards the sun, dark on the far slope.
            toward = self.sun.toward
            c = np.asarray(geom.centroid.coords[0])
            big = 500.0
            nrm = np.array([-toward[1], toward[0]])
            half = Polygon([c + nrm * big, c + nrm * big + toward * big, c - nrm * big + toward * big, c - nrm * big])
            self.fill(geom.intersection(half).buffer(-0.6), _shade(col, 1.18), SOIL)
            shifted = Polygon(np.asarray(geom.exterior.coords) + toward * 2.0)
            self.fill(geom.difference(shifted), _shade(col, 0.7), SOIL)
        elif kind == "field":
            self._field(geom, params)

    def _field(self, geom: BaseGeometry, params: dict) -> None:
        rng = np.random.default_rng(params["seed"])
        crop = params["crop"]
        base = {
            "green": _mix((70, 100, 52), (96, 118, 62), rng.uniform()),
            "young": _mix((112, 118, 80), (98, 112, 66), rng.uniform()),
            "yellow": _mix((168, 152, 98), (150, 140, 90), rng.uniform()),
            "soil": _mix((138, 118, 92), (120, 104, 84), rng.uniform()),
            "dark_soil": _mix((92, 80, 66), (104, 90, 72), rng.uniform()),
            "grass": _mix(tuple(self.grass), (96, 112, 70), rng.uniform()),
            "greenhouse": (150, 152, 150),
        }[crop]
        if self.season == "autumn" and crop in ("green", "young"):
            base = _mix(base, (150, 136, 90), 0.5)
        self.fill(geom, base, FIELD)
        # Crop rows: a band-limited sinusoid, faded out where rows are finer than the pixels.
        x0, y0, x1, y1 = geom.bounds
        c0, r0 = max(int(x0 / self.gsd), 0), max(int(y0 / self.gsd), 0)
        c1, r1 = min(int(x1 / self.gsd) + 2, self.w), min(int(y1 / self.gsd) + 2, self.h)
        if c1 <= c0 or r1 <= r0:
            return
        if crop == "greenhouse":
            period, amp = rng.uniform(7.5, 10.0), 0.45
        else:
            period, amp = params["period"], {"green": 0.12, "young": 0.22, "yellow": 0.1, "soil": 0.1,
                                             "dark_soil": 0.12, "grass": 0.03}[crop]
        ppx = period / self.gsd
        amp *= float(np.clip((ppx - 2.2) / 2.0, 0.0, 1.0))
        if amp <= 0.005:
            return
        mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
        rings = [r - np.array([c0 * _ONE, r0 * _ONE], np.int32) for r in self._rings(geom)]
        cv2.fillPoly(mask, rings, 255, cv2.LINE_8, _SHIFT)
        ang = params["angle"]
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        phase = (xx * math.cos(ang) + yy * math.sin(ang)) * (2 * math.pi / ppx)
        wave = np.cos(phase)
        if crop == "greenhouse":
            wave = np.where(wave > -0.35, 1.0, -1.0).astype(np.float32)
            wave = cv2.GaussianBlur(wave, (0, 0), 0.6)
        roi = self.img[r0:r1, c0:c1].astype(np.float32)
        factor = 1.0 + amp * wave * (mask > 0)
        roi *= factor[..., None]
        if crop == "greenhouse":
            white = (wave > 0.2) & (mask > 0)
            roi[white] = roi[white] * 0.35 + np.array((222, 226, 228), np.float32) * 0.65
        self.img[r0:r1, c0:c1] = np.clip(roi, 0, 255).astype(np.uint8)

    def _water(self) -> None:
        water = self.L.water
        self.fill(water, self.water_deep, WATER)
        # Distance to the bank on a coarse grid; the texture pass grades turbid shallows to deep
        # water with it (smooth, unlike stacked buffers).
        cell = 2.0
        gh, gw = int(math.ceil(self.L.height_m / cell)) + 1, int(math.ceil(self.L.width_m / cell)) + 1
        m = np.zeros((gh, gw), np.uint8)
        polys = [water] if water.geom_type == "Polygon" else list(water.geoms)
        for poly in polys:
            pts = np.round((np.asarray(poly.exterior.coords) / cell - 0.5) * _ONE).astype(np.int32)
            cv2.fillPoly(m, [pts], 1, cv2.LINE_8, _SHIFT)
        self.water_dist = cv2.distanceTransform(m, cv2.DIST_L2, 5) * cell
        self.water_cell = cell

    def _water_depth(self, r0: int, r1: int) -> np.ndarray:
        k = self.gsd / self.water_cell
        ys = ((np.arange(r0, r1, dtype=np.float32) + 0.5) * k - 0.5)
        xs = ((np.arange(self.w, dtype=np.float32) + 0.5) * k - 0.5)
        mx = np.ascontiguousarray(np.broadcast_to(xs[None, :], (r1 - r0, self.w)))
        my = np.ascontiguousarray(np.broadcast_to(ys[:, None], (r1 - r0, self.w)))
        return cv2.remap(self.water_dist, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _roads(self) -> None:
        L = self.L
        polys = [r.polygon() for r in L.roads]
        for r, poly in zip(L.roads, polys, strict=True):
            if r.kind == "track":
                self.fill(poly, _mix(self.soil, (160, 150, 130), 0.3), SOIL)
            else:
                self.fill(poly, self.asphalt * (1.0 if r.kind == "main" else 1.12), ASPHALT)
        for r in L.roads:
            if r.kind != "track":
                self._road_marks(r.a, r.b, r.width, r.lanes, r.kind == "main")
        # Re-pave crossings so markings stop at junctions.
        hard = [(r, p) for r, p in zip(L.roads, polys, strict=True) if r.kind != "track"]
        for i, (ra, pa) in enumerate(hard):
            for rb, pb in hard[i + 1:]:
                if pa.intersects(pb):
                    x = pa.intersection(pb)
                    if not x.is_empty and x.area > 1:
                        main = "main" in (ra.kind, rb.kind)
                        self.fill(x.buffer(1.5, join_style="mitre").intersection(pa.union(pb)),
                                  self.asphalt * (1.0 if main else 1.12), ASPHALT)

    def _road_marks(self, a: np.ndarray, b: np.ndarray, width: float, lanes: int, main: bool,
                    under: Sequence[float] | None = None) -> None:
        d = b - a
        length = float(np.linalg.norm(d))
        if length < 1:
            return
        d = d / length
        n = np.array([-d[1], d[0]])
        under = self.asphalt if under is None else under
        white = (214, 214, 208)
        yellow = (206, 176, 70)
        lw = 0.15
        for side in (-1, 1):
            off = n * side * (width / 2 - 0.5)
            self.line(a + off, b + off, lw, white, under)
        if lanes >= 2:
            if main:
                for side in (-1, 1):
                    off = n * side * 0.15
                    self.line(a + off, b + off, lw, yellow, under)
            else:
                self._dashes(a, b, np.zeros(2), 4.0, 6.0, lw, white, under)
        if lanes >= 4:
            lw_lane = (width - 2.8) / lanes
            for side in (-1, 1):
                for k in range(1, lanes // 2):
                    off = n * side * k * lw_lane
                    self._dashes(a, b, off, 6.0, 9.0, lw, white, under)

    def _dashes(self, a: np.ndarray, b: np.ndarray, off: np.ndarray, dash: float, gap: float, lw: float,
                colour: Sequence[float], under: Sequence[float]) -> None:
        d = b - a
        length = float(np.linalg.norm(d))
        d = d / length
        # Only the part inside the image (roads run far past it).
        for t in np.arange(0, length, dash + gap):
            p = a + d * t + off
            q = a + d * min(t + dash, length) + off
            if self._in_view(p, q):
                self.line(p, q, lw, colour, under)

    def _in_view(self, p: np.ndarray, q: np.ndarray) -> bool:
        lo = -5.0
        return not (max(p[0], q[0]) < lo or min(p[0], q[0]) > self.L.width_m - lo
                    or max(p[1], q[1]) < lo or min(p[1], q[1]) > self.L.height_m - lo)

    def _yard(self) -> None:
        y = self.L.yard
        ballast = _mix(self.soil, (132, 126, 118), 0.6)
        self.fill(y.polygon.buffer(1.5), ballast, BALLAST)
        sleeper = _mix(ballast, (92, 82, 72), 0.55)
        rail = (178, 176, 170)
        for a, b in y.tracks:
            d = (b - a) / np.linalg.norm(b - a)
            n = np.array([-d[1], d[0]])
            self.line(a, b, 2.6, sleeper)
            for side in (-1, 1):
                off = n * side * (y.gauge / 2 + 0.035)
                self.line(a + off, b + off, 0.09, rail, sleeper)
            # Buffer stop at the track end.
            bs = np.array([a - n * 1.1, a + n * 1.1, a + n * 1.1 - d * 0.6, a - n * 1.1 - d * 0.6])
            self.fill(bs, (120, 70, 56))

    def _lot_marks(self) -> None:
        for lot in self.L.lots:
            under = self.asphalt * 1.12 if lot.asphalt else self.concrete * 0.97
            colour = (222, 222, 214) if lot.asphalt or (lot.polygon.area % 2 < 1) else (212, 186, 80)
            for p, q in lot.lines:
                self.line(p, q, 0.14, colour, under)
            for p, q in lot.fence:
                self.line(p, q, 0.12, (70, 70, 66), under)

    def _bridge_deck(self) -> None:
        br = self.L.bridge
        deck_col = self.asphalt * 1.05
        self.fill(br.deck, deck_col, DECK)
        d = (br.b - br.a) / np.linalg.norm(br.b - br.a)
        n = np.array([-d[1], d[0]])
        w2 = br.width / 2
        for side in (-1, 1):
            # Parapets and kerbs.
            self.line(br.a + n * side * (w2 - 0.3), br.b + n * side * (w2 - 0.3), 0.6, (186, 184, 176))
            self.line(br.a + n * side * (w2 - 1.2), br.b + n * side * (w2 - 1.2), 1.0,
                      _mix(deck_col, (160, 158, 150), 0.6))
        self._road_marks(br.a, br.b, br.width - 2.0, br.lanes, True, under=deck_col)
        length = float(np.linalg.norm(br.b - br.a))
        for t in np.arange(20, length, 32.0):
            p = br.a + d * t
            self.line(p - n * (w2 - 0.6), p + n * (w2 - 0.6), 0.12, (50, 52, 54), deck_col)

    def _docks_detail(self) -> None:
        for dock in self.L.docks:
            ring = np.asarray(dock.polygon.exterior.coords)
            edge_col = self.concrete * 0.7
            for p, q in zip(ring[:-1], ring[1:], strict=True):
                mid = (p + q) / 2
                if self.L.water.buffer(-1).contains(_pt(mid)):
                    self.line(p, q, 0.5, edge_col)
                    # Bollards along the mooring edge.
                    d = q - p
                    length = float(np.linalg.norm(d))
                    nrm = np.array([-d[1], d[0]]) / length
                    inward = nrm if dock.polygon.contains(_pt(mid + nrm * 1.0)) else -nrm
                    for t in np.arange(4.0, length - 2, 12.0):
                        c = p + d / length * t + inward * 0.9
                        self.fill(_circle(c, 0.3), (60, 60, 58))

    # -- texture pass ----------------------------------------------------------------------------
    def _texture(self, noise: _Noise) -> None:
        tex = _TEX
        ripple = noise.ripple_tile(self.L.plan_angle)
        glint_on = self.rng.random() < 0.6
        for r0 in range(0, self.h, _CHUNK):
            r1 = min(self.h, r0 + _CHUNK)
            m = self.mat[r0:r1]
            lum = noise.field(noise.lum, noise.lum_w, r0, r1)
            chroma = noise.field(noise.chroma, noise.chroma_w, r0, r1)
            fine = noise.tile_rows(noise.fine, r0, r1)
            grain = noise.tile_rows(noise.grain, r0, r1, dx=r0 // 7)
            img = self.img[r0:r1].astype(np.float32)
            # Ground: green where the noise says grass, soil elsewhere; villages lean to soil.
            for mat_id, bias in ((GROUND, 0.1), (GRASS, 0.9), (VILLAGE, -0.5)):
                sel = m == mat_id
                if sel.any():
                    t = 1 / (1 + np.exp(-(chroma[sel] * 1.6 + fine[sel] * 0.35 + bias) * 1.8))
                    img[sel] = self.soil * (1 - t[:, None]) + self.grass * t[:, None]
            water = m == WATER
            if water.any():
                rp = noise.tile_rows(ripple, r0, r1)[water]
                lw = lum[water]
                depth = self._water_depth(r0, r1)[water]
                t = np.clip(depth / 40.0 + 0.12 * chroma[water], 0, 1)[:, None] ** 0.7
                wcol = self.water_shallow * (1 - t) + self.water_deep * t
                wcol = wcol * (1 + 0.05 * lw[:, None]) + (6 * chroma[water])[:, None] * np.array(
                    [0.6, 0.3, -0.2], np.float32)
                wcol *= (1 + 0.022 * rp + 0.015 * fine[water])[:, None]
                if glint_on:
                    g = np.clip(rp - 2.2, 0, None) * np.clip(lw + 0.3, 0, None) * 22.0
                    wcol += g[:, None]
                img[water] = wcol
            a = tex[m]
            f = 1 + a[..., 0] * lum + a[..., 1] * fine + a[..., 2] * grain
            img *= f[..., None]
            ch = a[..., 3] * chroma * 255 * 0.5
            img[..., 0] += ch
            img[..., 2] -= ch
            np.clip(img, 0, 255, out=img)
            self.img[r0:r1] = img.astype(np.uint8)

    # -- shadows ---------------------------------------------------------------------------------
    def _cast_all(self) -> None:
        L = self.L
        br = L.bridge
        # Elevated structures shade the water beside them, never their own (or the deck's) top.
        off = self.sun.shadow(br.height)
        sh = Polygon(np.asarray(br.deck.exterior.coords) + off).difference(br.deck)
        self.fill(sh, 255, target=self.shadow)
        for pier in br.piers:
            self.fill(_prism_shadow(pier, self.sun.shadow(br.height)).difference(br.deck), 255, target=self.shadow)
        for dock in L.docks:
            ring = np.asarray(dock.polygon.exterior.coords)
            self.fill(Polygon(ring + self.sun.shadow(1.8)).difference(dock.polygon), 255, target=self.shadow)
        for b in L.buildings:
            self.cast(b.corners(), b.height)
        for patch in L.patches:
            if patch.kind == "heap":
                ring = np.asarray(patch.polygon.exterior.coords)
                sh = Polygon(ring + self.sun.shadow(patch.params["height"] * 0.6)).difference(patch.polygon)
                self.fill(sh, 255, target=self.shadow)
        deck_p = br.deck
        for v in L.vehicles:
            clip = deck_p if v.cls in ("truck", "car") and deck_p.contains(_pt((v.x, v.y))) else None
            if v.cls == "truck":
                p = v.params
                L2 = v.length / 2
                cab = v.to_site(np.array([[L2 - p["cab_len"], -p["cab_w"] / 2], [L2, -p["cab_w"] / 2],
                                          [L2, p["cab_w"] / 2], [L2 - p["cab_len"], p["cab_w"] / 2]]))
                tr = v.to_site(np.array([[-L2, -p["trailer_w"] / 2], [-L2 + p["trailer_len"], -p["trailer_w"] / 2],
                                         [-L2 + p["trailer_len"], p["trailer_w"] / 2], [-L2, p["trailer_w"] / 2]]))
                self.cast(cab, 3.3, clip)
                self.cast(tr, 4.0 if v.kind != "flatbed" else 1.6, clip)
            elif v.cls == "boat":
                self.cast(v.to_site(_hull(v)), min(v.height * 0.3, 1.8))
                sup = _boat_superstructure(v)
                if sup is not None:
                    self.cast(v.to_site(sup), v.height)
            else:
                self.cast(v.corners(), v.height, clip)
        elev = math.radians(self.sun.elevation_deg)
        sdir = self.sun.shadow(1.0)
        sang = math.atan2(sdir[1], sdir[0])
        for x, y, r in L.trees:
            # A crown is a ball on a trunk: its shadow is an ellipse stretched along the sun's direction,
            # tied to the tree by the trunk's shadow.
            hc = r * 1.2 + 2.0
            c = np.array([x, y]) + self.sun.shadow(hc)
            rings = self._px(_ellipse(c, r / max(math.sin(elev), 0.3), r * 0.95, sang, 16))
            cv2.fillPoly(self.shadow, [rings], 255, cv2.LINE_AA, _SHIFT)
            self.line(np.array([x, y]), c, 0.45, 255, target=self.shadow)

    def _apply_shadows(self) -> None:
        sig = 0.25 / self.gsd  # a short penumbra
        k = np.array([0.40, 0.44, 0.54], np.float32) + self.rng.uniform(-0.04, 0.04)  # sky-lit: bluish
        for r0 in range(0, self.h, _CHUNK):
            r1 = min(self.h, r0 + _CHUNK)
            pad0, pad1 = max(0, r0 - 4), min(self.h, r1 + 4)
            s = self.shadow[pad0:pad1]
            if not s.any():
                continue
            s = s.astype(np.float32) / 255.0
            if sig > 0.3:
                s = cv2.GaussianBlur(s, (0, 0), sig)
            s = s[r0 - pad0:r0 - pad0 + (r1 - r0)]
            img = self.img[r0:r1].astype(np.float32)
            img *= 1 - s[..., None] * (1 - k)
            self.img[r0:r1] = np.clip(img, 0, 255).astype(np.uint8)

    # -- objects ---------------------------------------------------------------------------------
    def _objects(self) -> None:
        L = self.L
        self._wakes()
        for v in L.vehicles:
            if v.cls == "container":
                self._container(v, int(v.params["tiers"]))
        for b in L.buildings:
            self._building(b)
        for v in L.vehicles:
            if v.cls == "railcar":
                self._railcar(v)
        for v in L.vehicles:
            if v.cls == "truck":
                self._truck(v)
            elif v.cls == "car":
                self._car(v)
        for v in L.vehicles:
            if v.cls == "boat":
                self._boat(v)
        self._trees()

    def _side_shade(self, obj: Box, half_w: float, s0: float, s1: float, colour: Sequence[float], k: float = 0.8,
                    w: float = 0.18) -> None:
        """Darken the long edge facing away from the sun: a hint of the object's height."""
        _, n = obj.axes
        side = -1.0 if float(np.dot(n, self.sun.toward)) > 0 else 1.0
        t0, t1 = sorted((side * half_w, side * (half_w - w)))
        self.local_rect(obj, s0, s1, t0, t1, _shade(colour, k))

    def _container(self, v: Vehicle, tiers: int = 1) -> None:
        """A container stack seen from the top: the top box, a touch brighter the higher it is."""
        rng = np.random.default_rng(v.params["seed"])
        col = CONTAINER_COLOURS[rng.integers(len(CONTAINER_COLOURS))] * rng.uniform(0.85, 1.1)
        col = col * (0.94 + 0.03 * tiers)
        L2, W2 = v.length / 2, v.width / 2
        self.local_rect(v, -L2, L2, -W2, W2, _shade(col, 0.8))
        self.local_rect(v, -L2 + 0.12, L2 - 0.12, -W2 + 0.1, W2 - 0.1, col)
        if self.gsd < 0.6:
            for s in np.arange(-L2 + 0.6, L2 - 0.4, 0.9):
                self.local_rect(v, s, s + 0.3, -W2 + 0.12, W2 - 0.12, _shade(col, 0.9))

    def _building(self, b: Building) -> None:
        rng = np.random.default_rng(b.seed)
        col = np.array(ROOF_COLOURS[b.colour], np.float32) * rng.uniform(0.88, 1.08)
        L2, W2 = b.length / 2, b.width / 2
        if b.roof == "flat":
            self.local_rect(b, -L2, L2, -W2, W2, _shade(col, 0.82))
            self.local_rect(b, -L2 + 0.5, L2 - 0.5, -W2 + 0.5, W2 - 0.5, col)
            # Stains and rooftop plant rooms / units with their own small shadows.
            for _ in range(int(rng.integers(1, 4 + int(b.length // 20)))):
                w, h = rng.uniform(1.5, 6), rng.uniform(1.5, 5)
                s = rng.uniform(-L2 + 2 + w, L2 - 2 - w)
                t = rng.uniform(-W2 + 2 + h / 2, W2 - 2 - h / 2) if 3 + h / 2 < W2 else 0.0
                off = self.sun.shadow(rng.uniform(1, 3))
                sh = b.to_site(np.array([[s - w / 2, t - h / 2], [s + w / 2, t - h / 2], [s + w / 2, t + h / 2],
                                         [s - w / 2, t + h / 2]]))
                self.fill(sh + off, _shade(col, 0.6))
                self.fill(sh, _shade(col, rng.uniform(0.85, 1.12)))
            return
        # Pitched roofs: the half facing the sun is brighter.
        _, n = b.axes
        lit = float(np.dot(n, self.sun.toward))
        k_pos, k_neg = 1 + 0.16 * lit, 1 - 0.16 * lit
        self.local_rect(b, -L2, L2, -W2, 0, _shade(col, k_neg))
        self.local_rect(b, -L2, L2, 0, W2, _shade(col, k_pos))
        self.local_rect(b, -L2, L2, -0.15, 0.15, _shade(col, 1.15))
        if b.roof == "metal":
            # Corrugations down the slope and a row of skylights.
            if self.gsd < 0.8:
                for s in np.arange(-L2 + 0.5, L2, 1.0):
                    self.local_rect(b, s, s + 0.35, -W2 + 0.2, W2 - 0.2, _shade(col, 0.94))
            if rng.random() < 0.6:
                for s in np.arange(-L2 + 4, L2 - 4, rng.uniform(6, 10)):
                    for t in (-W2 / 2, W2 / 2):
                        self.local_rect(b, s, s + 1.2, t - 0.8, t + 0.8, (200, 205, 210))
        else:
            # Tile courses.
            if self.gsd < 0.6:
                for s in np.arange(-L2 + 0.3, L2, 0.7):
                    self.local_rect(b, s, s + 0.15, -W2, W2, _shade(col, 0.9))
        self.local_rect(b, -L2, L2, -W2, -W2 + 0.25, _shade(col, 0.75))
        self.local_rect(b, -L2, L2, W2 - 0.25, W2, _shade(col, 0.75))

    def _truck(self, v: Vehicle) -> None:
        p = v.params
        rng = np.random.default_rng(p["seed"])
        L2 = v.length / 2
        tw2, cw2 = p["trailer_w"] / 2, p["cab_w"] / 2
        s_tr0, s_tr1 = -L2, -L2 + p["trailer_len"]
        s_cab0 = L2 - p["cab_len"]
        # Chassis and fifth wheel between cab and trailer.
        self.local_rect(v, s_tr1 - 1.5, s_cab0 + 0.2, -0.55, 0.55, (38, 38, 40))
        self.local_rect(v, s_tr1 - 0.2, s_cab0, -0.9, 0.9, (52, 52, 54))
        # Cab: roof in the cab colour, dark windscreen at the front, lighter sun visor / deflector.
        cab = CAB_COLOURS[rng.integers(len(CAB_COLOURS))] * rng.uniform(0.9, 1.06)
        self.local_fill(v, _rounded_rect(s_cab0, L2, -cw2, cw2, 0.35), _shade(cab, 0.82))
        self.local_fill(v, _rounded_rect(s_cab0 + 0.15, L2 - 0.35, -cw2 + 0.14, cw2 - 0.14, 0.3), cab)
        self.local_rect(v, L2 - 0.42, L2 - 0.06, -cw2 + 0.12, cw2 - 0.12, (30, 36, 44))
        if rng.random() < 0.6:
            self.local_rect(v, s_cab0 + 0.2, s_cab0 + 1.0, -cw2 + 0.35, cw2 - 0.35, _shade(cab, 1.15))
        self._trailer(v, rng, s_tr0, s_tr1, tw2)

    def _trailer(self, v: Vehicle, rng: np.random.Generator, s0: float, s1: float, w2: float) -> None:
        kind = v.kind
        if kind == "container":
            col = CONTAINER_COLOURS[rng.integers(len(CONTAINER_COLOURS))] * rng.uniform(0.88, 1.08)
            if v.params.get("twin20"):
                mid = (s0 + s1) / 2
                col2 = CONTAINER_COLOURS[rng.integers(len(CONTAINER_COLOURS))] * rng.uniform(0.88, 1.08)
                self._box_top(v, s0, mid - 0.1, w2, col, ribs=True)
                self._box_top(v, mid + 0.1, s1, w2, col2, ribs=True)
            else:
                self._box_top(v, s0, s1, w2, col, ribs=True)
        elif kind == "box":
            col = np.array(_mix((226, 228, 226), (190, 194, 198), rng.uniform()), np.float32)
            self._box_top(v, s0, s1, w2, col, ribs=rng.random() < 0.3)
        elif kind == "tarp":
            col = np.array([(52, 92, 150), (60, 120, 90), (150, 150, 146), (200, 170, 60), (70, 80, 92),
                            (190, 110, 50), (44, 70, 120)][rng.integers(7)], np.float32) * rng.uniform(0.9, 1.1)
            self.local_rect(v, s0, s1, -w2, w2, _shade(col, 0.78))
            self.local_rect(v, s0 + 0.1, s1 - 0.1, -w2 + 0.12, w2 - 0.12, col)
            # Sagging between the hoops, and the ridge.
            for s in np.arange(s0 + 0.8, s1 - 0.3, rng.uniform(1.1, 1.5)):
                self.local_rect(v, s, s + 0.3, -w2 + 0.15, w2 - 0.15, _shade(col, 0.86))
            self.local_rect(v, s0 + 0.1, s1 - 0.1, -0.15, 0.15, _shade(col, 1.1))
        elif kind == "flatbed":
            deck = _mix((112, 98, 80), (92, 92, 94), rng.uniform())
            self.local_rect(v, s0, s1, -w2, w2, deck)
            self.local_rect(v, s0, s1, -w2, -w2 + 0.15, (55, 55, 56))
            self.local_rect(v, s0, s1, w2 - 0.15, w2, (55, 55, 56))
            cargo = rng.integers(4)
            if cargo == 0:  # steel coils
                for s in np.arange(s0 + 1.5, s1 - 1.0, 2.2):
                    self.fill(_ellipse(v.to_site(np.array([[s, 0.0]]))[0], 0.9, 0.9, 0, 12), (150, 154, 160))
                    self.fill(_ellipse(v.to_site(np.array([[s, 0.0]]))[0], 0.35, 0.35, 0, 8), (70, 72, 76))
            elif cargo == 1:  # crates / pallets
                s = s0 + 0.4
                while s < s1 - 1.5:
                    ln = rng.uniform(1.2, 3.5)
                    self.local_rect(v, s, min(s + ln, s1 - 0.3), -w2 + 0.2, w2 - 0.2,
                                    _mix((170, 140, 100), (120, 120, 118), rng.uniform()))
                    s += ln + rng.uniform(0.2, 0.8)
            elif cargo == 2:  # machinery under a tarp
                col = (60, 90, 70) if rng.random() < 0.5 else (150, 120, 40)
                self.local_rect(v, s0 + 2, s1 - 2, -w2 + 0.1, w2 - 0.1, col)
            # cargo == 3: empty deck with cross members
            elif self.gsd < 0.7:
                for s in np.arange(s0 + 0.5, s1, 1.0):
                    self.local_rect(v, s, s + 0.15, -w2 + 0.15, w2 - 0.15, (60, 56, 52))
        elif kind == "tanker":
            col = np.array([(205, 205, 200), (170, 172, 176), (60, 60, 62), (150, 140, 110)][rng.integers(4)],
                           np.float32)
            self._cylinder(v, s0, s1, w2 * 0.95, col)
        else:  # bulk: open box with a load
            rim = np.array([(120, 80, 60), (90, 90, 92), (60, 90, 120)][rng.integers(3)], np.float32)
            load = [(38, 38, 40), (170, 150, 112), (130, 126, 118), (126, 80, 58)][rng.integers(4)]
            self.local_rect(v, s0, s1, -w2, w2, rim)
            self.local_rect(v, s0 + 0.2, s1 - 0.2, -w2 + 0.2, w2 - 0.2, load)
            self.local_rect(v, s0 + 2, s1 - 2, -w2 + 0.6, w2 - 0.6, _shade(load, 1.12))

    def _box_top(self, v: Box, s0: float, s1: float, w2: float, col: np.ndarray, ribs: bool) -> None:
        self.local_rect(v, s0, s1, -w2, w2, _shade(col, 0.8))
        self.local_rect(v, s0 + 0.1, s1 - 0.1, -w2 + 0.1, w2 - 0.1, col)
        if ribs and self.gsd < 0.7:
            for s in np.arange(s0 + 0.55, s1 - 0.4, 0.9):
                self.local_rect(v, s, s + 0.28, -w2 + 0.12, w2 - 0.12, _shade(col, 0.9))
        self._side_shade(v, w2, s0, s1, col)

    def _cylinder(self, v: Box, s0: float, s1: float, r: float, col: np.ndarray) -> None:
        """A horizontal cylinder seen from above: graded across, lit towards the sun, round ends."""
        _, n = v.axes
        lit = float(np.dot(n, self.sun.toward))  # > 0: the +t side faces the sun
        bands = 7
        ends = min(r * 0.9, 0.9)
        for i in range(bands):
            t0 = -r + 2 * r * i / bands
            t1 = -r + 2 * r * (i + 1) / bands
            tc = (t0 + t1) / 2 / r
            k = 0.62 + 0.45 * math.sqrt(max(0.0, 1 - tc * tc)) + 0.18 * tc * lit
            inset = ends * (1 - math.sqrt(max(0.0, 1 - tc * tc)))
            self.local_rect(v, s0 + inset, s1 - inset, t0, t1, _shade(col, k))
        self.local_rect(v, (s0 + s1) / 2 - 0.5, (s0 + s1) / 2 + 0.5, -0.5, 0.5, _shade(col, 1.2))

    def _car(self, v: Vehicle) -> None:
        rng = np.random.default_rng(v.params["seed"])
        col = CAR_COLOURS[rng.integers(len(CAR_COLOURS))] * rng.uniform(0.92, 1.06)
        L2, W2 = v.length / 2, v.width / 2
        self.local_fill(v, _rounded_rect(-L2, L2, -W2, W2, 0.45), _shade(col, 0.85))
        self.local_fill(v, _rounded_rect(-L2 + 0.12, L2 - 0.12, -W2 + 0.1, W2 - 0.1, 0.4), col)
        glass = (36, 40, 48)
        if v.kind == "van":
            self.local_rect(v, L2 - 1.2, L2 - 0.5, -W2 + 0.15, W2 - 0.15, glass)
            return
        self.local_rect(v, L2 * 0.12, L2 * 0.52, -W2 + 0.15, W2 - 0.15, glass)
        self.local_rect(v, -L2 * 0.72, -L2 * 0.45, -W2 + 0.2, W2 - 0.2, glass)
        self.local_rect(v, -L2 * 0.45, L2 * 0.12, -W2 + 0.22, W2 - 0.22, _shade(col, 1.05))

    def _railcar(self, v: Vehicle) -> None:
        rng = np.random.default_rng(v.params["seed"])
        # Most cars of a train share their owner's livery and load.
        trng = np.random.default_rng(v.params.get("train", v.params["seed"]) + 7919 * RAILCAR_KINDS.index(v.kind))
        own = rng.random() < 0.15

        def pick(options: Sequence[object]) -> object:
            return options[(rng if own else trng).integers(len(options))]

        L2, W2 = v.length / 2, v.width / 2
        kind = v.kind
        # Couplers and the end sills.
        self.local_rect(v, -L2 - 0.6, L2 + 0.6, -0.18, 0.18, (40, 38, 36))
        if kind == "box":
            col = np.array(pick([(98, 60, 48), (72, 70, 68), (74, 92, 80), (74, 86, 104), (118, 116, 110),
                                 (120, 72, 54)]), np.float32) * rng.uniform(0.93, 1.07)
            self._box_top(v, -L2, L2, W2, col, ribs=True)
            self.local_rect(v, -L2 + 0.2, L2 - 0.2, -0.12, 0.12, _shade(col, 1.1))
        elif kind == "tank":
            col = np.array(pick([(40, 40, 42), (50, 50, 54), (116, 118, 122), (190, 190, 186), (160, 146, 100)]),
                           np.float32) * rng.uniform(0.95, 1.05)
            self.local_rect(v, -L2, L2, -W2 * 0.55, W2 * 0.55, (46, 44, 42))  # underframe / walkways
            self._cylinder(v, -L2 + 0.3, L2 - 0.3, W2 * 0.92, col)
        elif kind in ("hopper", "gondola"):
            rim = np.array(pick([(96, 66, 52), (62, 58, 56), (88, 88, 88), (112, 76, 56)]), np.float32)
            rim = rim * rng.uniform(0.93, 1.07)
            load = pick([(34, 34, 36), (32, 32, 34), (116, 76, 58), (160, 142, 108), (124, 120, 112), None])
            if rng.random() < 0.1:
                load = None
            self.local_rect(v, -L2, L2, -W2, W2, _shade(rim, 0.85))
            inner = (-L2 + 0.3, L2 - 0.3, -W2 + 0.22, W2 - 0.22)
            _, n = v.axes
            side = 1.0 if float(np.dot(n, self.sun.toward)) > 0 else -1.0
            if load is None:
                floor = _shade(rim, 0.6)
                self.local_rect(v, *inner, floor)
                # The sunward wall shades the floor beside it.
                t0, t1 = sorted((side * (W2 - 0.22), side * (W2 - 1.3)))
                self.local_rect(v, inner[0], inner[1], t0, t1, _shade(floor, 0.55))
            else:
                # A heaped load: lit on the sunward slope.
                self.local_rect(v, *inner, load)
                t0, t1 = sorted((0.0, side * (W2 - 0.6)))
                self.local_rect(v, inner[0] + 0.8, inner[1] - 0.8, t0, t1, _shade(load, 1.12))
            if kind == "hopper":
                for s in np.linspace(-L2, L2, 5)[1:-1]:
                    self.local_rect(v, s - 0.12, s + 0.12, -W2, W2, _shade(rim, 0.95))
        elif kind == "flat":
            deck = (74, 66, 58)
            self.local_rect(v, -L2, L2, -W2, W2, deck)
            self.local_rect(v, -L2, L2, -W2, -W2 + 0.18, (52, 50, 48))
            self.local_rect(v, -L2, L2, W2 - 0.18, W2, (52, 50, 48))
            load = v.params.get("load", "empty")
            if load in ("40", "20x2", "20"):
                spans = {"40": [(-6.1, 6.1)], "20x2": [(-6.15, -0.1), (0.1, 6.15)], "20": [(-3.03, 3.03)]}[load]
                for a, b in spans:
                    col = CONTAINER_COLOURS[rng.integers(len(CONTAINER_COLOURS))] * rng.uniform(0.88, 1.08)
                    self._box_top(v, a, b, 1.22, col, ribs=True)
            elif load == "timber":
                wood = np.array((150, 116, 80), np.float32) * rng.uniform(0.85, 1.1)
                self.local_rect(v, -L2 + 0.8, L2 - 0.8, -W2 + 0.15, W2 - 0.15, wood)
                for t in np.linspace(-W2 + 0.4, W2 - 0.4, 5):
                    self.local_rect(v, -L2 + 0.8, L2 - 0.8, t - 0.05, t + 0.05, _shade(wood, 0.8))
                for s in (-L2 / 2, 0.0, L2 / 2):
                    self.local_rect(v, s - 0.1, s + 0.1, -W2, W2, (60, 60, 60))
            elif self.gsd < 0.7:
                for s in np.arange(-L2 + 0.6, L2, 1.4):
                    self.local_rect(v, s, s + 0.2, -W2 + 0.2, W2 - 0.2, (56, 52, 48))
        else:  # locomotive
            col = np.array([(60, 96, 74), (146, 56, 46), (52, 76, 124), (188, 124, 58), (88, 92, 90)]
                           [rng.integers(5)], np.float32)
            self._box_top(v, -L2, L2, W2, col, ribs=False)
            self.local_rect(v, L2 - 2.6, L2 - 0.2, -W2 + 0.2, W2 - 0.2, _shade(col, 1.12))  # cab roofs
            self.local_rect(v, -L2 + 0.2, -L2 + 2.6, -W2 + 0.2, W2 - 0.2, _shade(col, 1.12))
            self.local_rect(v, -L2 + 3.2, L2 - 3.2, -W2 * 0.55, W2 * 0.55, _shade(col, 0.72))  # hood
            for s in np.linspace(-L2 + 4.5, L2 - 4.5, 4):
                self.fill(_ellipse(v.to_site(np.array([[s, 0.0]]))[0], 0.7, 0.7, 0, 10), (36, 36, 38))

    def _boat(self, v: Vehicle) -> None:
        rng = np.random.default_rng(v.params["seed"])
        hull = _hull(v)
        kind = v.kind
        deck_cols = {
            "motor": [(232, 234, 236), (220, 222, 226), (200, 204, 210)],
            "fishing": [(60, 100, 160), (226, 228, 230), (70, 120, 90), (160, 60, 44), (40, 110, 150)],
            "tug": [(140, 50, 40), (60, 62, 66), (40, 70, 110)],
            "cargo": [(140, 70, 52), (62, 98, 72), (92, 96, 100), (46, 70, 112)],
            "tanker": [(140, 58, 44), (62, 100, 76), (100, 102, 98)],
            "barge": [(92, 84, 76), (110, 70, 52), (70, 72, 76)],
        }[kind]
        deck = np.array(deck_cols[rng.integers(len(deck_cols))], np.float32) * rng.uniform(0.9, 1.08)
        rim = (40, 40, 42) if kind in ("tug", "cargo", "tanker", "barge") else _shade(deck, 0.7)
        self.local_fill(v, hull, rim)
        inner = _hull(v, inset=max(0.18, v.width * 0.05))
        self.local_fill(v, inner, deck)
        L2, W2 = v.length / 2, v.width / 2
        if kind in ("cargo", "barge"):
            # Hatch covers / open holds.
            s0 = -L2 + (0.2 * v.length if kind == "cargo" else 0.06 * v.length)
            s1 = L2 - 0.18 * v.length
            n_h = max(1, int((s1 - s0) // 9))
            hw = W2 * 0.72
            hold = [(60, 62, 64), (36, 36, 38), (150, 130, 100), (130, 80, 60)][rng.integers(4)]
            cover = (70, 100, 70) if rng.random() < 0.4 else (120, 60, 48)
            seg = (s1 - s0) / n_h
            for i in range(n_h):
                a, b = s0 + i * seg + 0.4, s0 + (i + 1) * seg - 0.4
                self.local_rect(v, a, b, -hw, hw, hold if kind == "barge" or rng.random() < 0.3 else cover)
        if kind == "tanker":
            self.local_rect(v, -L2 * 0.6, L2 * 0.75, -0.2, 0.2, (200, 200, 196))
            for s in np.linspace(-L2 * 0.5, L2 * 0.6, 5):
                self.local_rect(v, s - 0.15, s + 0.15, -W2 * 0.6, W2 * 0.6, (190, 190, 186))
        sup = _boat_superstructure(v)
        if sup is not None:
            white = (236, 236, 232) if kind != "tug" else (220, 220, 214)
            self.local_fill(v, sup, _shade(white, 0.8))
            s_lo, s_hi = sup[:, 0].min(), sup[:, 0].max()
            t_lo, t_hi = sup[:, 1].min(), sup[:, 1].max()
            self.local_rect(v, s_lo + 0.15, s_hi - 0.15, t_lo + 0.15, t_hi - 0.15, white)
            if kind in ("fishing", "motor", "tug"):
                self.local_rect(v, s_hi - 0.5, s_hi - 0.15, t_lo + 0.2, t_hi - 0.2, (40, 46, 56))  # windows
        if kind == "fishing" and rng.random() < 0.6:
            # Nets and gear heaped on the after deck.
            c = v.to_site(np.array([[-L2 * 0.55, rng.uniform(-W2 * 0.3, W2 * 0.3)]]))[0]
            self.fill(_ellipse(c, v.width * 0.28, v.width * 0.2, v.heading, 10), (70, 80, 60))

    def _wakes(self) -> None:
        wake = np.zeros((self.h, self.w), np.uint8)
        any_wake = False
        for v in self.L.vehicles:
            if v.cls != "boat" or not v.params.get("wake"):
                continue
            any_wake = True
            strength = v.params["wake"]
            a, n = v.axes
            stern = np.array([v.x, v.y]) - a * v.length / 2
            bow = np.array([v.x, v.y]) + a * v.length / 2
            trail = v.length * (1.5 + 2.5 * strength)
            # Turbulent centre trail behind the stern, fading.
            steps = 8
            for i in range(steps):
                t0, t1 = trail * i / steps, trail * (i + 1) / steps
                w0 = v.width * (0.5 + 0.6 * i / steps)
                val = int(150 * strength * (1 - i / steps) ** 1.5)
                poly = np.array([stern - a * t0 + n * w0 / 2, stern - a * t1 + n * w0 / 2 * 1.2,
                                 stern - a * t1 - n * w0 / 2 * 1.2, stern - a * t0 - n * w0 / 2])
                cv2.fillPoly(wake, [self._px(poly)], val, cv2.LINE_AA, _SHIFT)
            # Kelvin arms from the bow, 19.5 degrees either side.
            arm = trail * 0.8
            for side in (-1, 1):
                ang = math.radians(19.5) * side
                d = -(a * math.cos(ang) + n * math.sin(ang))
                for i in range(6):
                    p0 = bow + d * arm * i / 6
                    p1 = bow + d * arm * (i + 1) / 6
                    val = int(90 * strength * (1 - i / 6) ** 1.5)
                    self.line(p0, p1, max(0.6, v.width * 0.12), val, target=wake)
        if not any_wake:
            return
        wake = cv2.GaussianBlur(wake, (0, 0), max(0.8, 1.2 / self.gsd))
        water = (self.mat == WATER)
        for r0 in range(0, self.h, _CHUNK):
            r1 = min(self.h, r0 + _CHUNK)
            wk = wake[r0:r1]
            if not wk.any():
                continue
            img = self.img[r0:r1].astype(np.float32)
            k = (wk.astype(np.float32) / 255.0 * water[r0:r1])[..., None]
            img = img * (1 - 0.4 * k) + np.array((150, 162, 160), np.float32) * 0.4 * k
            self.img[r0:r1] = np.clip(img, 0, 255).astype(np.uint8)

    def _trees(self) -> None:
        rng = np.random.default_rng(int(self.rng.integers(2**31)))
        sun = self.sun.toward
        for x, y, r in self.L.trees:
            base = np.array(_mix((40, 58, 34), (64, 78, 44), rng.uniform()), np.float32) * rng.uniform(0.9, 1.1)
            if self.season == "autumn":
                base = np.array(_mix(base, (112, 96, 54), rng.uniform(0, 0.6)), np.float32)
            c = np.array([x, y])
            # Irregular crown: shaded rim, the sunward part lit, a few leaf clumps.
            self.fill(_blob(c, r, rng), _shade(base, 0.7))
            self.fill(_blob(c + sun * r * 0.15, r * 0.78, rng), base)
            self.fill(_blob(c + sun * r * 0.38, r * 0.4, rng), _shade(base, 1.15))
            if r / self.gsd > 5:
                for _ in range(3):
                    a = rng.uniform(0, 2 * math.pi)
                    q = c + np.array([math.cos(a), math.sin(a)]) * r * rng.uniform(0.2, 0.6)
                    self.fill(_blob(q, r * 0.22, rng, 8), _shade(base, rng.uniform(0.8, 1.1)))

    # -- finish ----------------------------------------------------------------------------------
    def _finish(self, noise: _Noise) -> None:
        img = self.img
        cv2.GaussianBlur(img, (0, 0), 0.5, dst=img)
        # Pan-sharpened products carry colour at lower resolution than brightness.
        ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
        for ch in (1, 2):
            ycc[..., ch] = cv2.GaussianBlur(ycc[..., ch], (0, 0), 1.1)
        cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB, dst=img)
        del ycc
        hz = np.array((178, 186, 196), np.float32)
        nrng = np.random.default_rng(int(self.rng.integers(2**31)))
        sensor = nrng.standard_normal((257, 263)).astype(np.float32)
        sensor_c = nrng.standard_normal((251, 263, 3)).astype(np.float32)
        for r0 in range(0, self.h, _CHUNK):
            r1 = min(self.h, r0 + _CHUNK)
            f = img[r0:r1].astype(np.float32)
            lum = noise.field(noise.chroma, noise.chroma_w, r0, r1)
            h = np.clip(self.haze * (1 + 0.5 * lum), 0, 0.4)[..., None]
            f = f * (1 - h) + hz * h
            f *= self.tint
            # Mild contrast curve (bright areas roll off as in 11-bit -> 8-bit products).
            f = 255 * (f / 255) ** 1.04
            rows = np.arange(r0, r1)
            cols = np.arange(self.w)
            n1 = sensor[np.ix_(rows % 257, cols % 263)] * 1.6
            n3 = sensor_c[rows % 251][:, cols % 263] * 0.8
            f += n1[..., None] + n3
            img[r0:r1] = np.clip(f + 0.5, 0, 255).astype(np.uint8)

    def render(self) -> np.ndarray:
        """Draw everything; returns the ``(H, W, 3)`` uint8 RGB image."""
        noise = _Noise(self.rng, self.h, self.w, self.gsd)
        self._ground()
        self._texture(noise)
        self._cast_all()
        self._apply_shadows()
        self.shadow = np.zeros((1, 1), np.uint8)
        self._objects()
        self._finish(noise)
        return self.img


# --------------------------------------------------------------------------------------------
# shapes in local metres
# --------------------------------------------------------------------------------------------
def _pt(p: Sequence[float]) -> BaseGeometry:
    return Point(float(p[0]), float(p[1]))


def _prism_shadow(footprint: np.ndarray, offset: np.ndarray) -> Polygon:
    """Shadow of a vertical prism: hull of its footprint and the footprint moved by ``offset``."""
    pts = np.vstack([footprint, np.asarray(footprint) + offset]).astype(np.float32)
    return Polygon(cv2.convexHull(pts)[:, 0, :].astype(np.float64))


def _circle(c: np.ndarray, r: float, n: int = 10) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.column_stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)])


def _ellipse(c: np.ndarray, rx: float, ry: float, ang: float, n: int = 16) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(a), ry * np.sin(a)
    ca, sa = math.cos(ang), math.sin(ang)
    return np.column_stack([c[0] + x * ca - y * sa, c[1] + x * sa + y * ca])


def _blob(c: np.ndarray, r: float, rng: np.random.Generator, n: int = 14) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 1)
    rr = r * (1 + rng.uniform(-0.16, 0.16, n))
    return np.column_stack([c[0] + rr * np.cos(a), c[1] + rr * np.sin(a)])


def _rounded_rect(s0: float, s1: float, t0: float, t1: float, r: float) -> np.ndarray:
    r = min(r, (s1 - s0) / 2, (t1 - t0) / 2)
    pts = []
    for cs, ct, a0 in ((s1 - r, t0 + r, -90), (s1 - r, t1 - r, 0), (s0 + r, t1 - r, 90), (s0 + r, t0 + r, 180)):
        for a in np.radians(np.linspace(a0, a0 + 90, 4)):
            pts.append((cs + r * math.cos(a), ct + r * math.sin(a)))
    return np.array(pts)


def _hull(v: Box, inset: float = 0.0) -> np.ndarray:
    """Boat hull outline in local metres: rounded stern, parallel body, pointed (barges: blunt) bow."""
    L2, W2 = v.length / 2 - inset, v.width / 2 - inset
    kind = getattr(v, "kind", "")
    bow_frac = {"motor": 0.42, "fishing": 0.36, "tug": 0.34, "cargo": 0.16, "tanker": 0.15,
                "barge": 0.07}.get(kind, 0.3)
    bow_len = max(v.length * bow_frac - inset, 0.3)
    r = min(W2 * (0.6 if kind in ("tug", "motor") else 0.25), 3.0)
    s_b = L2 - bow_len
    expo = 6.0 if kind == "barge" else 1.7
    half = [(-L2, 0.0)]
    for a in np.radians(np.linspace(180, 90, 5)):
        half.append((-L2 + r + r * math.cos(a), W2 - r + r * math.sin(a)))
    for x in np.linspace(0, 1, 10):
        half.append((s_b + x * bow_len, W2 * (1 - x**expo) ** 0.9))
    if kind == "barge":
        half[-1] = (L2, W2 * 0.55)
        half.append((L2, 0.0))
    half_a = np.array(half)
    other = half_a[-2:0:-1] * np.array([1.0, -1.0])
    return np.vstack([half_a, other])


def _boat_superstructure(v: Box) -> np.ndarray | None:
    kind = getattr(v, "kind", "")
    L2, W2 = v.length / 2, v.width / 2
    if kind == "barge":
        return None
    if kind in ("cargo", "tanker"):
        s0, s1, tw = -L2 + 0.03 * v.length, -L2 + 0.16 * v.length, W2 * 0.85
    elif kind == "tug":
        s0, s1, tw = -0.15 * v.length, 0.15 * v.length, W2 * 0.6
    elif kind == "fishing":
        s0, s1, tw = -0.1 * v.length, 0.12 * v.length, W2 * 0.62
    else:  # motor
        s0, s1, tw = -0.2 * v.length, 0.12 * v.length, W2 * 0.7
    return np.array([[s0, -tw], [s1, -tw], [s1, tw], [s0, tw]])


def render_layout(layout: Layout, gsd: float, rng: np.random.Generator) -> np.ndarray:
    """Render ``layout`` at ``gsd`` metres per pixel; returns ``(H, W, 3)`` uint8 RGB."""
    return Renderer(layout, gsd, rng).render()
