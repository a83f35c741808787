"""Helpers shared by the format readers and writers (not public API).

Geometry rules every reader applies, so the formats agree on what "malformed" means:

* Axis-aligned boxes (YOLO ``cx cy w h``, COCO ``bbox``, xView ``bounds_imcoords``) must lie inside
  the image, give or take a small tolerance (1 px, or 1e-3 of the image size for normalised
  coordinates); what pokes out within the tolerance is clipped. The box formats' own tools write
  boxes that way, so a box further out means the coordinates or the image size are wrong.
* Polygons (YOLO-OBB, DOTA, COCO segmentation) may overhang the image edge: objects cut by a tile
  border keep their full outline in DOTA-derived data (dota8 has ship corners at x = 1.015 and
  -0.008 normalised). They are clipped to the image and the visible fraction is kept in
  ``Annotation.attrs["visible_fraction"]``. Malformed are polygons with no area inside the image,
  and vertices more than one image size outside it (un-normalised or garbage coordinates).
* Zero or negative area is always malformed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import Polygon, box

from freightwatch.datasets.annotations import ImageLabels, LabelSet
from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import ClassMapping

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic",
)
"""Image file extensions recognised when looking for an image next to its labels (ultralytics' list)."""

BOX_TOL_PX = 1.0
"""Tolerance for axis-aligned boxes outside the image, in pixels."""

BOX_TOL_NORM = 1e-3
"""Tolerance for axis-aligned boxes outside the image, as a fraction of the image size."""

_MIN_AREA = 1e-9  # px²; below this a polygon is degenerate (collinear points, w or h of 0)


class Malformed(Exception):
    """Raised by record parsers; the reader turns it into a LabelFormatError or a skip note."""


class Issues:
    """Reports malformed records: raise in strict mode, note in ``LabelSet.skipped`` when lenient.

    Args:
        labels: The label set being built (its ``skipped`` list receives the notes).
        lenient: Skip and note instead of raising.
    """

    def __init__(self, labels: LabelSet, lenient: bool) -> None:
        self.labels = labels
        self.lenient = lenient

    def report(self, path: str | Path, message: str, line: int | None = None) -> None:
        """Raise :class:`LabelFormatError` (strict) or record ``"file:line: message"`` (lenient)."""
        err = LabelFormatError(path, message, line=line)
        if not self.lenient:
            raise err
        self.labels.skipped.append(str(err))


def resolve_mapping(mapping: ClassMapping | None, default: ClassMapping) -> ClassMapping:
    """Return ``mapping`` or the format's default, rejecting a mistaken positional argument."""
    if mapping is None:
        return default
    if not isinstance(mapping, ClassMapping):
        # Readers take (path, mapping, lenient, *, extras); catch e.g. read_dota(labels, images).
        raise TypeError(
            f"mapping must be a ClassMapping, got {type(mapping).__name__} "
            "(pass format options such as image_dir= or split= by keyword)"
        )
    return mapping


def as_images(images: LabelSet | Iterable[ImageLabels]) -> list[ImageLabels]:
    """Accept a :class:`LabelSet` or any iterable of :class:`ImageLabels`."""
    return list(images.images if isinstance(images, LabelSet) else images)


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM tolerated); any failure is a whole-file error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFormatError(path, f"cannot read label file: {exc}") from exc


