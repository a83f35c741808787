"""Validation of `freightwatch activity` on simulated sites with known truth: false alarms and power.

For each of N simulated sites (default 200; truck counts in one customs lot of the demo site, two
years of daily activity, 2015-2016) the true level, season, overdispersion and calendar effects are
drawn at random; the archive is sparse like a real one (a coarse 3 m scene about weekly, 25 % of
them cloudy, about four 0.5 m scenes a year, plus 0.5 m scenes on 2015-01-28, an ordinary Wednesday,
and 2016-02-13, a Spring Festival Saturday). Each site is simulated twice with the same seed:
without change, and with a true 40 % drop from 2016-06-01. Then:

* holiday image vs weekday a year earlier (no change): is it flagged confounded, and does the
  calendar-adjusted 95 % CI include 0? (the naive change is reported too);
* 20 usable coarse observations after 2016-06-01 against (a) the same weeks a year earlier and
  (b) the same length of time just before: false alarms (adjusted CI excludes 0 without change)
  and power (CI below 0 with the drop), at the 5 % level;
* anomaly periods (baseline fitted before 2016-06-01, alpha 1 %): sites with any anomalous period
  after 2016-06-01, without and with the drop.

Prints the figures and writes them as JSON (``--out``). About 1 s per site on one CPU core::

    python benchmarks/activity_validation.py --sites 200 --out runs/activity-validation/validation.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from freightwatch.activity.baseline import ModelError, anomalies, fit_baseline, observations
from freightwatch.activity.compare import CompareError, Selector, compare
from freightwatch.activity.simulate import Archive, Effects, SimulationConfig, simulate_site
from freightwatch.activity.site import load_site

SHOCK_DATE = date(2016, 6, 1)
WEEKDAY_IMAGE, HOLIDAY_IMAGE = date(2015, 1, 28), date(2016, 2, 13)
ZONE, CLS = "lot_1", "truck"


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score 95 % interval of a proportion."""
    if n == 0:
        return [math.nan, math.nan]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def draw_site(i: int) -> tuple[float, Effects]:
    """Random truth of site ``i``: typical working-day count and calendar effects."""
    rng = np.random.default_rng(90_000 + i)
    eff = Effects(
        weekday={"saturday": rng.uniform(0.6, 0.85), "sunday": rng.uniform(0.4, 0.7)},
        windows={"lunar_new_year": rng.uniform(0.25, 0.5), "golden_week": rng.uniform(0.5, 0.8)},
        holiday=rng.uniform(0.6, 0.9), season_amplitude=rng.uniform(0.0, 0.25),
        season_peak_doy=int(rng.integers(1, 366)), trend_per_year=0.0, alpha=rng.uniform(0.01, 0.08),
    )
    return float(rng.uniform(15, 120)), eff


def one_site(site, cal, i: int) -> dict:
    """All experiments on site ``i``."""
    typical, eff = draw_site(i)
    site.typical = {ZONE: {CLS: typical}}
    out: dict = {"site": i, "typical": typical}
    tables = {}
    for name, shocks in (("null", ()), ("drop", ((SHOCK_DATE, -0.4),))):
        cfg = SimulationConfig(date(2015, 1, 1), date(2016, 12, 31), seed=i, shocks=shocks, effects=eff, zones=(ZONE,),
                               archive=Archive(highres_dates=(WEEKDAY_IMAGE, HOLIDAY_IMAGE)))
        tables[name] = simulate_site(site, cfg)
    # Holiday image vs an ordinary weekday a year earlier, no change.
    c = compare(tables["null"], cal, ZONE, CLS, WEEKDAY_IMAGE.isoformat(), HOLIDAY_IMAGE.isoformat())
    out["holiday"] = {"confounded": c.confounded, "ci_includes_zero": c.adjusted_ci[0] < 0 < c.adjusted_ci[1],
                      "naive": c.naive_change, "adjusted": c.adjusted_change}
    for name, df in tables.items():
        ok = df[(df["method"] == "density") & df["status"].isin(["ok", "partial"])]
        after = sorted(d for d in set(ok["local_date"]) if d >= SHOCK_DATE)[:20]
        a = Selector("20 coarse after", dates=tuple(after))
        last = after[-1]
        designs = {
            "year_on_year": Selector("same weeks a year earlier", SHOCK_DATE.replace(year=2015),
                                     last.replace(year=2015)),
            "adjacent": Selector("just before", SHOCK_DATE - timedelta(days=(last - SHOCK_DATE).days + 1),
                                 SHOCK_DATE - timedelta(days=1)),
        }
        for design, b in designs.items():
            try:
                r = compare(df, cal, ZONE, CLS, b, a)
                out[f"{name}_{design}"] = {"significant": r.significant, "below": r.adjusted_ci[1] < 0,
                                           "adjusted": r.adjusted_change, "naive": r.naive_change,
                                           "confounded": r.confounded, "n_after": r.after.n, "n_before": r.before.n}
            except (CompareError, ModelError) as exc:
                out[f"{name}_{design}"] = {"error": str(exc)}
        try:
            m = fit_baseline(df, ZONE, CLS, cal, reference=f"2015-01-01:{SHOCK_DATE - timedelta(days=1)}")
            an = anomalies(m, observations(df, ZONE, CLS, cal), alpha=0.01)
            per = an[(an["kind"] == "period") & (an["end"] >= SHOCK_DATE)]
            out[f"{name}_anomaly_period"] = bool(len(per))
        except ModelError as exc:
            out[f"{name}_anomaly_period"] = None
            out[f"{name}_anomaly_error"] = str(exc)
    return out


