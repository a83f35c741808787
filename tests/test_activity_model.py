"""The count model, comparisons and anomalies on simulated sites with known truth."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from freightwatch.activity.baseline import ModelError, anomalies, fit_baseline, observations
from freightwatch.activity.compare import CompareError, Selector, compare, parse_selector
from freightwatch.activity.simulate import Archive, Effects, SimulationConfig, parse_shock, simulate_site
from freightwatch.activity.site import load_site
from freightwatch.activity.table import COLUMNS

SITE = load_site("border_crossing")
CAL = SITE.site_calendar()
BEFORE_IMAGE = date(2015, 1, 28)  # an ordinary Wednesday
HOLIDAY_IMAGE = date(2016, 2, 13)  # Saturday in the Spring Festival window (the seed story)


def _sim(seed: int, shock=(), start=date(2015, 1, 1), end=date(2016, 12, 31), **archive):
    archive.setdefault("highres_dates", (BEFORE_IMAGE, HOLIDAY_IMAGE))
    cfg = SimulationConfig(start, end, seed=seed, zones=("lot_1",), shocks=tuple(shock), archive=Archive(**archive))
    return simulate_site(SITE, cfg)


def test_selectors():
    assert parse_selector("2016-02-13").dates == (date(2016, 2, 13),)
    s = parse_selector("2016-02-13,2015-02-14")
    assert s.dates == (date(2015, 2, 14), date(2016, 2, 13)) and not s.is_period
    p = parse_selector("2016-01-15:2016-03-02")
    assert (p.start, p.end) == (date(2016, 1, 15), date(2016, 3, 2))
    assert parse_selector("2016-02..2016-03").end == date(2016, 3, 31)
    assert parse_selector("2016").start == date(2016, 1, 1) and parse_selector("2016-02").end == date(2016, 2, 29)
    for bad in ("yesterday", "2016-03-01:2016-01-01", ""):
        with pytest.raises(CompareError):
            parse_selector(bad)


def test_simulated_table_has_the_run_schema_truth_and_masked_rows():
    df = _sim(0)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert {"expected", "true_count", "simulated", "local_date", "window"} <= set(df.columns)
    assert set(df["method"]) == {"density", "detector"} and set(df["status"]) <= {"ok", "partial", "masked"}
    masked = df[df["status"] == "masked"]
    assert len(masked) > 5 and masked["count"].isna().all()  # cloud: marked, never zero
    assert df.equals(_sim(0)) and not df.equals(_sim(1))
    hol = df[df["local_date"] == HOLIDAY_IMAGE]
    assert (hol["window"] == "lunar_new_year").all() and (hol["status"] == "ok").all()
    # A 40 % shock shows in the true expected counts from its date on.
    shocked = _sim(0, shock=[parse_shock("2016-07-01:-40%")])
    after = df["local_date"] >= date(2016, 7, 1)
    assert np.allclose(shocked.loc[after, "expected"], 0.6 * df.loc[after, "expected"])
    assert np.allclose(shocked.loc[~after, "expected"], df.loc[~after, "expected"])


def test_model_recovers_the_calendar_effects():
    cfg = SimulationConfig(date(2014, 1, 1), date(2016, 12, 31), seed=5, zones=("lot_4",),
                           archive=Archive(coarse_every_days=4, coarse_jitter_days=2))
    df = simulate_site(SITE, cfg)
    model = fit_baseline(df, "lot_4", "truck", CAL)
    terms = model.summary()["terms"]
    truth = Effects()
    for term, true in (("day_saturday", truth.weekday["saturday"]), ("day_sunday", truth.weekday["sunday"]),
                       ("win_lunar_new_year", truth.windows["lunar_new_year"]), ("holiday", truth.holiday)):
        lo, hi = terms[term]["factor_95"]
        assert lo < true < hi, (term, lo, hi)
    pred = model.predict([date(2016, 3, 9), date(2016, 2, 10)])  # ordinary Wednesday vs Spring Festival
    assert pred["expected"][1] < 0.6 * pred["expected"][0]
    assert (pred["lower"] <= pred["expected"]).all() and (pred["expected"] <= pred["upper"]).all()


def test_holiday_image_vs_weekday_a_year_earlier_is_confounded_and_adjusted_ci_includes_zero():
    # No true change; a weekday image a year before is compared with a Spring Festival weekend image.
    results = [compare(_sim(seed), CAL, "lot_1", "truck", BEFORE_IMAGE.isoformat(), HOLIDAY_IMAGE.isoformat())
               for seed in range(20)]
    assert all(c.confounded for c in results)
    assert np.median([c.naive_change for c in results]) < -0.6  # what the two pictures seem to say
    includes_zero = [c.adjusted_ci[0] < 0 < c.adjusted_ci[1] for c in results]
    assert sum(includes_zero) >= 17, includes_zero  # a 95 % interval; 18 of these 20 sites in practice
    c = results[0]
    text = " ".join(c.reasons)
    assert "Lunar New Year" in text and "Saturday, a weekend day" in text and "different weekdays" in text
    assert not c.significant
    d = c.as_dict()
    assert {"naive_change", "adjusted_change", "adjusted_ci", "confounded", "reasons"} <= set(d)
    assert len(d["adjusted_ci"]) == 2 and d["confounded"] is True and all(isinstance(r, str) for r in d["reasons"])


def test_ordinary_weekdays_in_the_same_season_are_not_confounded():
    df = _sim(3, highres_dates=(date(2015, 3, 18), date(2016, 3, 16)))
    c = compare(df, CAL, "lot_1", "truck", "2015-03-18", "2016-03-16")
    assert not c.confounded and c.reasons == []


def _after_dates(df, start: date, n: int = 20) -> list[date]:
    ok = df[(df["method"] == "density") & df["status"].isin(["ok", "partial"])]
    return sorted(d for d in set(ok["local_date"]) if d >= start)[:n]


def test_a_40_percent_drop_is_detected_from_about_20_coarse_observations():
    d0 = date(2016, 6, 1)
    detected, false_alarms = [], []
    for seed in range(10):
        for shock, out in (((d0, -0.4),), detected), ((), false_alarms):
            df = _sim(seed, shock=shock)
            after = _after_dates(df, d0)
            assert len(after) == 20 and (after[-1] - d0).days < 200
            before = Selector("year earlier", d0.replace(year=2015), after[-1].replace(year=2015))
            c = compare(df, CAL, "lot_1", "truck", before, Selector("after", dates=tuple(after)))
            out.append(c.significant and c.adjusted_ci[1] < 0 if shock else c.significant)
            if shock:
                assert -0.65 < c.adjusted_change < -0.15
    assert sum(detected) >= 9, detected
    assert sum(false_alarms) <= 2, false_alarms


def test_anomalies_find_the_dropped_period_with_a_pre_drop_reference():
    d0 = date(2016, 6, 1)
    df = _sim(4, shock=[(d0, -0.5)])
    model = fit_baseline(df, "lot_1", "truck", CAL, reference="2015-01-01:2016-05-31")
    an = anomalies(model, observations(df, "lot_1", "truck", CAL))
    periods = an[an["kind"] == "period"]
    assert len(periods) >= 1 and (periods["start"] >= d0 - timedelta(days=30)).all()
    assert (periods["change"] < -0.25).all() and "below the calendar-expected level" in periods["reason"].iloc[0]
    flat = fit_baseline(_sim(4), "lot_1", "truck", CAL)
    assert (anomalies(flat, observations(_sim(4), "lot_1", "truck", CAL))["kind"] != "period").all()


def test_comparison_errors_and_masked_sides():
    df = _sim(0)
    with pytest.raises(CompareError, match="share observation"):
        compare(df, CAL, "lot_1", "truck", "2016-01:2016-03", "2016-02")
    with pytest.raises(CompareError, match="no usable observation"):
        compare(df, CAL, "lot_1", "truck", "2015-01-28", "2016-02-14")
    with pytest.raises(ModelError, match="no rows for zone 'lot_9'"):
        compare(df, CAL, "lot_9", "truck", "2015-01-28", "2016-02-13")
    masked_day = sorted(set(df.loc[df["status"] == "masked", "local_date"]))[0]
    with pytest.raises(CompareError, match="masked by cloud"):
        compare(df, CAL, "lot_1", "truck", masked_day.isoformat(), "2016-02-13")
    # Weekly coarse images across a season against a year earlier: notes the masked ones, not confounded by season.
    c = compare(df, CAL, "lot_1", "truck", "2015-06-01:2015-08-31", "2016-06-01:2016-08-31")
    assert not any("season" in r for r in c.reasons)
    assert any("masked" in n for n in c.notes) or c.before.masked + c.after.masked == 0
    assert math.isfinite(c.adjusted_change)


def test_unestimated_window_widens_the_interval():
    # Without any coarse archive, nothing outside the two sides can estimate the Spring Festival effect.
    df = _sim(0, coarse_every_days=0, highres_per_year=3, cloud_probability=0.0)
    c = compare(df, CAL, "lot_1", "truck", BEFORE_IMAGE.isoformat(), HOLIDAY_IMAGE.isoformat())
    lo, hi = c.adjusted_ci
    assert c.confounded and lo < 0 < hi
    assert any("lunar new year effect could not be estimated" in n for n in c.notes)
