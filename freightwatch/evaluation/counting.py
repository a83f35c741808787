"""Counting metrics: how far predicted object counts are from the truth, per class and unit.

A *unit* is whatever counts are compared on: an image (tile or scene) or a zone of a scene. For
``n`` units with true counts ``t`` and predictions ``p`` (integers for a detector, real numbers
for a density model):

* ``mae``: mean absolute error, ``mean |p - t|`` (objects per unit).
* ``rmse``: root mean squared error, ``sqrt(mean (p - t)^2)``; weighs large misses more.
* ``rel_mae``: relative MAE, ``sum |p - t| / sum t`` (the README's figure; ``None`` when no
  unit holds an object). Sum-normalised, so empty units do not divide by zero and big units
  weigh more, as they do in an activity total.
* ``bias``: signed mean error, ``mean (p - t)``; positive = overcounting.
* ``within_10pct``: fraction of units with ``|p - t| <= max(0.1 t, 0.5)``: within +-10 % of the
  truth, and for counts under 5 (where 10 % is less than half an object) the prediction must
  round to the true count (an empty unit is right when ``p < 0.5``).
* ``coverage``: for predictions with intervals (density model), fraction of units whose truth
  lies in ``[lower, upper]``; ``mean_interval_width`` is the mean of ``upper - lower``.

:func:`count_metrics` computes these for one set of units; :func:`count_table` for every class
and method of a long table of counts, plus ``all`` (the classes pooled, each unit-class pair one
unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

TOLERANCE = 0.1
"""Relative tolerance of ``within_10pct``."""

COUNT_KEYS: tuple[str, ...] = (
    "n", "true_total", "pred_total", "mae", "rmse", "rel_mae", "bias", "within_10pct", "coverage",
    "mean_interval_width",
)
"""Keys of every :func:`count_metrics` result, always present (``None`` when not applicable)."""


def within_tolerance(true: np.ndarray, pred: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """Whether each prediction is within ``tolerance`` of the truth (with the half-object floor)."""
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    return np.abs(pred - true) <= np.maximum(tolerance * true, 0.5)


def count_metrics(
    true: Sequence[float] | np.ndarray,
    pred: Sequence[float] | np.ndarray,
    lower: Sequence[float] | np.ndarray | None = None,
    upper: Sequence[float] | np.ndarray | None = None,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Counting error of predictions against the truth over a set of units.

    Args:
        true: True count per unit.
        pred: Predicted count per unit (same order).
        lower: Lower interval bound per unit (density model), or ``None``.
        upper: Upper interval bound per unit, or ``None``.
        tolerance: Relative tolerance of ``within_10pct``.

    Returns:
        A dict with :data:`COUNT_KEYS` (see the module notes); ``None`` for what cannot be
        computed (no units, no objects, no intervals).
    """
    t = np.asarray(true, dtype=np.float64).reshape(-1)
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true counts but {len(p)} predictions")
    out: dict[str, Any] = dict.fromkeys(COUNT_KEYS)
    out["n"] = int(len(t))
    if not len(t):
        return out
    err = p - t
    out.update(
        true_total=float(t.sum()), pred_total=float(p.sum()), mae=float(np.abs(err).mean()),
        rmse=float(np.sqrt((err**2).mean())), rel_mae=float(np.abs(err).sum() / t.sum()) if t.sum() > 0 else None,
        bias=float(err.mean()), within_10pct=float(within_tolerance(t, p, tolerance).mean()),
    )
    if lower is not None and upper is not None:
        lo = np.asarray(lower, dtype=np.float64).reshape(-1)
        hi = np.asarray(upper, dtype=np.float64).reshape(-1)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            out["coverage"] = float(((lo[ok] <= t[ok]) & (t[ok] <= hi[ok])).mean())
            out["mean_interval_width"] = float((hi[ok] - lo[ok]).mean())
    return out


def count_table(
    rows: pd.DataFrame,
    methods: Sequence[str],
    classes: Sequence[str],
    tolerance: float = TOLERANCE,
) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`count_metrics` per method and class (and ``all`` classes pooled).

    Args:
        rows: One row per unit and class with columns ``class``, ``true`` and one column per
            method holding its prediction (``NaN`` where the method did not run on that unit:
            such rows are left out for that method); ``<method>_lower`` / ``<method>_upper``
            columns, when present, are the method's intervals.
        methods: Method columns to evaluate.
        classes: Classes to report, in order.
        tolerance: Relative tolerance of ``within_10pct``.

    Returns:
        ``{method: {class: metrics, ..., "all": metrics}}``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in methods:
        per: dict[str, dict[str, Any]] = {}
        sub = rows[rows[m].notna()] if m in rows else rows.iloc[0:0]
        for c in [*classes, "all"]:
            part = sub if c == "all" else sub[sub["class"] == c]
            lo = part[f"{m}_lower"].to_numpy() if f"{m}_lower" in part else None
            hi = part[f"{m}_upper"].to_numpy() if f"{m}_upper" in part else None
            per[c] = count_metrics(part["true"].to_numpy(), part[m].to_numpy() if m in part else [], lo, hi,
                                   tolerance)
        out[m] = per
    return out


def fmt_pct(v: float | None, digits: int = 1) -> str:
    """``12.3 %`` or ``-``."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f} %"


def fmt_num(v: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or ``-``."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"