def rate(rows: list[dict], key: str, field: str) -> dict:
    vals = [r[key][field] for r in rows if isinstance(r.get(key), dict) and field in r[key]]
    k, n = int(sum(vals)), len(vals)
    return {"rate": k / n if n else math.nan, "k": k, "n": n, "ci95": wilson(k, n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("runs/activity-validation/validation.json"))
    args = ap.parse_args()
    site = load_site("border_crossing")
    cal = site.site_calendar()
    t0 = time.time()
    rows = []
    for i in range(args.sites):
        rows.append(one_site(site, cal, i))
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{args.sites} sites, {time.time() - t0:.0f} s", flush=True)
    flags = [r["null_anomaly_period"] for r in rows if r["null_anomaly_period"] is not None]
    hits = [r["drop_anomaly_period"] for r in rows if r["drop_anomaly_period"] is not None]
    res = {
        "sites": args.sites, "seconds": round(time.time() - t0, 1), "python": platform.python_version(),
        "holiday_vs_weekday": {
            "confounded": rate(rows, "holiday", "confounded"),
            "adjusted_ci_includes_zero": rate(rows, "holiday", "ci_includes_zero"),
            "naive_change_median": float(np.median([r["holiday"]["naive"] for r in rows])),
            "adjusted_change_median": float(np.median([r["holiday"]["adjusted"] for r in rows])),
        },
        "false_alarm_5pct": {d: rate(rows, f"null_{d}", "significant") for d in ("year_on_year", "adjacent")},
        "power_40pct_drop_5pct": {d: rate(rows, f"drop_{d}", "below") for d in ("year_on_year", "adjacent")},
        "adjusted_change_median_drop": {d: float(np.median([r[f"drop_{d}"]["adjusted"] for r in rows
                                                            if "adjusted" in r[f"drop_{d}"]]))
                                        for d in ("year_on_year", "adjacent")},
        "after_observations_median": float(np.median([r["drop_year_on_year"].get("n_after", np.nan) for r in rows])),
        "anomaly_period_alpha_1pct": {
            "false_alarm_sites": {"rate": sum(flags) / len(flags), "k": sum(flags), "n": len(flags),
                                  "ci95": wilson(sum(flags), len(flags))},
            "detected_sites": {"rate": sum(hits) / len(hits), "k": sum(hits), "n": len(hits),
                               "ci95": wilson(sum(hits), len(hits))},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": res, "sites": rows}, indent=1, default=str))
    h = res["holiday_vs_weekday"]
    print(f"\n{args.sites} simulated sites, {res['seconds']} s")
    print(f"holiday image vs weekday a year earlier (no change): confounded {h['confounded']['rate']:.1%}, "
          f"adjusted 95% CI includes 0 in {h['adjusted_ci_includes_zero']['rate']:.1%}; median naive change "
          f"{h['naive_change_median']:+.0%}, median adjusted {h['adjusted_change_median']:+.0%}")
    for d in ("year_on_year", "adjacent"):
        fa, pw = res["false_alarm_5pct"][d], res["power_40pct_drop_5pct"][d]
        print(f"{d:>13}: false alarms at 5% {fa['rate']:.1%} (95% CI {fa['ci95'][0]:.1%}-{fa['ci95'][1]:.1%}); "
              f"power for a 40% drop {pw['rate']:.1%} (95% CI {pw['ci95'][0]:.1%}-{pw['ci95'][1]:.1%}); "
              f"median adjusted change under the drop {res['adjusted_change_median_drop'][d]:+.0%}")
    ap_ = res["anomaly_period_alpha_1pct"]
    print(f"anomaly periods after the date (alpha 1%): {ap_['false_alarm_sites']['rate']:.1%} of sites without "
          f"change, {ap_['detected_sites']['rate']:.1%} with the drop")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
