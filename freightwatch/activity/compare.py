"""Before/after comparisons that make the holiday-image mistake hard.

``naive_change`` is what a reader of two pictures computes: the ratio of the mean counts after and
before, minus one. ``adjusted_change`` removes what the calendar explains. One negative-binomial GLM
(:mod:`freightwatch.activity.baseline`, same measurement-noise treatment) is fitted to *all* usable
observations of the zone and class:

* the calendar terms (weekend day types, festival windows, official holidays) and the Fourier
  season are shared by every row, so they are estimated mostly from the many observations outside
  the two sides (weekly coarse images over months);
* the rows outside the sides (the *reference*) get their own level plus a linear trend;
* each side gets a free level (a dummy), so a side of one image is fine.

The adjusted change is ``exp(level_after - level_before) - 1``: the change of the level after
removing the weekday, holiday-window and season effects at each side's dates. Its confidence
interval comes from the GLM covariance (parameter uncertainty of the calendar effects included),
plus a prior variance for calendar effects that no reference observation could estimate; a t
quantile is used when the residual degrees of freedom are few.

``confounded`` is true when either side has a date in a holiday window or on an official holiday,
on a weekend, when the sides compare different weekdays, or different seasons (mean day of the year
more than 45 days apart); ``reasons`` says which, in plain language. ``notes`` carries other caveats
(different counting methods, unestimated effects, masked observations).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from freightwatch.activity.baseline import (
    ModelConfig,
    ModelError,
    calendar_columns,
    choose_spec,
    fit_count_glm,
    observations,
)
from freightwatch.activity.calendar import SiteCalendar
from freightwatch.activity.table import USABLE, local_dates
from freightwatch.errors import FreightwatchError

SEASON_DAYS = 45
"""Sides whose mean day of the year differ by more than this compare different seasons."""


class CompareError(FreightwatchError):
    """A comparison that cannot be made as asked (bad dates, an empty side, overlapping sides)."""


@dataclass(frozen=True)
class Selector:
    """Which local dates a side covers: a period (inclusive) and/or explicit dates.

    Attributes:
        text: What the user wrote.
        start: First day of the period.
        end: Last day of the period.
        dates: Explicit dates.
    """

    text: str
    start: date | None = None
    end: date | None = None
    dates: tuple[date, ...] = ()

    def matches(self, days: Sequence[date] | pd.Series) -> np.ndarray:
        """Boolean mask of the dates covered."""
        arr = list(days)
        m = np.zeros(len(arr), dtype=bool)
        for i, d in enumerate(arr):
            if self.dates and d in self.dates:
                m[i] = True
            if self.start is not None and self.end is not None and self.start <= d <= self.end:
                m[i] = True
        return m

    @property
    def is_period(self) -> bool:
        """Whether it is a period rather than a list of dates."""
        return self.start is not None


def _parse_day(text: str, end: bool = False) -> date:
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}", t):
            return date(int(t), 12, 31) if end else date(int(t), 1, 1)
        if re.fullmatch(r"\d{4}-\d{2}", t):
            y, m = int(t[:4]), int(t[5:])
            if end:
                nxt = date(y + (m == 12), m % 12 + 1, 1)
                return nxt - timedelta(days=1)
            return date(y, m, 1)
        return date.fromisoformat(t[:10])
    except ValueError:
        raise CompareError(f"not a date: {text!r} (use YYYY-MM-DD, YYYY-MM or YYYY)") from None


def parse_selector(text: str) -> Selector:
    """Parse ``DATE``, ``DATE,DATE,...``, ``START:END`` / ``START..END`` (inclusive), ``YYYY-MM`` or ``YYYY``.

    Raises:
        CompareError: unparseable dates or an end before the start.
    """
    t = str(text).strip()
    if not t:
        raise CompareError("empty date selection")
    sep = ".." if ".." in t else (":" if ":" in t else None)
    if sep:
        a, _, b = t.partition(sep)
        start, end = _parse_day(a), _parse_day(b, end=True)
        if end < start:
            raise CompareError(f"period {t!r} ends before it starts")
        return Selector(t, start, end)
    parts = [p for p in t.split(",") if p.strip()]
    if len(parts) == 1 and re.fullmatch(r"\d{4}(-\d{2})?", parts[0].strip()):
        return Selector(t, _parse_day(parts[0]), _parse_day(parts[0], end=True))
    return Selector(t, dates=tuple(sorted({_parse_day(p) for p in parts})))


@dataclass
class SideSummary:
    """One side of a comparison."""

    spec: str
    n: int
    dates: list[date]
    mean: float
    methods: list[str]
    masked: int
    weekdays: list[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"spec": self.spec, "n": self.n, "dates": [d.isoformat() for d in self.dates], "mean": self.mean,
                "methods": self.methods, "masked": self.masked, "weekdays": self.weekdays}


@dataclass
class Comparison:
    """Result of :func:`compare` (JSON keys of ``--json`` are :meth:`as_dict`'s)."""

    zone: str
    cls: str
    before: SideSummary
    after: SideSummary
    naive_change: float
    adjusted_change: float
    adjusted_ci: tuple[float, float]
    p_value: float
    level: float
    confounded: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        """Whether the adjusted confidence interval excludes no change."""
        lo, hi = self.adjusted_ci
        return bool(lo > 0 or hi < 0)

    def summary(self) -> str:
        """A plain-language paragraph."""
        lo, hi = self.adjusted_ci
        verdict = "a significant change" if self.significant else "no significant change"
        text = (f"{self.cls}s in {self.zone}: naive change {self.naive_change:+.0%} "
                f"({self.before.n} vs {self.after.n} observations); calendar-adjusted change "
                f"{self.adjusted_change:+.0%} ({self.level:.0%} CI {lo:+.0%} to {hi:+.0%}): {verdict}.")
        if self.confounded:
            text += " The naive comparison is confounded: " + "; ".join(self.reasons) + "."
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``naive_change``, ``adjusted_change``, ``adjusted_ci``, ``confounded``, ``reasons``..."""
        return {
            "zone": self.zone, "class": self.cls, "naive_change": _num(self.naive_change),
            "adjusted_change": _num(self.adjusted_change), "adjusted_ci": [_num(v) for v in self.adjusted_ci],
            "level": self.level, "p_value": _num(self.p_value), "significant": self.significant,
            "confounded": self.confounded, "reasons": self.reasons, "notes": self.notes,
            "before": self.before.as_dict(), "after": self.after.as_dict(), "model": self.model,
            "summary": self.summary(),
        }


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _circ_mean_doy(days: Sequence[date]) -> float:
    ang = np.array([2 * np.pi * (d.timetuple().tm_yday - 1) / 365.25 for d in days])
    return float(np.angle(np.exp(1j * ang).mean()) % (2 * np.pi) * 365.25 / (2 * np.pi))


def _month_text(doy: float) -> str:
    d = date(2001, 1, 1) + timedelta(days=int(doy))
    part = "early" if d.day <= 10 else ("mid" if d.day <= 20 else "late")
    return f"{part} {d.strftime('%B')}"


def confounders(calendar: SiteCalendar, before: Sequence[date], after: Sequence[date]) -> list[str]:
    """Plain-language reasons why comparing these dates confounds calendar effects with change."""
    reasons: list[str] = []
    for name, days in (("before", before), ("after", after)):
        ctx = calendar.context(sorted(set(days)))
        hol = ctx[(ctx["category"] != "none")]
        if len(hol):
            first = hol.iloc[0]
            what = (f"the {first['window_detail']}" if first["window"] else
                    f"an official holiday ({first['holiday_names']})")
            more = f" (and {len(hol) - 1} more of its {len(ctx)} dates are in holiday windows)" if len(hol) > 1 else ""
            reasons.append(f"{name} side: {first['local_date']} ({first['weekday'].title()}) falls in {what}{more}")
        wk = ctx[ctx["weekend"]]
        if len(wk):
            first = wk.iloc[0]
            more = f" (and {len(wk) - 1} more weekend dates)" if len(wk) > 1 else ""
            reasons.append(f"{name} side: {first['local_date']} is a {first['weekday'].title()}, a weekend day in "
                           f"{calendar.primary}{more}")
    b_ctx, a_ctx = calendar.context(sorted(set(before))), calendar.context(sorted(set(after)))
    wb, wa = Counter(b_ctx["weekday"]), Counter(a_ctx["weekday"])
    small = len(b_ctx) <= 5 and len(a_ctx) <= 5
    if small and set(wb) != set(wa):
        reasons.append(f"compares different weekdays: {', '.join(sorted(w.title() for w in wb))} before vs "
                       f"{', '.join(sorted(w.title() for w in wa))} after")
    elif not small:
        tv = 0.5 * sum(abs(wb[k] / len(b_ctx) - wa[k] / len(a_ctx)) for k in set(wb) | set(wa))
        if tv > 0.4:
            reasons.append(f"compares different mixes of weekdays (distributions differ by {tv:.0%})")
    db, da = _circ_mean_doy(before), _circ_mean_doy(after)
    gap = abs(db - da)
    gap = min(gap, 365.25 - gap)
    if gap > SEASON_DAYS:
        reasons.append(f"compares different seasons: before centred on {_month_text(db)}, after on "
                       f"{_month_text(da)} ({gap:.0f} days apart in the year)")
    return reasons


def compare(
    table: pd.DataFrame,
    calendar: SiteCalendar,
    zone: str,
    cls: str,
    before: str | Selector,
    after: str | Selector,
    reference: str | Selector | None = None,
    level: float = 0.95,
    config: ModelConfig | None = None,
) -> Comparison:
    """Compare two sets of dates (or periods) for one zone and class.

    Args:
        table: Counts table.
        calendar: The site calendar.
        zone: Zone name.
        cls: Class name.
        before: Dates or period of the earlier side (see :func:`parse_selector`).
        after: Dates or period of the later side.
        reference: Restrict the reference observations (outside both sides) to a period.
        level: Confidence level of ``adjusted_ci``.
        config: Model settings.

    Raises:
        CompareError: unparseable dates, overlapping sides, or a side without usable observations.
        ModelError: the zone and class are not in the table.
    """
    cfg = config or ModelConfig()
    sb = parse_selector(before) if isinstance(before, str) else before
    sa = parse_selector(after) if isinstance(after, str) else after
    obs = observations(table, zone, cls, calendar)
    in_b, in_a = sb.matches(obs["local_date"]), sa.matches(obs["local_date"])
    if np.any(in_b & in_a):
        both = sorted({d for d, m in zip(obs["local_date"], in_b & in_a, strict=True) if m})
        raise CompareError(f"the before and after sides share observation date(s) {', '.join(map(str, both[:5]))}")
    allrows = table[(table["zone"] == zone) & (table["class"] == cls)]
    all_days = list(local_dates(allrows["time"], calendar.config.timezone))
    unusable = ~allrows["status"].isin(USABLE).to_numpy() | ~np.isfinite(allrows["count"].to_numpy(float))
    notes: list[str] = []
    sides = {}
    for name, sel, mask in (("before", sb, in_b), ("after", sa, in_a)):
        masked = int((sel.matches(all_days) & unusable).sum())
        rows = obs[mask]
        if rows.empty:
            have = sorted(set(obs["local_date"]))
            near = ", ".join(str(d) for d in have[:3]) + (" ..." if len(have) > 3 else "")
            extra = f" ({masked} masked by cloud/nodata)" if masked else ""
            raise CompareError(f"no usable observation of {zone}/{cls} on the {name} side {sel.text!r}{extra}; "
                               f"observation dates: {near}")
        if sel.dates:
            missing = [d for d in sel.dates if d not in set(rows["local_date"])]
            if missing:
                notes.append(f"{name} side: no usable observation on {', '.join(map(str, missing))}")
        if masked:
            notes.append(f"{name} side: {masked} observation(s) masked by cloud or nodata were left out (not zeros)")
        sides[name] = SideSummary(
            spec=sel.text, n=len(rows), dates=sorted(set(rows["local_date"])), mean=float(rows["count"].mean()),
            methods=sorted(set(rows["method"])), masked=masked, weekdays=sorted(set(rows["weekday"])))
    b, a = sides["before"], sides["after"]
    naive = a.mean / b.mean - 1.0 if b.mean > 0 else math.nan
    if sorted(set(b.methods)) != sorted(set(a.methods)):
        notes.append(f"the sides were counted by different methods ({'/'.join(b.methods)} before, "
                     f"{'/'.join(a.methods)} after): the adjustment assumes both are unbiased")
    reasons = confounders(calendar, b.dates, a.dates)
    # -- the model ---------------------------------------------------------------------------------
    ref_mask = ~(in_a | in_b)
    if reference is not None:
        rs = parse_selector(reference) if isinstance(reference, str) else reference
        ref_mask &= rs.matches(obs["local_date"])
    use = ref_mask | in_a | in_b
    data = obs[use].reset_index(drop=True)
    is_b, is_a, is_ref = in_b[use], in_a[use], ref_mask[use]
    ref = data[is_ref]
    if len(ref) == 0:
        notes.append("no observations outside the two sides: calendar effects cannot be estimated, so the "
                     "adjusted change only weighs the observations by their noise")
    spec = choose_spec(ref if len(ref) else data.iloc[:0], calendar, cfg) if len(ref) else None
    if spec is None:
        from freightwatch.activity.baseline import DesignSpec

        spec = DesignSpec(day_types=(), windows=(), holiday=False, harmonics=0, trend=False)
    cols = calendar_columns(data, spec)
    X = cols[[c for c in spec.columns()]].copy()
    if "trend" in X:
        X.loc[~is_ref, "trend"] = 0.0  # sides have free levels: the trend describes the reference only
    X["side_before"] = is_b.astype(float)
    X["side_after"] = is_a.astype(float)
    if len(ref) == 0:
        X = X.drop(columns=["const"])
    from freightwatch.activity.baseline import _independent_columns

    keep = _independent_columns(X)
    for needed in ("side_before", "side_after"):
        if needed not in keep:
            raise CompareError(f"the {needed[5:]} side cannot be separated from the calendar terms")
    X = X[keep]
    try:
        fit = fit_count_glm(data["count"].to_numpy(float), X, data["meas_sd"].to_numpy(float), cfg.max_iter)
    except ModelError as exc:
        raise CompareError(f"{zone}/{cls}: {exc}") from exc
    contrast = pd.Series(0.0, index=fit.params.index)
    contrast["side_after"], contrast["side_before"] = 1.0, -1.0
    delta = float(contrast @ fit.params)
    var = float(contrast @ fit.cov @ contrast)
    unest = [c for c in spec.unestimated if c in cols]
    for c in unest:
        diff = float(cols[c][is_a].mean() - cols[c][is_b].mean())
        if diff != 0.0:
            var += (cfg.prior_sd * diff) ** 2
            notes.append(f"{c.replace('win_', '').replace('day_', '').replace('_', ' ')} effect could not be "
                         f"estimated (fewer than {cfg.min_support} observations outside the sides): the adjusted "
                         f"change carries a prior uncertainty of x/÷{math.exp(cfg.prior_sd):.1f} for it")
    if len(ref) and spec.harmonics == 0 and any("different seasons" in r for r in reasons):
        notes.append("season not modelled (reference data span less than 300 days): the season difference "
                     "is not adjusted for")
    sd = math.sqrt(max(var, 0.0))
    q = stats.t.ppf((1 + level) / 2, fit.df_resid) if 0 < fit.df_resid < 30 else stats.norm.ppf((1 + level) / 2)
    if fit.df_resid <= 0:
        q = stats.norm.ppf((1 + level) / 2)
        notes.append("no residual degrees of freedom: the interval ignores overdispersion")
    z = delta / sd if sd > 0 else math.inf
    p = float(2 * (stats.t.sf(abs(z), fit.df_resid) if 0 < fit.df_resid < 30 else stats.norm.sf(abs(z))))
    return Comparison(
        zone=zone, cls=cls, before=b, after=a, naive_change=naive, adjusted_change=math.expm1(delta),
        adjusted_ci=(math.expm1(delta - q * sd), math.expm1(delta + q * sd)), p_value=p, level=level,
        confounded=bool(reasons), reasons=reasons, notes=notes,
        model={"n_observations": int(fit.n), "n_reference": int(len(ref)), "alpha": fit.alpha, "phi": fit.phi,
               "terms": list(fit.params.index), "unestimated": unest, "harmonics": spec.harmonics},
    )
