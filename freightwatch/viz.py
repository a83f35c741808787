"""Drawing labels and predictions on images, for overlays a person looks at."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from freightwatch.datasets.annotations import Annotation
from freightwatch.taxonomy import BoatState

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "truck": (255, 170, 0),   # orange
    "railcar": (0, 200, 255),  # cyan
    "boat": (255, 0, 200),    # magenta
}
"""RGB colours per class (chosen to stand out on land, water and asphalt)."""


def draw_annotations(
    image: np.ndarray,
    annotations: Iterable[Annotation],
    thickness: int = 1,
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
    show_state: bool = True,
) -> np.ndarray:
    """Draw oriented boxes on a copy of an RGB uint8 image.

    Args:
        image: ``(H, W, 3)`` RGB uint8.
        annotations: Objects in the image's pixel coordinates (before ``offset``/``scale``).
        thickness: Line width in pixels.
        offset: Subtracted from coordinates (to draw scene labels on a crop).
        scale: Multiplied after the offset (to draw on a resized image).
        show_state: Mark docked boats with a filled dot, undocked with a hollow one.
    """
    out = np.ascontiguousarray(image.copy())
    off = np.asarray(offset)
    for a in annotations:
        pts = ((a.polygon - off) * scale).round().astype(np.int32)
        colour = CLASS_COLOURS.get(a.cls, (255, 255, 255))
        if a.score is not None and a.score < 0.5:
            colour = tuple(int(c * 0.6) for c in colour)
        cv2.polylines(out, [pts], isClosed=True, color=colour, thickness=thickness, lineType=cv2.LINE_AA)
        if show_state and a.cls == "boat" and a.state != BoatState.UNKNOWN:
            cx, cy = pts.mean(axis=0).astype(int)
            filled = -1 if a.state == BoatState.DOCKED else max(1, thickness)
            cv2.circle(out, (int(cx), int(cy)), max(2, 2 * thickness), colour, filled, cv2.LINE_AA)
    return out


def save_png(path: str | Path, image: np.ndarray, max_side: int | None = None) -> Path:
    """Save an RGB uint8 image as PNG, optionally shrunk so its long side is ``max_side``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = image
    if max_side and max(img.shape[:2]) > max_side:
        f = max_side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG")
    return path
