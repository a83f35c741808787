"""Where things go on a synthetic border-crossing site, in metres (pure geometry, no pixels).

Site coordinates are metres with x east (image right), y south (image down) and the origin at the
image's top-left corner. The site is planned in a *plan* frame - ``u`` along the river, ``v``
across it, ``v = 0`` on the river axis - and rotated into the site frame by a random angle, so
roads, lots, tracks and vehicles take any heading in the image. Across the river each bank is
laid out in bands by inland distance ``d`` (shore, bank road, a band of lots / warehouses, an
inner road, the rail yard on one bank, then fields and villages), cut into blocks by cross
streets and the bridge approach road.

Everything placed is checked against an :class:`Occupancy` index so objects never overlap, and
labelled vehicles are only placed where they lie wholly inside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from shapely.geometry import LineString, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep

LABELLED = ("truck", "railcar", "boat")
"""Classes of :class:`Vehicle` that get labels; ``car`` and ``container`` are distractors."""


# --------------------------------------------------------------------------------------------
# geometry records
# --------------------------------------------------------------------------------------------
@dataclass
class Sun:
    """Sun position for the scene.

    Attributes:
        azimuth_deg: Direction *towards* the sun, clockwise from north (image up).
        elevation_deg: Angle above the horizon.
    """

    azimuth_deg: float
    elevation_deg: float

    def shadow(self, height: float) -> np.ndarray:
        """Offset ``(dx, dy)`` in site metres of the shadow of a point ``height`` m up."""
        az = math.radians(self.azimuth_deg)
        k = height / math.tan(math.radians(self.elevation_deg))
        return np.array([-math.sin(az) * k, math.cos(az) * k])

    @property
    def toward(self) -> np.ndarray:
        """Unit vector (site frame) pointing towards the sun, for lit/shaded faces."""
        az = math.radians(self.azimuth_deg)
        return np.array([math.sin(az), -math.cos(az)])


@dataclass
class Box:
    """An oriented rectangle: centre, heading (radians, site frame, x east / y south), size.

    Local coordinates ``(s, t)`` run along the heading (front positive) and across it.
    """

    x: float
    y: float
    heading: float
    length: float
    width: float

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors along and across the box in the site frame."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        return np.array([c, s]), np.array([-s, c])

    def to_site(self, local: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` local ``(s, t)`` metres to site metres."""
        a, n = self.axes
        local = np.asarray(local, dtype=np.float64).reshape(-1, 2)
        return np.array([self.x, self.y]) + local[:, :1] * a + local[:, 1:] * n

    def corners(self, grow: float = 0.0) -> np.ndarray:
        """The four corners (rear-left, front-left, front-right, rear-right), optionally grown."""
        hl, hw = self.length / 2 + grow, self.width / 2 + grow
        return self.to_site(np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]]))

    def polygon(self, grow: float = 0.0) -> Polygon:
        """The rectangle as a shapely polygon (site metres)."""
        return Polygon(self.corners(grow))


@dataclass
class Vehicle(Box):
    """A movable object. ``cls`` is a freightwatch class for labelled ones, else a distractor.

    Attributes:
        cls: ``truck``/``railcar``/``boat`` (labelled) or ``car``/``container`` (not labelled).
        kind: Variant drawn by the renderer (e.g. ``tank`` railcar, ``tarp`` truck).
        height: Height in metres (shadow length).
        state: Boat state (``docked``/``undocked``), ``unknown`` otherwise.
        params: Variant details (part sizes, ``seed`` for the renderer's colour choices).
    """

    cls: str = "car"
    kind: str = ""
    height: float = 1.5
    state: str = "unknown"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Building(Box):
    """A building footprint with a roof type (``flat``, ``gable``, ``metal``) and palette key."""

    height: float = 6.0
    roof: str = "flat"
    colour: str = "concrete"
    seed: int = 0


@dataclass
class Road:
    """A straight road between two site points; ``kind`` is ``main``, ``minor`` or ``track``."""

    a: np.ndarray
    b: np.ndarray
    width: float
    lanes: int
    kind: str = "main"

    def polygon(self) -> Polygon:
        """The carriageway (site metres)."""
        return LineString([self.a, self.b]).buffer(self.width / 2, cap_style="flat")


@dataclass
class Patch:
    """A land-cover area drawn before objects: ``kind`` picks colour/texture in the renderer."""

    polygon: BaseGeometry
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lot:
    """A customs truck lot: the paved area (clipped to the image) and its painted lines."""

    name: str
    polygon: Polygon
    lines: list[tuple[np.ndarray, np.ndarray]]
    fence: list[tuple[np.ndarray, np.ndarray]]
    asphalt: bool


@dataclass
class Bridge:
    """The road bridge: deck polygon, axis end points, width, lanes, deck height over water."""

    deck: Polygon
    a: np.ndarray
    b: np.ndarray
    width: float
    lanes: int
    height: float
    piers: list[np.ndarray]


@dataclass
class RailYard:
    """Parallel tracks on a ballast bed: ``tracks`` are (start, end) site points, buffer at start."""

    polygon: Polygon
    tracks: list[tuple[np.ndarray, np.ndarray]]
    gauge: float = 1.435


@dataclass
class Dock:
    """A quay along the shore or a pier reaching into the water."""

    name: str
    kind: str
    polygon: Polygon


@dataclass
class Layout:
    """Everything the renderer draws, in site metres.

    Attributes:
        width_m: Site width (image x extent).
        height_m: Site height (image y extent).
        sun: Sun position (shadows).
        plan_angle: Rotation of the plan frame (river axis heading), radians.
        water: River polygon.
        shore: Mud/sand strip along the water.
        patches: Land cover (fields, grass, concrete pads, car parks), in drawing order.
        roads: Roads (drawn over patches).
        bridge: The road bridge.
        lots: Customs truck lots.
        yard: The rail yard.
        docks: Quays and piers.
        buildings: Buildings.
        trees: ``(N, 3)`` tree centres and crown radii.
        vehicles: Trucks, railcars, boats (labelled) and cars, containers (distractors).
    """

    width_m: float
    height_m: float
    sun: Sun
    plan_angle: float
    water: Polygon
    shore: BaseGeometry
    patches: list[Patch]
    roads: list[Road]
    bridge: Bridge
    lots: list[Lot]
    yard: RailYard
    docks: list[Dock]
    buildings: list[Building]
    trees: np.ndarray
    vehicles: list[Vehicle]

    def labelled(self) -> list[Vehicle]:
        """The vehicles that get labels, in a stable order."""
        return [v for v in self.vehicles if v.cls in LABELLED]


class Occupancy:
    """Spatial hash of placed footprints so new objects can be rejected when they would overlap."""

    def __init__(self, cell: float = 25.0) -> None:
        self.cell = cell
        self._grid: dict[tuple[int, int], list[Polygon]] = {}

    def _cells(self, bounds: tuple[float, float, float, float]) -> list[tuple[int, int]]:
        x0, y0, x1, y1 = (int(math.floor(b / self.cell)) for b in bounds)
        return [(i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1)]

    def free(self, poly: BaseGeometry) -> bool:
        """Whether ``poly`` touches nothing placed so far."""
        seen: set[int] = set()
        for c in self._cells(poly.bounds):
            for other in self._grid.get(c, ()):
                if id(other) in seen:
                    continue
                seen.add(id(other))
                if poly.intersects(other):
                    return False
        return True

    def add(self, poly: BaseGeometry) -> None:
        """Record a footprint."""
        for c in self._cells(poly.bounds):
            self._grid.setdefault(c, []).append(poly)


