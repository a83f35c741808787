"""The calendar-aware count model: expected counts, prediction intervals and anomalies.

For one zone and class, the count on local date *t* is modelled as a negative-binomial GLM
(statsmodels, log link)::

    log E[N_t] = b0 + day_type(t) + window(t) + holiday(t) + sum_k (a_k sin + c_k cos)(2 pi k doy / 365.25)
                 + g * years(t)

* ``day_type``: ``workday`` (baseline), and a dummy per weekend day of the site's primary country
  (``saturday``, ``sunday``); official make-up working days count as workdays.
* ``window``: one dummy per festival window name (``lunar_new_year``, ``golden_week``, ...).
* ``holiday``: any other official holiday of any of the site's countries.
* Fourier season terms (``harmonics`` pairs; automatically 0 for less than 300 days of reference
  data, 1 below 540 days, else 2) and a linear trend in years.

**Measurement noise.** Each observation is a *measured* count, not the true count: the detector
and the density model miss and invent objects, and the density model's intervals are wide. The
observation variance is ``mu + alpha mu^2 + s_i(mu)^2``: the negative-binomial day-to-day
variance of the true activity plus the measurement variance of that row. ``s_i`` comes from the
row's own interval, ``(upper - lower) / (2 z)`` at its stated coverage, rescaled from the observed
count to the expected one with a 5-object floor (the form of the density model's calibrated
intervals), so noisy density counts weigh less than detector counts. It enters statsmodels' GLM as
``var_weights = V(mu) / (V(mu) + s_i^2)`` (a quasi-likelihood fit with the total variance),
iterated with a method-of-moments estimate of ``alpha`` that subtracts the measurement variance;
a Pearson dispersion above 1 inflates the covariance.

**Calendar terms with no data.** A dummy with fewer than ``min_support`` reference observations
(e.g. no image ever fell in a Golden Week) cannot be estimated: it is left out of the fit and, for
dates it covers, its effect is taken as 0 with a prior standard deviation of ``prior_sd`` (1.0 on
the log scale: a factor of 2.7), so intervals there are honest rather than falsely narrow.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from freightwatch.activity.calendar import SiteCalendar
from freightwatch.activity.table import USABLE, local_dates
from freightwatch.errors import FreightwatchError

log = logging.getLogger(__name__)

K_FLOOR = 5.0
"""Floor (objects) of the measurement-noise scaling, as in the density model's intervals."""


class ModelError(FreightwatchError):
    """Not enough usable data to fit or use the count model."""


@dataclass
class ModelConfig:
    """Count model settings.

    Attributes:
        harmonics: Fourier pairs of the annual season; ``None`` chooses by the reference span.
        trend: Include a linear trend.
        min_support: Reference observations needed to estimate a calendar dummy.
        prior_sd: Log-scale standard deviation of a calendar effect that could not be estimated.
        max_iter: Iterations of the dispersion / weights loop.
        draws: Monte-Carlo draws for prediction intervals and p-values.
        seed: Seed of those draws (results are reproducible).
    """

    harmonics: int | None = None
    trend: bool = True
    min_support: int = 2
    prior_sd: float = 1.0
    max_iter: int = 8
    draws: int = 4000
    seed: int = 0


def measurement_sd(df: pd.DataFrame) -> np.ndarray:
    """Standard deviation of each row's measurement error from its interval and coverage (0 without one)."""
    cov = df["coverage"].fillna(0.9).clip(0.5, 0.999).to_numpy(float) if "coverage" in df else np.full(len(df), 0.9)
    z = stats.norm.ppf((1 + cov) / 2)
    width = (df["upper"].to_numpy(float) - df["lower"].to_numpy(float))
    sd = width / (2 * z)
    return np.where(np.isfinite(sd) & (sd > 0), sd, 0.0)


def observations(table: pd.DataFrame, zone: str, cls: str, calendar: SiteCalendar) -> pd.DataFrame:
    """Usable rows of one zone and class with calendar context, ``meas_sd`` and the local date.

    Raises:
        ModelError: the table has no rows for that zone and class (names the available ones).
    """
    sel = table[(table["zone"] == zone) & (table["class"] == cls)]
    if sel.empty:
        pairs = sorted({f"{z}/{c}" for z, c in zip(table["zone"], table["class"], strict=True)})
        raise ModelError(f"the table has no rows for zone {zone!r} and class {cls!r} (it has: {', '.join(pairs)})")
    ok = sel[sel["status"].isin(USABLE) & np.isfinite(sel["count"].to_numpy(float))].copy()
    ok = ok.sort_values("time").reset_index(drop=True)
    ok["local_date"] = list(local_dates(ok["time"], calendar.config.timezone))
    ctx = calendar.context(ok["local_date"])
    for c in ctx.columns:
        if c != "local_date":
            ok[c] = ctx[c].to_numpy()
    ok["meas_sd"] = measurement_sd(ok)
    return ok