def load_json(path: Path) -> Any:
    """Parse a JSON file; invalid JSON names the line where parsing stopped."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelFormatError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from exc
    except (ValueError, RecursionError) as exc:  # e.g. integers past Python's digit limit, deep nesting
        raise LabelFormatError(path, f"invalid JSON: {exc}") from exc


def parse_float(token: object, what: str) -> float:
    """A finite float from a text token or JSON number (``bool`` is not a number)."""
    if isinstance(token, bool):
        raise Malformed(f"{what} is not a number: {token!r}")
    try:
        value = float(token)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise Malformed(f"{what} is not a number: {_short(token)}") from None
    if not math.isfinite(value):
        raise Malformed(f"{what} is not finite: {_short(token)}")
    return value


def parse_floats(tokens: Sequence[object], what: str) -> list[float]:
    """:func:`parse_float` over a sequence."""
    return [parse_float(t, what) for t in tokens]


def parse_int(token: object, what: str) -> int:
    """An integer from ``"3"``, ``"3.0"`` or a JSON integer; fractions are malformed."""
    value = parse_float(token, what)
    if not value.is_integer():
        raise Malformed(f"{what} is not an integer: {_short(token)}")
    return int(value)


def _short(token: object, limit: int = 40) -> str:
    text = repr(token)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def polygon_area(poly: np.ndarray) -> float:
    """Absolute shoelace area (vertex order and orientation do not matter)."""
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def box_polygon(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The four corners of an axis-aligned box, clockwise in image axes from the top-left."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def fit_box(
    x0: float, y0: float, x1: float, y1: float, width: float, height: float, tol: tuple[float, float]
) -> np.ndarray:
    """Validate an axis-aligned box against the image and clip the tolerated overhang.

    Args:
        x0, y0, x1, y1: Box corners in pixels.
        width, height: Image size in pixels.
        tol: Allowed overhang in pixels along x and y.

    Returns:
        The clipped box as a 4-point polygon.

    Raises:
        Malformed: zero/negative size or outside the image beyond the tolerance.
    """
    if x1 <= x0 or y1 <= y0:
        raise Malformed(f"box has zero or negative size ({x0:g},{y0:g})-({x1:g},{y1:g})")
    tx, ty = tol
    if x0 < -tx or y0 < -ty or x1 > width + tx or y1 > height + ty:
        raise Malformed(
            f"box ({x0:g},{y0:g})-({x1:g},{y1:g}) is outside the {width:g}x{height:g} image"
        )
    cx0, cx1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    cy0, cy1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if (cx1 - cx0) * (cy1 - cy0) <= _MIN_AREA:
        raise Malformed(f"box ({x0:g},{y0:g})-({x1:g},{y1:g}) has no area inside the image")
    return box_polygon(cx0, cy0, cx1, cy1)


def fit_polygon(
    poly: np.ndarray, width: float, height: float, tol: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """Validate a polygon against the image and clip it to the image.

    Vertices within ``tol`` of the image are clamped onto the edge; a polygon overhanging further
    is intersected with the image (a 4-point polygon stays a box: the intersection's minimum
    rotated rectangle, as :meth:`Annotation.clipped` does).

    Returns:
        The clipped polygon and the fraction of its area inside the image.

    Raises:
        Malformed: zero area, vertices far outside the image, or nothing inside it.
    """
    if polygon_area(poly) <= _MIN_AREA:
        raise Malformed("polygon has zero area")
    xs, ys = poly[:, 0], poly[:, 1]
    if xs.min() < -width or ys.min() < -height or xs.max() > 2 * width or ys.max() > 2 * height:
        raise Malformed(
            f"polygon reaches ({xs.min():g},{ys.min():g})-({xs.max():g},{ys.max():g}), far outside "
            f"the {width:g}x{height:g} image"
        )
    tx, ty = tol
    if xs.min() >= -tx and ys.min() >= -ty and xs.max() <= width + tx and ys.max() <= height + ty:
        out = poly.copy()
        out[:, 0] = out[:, 0].clip(0, width)
        out[:, 1] = out[:, 1].clip(0, height)
        if polygon_area(out) <= _MIN_AREA:
            raise Malformed("polygon has no area inside the image")
        return out, 1.0
    try:
        shp = Polygon(poly)
        if not shp.is_valid:
            shp = shp.buffer(0)  # self-intersecting corner order (seen in DOTA) -> its filled area
        full = shp.area
        inter = shp.intersection(box(0, 0, width, height))
    except shapely.errors.GEOSException as exc:
        raise Malformed(f"polygon cannot be clipped to the image: {exc}") from None
    if inter.is_empty or inter.area <= _MIN_AREA or full <= _MIN_AREA:
        raise Malformed(
            f"polygon ({xs.min():g},{ys.min():g})-({xs.max():g},{ys.max():g}) is outside the "
            f"{width:g}x{height:g} image"
        )
    geom = inter.minimum_rotated_rectangle if len(poly) == 4 else inter
    if geom.geom_type != "Polygon":
        geom = geom.convex_hull
    coords = np.asarray(geom.exterior.coords, dtype=np.float64)[:-1]
    coords[:, 0] = coords[:, 0].clip(0, width)
    coords[:, 1] = coords[:, 1].clip(0, height)
    return coords, min(1.0, float(inter.area / full))


def size_from_extent(polys: Iterable[np.ndarray]) -> tuple[int, int]:
    """Image size guessed as the labels' largest coordinates (rounded up; at least 1 px)."""
    w = h = 1.0
    for p in polys:
        w = max(w, float(p[:, 0].max()))
        h = max(h, float(p[:, 1].max()))
    return math.ceil(w), math.ceil(h)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header only.

    PIL's ``Image.open`` parses the header lazily without decoding pixels, which is far faster
    than ``cv2.imread`` on large tiles. An EXIF orientation of 90/270 degrees swaps the sides, as
    ultralytics does, because it normalises labels against the rotated image.

    Raises:
        LabelFormatError: the file is not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.format in ("JPEG", "MPO"):
                orientation = im.getexif().get(0x0112)
                if orientation in (5, 6, 7, 8):
                    w, h = h, w
    except Exception as exc:  # PIL raises many types (OSError, DecompressionBombError, SyntaxError ...)
        raise LabelFormatError(path, f"cannot read image size: {exc}") from exc
    return int(w), int(h)


def raster_info(path: Path) -> tuple[int, int, str | None, Affine | None]:
    """``(width, height, crs, transform)`` of an image; georeferencing only for GeoTIFFs.

    GeoTIFFs go through rasterio (it reads multi-band/16-bit TIFFs PIL cannot, and their CRS);
    anything else, or a TIFF rasterio cannot open, through :func:`image_size`.
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    if src.crs is None:
                        return int(src.width), int(src.height), None, None
                    return int(src.width), int(src.height), src.crs.to_string(), src.transform
        except RasterioError:
            pass  # fall back to PIL, which raises a LabelFormatError if it cannot read it either
    w, h = image_size(path)
    return w, h, None, None


def find_image(directory: Path, stem: str) -> Path | None:
    """The image in ``directory`` named ``stem`` with a known image extension (any case)."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (directory / f"{stem}{suffix}", directory / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def fmt_num(value: float, digits: int = 6) -> str:
    """Compact decimal text: ``12`` for integers, otherwise up to ``digits`` decimals."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