# --------------------------------------------------------------------------------------------
# vehicle catalogues (sizes in metres)
# --------------------------------------------------------------------------------------------
TRUCK_KINDS = ("container", "box", "tarp", "flatbed", "tanker", "bulk")
_TRUCK_P = (0.3, 0.2, 0.24, 0.1, 0.08, 0.08)
RAILCAR_KINDS = ("box", "tank", "hopper", "gondola", "flat", "loco")


def make_truck(rng: np.random.Generator, x: float, y: float, heading: float) -> Vehicle:
    """A tractor-trailer: cab-over tractor plus a semi-trailer, one box around both."""
    kind = str(rng.choice(TRUCK_KINDS, p=_TRUCK_P))
    cab_len = rng.uniform(2.2, 2.6)
    cab_w = rng.uniform(2.38, 2.5)
    gap = rng.uniform(0.5, 1.1)
    trailer_len = 12.3 if kind == "container" else rng.uniform(11.5, 13.6)
    trailer_w = 2.44 if kind == "container" else rng.uniform(2.45, 2.55)
    length = cab_len + gap + trailer_len
    width = max(cab_w, trailer_w)
    params = {"cab_len": cab_len, "cab_w": cab_w, "gap": gap, "trailer_len": trailer_len,
              "trailer_w": trailer_w, "seed": int(rng.integers(2**31))}
    if kind == "container" and rng.random() < 0.25:
        params["twin20"] = True  # two 20 ft boxes on one chassis
    return Vehicle(x, y, heading, length, width, cls="truck", kind=kind, height=4.0, params=params)


def make_car(rng: np.random.Generator, x: float, y: float, heading: float) -> Vehicle:
    """A passenger car or van (distractor, never labelled)."""
    van = rng.random() < 0.15
    length = rng.uniform(4.8, 5.4) if van else rng.uniform(4.2, 4.9)
    width = rng.uniform(1.85, 2.0) if van else rng.uniform(1.7, 1.88)
    return Vehicle(x, y, heading, length, width, cls="car", kind="van" if van else "car", height=1.6,
                   params={"seed": int(rng.integers(2**31))})


def railcar_dims(rng: np.random.Generator, kind: str) -> tuple[float, float, float]:
    """Length, width and height of a railcar body of ``kind``."""
    if kind == "box":
        return rng.uniform(14.5, 16.8), rng.uniform(3.05, 3.25), 4.6
    if kind == "tank":
        return rng.uniform(12.2, 14.0), rng.uniform(2.9, 3.15), 4.3
    if kind == "hopper":
        return rng.uniform(13.4, 14.6), rng.uniform(3.1, 3.25), 3.6
    if kind == "gondola":
        return rng.uniform(13.0, 14.2), rng.uniform(3.1, 3.25), 3.1
    if kind == "flat":
        return rng.uniform(15.4, 16.6), rng.uniform(2.9, 3.1), 1.4
    return rng.uniform(17.0, 19.5), rng.uniform(3.1, 3.3), 4.8  # locomotive


def make_boat(rng: np.random.Generator, length: float, x: float, y: float, heading: float,
              state: str) -> Vehicle:
    """A boat whose kind (and beam, height) follows its length."""
    if length < 10:
        kind = str(rng.choice(["motor", "fishing"], p=[0.6, 0.4]))
    elif length < 22:
        kind = str(rng.choice(["fishing", "tug", "motor"], p=[0.6, 0.3, 0.1]))
    elif length < 35:
        kind = str(rng.choice(["cargo", "fishing", "tug"], p=[0.5, 0.3, 0.2]))
    else:
        kind = str(rng.choice(["cargo", "tanker", "barge"], p=[0.55, 0.25, 0.2]))
    ratio = {"motor": 3.0, "fishing": 3.6, "tug": 3.0, "cargo": 5.8, "tanker": 6.0, "barge": 4.8}[kind]
    beam = float(np.clip(length / ratio * rng.uniform(0.9, 1.1), 1.8, 14.0))
    height = {"motor": 1.6, "fishing": 3.5, "tug": 5.0, "cargo": 7.0, "tanker": 7.5, "barge": 1.5}[kind]
    return Vehicle(x, y, heading, length, beam, cls="boat", kind=kind, height=height, state=state,
                   params={"seed": int(rng.integers(2**31))})