# -- design ---------------------------------------------------------------------------------------
@dataclass
class DesignSpec:
    """Which terms a model has, fixed at fit time so any date can be predicted.

    Attributes:
        day_types: Weekend day types with a dummy (``saturday``, ``sunday``).
        windows: Window names with a dummy.
        holiday: Whether the ``holiday`` dummy exists.
        harmonics: Fourier pairs.
        trend: Whether there is a trend term.
        origin: Date where the trend is 0.
        unestimated: Dummies dropped for lack of reference data (prior effect 0 +- prior_sd).
    """

    day_types: tuple[str, ...] = ()
    windows: tuple[str, ...] = ()
    holiday: bool = True
    harmonics: int = 0
    trend: bool = True
    origin: date = date(2000, 1, 1)
    unestimated: tuple[str, ...] = ()

    def all_dummies(self) -> list[str]:
        """Calendar dummy names, estimated or not."""
        return ([f"day_{d}" for d in self.day_types] + [f"win_{w}" for w in self.windows]
                + (["holiday"] if self.holiday else []))

    def columns(self) -> list[str]:
        """Estimated columns in order (``const`` first)."""
        cols = ["const"] + [c for c in self.all_dummies() if c not in self.unestimated]
        for k in range(1, self.harmonics + 1):
            cols += [f"season_sin{k}", f"season_cos{k}"]
        if self.trend:
            cols.append("trend")
        return cols


def calendar_columns(ctx: pd.DataFrame, spec: DesignSpec) -> pd.DataFrame:
    """Every term of ``spec`` (estimated or not) for rows with calendar context (``local_date`` etc.)."""
    d = pd.to_datetime(pd.Series(list(ctx["local_date"])))
    out = pd.DataFrame(index=range(len(ctx)))
    out["const"] = 1.0
    for dt in spec.day_types:
        out[f"day_{dt}"] = (ctx["day_type"].to_numpy() == dt).astype(float)
    for w in spec.windows:
        out[f"win_{w}"] = (ctx["category"].to_numpy() == w).astype(float)
    if spec.holiday:
        out["holiday"] = (ctx["category"].to_numpy() == "holiday").astype(float)
    doy = d.dt.day_of_year.to_numpy(float)
    for k in range(1, spec.harmonics + 1):
        out[f"season_sin{k}"] = np.sin(2 * np.pi * k * doy / 365.25)
        out[f"season_cos{k}"] = np.cos(2 * np.pi * k * doy / 365.25)
    if spec.trend:
        out["trend"] = (d - pd.Timestamp(spec.origin)).dt.days.to_numpy(float) / 365.25
    return out


def choose_spec(ref: pd.DataFrame, calendar: SiteCalendar, config: ModelConfig) -> DesignSpec:
    """Terms for reference rows: dummies with enough support, harmonics by the span covered."""
    days = pd.to_datetime(pd.Series(list(ref["local_date"])))
    span = (days.max() - days.min()).days if len(days) else 0
    harmonics = config.harmonics
    if harmonics is None:
        harmonics = 0 if span < 300 else (1 if span < 540 else 2)
    day_types = tuple(_weekday_name(i) for i in calendar.weekend_days(calendar.primary))
    origin = (days.min() + (days.max() - days.min()) / 2).date() if len(days) else date(2000, 1, 1)
    spec = DesignSpec(day_types=day_types, windows=calendar.window_names, holiday=True, harmonics=harmonics,
                      trend=config.trend and span >= 60, origin=origin)
    cols = calendar_columns(ref, spec)
    spec.unestimated = tuple(c for c in spec.all_dummies() if cols[c].sum() < config.min_support)
    # Two dummies active on exactly the same rows cannot be told apart: keep the first.
    seen: dict[bytes, str] = {}
    extra = []
    for c in spec.all_dummies():
        if c in spec.unestimated:
            continue
        key = cols[c].to_numpy().tobytes()
        if key in seen:
            extra.append(c)
        else:
            seen[key] = c
    spec.unestimated = spec.unestimated + tuple(extra)
    return spec


