"""Merging detections from overlapping slices: pure geometry, no I/O, no model.

A detection cut by an interior slice border is a partial view of an object that, with enough
overlap, is seen whole in a neighbouring slice. We therefore (1) drop border-cut boxes that are
mostly covered by an uncut box of the same class, then (2) run class-wise greedy suppression
where "duplicate" means IoU above a threshold or intersection-over-smaller above another.
Candidate pairs come from an STRtree, so cost grows with the number of detections, not n^2.
"""

from __future__ import annotations

import numpy as np
import shapely

DEFAULT_IOS = 0.7
"""Default intersection-over-smaller above which two boxes of a class are one object."""


def pair_overlaps(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intersecting pairs ``(i, j)`` with i < j, plus their IoU and intersection-over-smaller.

    Args:
        boxes: ``(N, 4)`` xyxy.
    """
    if len(boxes) < 2:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0), np.zeros(0)
    geoms = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    a, b = boxes[i], boxes[j]
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = inter / np.maximum(area_a + area_b - inter, 1e-9)
    ios = inter / np.maximum(np.minimum(area_a, area_b), 1e-9)
    return i, j, iou, ios


def merge_slice_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    cut: np.ndarray,
    iou_thr: float | np.ndarray = 0.5,
    ios_thr: float = DEFAULT_IOS,
) -> tuple[np.ndarray, np.ndarray]:
    """Detections to keep after merging overlapping slices.

    Args:
        boxes: ``(N, 4)`` xyxy in scene pixels.
        scores: ``(N,)`` confidences.
        classes: ``(N,)`` class ids (boxes of different classes never suppress each other).
        cut: ``(N,)`` True where the box touches an interior slice border (a partial view).
        iou_thr: Suppress a lower-scoring box with IoU above this (or above ``iou_thr[class id]``,
            one threshold per class).
        ios_thr: ... or with intersection over the smaller box above this.

    Returns:
        Sorted indices of kept detections, and their boxes: a kept partial view absorbs the
        partial views it suppresses (union), so an object larger than the slice overlap, cut in
        every slice, still comes out whole.
    """
    n = len(boxes)
    merged = np.array(boxes, dtype=float, copy=True)
    if n == 0:
        return np.zeros(0, dtype=np.int64), merged.reshape(0, 4)
    i, j, iou, ios = pair_overlaps(boxes)
    same = classes[i] == classes[j]
    i, j, iou, ios = i[same], j[same], iou[same], ios[same]
    alive = np.ones(n, dtype=bool)
    # 1) a partial view mostly inside a whole view of the same class is that object again
    dup = ios > ios_thr
    alive[i[dup & cut[i] & ~cut[j]]] = False
    alive[j[dup & cut[j] & ~cut[i]]] = False
    # 2) greedy suppression by score among what is left
    thr = np.asarray(iou_thr, dtype=float)
    suppress = (iou > (thr[classes[i]] if thr.ndim else thr)) | (ios > ios_thr)
    i, j = i[suppress], j[suppress]
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    # whole views win over partial ones at equal footing, then higher score
    order = np.lexsort((-scores, cut.astype(int)))
    for k in order:
        if not alive[k]:
            continue
        for m in neighbours.get(int(k), ()):
            if alive[m] and m != k:
                alive[m] = False
                if cut[k] and cut[m]:
                    merged[k, :2] = np.minimum(merged[k, :2], merged[m, :2])
                    merged[k, 2:] = np.maximum(merged[k, 2:], merged[m, 2:])
    keep = np.flatnonzero(alive)
    return keep, merged[keep]


MERGES = ("partial", "nms-ios", "nms-iou")
"""Cross-slice merge rules: ``partial`` (default, :func:`merge_slice_detections`), or plain class-wise
greedy NMS on intersection-over-smaller or on IoU (:func:`nms_merge`, what SAHI's ``NMS``
postprocess does: choose it to reproduce a SAHI set-up)."""


def nms_merge(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    metric: str = "ios",
    threshold: float = DEFAULT_IOS,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-wise greedy NMS over all slices' detections (SAHI's ``postprocess_type="NMS"``).

    Boxes are visited by descending score; each suppresses the lower-scoring boxes of its class
    whose overlap (``ios``: intersection over the smaller box, ``iou``) exceeds ``threshold``.
    Unlike :func:`merge_slice_detections` it knows nothing of slice borders: a box cut by a border
    survives unless a higher-scoring box of the same object suppresses it.

    Returns:
        Sorted indices of kept detections and their (unchanged) boxes.
    """
    if metric not in ("ios", "iou"):
        raise ValueError(f"metric must be 'ios' or 'iou', not {metric!r}")
    n = len(boxes)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if n == 0:
        return np.zeros(0, dtype=np.int64), boxes
    i, j, iou, ios = pair_overlaps(boxes)
    hit = (classes[i] == classes[j]) & ((ios if metric == "ios" else iou) > threshold)
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(i[hit].tolist(), j[hit].tolist(), strict=True):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    alive = np.ones(n, dtype=bool)
    # an alive box has no alive higher-scoring neighbour (it would have been suppressed by it)
    for k in np.argsort(-np.asarray(scores), kind="stable"):
        if alive[k]:
            alive[neighbours.get(int(k), [])] = False
    keep = np.flatnonzero(alive)
    return keep, boxes[keep]