# --------------------------------------------------------------------------------------------
# the planner
# --------------------------------------------------------------------------------------------
def _rot(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


class _Planner:
    """Builds a :class:`Layout`; every random draw comes from one generator, in a fixed order."""

    def __init__(self, width_m: float, height_m: float, activity: float, rng: np.random.Generator) -> None:
        self.W, self.H = float(width_m), float(height_m)
        self.rng = rng
        self.act = float(np.clip(activity, 0.0, 1.0))
        self.S = min(self.W, self.H)
        self.k = float(np.clip(self.S / 1000.0, 0.4, 1.0))  # shrinks big features on small sites
        self.kk = max(self.k, 0.6)
        self.alpha = rng.uniform(0, 2 * math.pi)
        self.R = _rot(self.alpha)
        self.river_w = max(50.0, rng.uniform(150, 300) * self.k)
        v_off = rng.uniform(-0.07, 0.07) * self.S
        self.c = np.array([self.W / 2, self.H / 2]) + self.R @ np.array([0.0, v_off])
        self.frame = box(0, 0, self.W, self.H)
        self.frame_in = box(0.6, 0.6, self.W - 0.6, self.H - 0.6)  # labelled objects lie inside
        self.frame_in_p = prep(self.frame_in)
        fp = self.plan_poly(np.array(self.frame.exterior.coords), inverse=True)
        ulo, vlo, uhi, vhi = fp.bounds
        self.u_lo, self.u_hi, self.v_lo, self.v_hi = ulo - 40, uhi + 40, vlo - 40, vhi + 40
        self.frame_plan = fp
        self.occ = Occupancy()
        self.vehicles: list[Vehicle] = []
        self.buildings: list[Building] = []
        self.patches: list[Patch] = []
        self.roads: list[Road] = []
        self.trees: list[tuple[float, float, float]] = []
        self.hard: list[BaseGeometry] = []  # surfaces trees must avoid

    # -- frames ----------------------------------------------------------------------------------
    def site(self, uv: np.ndarray) -> np.ndarray:
        """Plan ``(N, 2)`` -> site."""
        return np.asarray(uv, dtype=np.float64).reshape(-1, 2) @ self.R.T + self.c

    def plan_poly(self, pts: np.ndarray, inverse: bool = False) -> Polygon:
        if inverse:
            return Polygon((np.asarray(pts) - self.c) @ self.R)
        return Polygon(self.site(pts))

    def rect(self, u0: float, u1: float, v0: float, v1: float) -> Polygon:
        u0, u1 = sorted((u0, u1))
        v0, v1 = sorted((v0, v1))
        return self.plan_poly(np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]))

    def v_of(self, s: int, d: float) -> float:
        """Plan ``v`` of inland distance ``d`` on bank ``s`` (negative ``d`` is over the water)."""
        return s * (self.river_w / 2 + d)

    def heading(self, phi: float) -> float:
        """Plan heading -> site heading."""
        return phi + self.alpha

    def inside(self, poly: BaseGeometry) -> bool:
        return self.frame_in_p.contains(poly)

    def visible(self, poly: BaseGeometry) -> bool:
        return poly.intersects(self.frame)

    # -- top level -------------------------------------------------------------------------------
    def run(self) -> Layout:
        rng = self.rng
        sun = Sun(float(rng.uniform(105, 250)), float(rng.uniform(28, 62)))
        self.sun = sun
        self._river()
        self._bands()
        self._bridge()
        self._road_grid()
        self._lots()
        self._rail_yard()
        self._docks()
        self._blocks()
        self._trucks_on_roads()
        self._trains()
        self._boats()
        self._cars_on_roads()
        self._trees()
        return Layout(
            width_m=self.W, height_m=self.H, sun=sun, plan_angle=self.alpha, water=self.water,
            shore=self.shore, patches=self.patches, roads=self.roads, bridge=self.bridge,
            lots=self.lots, yard=self.yard, docks=self.docks, buildings=self.buildings,
            trees=np.array(self.trees, dtype=np.float64).reshape(-1, 3), vehicles=self.vehicles,
        )

    # -- river -----------------------------------------------------------------------------------
    def _smooth1d(self, u: np.ndarray, step: float, amp: float) -> np.ndarray:
        knots = np.arange(self.u_lo - 2 * step, self.u_hi + 3 * step, step)
        vals = self.rng.normal(0, amp, len(knots))
        vals = np.convolve(vals, [0.25, 0.5, 0.25], mode="same")
        return np.interp(u, knots, vals)

    def _river(self) -> None:
        u = np.arange(self.u_lo, self.u_hi + 8, 8.0)
        w2 = self.river_w / 2
        self.bank_n = {-1: (u, self._smooth1d(u, 40, 4.0) + self._smooth1d(u, 12, 1.2)),
                       1: (u, self._smooth1d(u, 40, 4.0) + self._smooth1d(u, 12, 1.2))}
        top = np.column_stack([u, -w2 + self.bank_n[-1][1]])
        bot = np.column_stack([u[::-1], w2 - self.bank_n[1][1][::-1]])
        self.water = self.plan_poly(np.vstack([top, bot]))
        self.water_p = prep(self.water.buffer(-1.0))
        # A muddy/sandy fringe between the water and the vegetation.
        fringe = self.rng.uniform(4, 9) * self.kk
        self.shore = self.water.buffer(fringe, quad_segs=2).difference(self.water)

    # -- bands -----------------------------------------------------------------------------------
    def _bands(self) -> None:
        rng, kk = self.rng, self.kk
        self.rail_side = int(rng.choice([-1, 1]))
        self.band: dict[int, dict[str, float]] = {}
        for s in (-1, 1):
            sh = rng.uniform(22, 40) * kk
            rw = rng.uniform(9.5, 12.0)
            b1 = sh + rw + 3
            depth = rng.uniform(110, 165) * kk
            ir0 = b1 + depth + 3
            ir1 = ir0 + 8.0
            self.band[s] = {"shore": sh, "road0": sh, "road1": sh + rw, "b1_0": b1, "b1_1": b1 + depth,
                            "ir0": ir0, "ir1": ir1, "rw": rw}
        # The rail yard sits in band 1 of the rail bank, on one side of the approach road.
        bd = self.band[self.rail_side]
        self.ntracks = int(rng.integers(6, 12)) if self.k >= 0.8 else int(rng.integers(3, 6))
        self.track_sp = rng.uniform(5.0, 5.6)
        bd["y0"] = bd["b1_0"] + 2
        bd["y1"] = bd["y0"] + 2 * 3.2 + (self.ntracks - 1) * self.track_sp
        if bd["b1_1"] - bd["y1"] < 40:
            grow = 40 - (bd["b1_1"] - bd["y1"])
            for key in ("b1_1", "ir0", "ir1"):
                bd[key] += grow

    # -- bridge ----------------------------------------------------------------------------------
    def _bridge(self) -> None:
        rng = self.rng
        fp = self.frame_plan
        # Cross the river where the frame is wide along u, away from the image edges.
        line = fp.intersection(LineString([(self.u_lo, 0), (self.u_hi, 0)]))
        a, b = line.bounds[0], line.bounds[2]
        self.u_b = rng.uniform(a + 0.33 * (b - a), b - 0.33 * (b - a))
        lanes = int(rng.choice([2, 4], p=[0.35, 0.65]))
        bw = lanes * 3.5 + 2 * 1.4
        self.bw = bw
        self.lanes = lanes
        w2 = self.river_w / 2
        ext = 22.0
        deck = self.rect(self.u_b - bw / 2, self.u_b + bw / 2, -(w2 + ext), w2 + ext)
        pa, pb = self.site([[self.u_b, -(w2 + ext)], [self.u_b, w2 + ext]])
        span = rng.uniform(40, 65)
        piers = []
        for v in np.arange(-w2 + span / 2, w2, span):
            piers.append(self.site([[self.u_b - bw / 2 - 0.8, v - 1.5], [self.u_b + bw / 2 + 0.8, v - 1.5],
                                    [self.u_b + bw / 2 + 0.8, v + 1.5], [self.u_b - bw / 2 - 0.8, v + 1.5]]))
        self.bridge = Bridge(deck, pa, pb, bw, lanes, rng.uniform(9, 15), piers)

    # -- roads -----------------------------------------------------------------------------------
    def _add_road(self, p0: tuple[float, float], p1: tuple[float, float], width: float, lanes: int,
                  kind: str) -> Road | None:
        a, b = self.site([p0, p1])
        road = Road(a, b, width, lanes, kind)
        poly = road.polygon()
        if not self.visible(poly):
            return None
        self.roads.append(road)
        self.hard.append(poly)
        return road

    def _road_grid(self) -> None:
        rng, kk = self.rng, self.kk
        bw, ub = self.bw, self.u_b
        self.yard_dir = 1 if (self.u_hi - ub) >= (ub - self.u_lo) else -1
        self.cross: dict[int, list[float]] = {}
        self.approaches: list[Road] = []
        for s in (-1, 1):
            bd = self.band[s]
            # The bridge approach continues inland to the image edge.
            far = self.v_hi if s > 0 else self.v_lo
            approach = self._add_road((ub, self.v_of(s, 20.0)), (ub, far), bw, self.lanes, "main")
            if approach is not None:
                self.approaches.append(approach)
            # Bank road and inner road along the river.
            vr = (self.v_of(s, bd["road0"]) + self.v_of(s, bd["road1"])) / 2
            self._add_road((self.u_lo, vr), (self.u_hi, vr), bd["rw"], 2, "main")
            vi = (self.v_of(s, bd["ir0"]) + self.v_of(s, bd["ir1"])) / 2
            self._add_road((self.u_lo, vi), (self.u_hi, vi), bd["ir1"] - bd["ir0"], 2, "minor")
            # Cross streets, keeping clear of the lots next to the approach road.
            xs: list[float] = []
            for direction in (-1, 1):
                u = ub + direction * (bw / 2 + rng.uniform(170, 240) * kk)
                while self.u_lo < u < self.u_hi:
                    xs.append(u)
                    u += direction * rng.uniform(150, 280) * kk
            self.cross[s] = sorted(xs)
            for u in xs:
                in_yard = s == self.rail_side and (u - ub) * self.yard_dir > 0
                d_start = bd["y1"] + 2 if in_yard else bd["road1"]
                v_end = self.v_hi if s > 0 else self.v_lo
                self._add_road((u, self.v_of(s, d_start)), (u, v_end), 8.0, 2, "minor")

    # -- lots ------------------------------------------------------------------------------------
    def _lots(self) -> None:
        rng, kk = self.rng, self.kk
        self.lots: list[Lot] = []
        ub, bw = self.u_b, self.bw
        wanted: list[tuple[int, int]] = []
        for s in (-1, 1):
            if s == self.rail_side:
                wanted.append((s, -self.yard_dir))
                continue
            first = int(rng.choice([-1, 1]))
            wanted.append((s, first))
            if rng.random() < 0.5:
                wanted.append((s, -first))
        # Fall back on the other corners by the approach road until there are two lots (small sites).
        combos = wanted + [c for c in ((-1, -1), (-1, 1), (1, -1), (1, 1)) if c not in wanted]
        for i, (s, side) in enumerate(combos):
            if i >= len(wanted) and len(self.lots) >= 2:
                break
            bd = self.band[s]
            u0 = ub + side * (bw / 2 + 4)
            xs = [u for u in self.cross[s] if (u - ub) * side > 0]
            limit = (min(xs, key=lambda u: abs(u - ub)) - side * 8) if xs else ub + side * 400
            length = min(abs(limit - u0), rng.uniform(120, 210) * kk)
            if length < 50:
                continue
            beyond_yard = s == self.rail_side and side == self.yard_dir
            d0 = bd["y1"] + 6 if beyond_yard else bd["b1_0"] + 2
            if bd["b1_1"] - 2 - d0 < 40:
                continue
            self._make_lot(f"lot_{len(self.lots) + 1}", u0, u0 + side * length,
                           self.v_of(s, d0), self.v_of(s, bd["b1_1"] - 2))

    def _make_lot(self, name: str, u0: float, u1: float, va: float, vb: float) -> None:
        """A lot on the plan rectangle ``[u0, u1] x [va, vb]``, with stalls, trucks and a fence."""
        rng = self.rng
        u0, u1 = sorted((u0, u1))
        va, vb = sorted((va, vb))
        full = self.rect(u0, u1, va, vb)
        poly = full.intersection(self.frame)
        if poly.is_empty or poly.area < 0.35 * full.area:
            return
        if poly.geom_type != "Polygon":
            poly = max(poly.geoms, key=lambda g: g.area)
        self.hard.append(full)
        # Stalls: rows of long stalls separated by aisles; stall axis along v or along u.
        along_v = rng.random() < 0.6 or (u1 - u0) < 70
        if along_v:
            a0, a1, b0, b1 = u0, u1, va, vb
        else:
            a0, a1, b0, b1 = va, vb, u0, u1

        def plan_pt(a: float, b: float) -> tuple[float, float]:
            return (a, b) if along_v else (b, a)

        sw = rng.uniform(4.0, 4.6)   # stall width
        sl = rng.uniform(20.0, 22.0)  # stall length
        aisle = rng.uniform(14.0, 18.0)
        rows: list[tuple[float, int]] = []  # (row start along b, facing +1/-1)
        pos = b0 + 3.0
        rows.append((pos, -1))
        pos += sl
        while pos + aisle + sl <= b1 - 2:
            pos += aisle
            rows.append((pos, 1))
            pos += sl
            if pos + sl <= b1 - 2:
                rows.append((pos, -1))
                pos += sl
        lines: list[tuple[np.ndarray, np.ndarray]] = []
        fill = float(np.clip(self.act * rng.uniform(0.8, 1.15) + rng.uniform(-0.05, 0.05), 0.02, 0.97))
        nstall = int((a1 - a0 - 4) // sw)
        a_start = a0 + (a1 - a0 - nstall * sw) / 2
        for rb, facing in rows:
            for i in range(nstall + 1):
                a = a_start + i * sw
                p, q = self.site([plan_pt(a, rb), plan_pt(a, rb + sl)])
                lines.append((p, q))
            p, q = self.site([plan_pt(a_start, rb + (sl if facing > 0 else 0)),
                              plan_pt(a_start + nstall * sw, rb + (sl if facing > 0 else 0))])
            lines.append((p, q))
            for i in range(nstall):
                ac = a_start + (i + 0.5) * sw
                stall = self.plan_poly(np.array([plan_pt(ac - sw / 2, rb), plan_pt(ac + sw / 2, rb),
                                                 plan_pt(ac + sw / 2, rb + sl), plan_pt(ac - sw / 2, rb + sl)]))
                if not self.inside(stall):
                    continue
                if rng.random() >= fill:
                    if rng.random() < 0.04:  # now and then a car in an empty stall
                        self._car_in_stall(plan_pt(ac, rb + sl / 2), along_v)
                    continue
                # Trucks mostly face the aisle; a few are backed in the other way.
                face = facing if rng.random() < 0.8 else -facing
                phi = (math.pi / 2 if along_v else 0.0) * 1.0
                if face < 0:
                    phi += math.pi
                truck = make_truck(rng, 0, 0, 0)
                slack = sl - truck.length
                bc = rb + sl / 2 + (rng.uniform(-0.4, 0.4) * slack) * face
                ac_j = ac + rng.normal(0, 0.12)
                (x, y), = self.site([plan_pt(ac_j, bc)])
                truck.x, truck.y = x, y
                truck.heading = self.heading(phi + rng.normal(0, 0.012))
                self._place(truck, margin=0.15)
        # Some trucks moving along the aisles.
        for rb, facing in rows:
            if facing != 1 or rng.random() > 0.25 + 0.5 * self.act:
                continue
            bmid = rb - aisle / 2
            for _ in range(int(rng.integers(0, 3))):
                a = rng.uniform(a0 + 12, a1 - 12)
                phi = (0.0 if along_v else math.pi / 2) + (math.pi if rng.random() < 0.5 else 0.0)
                (x, y), = self.site([plan_pt(a, bmid + rng.normal(0, 1.2))])
                truck = make_truck(rng, x, y, self.heading(phi + rng.normal(0, 0.05)))
                self._place(truck, margin=1.0)
        fence = []
        ring = np.array(full.exterior.coords)
        gate = int(rng.integers(0, 4))
        for i in range(4):
            p, q = ring[i], ring[i + 1]
            if i == gate:
                # Leave a gate: the fence stops short of the middle of one side.
                m = (p + q) / 2
                fence += [(p, m - (q - p) * 0.15), (m + (q - p) * 0.15, q)]
            else:
                fence.append((p, q))
        self.lots.append(Lot(name, poly, lines, fence, asphalt=bool(rng.random() < 0.45)))

    def _car_in_stall(self, ab: tuple[float, float], along_v: bool) -> None:
        rng = self.rng
        (x, y), = self.site([ab])
        phi = (math.pi / 2 if along_v else 0.0) + (math.pi if rng.random() < 0.5 else 0.0)
        self._place(make_car(rng, x, y, self.heading(phi + rng.normal(0, 0.03))), margin=0.3)

    def _place(self, v: Vehicle, margin: float = 0.5, need_inside: bool = True) -> bool:
        """Add a vehicle if it is inside the image (labelled ones) and overlaps nothing."""
        poly = v.polygon()
        if need_inside and not self.inside(poly):
            return False
        if not need_inside and not self.visible(poly):
            return False
        test = v.polygon(margin) if margin else poly
        if not self.occ.free(test):
            return False
        self.occ.add(poly)
        self.vehicles.append(v)
        return True

    # -- rail yard -------------------------------------------------------------------------------
    def _rail_yard(self) -> None:
        rng, s = self.rng, self.rail_side
        bd = self.band[s]
        ntr, spacing = self.ntracks, self.track_sp
        d0, d1 = bd["y0"], bd["y1"]
        ustart = self.u_b + self.yard_dir * (self.bw / 2 + rng.uniform(25, 45))
        uend = self.u_hi if self.yard_dir > 0 else self.u_lo
        tracks = []
        for i in range(ntr):
            v = self.v_of(s, d0 + 3.2 + i * spacing)
            a, b = self.site([[ustart + self.yard_dir * rng.uniform(0, 30), v], [uend, v]])
            tracks.append((a, b))
        va, vb = self.v_of(s, d0), self.v_of(s, d1)
        full = self.rect(ustart - self.yard_dir * 2, uend, va, vb)
        self.hard.append(full)
        poly = full.intersection(self.frame)
        if poly.geom_type != "Polygon":
            poly = max(poly.geoms, key=lambda g: g.area)
        self.yard = RailYard(poly, tracks)
        self.yard_full = full

    def _trains(self) -> None:
        rng = self.rng
        occ_p = float(np.clip(0.08 + 0.85 * self.act * rng.uniform(0.85, 1.15), 0.03, 0.98))
        for a, b in self.yard.tracks:
            if rng.random() >= occ_p:
                continue
            seg = LineString([a, b]).intersection(self.frame_in)
            if seg.is_empty:
                continue
            d = (b - a) / np.linalg.norm(b - a)
            # Work along the track from its buffer end, inside the image only.
            t_in = float(np.dot(np.array(seg.coords[0]) - a, d))
            t_out = float(np.dot(np.array(seg.coords[-1]) - a, d))
            t_in, t_out = sorted((t_in, t_out))
            t = max(t_in, 0.0) + rng.uniform(3, 40)
            want = (t_out - t) * float(np.clip(rng.uniform(0.3, 1.1) * (0.4 + 0.8 * self.act), 0.15, 1.0))
            stop = t + want
            main = str(rng.choice(RAILCAR_KINDS[:5], p=[0.28, 0.22, 0.2, 0.15, 0.15]))
            train_seed = int(rng.integers(2**31))  # shared look: trains are blocks of similar cars
            loco_front = rng.random() < 0.35
            first = True
            heading = math.atan2(d[1], d[0])
            while t < stop:
                if first and loco_front:
                    kind = "loco"
                elif rng.random() < 0.8:
                    kind = main
                else:
                    kind = str(rng.choice(RAILCAR_KINDS[:5]))
                first = False
                length, width, height = railcar_dims(rng, kind)
                if t + length > t_out:
                    break
                cx, cy = a + d * (t + length / 2)
                params: dict[str, Any] = {"seed": int(rng.integers(2**31)), "train": train_seed}
                if kind == "flat":
                    params["load"] = str(rng.choice(["40", "20x2", "20", "empty", "timber"],
                                                    p=[0.35, 0.25, 0.1, 0.15, 0.15]))
                    if params["load"] != "empty":
                        height = 4.0
                car = Vehicle(float(cx), float(cy), heading + (math.pi if rng.random() < 0.5 else 0.0),
                              length, width, cls="railcar", kind=kind, height=height, params=params)
                self._place(car, margin=0.0)
                t += length + rng.uniform(0.9, 1.3)
                if rng.random() < 0.03:  # an uncoupled cut further along
                    t += rng.uniform(15, 60)

    # -- docks -----------------------------------------------------------------------------------
    def _docks(self) -> None:
        rng, kk = self.rng, self.kk
        self.docks: list[Dock] = []
        self.moor: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []  # p0, p1, normal, dock kind
        # Docks on the bank without the yard, sometimes on both banks.
        sides = [-self.rail_side] if rng.random() < 0.5 else [-self.rail_side, self.rail_side]
        clear = self.bw / 2 + 45
        for si, s in enumerate(sides):
            sh = self.band[s]["shore"]
            line = self.frame_plan.buffer(-30).intersection(
                LineString([(self.u_lo, self.v_of(s, 0)), (self.u_hi, self.v_of(s, 0))]))
            if line.is_empty:
                continue
            ua, ub_ = line.bounds[0], line.bounds[2]
            segs = [(ua, self.u_b - clear), (self.u_b + clear, ub_)]
            segs = [(a, b) for a, b in segs if b - a > 40]
            if not segs:
                continue
            order = rng.permutation(len(segs))
            # One quay (always on the first side) and a few finger piers.
            a, b = segs[order[0]]
            qlen = min(b - a - 5, rng.uniform(110, 260) * kk)
            if si == 0 or rng.random() < 0.6:
                if qlen > 40:
                    q0 = rng.uniform(a, b - qlen) if b - a - qlen > 0 else a
                    self._quay(s, q0, q0 + qlen, sh)
                    segs_left = [(q0 + qlen + 20, b), (a, q0 - 20)]
                else:
                    segs_left = [(a, b)]
            else:
                segs_left = [(a, b)]
            if len(segs) > 1:
                segs_left.append(segs[order[1]])
            npier = int(rng.integers(1, 4))
            for _ in range(npier):
                segs_left = [(x, y) for x, y in segs_left if y - x > 30]
                if not segs_left:
                    break
                j = int(rng.integers(len(segs_left)))
                x, y = segs_left.pop(j)
                pw = rng.uniform(7, 12)
                pl = max(22.0, min(rng.uniform(25, 60) * kk, 0.3 * self.river_w))
                pu = rng.uniform(x + pw, y - pw) if y - x > 2 * pw + 1 else (x + y) / 2
                self._pier(s, pu, pw, pl, sh)
                gap = 2 * 30.0
                segs_left += [(x, pu - gap), (pu + gap, y)]
        if not self.docks:
            # A small site can squeeze out the piers: keep one quay next to the bridge.
            s = -self.rail_side
            self._quay(s, self.u_b + self.bw / 2 + 20, self.u_b + self.bw / 2 + 80, self.band[s]["shore"])

    def _quay(self, s: int, u0: float, u1: float, sh: float) -> None:
        # The quay wall stands clear of the wobbly natural bank, so boats moor in open water.
        poly = self.rect(u0, u1, self.v_of(s, -8.0), self.v_of(s, sh))
        if not self.visible(poly):
            return
        self.docks.append(Dock(f"dock_{len(self.docks) + 1}", "quay", poly))
        self.hard.append(poly)
        p0, p1 = self.site([[u0 + 2, self.v_of(s, -8.0)], [u1 - 2, self.v_of(s, -8.0)]])
        n = self.R @ np.array([0.0, -s])
        self.moor.append((p0, p1, n, "quay"))
        # Containers and bollards on the apron: stacks along the landward half.
        rng = self.rng
        if rng.random() < 0.7:
            self._container_rows(u0 + 8, u1 - 8, self.v_of(s, sh * 0.45), self.v_of(s, sh - 3), along_u=True,
                                 max_tiers=2)

    def _pier(self, s: int, pu: float, pw: float, pl: float, sh: float) -> None:
        poly = self.rect(pu - pw / 2, pu + pw / 2, self.v_of(s, -pl), self.v_of(s, min(sh * 0.6, 10)))
        if not self.visible(poly):
            return
        self.docks.append(Dock(f"dock_{len(self.docks) + 1}", "pier", poly))
        self.hard.append(poly)
        # Mooring edges: both long sides beyond the bank wobble, and the head.
        for side in (-1, 1):
            p0, p1 = self.site([[pu + side * pw / 2, self.v_of(s, -9)], [pu + side * pw / 2, self.v_of(s, -pl + 1)]])
            self.moor.append((p0, p1, self.R @ np.array([float(side), 0.0]), "pier"))
        p0, p1 = self.site([[pu - pw / 2 + 0.5, self.v_of(s, -pl)], [pu + pw / 2 - 0.5, self.v_of(s, -pl)]])
        self.moor.append((p0, p1, self.R @ np.array([0.0, -s]), "head"))

    def _boats(self) -> None:
        rng = self.rng
        fill = float(np.clip(0.05 + 0.85 * self.act * rng.uniform(0.8, 1.2), 0.03, 0.95))
        dock_union = [d.polygon for d in self.docks]
        for p0, p1, n, kind in self.moor:
            length = float(np.linalg.norm(p1 - p0))
            d = (p1 - p0) / max(length, 1e-6)
            pos = rng.uniform(0, 6)
            while pos < length - 5:
                if kind == "quay":
                    blen = rng.uniform(18, 58) if rng.random() < 0.7 else rng.uniform(8, 20)
                elif kind == "head":
                    blen = rng.uniform(8, 30)
                else:
                    blen = rng.uniform(6, 24)
                blen = min(blen, 60.0)
                if pos + blen > length and kind != "head":
                    break
                if rng.random() < fill:
                    mid = p0 + d * (pos + blen / 2) if kind != "head" else (p0 + p1) / 2
                    heading = math.atan2(d[1], d[0]) + (math.pi if rng.random() < 0.5 else 0.0)
                    if kind == "head":
                        heading = math.atan2(n[1], n[0]) + math.pi / 2 * (1 if rng.random() < 0.5 else -1)
                    boat = make_boat(rng, blen, 0, 0, heading, "docked")
                    off = rng.uniform(0.4, 1.8) + boat.width / 2
                    boat.x, boat.y = mid + n * off
                    if self._boat_ok(boat, dock_union):
                        self._place(boat, margin=0.3)
                        # Small boats are often rafted two abreast.
                        if boat.kind in ("fishing", "motor") and boat.width < 6 and rng.random() < 0.25:
                            twin = make_boat(rng, blen * rng.uniform(0.85, 1.1), 0, 0, heading, "docked")
                            twin.x, twin.y = np.array([boat.x, boat.y]) + n * (boat.width / 2 + 0.6 + twin.width / 2)
                            if self._boat_ok(twin, dock_union):
                                self._place(twin, margin=0.3)
                if kind == "head":
                    break
                pos += blen + rng.uniform(2, 12)
        # Boats out on the river, away from docks and the bridge.
        area_km = self.water.intersection(self.frame).area / 1e6
        n_free = int(rng.poisson(0.5 + 22 * area_km * (0.15 + self.act)))
        docks_buf = [d.polygon.buffer(40) for d in self.docks]
        bridge_buf = self.bridge.deck.buffer(30)
        minx, miny, maxx, maxy = self.water.intersection(self.frame).bounds
        axis = self.alpha
        open_water = prep(self.water.buffer(-min(15.0, self.river_w / 6)))  # out in the stream
        tries = 0
        placed = 0
        while placed < n_free and tries < 300:
            tries += 1
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            blen = float(np.clip(rng.lognormal(math.log(16), 0.6), 5.0, 60.0))
            heading = axis + (math.pi if rng.random() < 0.5 else 0.0) + rng.normal(0, 0.2)
            if rng.random() < 0.15:
                heading = rng.uniform(0, 2 * math.pi)
            boat = make_boat(rng, blen, x, y, heading, "undocked")
            boat.params["wake"] = float(rng.uniform(0.4, 1.0)) if rng.random() < 0.75 else 0.0
            poly = boat.polygon()
            if not open_water.contains(poly) or poly.intersects(bridge_buf):
                continue
            if any(poly.intersects(b) for b in docks_buf):
                continue
            if self._place(boat, margin=15.0):
                placed += 1

    def _boat_ok(self, boat: Vehicle, docks: list[Polygon]) -> bool:
        poly = boat.polygon()
        if not self.water_p.contains(poly):
            return False
        if poly.intersects(self.bridge.deck.buffer(8)):
            return False
        return not any(poly.intersects(d) for d in docks)

    # -- blocks: buildings, containers, fields ---------------------------------------------------
    def _blocks(self) -> None:
        rng = self.rng
        ub, bw = self.u_b, self.bw
        lot_polys = [lot.polygon for lot in self.lots]
        for s in (-1, 1):
            bd = self.band[s]
            cuts = [ub - bw / 2 - 4, ub + bw / 2 + 4] + [u for x in self.cross[s] for u in (x - 8, x + 8)]
            edges = sorted([self.u_lo] + cuts + [self.u_hi])
            spans = [(edges[i], edges[i + 1]) for i in range(0, len(edges) - 1, 2)
                     if edges[i + 1] - edges[i] > 20]
            # Band 1: what the lots left of each block.
            for u0, u1 in spans:
                in_yard = s == self.rail_side and ((u0 + u1) / 2 - ub) * self.yard_dir > 0
                d_from = bd["y1"] + 6 if in_yard else bd["b1_0"]
                blk = self.rect(u0, u1, self.v_of(s, d_from), self.v_of(s, bd["b1_1"]))
                if not self.visible(blk):
                    continue
                cut = False
                for lp in lot_polys:
                    if blk.intersects(lp):
                        blk = blk.difference(self._lot_full_plan(lp))
                        cut = True
                if blk.is_empty:
                    continue
                near_rail = s == self.rail_side
                use = str(rng.choice(["warehouse", "container", "customs", "residential", "grass", "lot"],
                                     p=[0.32, 0.2 if near_rail else 0.1, 0.13, 0.1, 0.1 if near_rail else 0.2, 0.15]))
                if use == "lot" and not cut:
                    pu0, pu1, pv0, pv1 = self._plan_bounds(blk)
                    if pu1 - pu0 > 60 and pv1 - pv0 > 45:
                        self._make_lot(f"lot_{len(self.lots) + 1}", pu0 + 4, pu1 - 4, pv0 + 2, pv1 - 2)
                        continue
                    use = "warehouse"
                elif use == "lot":
                    use = "warehouse"
                self._fill_block(blk, use, s)
            # Shore strip: grass and trees; the docks sit on it.
            # Band 2: beyond the inner road (beyond the yard in the yard's direction).
            for u0, u1 in spans:
                d = bd["ir1"] + 3
                dmax = max(abs(self.v_hi), abs(self.v_lo)) - self.river_w / 2 + 10
                while d < dmax:
                    depth = rng.uniform(90, 190) * self.kk
                    blk = self.rect(u0, u1, self.v_of(s, d), self.v_of(s, d + depth))
                    if self.visible(blk):
                        use = str(rng.choice(["field", "residential", "apartments", "grass", "warehouse"],
                                             p=[0.5, 0.2, 0.08, 0.12, 0.1]))
                        self._fill_block(blk, use, s)
                    d += depth + 5
                    if d < dmax:
                        self._add_road((u0, self.v_of(s, d - 2.5)), (u1, self.v_of(s, d - 2.5)), 5.0, 1, "track")

    def _lot_full_plan(self, lot_poly: Polygon) -> BaseGeometry:
        return lot_poly.buffer(3, join_style="mitre")

    def _plan_bounds(self, blk: BaseGeometry) -> tuple[float, float, float, float]:
        pts = (np.array(blk.envelope.exterior.coords) if blk.geom_type != "Polygon"
               else np.array(blk.exterior.coords))
        uv = (pts - self.c) @ self.R
        return float(uv[:, 0].min()), float(uv[:, 0].max()), float(uv[:, 1].min()), float(uv[:, 1].max())

    def _fill_block(self, blk: BaseGeometry, use: str, s: int) -> None:
        rng = self.rng
        if blk.is_empty or blk.area < 400:
            return
        u0, u1, v0, v1 = self._plan_bounds(blk)
        blk_p = prep(blk.buffer(-2))
        if use == "field":
            self._fields(u0, u1, v0, v1)
            return
        if use == "grass":
            self.patches.append(Patch(blk, "grass", {}))
            return
        if use == "residential":
            self.patches.append(Patch(blk, "village", {}))
            row = rng.uniform(16, 22)
            v = v0 + 4
            while v + 9 < v1:
                u = u0 + rng.uniform(2, 6)
                depth = rng.uniform(6.5, 9.5)
                while u + 8 < u1:
                    length = rng.uniform(9, 18)
                    if rng.random() < 0.85:
                        self._building(blk_p, u + length / 2, v + depth / 2, length, depth, 0.0,
                                       rng.uniform(3.5, 6.5), "gable",
                                       str(rng.choice(["tile", "grey", "blue", "tile", "red"])))
                    u += length + rng.uniform(3, 9)
                v += row
            return
        if use == "apartments":
            self.patches.append(Patch(blk, "village", {}))
            v = v0 + 10
            while v + 14 < v1 - 5:
                u = u0 + 8
                while u + 40 < u1 - 8:
                    length = min(rng.uniform(45, 80), u1 - 8 - u)
                    self._building(blk_p, u + length / 2, v + 7, length, rng.uniform(11, 14), 0.0,
                                   rng.uniform(15, 33), "flat", str(rng.choice(["concrete", "white", "grey"])))
                    u += length + rng.uniform(12, 25)
                v += rng.uniform(35, 50)
            return
        if use == "container":
            self.patches.append(Patch(blk, "concrete", {}))
            self.hard.append(blk)
            self._container_rows(u0 + 6, u1 - 6, v0 + 6, v1 - 6, along_u=rng.random() < 0.6,
                                 max_tiers=4, clip=blk_p)
            return
        if use == "customs":
            self.patches.append(Patch(blk, "concrete", {}))
            self.hard.append(blk)
            length = min(rng.uniform(40, 80), (u1 - u0) - 20)
            if length > 15:
                self._building(blk_p, (u0 + u1) / 2, v0 + 20, length, rng.uniform(16, 24), 0.0,
                               rng.uniform(10, 20), "flat", str(rng.choice(["white", "concrete", "grey"])))
            self._car_park(u0 + 8, u1 - 8, v0 + 36, min(v1 - 6, v0 + 70), blk_p)
            return
        # Warehouses: metal-roofed sheds on a gravel yard, each with a concrete apron on its loading
        # side; stockpiles fill some of the rest.
        self.patches.append(Patch(blk, "gravel", {}))
        self.hard.append(blk)
        u = u0 + rng.uniform(5, 15)
        while u < u1 - 30:
            length = min(rng.uniform(40, 110), u1 - 5 - u)
            depth = min(rng.uniform(20, 42), v1 - v0 - 20)
            if length < 25 or depth < 12:
                break
            vc = rng.uniform(v0 + depth / 2 + 4, max(v0 + depth / 2 + 4, v1 - depth / 2 - 12))
            apron = self.rect(u - 4, u + length + 4, vc - depth / 2 - 4, vc + depth / 2 + 20).intersection(blk)
            self.patches.append(Patch(apron, "concrete", {}))
            self._building(blk_p, u + length / 2, vc, length, depth, 0.0, rng.uniform(7, 12), "metal",
                           str(rng.choice(["blue", "grey", "white", "blue", "teal", "rust"])))
            # A few trucks at the loading side.
            if rng.random() < 0.5 * self.act + 0.1:
                for _ in range(int(rng.integers(1, 4))):
                    uu = rng.uniform(u + 5, u + length - 5)
                    vv = vc + depth / 2 + 9.5
                    (x, y), = self.site([[uu, vv]])
                    t = make_truck(rng, x, y, self.heading(math.pi / 2 + (math.pi if rng.random() < 0.5 else 0)))
                    if blk_p.contains(t.polygon()):
                        self._place(t, margin=1.0)
            u += length + rng.uniform(15, 35)
        for _ in range(int(rng.integers(0, 4))):
            c = np.array([rng.uniform(u0, u1), rng.uniform(v0, v1)])
            r = rng.uniform(5, 14)
            ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
            rr = r * (1 + rng.uniform(-0.15, 0.15, 16)) * np.where(np.cos(ang) > 0, rng.uniform(1, 1.8), 1)
            heap = self.plan_poly(np.column_stack([c[0] + rr * np.cos(ang), c[1] + rr * np.sin(ang)]))
            if blk_p.contains(heap) and self.occ.free(heap.buffer(3)):
                self.occ.add(heap)
                self.patches.append(Patch(heap, "heap", {"material": str(rng.choice(["coal", "sand", "gravel", "ore"])),
                                                         "height": float(r * rng.uniform(0.3, 0.5))}))

    def _building(self, clip: Any, u: float, v: float, length: float, depth: float, phi: float,
                  height: float, roof: str, colour: str) -> None:
        (x, y), = self.site([[u, v]])
        b = Building(x, y, self.heading(phi), length, depth, height=height, roof=roof, colour=colour,
                     seed=int(self.rng.integers(2**31)))
        poly = b.polygon()
        if not clip.contains(poly) or not self.visible(poly) or not self.occ.free(poly.buffer(1.0)):
            return
        self.occ.add(poly)
        self.hard.append(poly.buffer(1.5))
        self.buildings.append(b)

    def _container_rows(self, u0: float, u1: float, v0: float, v1: float, along_u: bool, max_tiers: int,
                        clip: Any = None) -> None:
        rng = self.rng
        u0, u1 = sorted((u0, u1))
        v0, v1 = sorted((v0, v1))
        if u1 - u0 < 15 or v1 - v0 < 6:
            return
        a0, a1, b0, b1 = (u0, u1, v0, v1) if along_u else (v0, v1, u0, u1)
        cw, gap = 2.44, 0.35
        b = b0
        block_rows = int(rng.integers(3, 7))
        r = 0
        size40 = rng.random() < 0.7
        clen = 12.19 if size40 else 6.06
        while b + cw < b1:
            a = a0
            while a + clen < a1:
                if rng.random() < 0.82:
                    tiers = int(rng.integers(1, max_tiers + 1))
                    ac, bc = a + clen / 2, b + cw / 2
                    (x, y), = self.site([[ac, bc] if along_u else [bc, ac]])
                    phi = 0.0 if along_u else math.pi / 2
                    c = Vehicle(x, y, self.heading(phi), clen, cw, cls="container", kind="40" if size40 else "20",
                                height=2.6 * tiers, params={"seed": int(rng.integers(2**31)), "tiers": tiers})
                    if clip is None or clip.contains(c.polygon()):
                        self._place(c, margin=0.0, need_inside=False)
                a += clen + 0.4
            r += 1
            if r % block_rows == 0:
                b += cw + rng.uniform(9, 14)
                size40 = rng.random() < 0.7
                clen = 12.19 if size40 else 6.06
            else:
                b += cw + gap

    def _car_park(self, u0: float, u1: float, v0: float, v1: float, clip: Any) -> None:
        rng = self.rng
        if u1 - u0 < 20 or v1 - v0 < 12:
            return
        poly = self.rect(u0, u1, v0, v1)
        self.patches.append(Patch(poly, "carpark", {}))
        fill = rng.uniform(0.25, 0.85)
        for vrow, face in ((v0 + 2.7, 1), (v1 - 2.7, -1)):
            u = u0 + 1.3
            while u + 1.3 < u1:
                if rng.random() < fill:
                    (x, y), = self.site([[u + rng.normal(0, 0.1), vrow + rng.normal(0, 0.15)]])
                    phi = math.pi / 2 * face + (math.pi if rng.random() < 0.3 else 0)
                    car = make_car(rng, x, y, self.heading(phi + rng.normal(0, 0.03)))
                    if clip.contains(car.polygon()):
                        self._place(car, margin=0.2, need_inside=False)
                u += 2.6

    def _fields(self, u0: float, u1: float, v0: float, v1: float) -> None:
        rng = self.rng
        along_v = rng.random() < 0.6
        a0, a1 = (u0, u1) if along_v else (v0, v1)
        a = a0 + rng.uniform(0, 4)
        while a < a1 - 5:
            w = rng.uniform(25, 90)
            hi = min(a + w, a1 - 2)
            poly = self.rect(a, hi, v0 + 2, v1 - 2) if along_v else self.rect(u0 + 2, u1 - 2, a, hi)
            if self.visible(poly):
                crop = str(rng.choice(["green", "young", "yellow", "soil", "dark_soil", "grass", "greenhouse"],
                                      p=[0.26, 0.16, 0.14, 0.16, 0.1, 0.12, 0.06]))
                period = rng.uniform(0.7, 3.0)
                row_dir = self.alpha + (math.pi / 2 if along_v else 0.0)
                if rng.random() < 0.2:
                    row_dir += math.pi / 2
                self.patches.append(Patch(poly, "field", {"crop": crop, "period": period, "angle": row_dir,
                                                          "seed": int(rng.integers(2**31))}))
            a = hi + rng.uniform(1.5, 4.0)

    # -- vehicles on roads -----------------------------------------------------------------------
    def _lane_points(self, road: Road, lane_offset: float, spacing: tuple[float, float], count: int,
                     make: Any, forward: bool, start: float = 0.0, queue: bool = False) -> int:
        rng = self.rng
        d = road.b - road.a
        length = float(np.linalg.norm(d))
        d = d / length
        n = np.array([-d[1], d[0]])
        heading = math.atan2(d[1], d[0]) + (0.0 if forward else math.pi)
        placed = 0
        t = start + rng.uniform(0, spacing[1])
        while t < length and placed < count:
            p = road.a + d * t + n * lane_offset
            v = make(rng, float(p[0]), float(p[1]), heading + rng.normal(0, 0.01))
            ok = self._place(v, margin=0.8)
            if ok:
                placed += 1
                t += v.length + rng.uniform(*spacing)
            else:
                t += rng.uniform(4, 12) if queue else rng.uniform(*spacing)
        return placed

    def _trucks_on_roads(self) -> None:
        rng = self.rng
        act = self.act
        # The queue for customs: right-hand lane from the far bank, over the bridge, inland.
        q_side = int(rng.choice([-1, 1]))  # the bank the trucks come from
        lane = 1.75 if self.lanes == 2 else 5.25 - rng.choice([0.0, 3.5])
        # Traffic keeps right: with y pointing down, the right of heading (0, -q_side) is (q_side, 0).
        right = q_side
        u_lane = self.u_b + right * lane
        head = self.v_of(-q_side, 15.0)  # front of the queue: past the bridge on the customs bank
        tail = self.v_hi if q_side > 0 else self.v_lo
        a, b = self.site([[u_lane, head], [u_lane, tail]])
        n_q = int(round(act * rng.uniform(8, 30) * self.kk + rng.uniform(0, 1.5)))
        road = Road(a, b, 3.5, 1, "lane")
        self._lane_points(road, 0.0, (1.5, 6.0), n_q, make_truck, forward=False, queue=True)
        # Oncoming traffic, sparse.
        a, b = self.site([[self.u_b - right * lane, self.v_of(-q_side, 40)], [self.u_b - right * lane, tail]])
        self._lane_points(Road(a, b, 3.5, 1, "lane"), 0.0, (40, 160), int(rng.poisson(1 + 3 * act)),
                          make_truck, forward=True)
        # Bank and inner roads carry a few trucks each way.
        for road in self.roads:
            if road.kind != "main" or any(road is a for a in self.approaches):
                continue
            length = float(np.linalg.norm(road.b - road.a))
            for fwd in (True, False):
                count = int(rng.poisson(act * length / 450))
                off = road.width / 4 * (1 if fwd else -1)
                self._lane_points(road, off, (30, 220), count, make_truck, forward=fwd)

    def _cars_on_roads(self) -> None:
        rng = self.rng
        for road in self.roads:
            if road.kind == "track":
                continue
            length = float(np.linalg.norm(road.b - road.a))
            for fwd in (True, False):
                count = int(rng.poisson(length / (90 if road.kind == "main" else 160)))
                off = road.width / 4 * (1 if fwd else -1)
                if road.lanes >= 4:
                    off = (1.75 if rng.random() < 0.5 else 5.25) * (1 if fwd else -1)
                self._lane_points(road, off, (15, 120), count, make_car, forward=fwd)
        # Cars on the bridge too.
        r = Road(self.bridge.a, self.bridge.b, self.bw, self.lanes, "main")
        for fwd in (True, False):
            off = 1.75 * (1 if fwd else -1)
            self._lane_points(r, off, (20, 90), int(rng.poisson(2)), make_car, forward=fwd)

    # -- trees -----------------------------------------------------------------------------------
    def _trees(self) -> None:
        """Trees where nothing else is: along roads, on the shore, in villages, at field edges."""
        rng = self.rng
        cell = 2.0
        gw, gh = int(math.ceil(self.W / cell)) + 1, int(math.ceil(self.H / cell)) + 1
        blocked = np.zeros((gh, gw), np.uint8)

        def paint(geom: BaseGeometry, grow: float = 0.0) -> None:
            g = geom.buffer(grow) if grow else geom
            polys = [g] if g.geom_type == "Polygon" else list(getattr(g, "geoms", []))
            for p in polys:
                if p.geom_type != "Polygon" or p.is_empty:
                    continue
                pts = np.round(np.array(p.exterior.coords) / cell * 16).astype(np.int32)
                cv2.fillPoly(blocked, [pts], 1, cv2.LINE_8, 4)

        for g in self.hard:
            paint(g, 1.0)
        for r in self.roads:
            paint(r.polygon(), 1.5)
        paint(self.water, 2.0)
        paint(self.bridge.deck, 2.0)
        paint(self.yard_full, 2.0)
        for v in self.vehicles:
            paint(v.polygon(), 2.0)
        for p in self.patches:
            if p.kind in ("field", "carpark", "concrete"):
                paint(p.polygon, 0.5)
        dist = cv2.distanceTransform((1 - blocked).astype(np.uint8), cv2.DIST_L2, 3) * cell

        def try_tree(x: float, y: float, r: float) -> None:
            i, j = int(y / cell), int(x / cell)
            if 0 <= i < gh and 0 <= j < gw and dist[i, j] > r * 0.8:
                self.trees.append((x, y, r))
                # Trees do not overlap one another much: block their crowns' cores.
                cv2.circle(dist, (j, i), max(1, int(r * 0.9 / cell)), 0, -1)

        # Rows along roads.
        for road in self.roads:
            if road.kind == "track" and rng.random() < 0.6:
                continue
            d = road.b - road.a
            length = float(np.linalg.norm(d))
            d /= length
            n = np.array([-d[1], d[0]])
            spacing = rng.uniform(6, 11)
            r0 = rng.uniform(2.0, 3.6)
            for side in (-1, 1):
                if rng.random() < 0.35:
                    continue
                off = road.width / 2 + r0 + rng.uniform(1.5, 3.0)
                for t in np.arange(rng.uniform(0, spacing), length, spacing):
                    if rng.random() < 0.15:
                        continue
                    p = road.a + d * t + n * side * off + rng.normal(0, 0.4, 2)
                    try_tree(float(p[0]), float(p[1]), r0 * rng.uniform(0.75, 1.25))
        # Clumps on grass, in villages and on the shore.
        area = self.W * self.H
        n = int(area / 1e6 * 1800)
        xs = rng.uniform(0, self.W, n)
        ys = rng.uniform(0, self.H, n)
        rs = rng.uniform(1.8, 4.5, n)
        clump = rng.random(n)
        for x, y, r, c in zip(xs, ys, rs, clump, strict=True):
            try_tree(float(x), float(y), float(r))
            if c < 0.5:  # neighbours make clumps and hedgerows
                for _ in range(int(rng.integers(1, 5))):
                    a = rng.uniform(0, 2 * math.pi)
                    dd = r * rng.uniform(1.2, 2.0)
                    try_tree(float(x + math.cos(a) * dd), float(y + math.sin(a) * dd), float(r * rng.uniform(0.7, 1.1)))


def plan_site(width_m: float, height_m: float, activity: float, rng: np.random.Generator) -> Layout:
    """Lay out a border-crossing site.

    Args:
        width_m: Site width in metres (image x).
        height_m: Site height in metres (image y).
        activity: 0-1, how full lots, tracks and berths are.
        rng: The random generator (the only source of randomness).

    Returns:
        The :class:`Layout`, in site metres.
    """
    return _Planner(width_m, height_m, activity, rng).run()


__all__ = [
    "LABELLED", "Box", "Bridge", "Building", "Dock", "Layout", "Lot", "Occupancy", "Patch", "RailYard",
    "Road", "Sun", "Vehicle", "make_boat", "make_car", "make_truck", "plan_site", "railcar_dims",
]