def _weekday_name(i: int) -> str:
    return ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[i]


# -- fitting --------------------------------------------------------------------------------------
@dataclass
class GLMFit:
    """A fitted count GLM.

    Attributes:
        params: Coefficients by column.
        cov: Their covariance (inflated by ``phi``).
        alpha: Negative-binomial overdispersion of the true counts (0 = Poisson).
        phi: Pearson dispersion factor applied to ``cov`` (>= 1).
        mu: Fitted means of the fitting rows.
        n: Rows fitted.
        df_resid: Residual degrees of freedom.
        converged: Whether the IRLS / dispersion loop converged.
    """

    params: pd.Series
    cov: pd.DataFrame
    alpha: float
    phi: float
    mu: np.ndarray
    n: int
    df_resid: int
    converged: bool = True


def meas_var(sd: np.ndarray, count: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Measurement variance at the expected count ``mu`` from each row's sd at its observed count."""
    return (sd * (K_FLOOR + mu) / (K_FLOOR + np.maximum(count, 0.0))) ** 2


def fit_count_glm(y: np.ndarray, X: pd.DataFrame, sd: np.ndarray, max_iter: int = 8) -> GLMFit:
    """Negative-binomial GLM with per-row measurement variance (see the module docstring).

    Args:
        y: Observed counts (may be fractional: density estimates).
        X: Design matrix (columns named).
        sd: Measurement standard deviation of each row at its observed count.
        max_iter: Iterations of the weights / alpha loop.

    Raises:
        ModelError: no objects at all, or fewer rows than parameters.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    y = np.asarray(y, float)
    n, p = X.shape
    if n < p:
        raise ModelError(f"{n} usable observation(s) for {p} model terms: not enough data")
    if not np.any(y > 0):
        raise ModelError("no objects in any usable observation: there is no activity to model")
    Xv = X.to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        warnings.simplefilter("ignore", category=PerfectSeparationWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        res = sm.GLM(y, Xv, family=sm.families.Poisson()).fit()
        mu = np.clip(res.mu, 1e-6, None)
        alpha, converged = 0.0, False
        for _ in range(max_iter):
            s2 = meas_var(sd, y, mu)
            V = mu + alpha * mu**2
            w = V / (V + s2)
            fam = sm.families.NegativeBinomial(alpha=max(alpha, 1e-8))
            res = sm.GLM(y, Xv, family=fam, var_weights=w).fit(scale=1.0, start_params=res.params)
            mu = np.clip(res.mu, 1e-6, None)
            s2 = meas_var(sd, y, mu)
            dof = max(n - p, 0)
            if dof == 0:
                new_alpha = 0.0
            else:
                new_alpha = max(0.0, float(np.sum((y - mu) ** 2 - mu - s2) * n / dof / np.sum(mu**2)))
            if abs(new_alpha - alpha) < 1e-4 + 1e-3 * alpha:
                alpha, converged = new_alpha, True
                break
            alpha = new_alpha
    V = mu + alpha * mu**2 + meas_var(sd, y, mu)
    dof = n - p
    phi = max(1.0, float(np.sum((y - mu) ** 2 / V) / dof)) if dof > 0 else 1.0
    cov = np.asarray(res.cov_params()) * phi
    cols = list(X.columns)
    return GLMFit(pd.Series(res.params, index=cols), pd.DataFrame(cov, index=cols, columns=cols), alpha, phi, mu, n,
                  dof, converged)


# -- the baseline model ---------------------------------------------------------------------------
@dataclass
class BaselineModel:
    """A fitted baseline for one zone and class.

    Attributes:
        zone: Zone name.
        cls: Class name.
        spec: The model's terms.
        fit: The fitted GLM.
        calendar: The site calendar.
        config: Settings.
        reference: ``(first, last)`` local dates of the reference observations.
        n_reference: Reference observations used.
        notes: Plain-language caveats (unestimated terms, short reference period).
    """

    zone: str
    cls: str
    spec: DesignSpec
    fit: GLMFit
    calendar: SiteCalendar
    config: ModelConfig
    reference: tuple[date, date]
    n_reference: int
    notes: list[str] = field(default_factory=list)

    def linear_predictor(self, ctx: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(eta, var_eta)`` of log expected counts for rows with calendar context."""
        cols = calendar_columns(ctx, self.spec)
        est = cols[self.fit.params.index]
        Xv = est.to_numpy(float)
        eta = Xv @ self.fit.params.to_numpy()
        var = np.einsum("ij,jk,ik->i", Xv, self.fit.cov.to_numpy(), Xv)
        for c in self.spec.unestimated:
            var = var + (self.config.prior_sd ** 2) * cols[c].to_numpy(float) ** 2
        return eta, var

    def predict(self, dates: Sequence[date], level: float = 0.9, as_workday: bool = False) -> pd.DataFrame:
        """Expected count and intervals for local dates.

        With ``as_workday`` every date is treated as a working day (festival windows and holidays
        kept, the weekend effect left out): a smooth level for charts.

        Returns:
            One row per date: calendar context, ``expected`` (exp of the linear predictor),
            ``expected_lower``/``expected_upper`` (confidence interval of the expected count) and
            ``lower``/``upper`` (prediction interval of the true count that day: day-to-day
            variation plus model uncertainty, without measurement noise).
        """
        ctx = self.calendar.context(list(dates))
        if as_workday:
            ctx["day_type"] = "workday"
        eta, var = self.linear_predictor(ctx)
        z = stats.norm.ppf((1 + level) / 2)
        out = ctx.copy()
        out["expected"] = np.exp(eta)
        out["expected_lower"] = np.exp(eta - z * np.sqrt(var))
        out["expected_upper"] = np.exp(eta + z * np.sqrt(var))
        draws = self._draw_true(eta, var, np.random.default_rng(self.config.seed))
        q = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
        out["lower"], out["upper"] = q[0], q[1]
        return out

    def _draw_true(self, eta: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Common random numbers across rows: neighbouring days get smooth quantiles, and each row's
        # marginal distribution is still exact.
        m = self.config.draws
        z = rng.standard_normal((1, m))
        lam = np.exp(eta[:, None] + np.sqrt(var)[:, None] * z)
        a = self.fit.alpha
        if a > 1e-8:
            lam = lam * rng.gamma(1.0 / a, a, size=(1, m))
        draws = rng.poisson(np.minimum(lam, 1e7)).astype(float)
        if self.fit.phi > 1.0:  # Pearson over-dispersion beyond the model: widen around the mean
            mean = draws.mean(axis=1, keepdims=True)
            draws = mean + math.sqrt(self.fit.phi) * (draws - mean)
        return draws

    def score(self, obs: pd.DataFrame, level: float = 0.9) -> pd.DataFrame:
        """Expected values, prediction intervals *of the measurement* and two-sided p-values for observations.

        ``obs`` are rows from :func:`observations`. The predictive distribution adds each row's
        measurement noise to the true-count draws; ``p_value`` is the two-sided mid-p of the
        observed count under it.
        """
        out = obs.copy()
        if out.empty:
            for c in ("expected", "pred_lower", "pred_upper", "p_value", "deviation"):
                out[c] = []
            return out
        eta, var = self.linear_predictor(out)
        rng = np.random.default_rng(self.config.seed + 1)
        true = self._draw_true(eta, var, rng)
        sd = out["meas_sd"].to_numpy(float)
        count = out["count"].to_numpy(float)
        noise_sd = sd[:, None] * (K_FLOOR + true) / (K_FLOOR + np.maximum(count, 0.0))[:, None]
        meas = np.maximum(true + noise_sd * rng.standard_normal((1, true.shape[1])), 0.0)
        y = count[:, None]
        below = (meas < y).mean(axis=1) + 0.5 * (meas == y).mean(axis=1)
        p = np.clip(2 * np.minimum(below, 1 - below), 1.0 / self.config.draws, 1.0)
        q = np.quantile(meas, [(1 - level) / 2, (1 + level) / 2], axis=1)
        out["expected"] = np.exp(eta)
        out["pred_lower"], out["pred_upper"] = q[0], q[1]
        out["p_value"] = p
        out["deviation"] = count / np.maximum(np.exp(eta), 1e-9) - 1.0
        return out

    def summary(self) -> dict[str, Any]:
        """Coefficients (as multiplicative effects with 95 % intervals) and fit figures."""
        se = np.sqrt(np.diag(self.fit.cov.to_numpy()))
        effects = {}
        for (name, b), s in zip(self.fit.params.items(), se, strict=True):
            effects[name] = {"coef": float(b), "se": float(s), "factor": float(np.exp(b)),
                             "factor_95": [float(np.exp(b - 1.96 * s)), float(np.exp(b + 1.96 * s))]}
        return {"zone": self.zone, "class": self.cls, "n_reference": self.n_reference,
                "reference": [self.reference[0].isoformat(), self.reference[1].isoformat()],
                "alpha": self.fit.alpha, "phi": self.fit.phi, "harmonics": self.spec.harmonics,
                "trend_origin": self.spec.origin.isoformat(), "unestimated": list(self.spec.unestimated),
                "terms": effects, "notes": self.notes}


def fit_baseline(
    table: pd.DataFrame,
    zone: str,
    cls: str,
    calendar: SiteCalendar,
    reference: Any = None,
    config: ModelConfig | None = None,
) -> BaselineModel:
    """Fit the baseline model of one zone and class on its reference observations.

    Args:
        table: Counts table (:func:`freightwatch.activity.table.read_table`).
        zone: Zone name.
        cls: Class name.
        calendar: The site calendar.
        reference: A :class:`freightwatch.activity.compare.Selector` (or its text, e.g.
            ``2015-01-01:2015-12-31``) restricting the reference period; all usable rows when ``None``.
        config: Model settings.

    Raises:
        ModelError: not enough usable data.
    """
    from freightwatch.activity.compare import parse_selector

    cfg = config or ModelConfig()
    obs = observations(table, zone, cls, calendar)
    if reference is not None:
        sel = parse_selector(reference) if isinstance(reference, str) else reference
        obs = obs[sel.matches(obs["local_date"])].reset_index(drop=True)
    if len(obs) < 3:
        raise ModelError(f"{zone}/{cls}: only {len(obs)} usable observation(s) in the reference period "
                         "(masked rows are not counts); at least 3 are needed")
    spec = choose_spec(obs, calendar, cfg)
    X = calendar_columns(obs, spec)[spec.columns()]
    # Drop terms the data cannot separate (e.g. a trend over two dates): keep a full-rank design.
    keep = _independent_columns(X)
    fit = fit_count_glm(obs["count"].to_numpy(float), X[keep], obs["meas_sd"].to_numpy(float), cfg.max_iter)
    dropped = [c for c in X.columns if c not in keep]
    if any(c.startswith(("season", "trend")) for c in dropped):
        spec.harmonics = 0 if any(c.startswith("season") for c in dropped) else spec.harmonics
        spec.trend = spec.trend and "trend" in keep
    spec.unestimated = spec.unestimated + tuple(c for c in dropped if not c.startswith(("season", "trend")))
    fit = fit if not dropped else fit_count_glm(obs["count"].to_numpy(float), calendar_columns(obs, spec)[
        spec.columns()], obs["meas_sd"].to_numpy(float), cfg.max_iter)
    notes = [f"{_term_text(c)}: not estimated (fewer than {cfg.min_support} reference observations); "
             f"assumed 0 with a prior factor of x/÷{math.exp(cfg.prior_sd):.1f}" for c in spec.unestimated]
    if spec.harmonics == 0:
        notes.append("season not modelled: the reference period is shorter than 300 days")
    days = list(obs["local_date"])
    return BaselineModel(zone, cls, spec, fit, calendar, cfg, (min(days), max(days)), len(obs), notes)


def _independent_columns(X: pd.DataFrame) -> list[str]:
    keep: list[str] = []
    for c in X.columns:
        cand = X[keep + [c]].to_numpy(float)
        if np.linalg.matrix_rank(cand) == len(keep) + 1:
            keep.append(c)
    return keep


def _term_text(col: str) -> str:
    if col.startswith("win_"):
        return f"the {col[4:].replace('_', ' ')} window effect"
    if col.startswith("day_"):
        return f"the {col[4:].title()} effect"
    if col == "holiday":
        return "the official-holiday effect"
    return col


# -- anomalies ------------------------------------------------------------------------------------
def anomalies(
    model: BaselineModel,
    obs: pd.DataFrame,
    alpha: float = 0.01,
    period_days: int = 56,
    min_obs: int = 3,
    level: float = 0.9,
) -> pd.DataFrame:
    """Observations and periods outside their expected range, with p-values and plain-language reasons.

    Single observations are tested against their predictive distribution (true-count variation,
    model uncertainty, and that row's measurement noise). Periods: every window of ``period_days``
    starting at an observation and holding at least ``min_obs`` observations is tested on the log
    ratio of observed to expected totals (normal approximation, with the windows' model
    uncertainty); p-values are Bonferroni-adjusted for the number of non-overlapping windows in the
    span, and overlapping significant windows of the same sign are merged into one period.

    Returns:
        Rows with ``kind`` (``observation`` / ``period``), ``zone``, ``class``, ``start``, ``end``,
        ``n``, ``observed``, ``expected``, ``change``, ``p_value``, ``reason``.
    """
    scored = model.score(obs, level)
    rows = []
    for _, r in scored[scored["p_value"] < alpha].iterrows():
        d = r["local_date"]
        ctx = r["weekday"].title() + (f", in the {r['window'].replace('_', ' ')} window" if r["window"] else "") + (
            ", an official holiday" if r["holiday"] and not r["window"] else "")
        direction = "below" if r["count"] < r["expected"] else "above"
        rows.append({
            "kind": "observation", "zone": model.zone, "class": model.cls, "start": d, "end": d, "n": 1,
            "observed": float(r["count"]), "expected": float(r["expected"]), "change": float(r["deviation"]),
            "p_value": float(r["p_value"]),
            "reason": (f"{r['count']:.0f} {model.cls}s in {model.zone} on {d} ({ctx}, {r['method']}) is "
                       f"{abs(r['deviation']):.0%} {direction} the calendar-expected {r['expected']:.0f} "
                       f"({level:.0%} range {r['pred_lower']:.0f}-{r['pred_upper']:.0f}, p={r['p_value']:.3g}): "
                       "weekday, holidays and season do not explain it"),
        })
    if len(scored) >= min_obs:
        rows.extend(_period_anomalies(model, scored, alpha, period_days, min_obs))
    out = pd.DataFrame(rows, columns=["kind", "zone", "class", "start", "end", "n", "observed", "expected", "change",
                                      "p_value", "reason"])
    return out.sort_values(["start", "kind"]).reset_index(drop=True)


def _period_anomalies(model: BaselineModel, scored: pd.DataFrame, alpha: float, period_days: int,
                      min_obs: int) -> list[dict[str, Any]]:
    days = pd.to_datetime(pd.Series(list(scored["local_date"])))
    span = max(1, (days.max() - days.min()).days)
    n_windows = max(1, math.ceil(span / period_days))
    cols = calendar_columns(scored, model.spec)
    Xv = cols[model.fit.params.index].to_numpy(float)
    cov = model.fit.cov.to_numpy()
    mu = scored["expected"].to_numpy(float)
    y = scored["count"].to_numpy(float)
    var_y = mu + model.fit.alpha * mu**2 + meas_var(scored["meas_sd"].to_numpy(float), y, mu)
    var_y = var_y * model.fit.phi
    hits = []
    for i in range(len(scored)):
        idx = np.flatnonzero((days >= days[i]) & (days < days[i] + timedelta(days=period_days)))
        if len(idx) < min_obs:
            continue
        m, o = mu[idx].sum(), y[idx].sum()
        if m <= 0:
            continue
        xbar = (mu[idx, None] * Xv[idx]).sum(axis=0) / m
        var_r = var_y[idx].sum() / m**2 + float(xbar @ cov @ xbar)
        for c in model.spec.unestimated:
            share = float((mu[idx] * cols[c].to_numpy(float)[idx]).sum() / m)
            var_r += (model.config.prior_sd * share) ** 2
        r = math.log(max(o, 0.5) / m)
        p = float(2 * stats.norm.sf(abs(r) / math.sqrt(var_r)))
        p_adj = min(1.0, p * n_windows)
        if p_adj < alpha:
            hits.append((days[i].date(), days[idx[-1]].date(), len(idx), o, m, r, p_adj))
    merged: list[list[Any]] = []
    for h in sorted(hits):
        if merged and h[0] <= merged[-1][1] and np.sign(h[5]) == np.sign(merged[-1][5]):
            cur = merged[-1]
            cur[1] = max(cur[1], h[1])
            cur[6] = min(cur[6], h[6])
            continue
        merged.append(list(h))
    out = []
    for start, end, _n, _o, _m, _r, p in merged:
        sel = (days.dt.date >= start) & (days.dt.date <= end)
        o, m, n = float(y[sel.to_numpy()].sum()), float(mu[sel.to_numpy()].sum()), int(sel.sum())
        change = o / m - 1.0
        out.append({
            "kind": "period", "zone": model.zone, "class": model.cls, "start": start, "end": end, "n": n,
            "observed": o / n, "expected": m / n, "change": change, "p_value": p,
            "reason": (f"{model.cls}s in {model.zone} were {abs(change):.0%} {'below' if change < 0 else 'above'} "
                       f"the calendar-expected level from {start} to {end} ({n} observations, p={p:.2g} after "
                       f"adjusting for {n_windows} windows tested): weekday, holidays and season do not explain it"),
        })
    return out
