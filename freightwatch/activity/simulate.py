"""Simulated sites with known truth: daily activity, a sparse archive, and counting noise.

Truth, per zone and class and local day *t*::

    E[N_t] = typical x weekday(t) x window(t) x holiday(t) x season(t) x trend(t) x shocks(t)
    N_t ~ NegativeBinomial(mean E[N_t], overdispersion alpha)          (day-to-day variation)

with the same calendar as the model (:class:`~freightwatch.activity.calendar.SiteCalendar`): weekend
days of the primary country (make-up working days are workdays), festival windows, other official
holidays. A *shock* ``(date, fraction)`` multiplies activity by ``1 + fraction`` from that date on
(``-0.4`` = a 40 % drop).

The archive is sparse like a real one: a coarse (3 m) scene about once a week (jittered), a few
high-resolution (0.5 m) scenes a year at random dates, plus any dates asked for. A scene is cloudy
with some probability; zones under too much cloud are ``masked`` rows (no count). Each visible
count is measured with its method's noise: the density model as multiplicative log-normal error
(default 25 %, about the bundled model's measured zone error) with an interval of matching width;
the detector as a binomial miss rate plus Poisson false positives, with the site's ``+-(10 % + 1)``
interval. The table has the schema of ``activity run`` plus ``expected`` (the true expected count),
``true_count`` (the day's true count) and ``simulated``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from freightwatch.activity.site import Site
from freightwatch.activity.table import COLUMNS, add_calendar, order_columns


@dataclass
class Effects:
    """True multiplicative effects relative to an ordinary working day.

    Attributes:
        weekday: Factor per weekend day type (``saturday``, ``sunday``).
        windows: Factor per festival window name.
        holiday: Factor on other official holidays.
        season_amplitude: Relative amplitude of the annual cycle.
        season_peak_doy: Day of the year of the seasonal peak.
        trend_per_year: Relative growth per year.
        alpha: Negative-binomial overdispersion of daily true counts.
    """

    weekday: dict[str, float] = field(default_factory=lambda: {"saturday": 0.7, "sunday": 0.5})
    windows: dict[str, float] = field(default_factory=lambda: {"lunar_new_year": 0.35, "golden_week": 0.6})
    holiday: float = 0.7
    season_amplitude: float = 0.15
    season_peak_doy: int = 250
    trend_per_year: float = 0.03
    alpha: float = 0.03


@dataclass
class Archive:
    """How scenes are acquired and counted.

    Attributes:
        coarse_every_days: Mean days between coarse scenes (0: none).
        coarse_jitter_days: Uniform jitter of each coarse date (days, +-).
        coarse_gsd: Coarse GSD in metres (density model).
        highres_per_year: Random high-resolution scenes per year.
        highres_dates: High-resolution scenes on these dates too (cloud-free).
        coarse_dates: Coarse scenes on these dates too (cloud-free).
        highres_gsd: High-resolution GSD (detector).
        cloud_probability: Chance that a scene is cloudy (cloud cover then uniform 20-100 %).
        min_valid_fraction: Zones with less clear area are masked.
        density_rel_sd: Log-normal sd of the density model's count error.
        detector_recall: Share of objects the detector finds.
        detector_fp_rate: False positives per true object (plus 0.2 per zone).
        detector_rel_error: Relative half-width of the detector interval (plus one object).
        coverage: Nominal coverage of the intervals.
        hour_utc: Mean acquisition hour (UTC).
    """

    coarse_every_days: float = 7.0
    coarse_jitter_days: int = 3
    coarse_gsd: float = 3.0
    highres_per_year: float = 4.0
    highres_dates: tuple[date, ...] = ()
    coarse_dates: tuple[date, ...] = ()
    highres_gsd: float = 0.5
    cloud_probability: float = 0.25
    min_valid_fraction: float = 0.5
    density_rel_sd: float = 0.25
    detector_recall: float = 0.95
    detector_fp_rate: float = 0.03
    detector_rel_error: float = 0.1
    coverage: float = 0.9
    hour_utc: float = 2.5


@dataclass
class SimulationConfig:
    """A simulation run.

    Attributes:
        start: First local day.
        end: Last local day (inclusive).
        seed: Random seed (same seed, same table).
        shocks: ``(date, fraction)`` changes: activity x ``(1 + fraction)`` from that date.
        effects: True calendar effects.
        archive: Acquisition and counting.
        zones: Zone names to simulate (all when empty).
        classes: Classes to simulate (all the zone counts when empty).
    """

    start: date
    end: date
    seed: int = 0
    shocks: tuple[tuple[date, float], ...] = ()
    effects: Effects = field(default_factory=Effects)
    archive: Archive = field(default_factory=Archive)
    zones: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def validate(self) -> None:
        """Raise ``ValueError`` for impossible settings."""
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if (self.end - self.start).days > 366 * 30:
            raise ValueError("simulate at most 30 years")
        for d, f in self.shocks:
            if not f > -1.0:
                raise ValueError(f"shock on {d}: fraction {f} must be > -1 (-0.4 = a 40 % drop)")


def parse_shock(text: str) -> tuple[date, float]:
    """Parse ``DATE:FRACTION`` (``2016-06-01:-0.4`` or ``2016-06-01:-40%``: a 40 % drop from that day).

    Raises:
        ValueError: not of that form.
    """
    d, sep, f = str(text).rpartition(":")
    if not sep:
        raise ValueError(f"expected DATE:FRACTION like 2016-06-01:-0.4, got {text!r}")
    try:
        day = date.fromisoformat(d.strip())
        frac = float(f.strip().rstrip("%")) / (100.0 if f.strip().endswith("%") else 1.0)
    except ValueError:
        raise ValueError(f"expected DATE:FRACTION like 2016-06-01:-0.4, got {text!r}") from None
    if not frac > -1:
        raise ValueError(f"shock fraction must be > -1 (-0.4 = a 40 % drop), got {text!r}")
    return day, frac


def _pairs(site: Site, cfg: SimulationConfig) -> list[tuple[str, str]]:
    pairs = site.zone_classes()
    if cfg.zones:
        unknown = set(cfg.zones) - {z for z, _ in pairs}
        if unknown:
            raise ValueError(f"unknown zone(s) {', '.join(sorted(unknown))} for site {site.name}")
        pairs = [p for p in pairs if p[0] in cfg.zones]
    if cfg.classes:
        pairs = [p for p in pairs if p[1] in cfg.classes]
    if not pairs:
        raise ValueError("nothing to simulate: no zone counts the chosen classes")
    return pairs


def expected_daily(site: Site, cfg: SimulationConfig) -> pd.DataFrame:
    """True expected counts per local day, zone and class (no randomness).

    Returns:
        Columns ``local_date``, calendar context, ``zone``, ``class``, ``expected``.
    """
    cfg.validate()
    days = [cfg.start + timedelta(days=i) for i in range((cfg.end - cfg.start).days + 1)]
    ctx = site.site_calendar().context(days)
    eff = cfg.effects
    factor = np.ones(len(days))
    factor *= np.array([eff.weekday.get(t, 1.0) for t in ctx["day_type"]])
    factor *= np.array([eff.windows.get(c, 1.0) if c not in ("none", "holiday") else
                        (eff.holiday if c == "holiday" else 1.0) for c in ctx["category"]])
    doy = np.array([d.timetuple().tm_yday for d in days], float)
    factor *= 1.0 + eff.season_amplitude * np.cos(2 * np.pi * (doy - eff.season_peak_doy) / 365.25)
    years = np.array([(d - cfg.start).days for d in days], float) / 365.25
    factor *= (1.0 + eff.trend_per_year) ** years
    for d0, frac in cfg.shocks:
        factor *= np.where(np.array([d >= d0 for d in days]), 1.0 + frac, 1.0)
    frames = []
    for zone, cls in _pairs(site, cfg):
        f = ctx.copy()
        f["zone"], f["class"] = zone, cls
        f["expected"] = site.typical_count(zone, cls) * factor
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def acquisition_plan(cfg: SimulationConfig, rng: np.random.Generator) -> list[tuple[date, str]]:
    """``(local date, method)`` of every simulated scene, in date order."""
    a = cfg.archive
    span = (cfg.end - cfg.start).days
    scenes: set[tuple[date, str]] = set()
    if a.coarse_every_days > 0:
        k = 0
        while True:
            centre = k * a.coarse_every_days + a.coarse_every_days / 2
            if centre > span + a.coarse_every_days:
                break
            off = int(round(centre + rng.integers(-a.coarse_jitter_days, a.coarse_jitter_days + 1)))
            if 0 <= off <= span:
                scenes.add((cfg.start + timedelta(days=off), "density"))
            k += 1
    n_hr = rng.poisson(a.highres_per_year * (span + 1) / 365.25) if a.highres_per_year > 0 else 0
    for off in rng.integers(0, span + 1, size=n_hr):
        scenes.add((cfg.start + timedelta(days=int(off)), "detector"))
    scenes.update((d, "detector") for d in a.highres_dates if cfg.start <= d <= cfg.end)
    scenes.update((d, "density") for d in a.coarse_dates if cfg.start <= d <= cfg.end)
    return sorted(scenes)


def simulate_site(site: Site, config: SimulationConfig) -> pd.DataFrame:
    """A counts table (schema of ``activity run``) for a simulated archive of the site, with the truth.

    Args:
        site: The site (zones, classes, typical counts, calendar).
        config: Period, seed, shocks, effects and archive.

    Returns:
        The table, with ``expected`` (true expected count), ``true_count`` and ``simulated`` columns.
    """
    config.validate()
    # Separate streams: changing the truth (a shock) must not move the acquisitions or the clouds.
    truth_rng, plan_rng, rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3))
    a, eff = config.archive, config.effects
    daily = expected_daily(site, config)
    # One true count per day, zone and class: every scene of that day sees the same objects.
    lam = daily["expected"].to_numpy(float)
    if eff.alpha > 0:
        lam = lam * truth_rng.gamma(1.0 / eff.alpha, eff.alpha, size=len(lam))
    daily["true_count"] = truth_rng.poisson(lam)
    truth = daily.set_index(["local_date", "zone", "class"])
    z = stats.norm.ppf((1 + a.coverage) / 2)
    tz_offset = _utc_offset_hours(site.timezone)
    rows = []
    pairs = _pairs(site, config)
    forced = set(a.highres_dates) | set(a.coarse_dates)
    for day, method in acquisition_plan(config, plan_rng):
        hour = a.hour_utc + rng.normal(0, 0.5)
        t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)
        # The local date must stay `day`: satellite overpasses are mid-morning local time.
        t = t if (t + timedelta(hours=tz_offset)).date() == day else datetime(
            day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=12 - tz_offset)
        # Dates asked for explicitly are clear (a tasked or hand-picked image); the rest may be cloudy.
        cloudy = rng.random() < a.cloud_probability and day not in forced
        cover = rng.uniform(0.2, 1.0) if cloudy else 0.0
        gsd = a.coarse_gsd if method == "density" else a.highres_gsd
        scene = f"sim-{method}-{day.isoformat()}"
        for zone, cls in pairs:
            tr = truth.loc[(day, zone, cls)]
            n_true = int(tr["true_count"])
            vf = float(np.clip(1.0 - cover + (rng.normal(0, 0.15) if cloudy else 0.0), 0.0, 1.0))
            row = {"site": site.name, "zone": zone, "class": cls, "time": t, "method": method, "gsd": gsd,
                   "valid_fraction": round(vf, 4), "scene": scene, "coverage": a.coverage,
                   "expected": float(tr["expected"]), "true_count": n_true, "simulated": True}
            visible = n_true if vf >= 0.99 else int(rng.binomial(n_true, vf))
            if method == "density":
                obs = max(0.0, (visible + 1.0) * math.exp(a.density_rel_sd * rng.standard_normal()
                                                          - a.density_rel_sd**2 / 2) - 1.0)
            else:
                obs = float(rng.binomial(visible, a.detector_recall) + rng.poisson(a.detector_fp_rate * visible + 0.2))
            row["count_observed"] = obs
            if vf < a.min_valid_fraction:
                row.update(status="masked", count=math.nan, lower=math.nan, upper=math.nan)
            else:
                count = obs / vf if vf < 0.99 else obs
                if method == "density":
                    half = z * a.density_rel_sd * (count + 1.0)
                else:
                    half = a.detector_rel_error * count + 1.0
                row.update(status="ok" if vf >= 0.99 else "partial", count=count, lower=max(0.0, count - half),
                           upper=count + half)
            rows.append(row)
    extra = ["expected", "true_count", "simulated"]
    df = pd.DataFrame(rows, columns=list(COLUMNS) + extra)
    df["time"] = pd.to_datetime(df["time"], utc=True)
    if len(df):
        df = add_calendar(df, site.site_calendar())
    return order_columns(df)


def _utc_offset_hours(tz: str) -> float:
    from zoneinfo import ZoneInfo

    off = datetime(2020, 1, 15, 12, tzinfo=ZoneInfo(tz)).utcoffset()
    return off.total_seconds() / 3600 if off is not None else 0.0


def dates_of(table: pd.DataFrame, method: str | None = None) -> Sequence[date]:
    """Local dates of a table's scenes (optionally of one method), sorted."""
    t = table if method is None else table[table["method"] == method]
    return sorted(set(t["local_date"]))
