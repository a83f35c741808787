"""``freightwatch activity``: counts over time, calendar-aware baselines, comparisons and reports."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer
from rich.table import Table

from freightwatch.cli import app, console, stdout
from freightwatch.errors import FreightwatchError

activity_app = typer.Typer(
    help="Activity over time: count a scene catalog, simulate, compare periods with the calendar in view, report.",
    no_args_is_help=True,
)
app.add_typer(activity_app, name="activity")


class ActivityInputError(FreightwatchError):
    """A command-line value that cannot be used."""


def _site(path: str):
    from freightwatch.activity.site import load_site

    site = load_site(path)
    for w in site.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    return site


def _calendar_for(table_path: Path, site: str | None):
    """The table and its site calendar: ``--site``, else the Parquet metadata, else a bundled site of that name."""
    from freightwatch.activity.calendar import SiteCalendar
    from freightwatch.activity.site import BUNDLED_SITES, site_from_metadata
    from freightwatch.activity.table import read_table

    df, meta = read_table(table_path)
    if site:
        s = _site(site)
        return df, s.site_calendar(), s.name
    if meta.get("calendar"):
        name, cfg = site_from_metadata(meta)
        return df, SiteCalendar(cfg), name
    names = sorted(set(df["site"].dropna().astype(str))) if "site" in df else []
    if len(names) == 1 and names[0] in BUNDLED_SITES:
        s = _site(names[0])
        return df, s.site_calendar(), s.name
    raise ActivityInputError(f"{table_path}: the table does not carry its site's calendar (CSV): pass --site SITE")


def _pick(df, zone: str | None, cls: str | None) -> tuple[str, str]:
    pairs = sorted(set(zip(df["zone"].astype(str), df["class"].astype(str), strict=True)))
    if zone is None or cls is None:
        cand = [p for p in pairs if (zone is None or p[0] == zone) and (cls is None or p[1] == cls)]
        if len(cand) == 1:
            return cand[0]
        raise ActivityInputError(f"choose --zone and --class (the table has: {', '.join('/'.join(p) for p in pairs)})")
    return zone, cls


def _parse_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{name} expects YYYY-MM-DD, got {text!r}") from None


@activity_app.command("catalog")
def catalog_cmd(
    catalog: Path = typer.Argument(..., help="Folder of GeoTIFFs, a CSV, or a STAC ItemCollection JSON."),
    time_pattern: str | None = typer.Option(None, "--time-pattern", help="Filename time pattern, e.g. %Y%m%d_%H%M%S."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a catalog's scenes with their time, its source and GSD; report undated or unreadable scenes."""
    from freightwatch.activity.catalog import read_catalog

    entries = read_catalog(catalog, time_pattern)
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    table = Table(title=f"{len(entries)} scenes in {catalog}")
    for col in ("scene", "time (UTC)", "from", "GSD m", "problem"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.scene_id, e.time.strftime("%Y-%m-%d %H:%M") if e.time else "-", e.time_source or "-",
                      f"{e.gsd:.2f}" if e.gsd else "-",
                      e.error or ("no acquisition time: will not be counted" if e.time is None else ""))
    stdout.print(table)


@activity_app.command("run")
def run_cmd(
    catalog: Path = typer.Argument(..., help="Folder of GeoTIFFs, a CSV, or a STAC ItemCollection JSON."),
    site: str = typer.Option(..., "--site", help="Site YAML (or a bundled site name: border_crossing)."),
    out: Path = typer.Option(Path("runs/activity"), "--out",
                             help="Output folder (counts.parquet, counts.csv, run.json)."),
    method: str = typer.Option("auto", help="auto (by GSD), detector or density for every scene."),
    detector_max_gsd: float | None = typer.Option(None, "--detector-max-gsd",
                                                  help="GSD (m) up to which 'auto' uses the detector (site default)."),
    weights: Path | None = typer.Option(None, help="Detector weights (default: bundled, when present)."),
    density_weights: Path | None = typer.Option(None, "--density-weights", help="Density weights (default: bundled)."),
    min_valid: float | None = typer.Option(None, "--min-valid", min=0.0, max=1.0,
                                           help="Zones with less valid (clear) area are marked masked (site default)."),
    coverage: float = typer.Option(0.9, min=0.5, max=0.99, help="Coverage of the count intervals."),
    time_pattern: str | None = typer.Option(None, "--time-pattern", help="Filename time pattern, e.g. %Y%m%d_%H%M%S."),
    keep_maps: bool = typer.Option(False, "--keep-maps", help="Keep density maps / detections in OUT/scenes/."),
    force: bool = typer.Option(False, "--force", help="Run the density model outside its GSD range."),
) -> None:
    """Count every scene of a catalog at a site: one tidy table (Parquet and CSV)."""
    from freightwatch.activity.catalog import read_catalog
    from freightwatch.activity.run import RunConfig, run_catalog
    from freightwatch.inference.density import DensityRunConfig

    if method not in ("auto", "detector", "density"):
        raise typer.BadParameter("--method must be auto, detector or density")
    s = _site(site)
    entries = read_catalog(catalog, time_pattern)
    cfg = RunConfig(method=method, detector_max_gsd=detector_max_gsd, min_valid_fraction=min_valid, coverage=coverage,
                    density=DensityRunConfig(coverage=coverage, force=force, show_progress=False),
                    maps_dir=out / "scenes" if keep_maps else None)
    res = run_catalog(entries, s, out, cfg, weights=weights, density_weights=density_weights)
    df = res.table
    table = Table(title=f"{s.name}: {sum(res.methods.values())} of {len(entries)} scenes counted")
    for col in ("zone", "class", "observations", "masked", "mean count"):
        table.add_column(col, justify="left" if col in ("zone", "class") else "right")
    if len(df):
        for (z, c), g in df.groupby(["zone", "class"], sort=False):
            ok = g[g["status"] != "masked"]
            table.add_row(z, c, str(len(ok)), str(len(g) - len(ok)), f"{ok['count'].mean():.1f}" if len(ok) else "-")
    stdout.print(table)
    for p in res.problems:
        console.print(f"[yellow]left out:[/] {p['scene']}: {p['problem']}", highlight=False)
    for name, p in res.files.items():
        typer.echo(f"{name:>8}: {p}")


@activity_app.command("simulate")
def simulate_cmd(
    site: str = typer.Option(..., "--site", help="Site YAML (or a bundled site name: border_crossing)."),
    start: str = typer.Option(..., "--start", help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last day, YYYY-MM-DD."),
    shock: list[str] | None = typer.Option(None, "--shock", help="DATE:FRACTION, e.g. 2016-06-01:-0.4 for a 40 % "
                                                                  "drop from that day (repeatable)."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(..., "--out", help="Table path: writes OUT.parquet and OUT.csv."),
    zone: list[str] | None = typer.Option(None, "--zone", help="Only these zones (repeatable)."),
    highres: list[str] | None = typer.Option(None, "--highres-date", help="Also a high-resolution scene on this "
                                                                          "date (repeatable)."),
    coarse_every: float = typer.Option(7.0, "--coarse-every", help="Days between coarse scenes."),
    highres_per_year: float = typer.Option(4.0, "--highres-per-year", help="Random high-resolution scenes a year."),
    cloud: float = typer.Option(0.25, "--cloud", min=0.0, max=1.0, help="Chance that a scene is cloudy."),
) -> None:
    """Simulate a site's counts table (same schema as `activity run`) with the true expected counts."""
    from freightwatch.activity.simulate import Archive, SimulationConfig, parse_shock, simulate_site
    from freightwatch.activity.table import write_table

    s = _site(site)
    try:
        shocks = tuple(parse_shock(t) for t in shock or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    cfg = SimulationConfig(
        start=_parse_date(start, "--start"), end=_parse_date(end, "--end"), seed=seed, shocks=shocks,
        zones=tuple(zone or ()),
        archive=Archive(coarse_every_days=coarse_every, highres_per_year=highres_per_year, cloud_probability=cloud,
                        highres_dates=tuple(_parse_date(d, "--highres-date") for d in highres or [])),
    )
    try:
        df = simulate_site(s, cfg)
    except ValueError as exc:
        raise ActivityInputError(str(exc)) from exc
    paths = write_table(df, out, s.metadata())
    scenes = df["scene"].nunique()
    console.print(f"{scenes} simulated scenes ({(df.groupby('scene')['method'].first() == 'detector').sum()} "
                  f"high-resolution), {len(df)} rows, {(df['status'] == 'masked').sum()} masked", highlight=False)
    for p in paths:
        typer.echo(f"wrote {p}")


@activity_app.command("compare")
def compare_cmd(
    table: Path = typer.Argument(..., help="Counts table (.parquet or .csv) from `activity run` or `simulate`."),
    zone: str | None = typer.Option(None, "--zone", help="Zone."),
    cls: str | None = typer.Option(None, "--class", help="Class (truck, railcar, boat)."),
    before: str = typer.Option(..., "--before", help="DATE, DATE,DATE,... or START:END (also YYYY-MM, YYYY)."),
    after: str = typer.Option(..., "--after", help="DATE, DATE,DATE,... or START:END (also YYYY-MM, YYYY)."),
    site: str | None = typer.Option(None, "--site", help="Site file (default: the calendar stored in the table)."),
    reference: str | None = typer.Option(None, "--reference", help="Restrict the reference observations to a period."),
    level: float = typer.Option(0.95, min=0.5, max=0.999, help="Confidence level."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Naive vs calendar-adjusted change between two sets of dates, with confounding warnings."""
    from freightwatch.activity.compare import compare

    df, cal, _name = _calendar_for(table, site)
    z, c = _pick(df, zone, cls)
    res = compare(df, cal, z, c, before, after, reference=reference, level=level)
    if as_json:
        typer.echo(json.dumps(res.as_dict(), indent=2, default=str))
        return
    t = Table(title=f"{c}s in {z}: {before} vs {after}", show_header=False)
    lo, hi = res.adjusted_ci
    t.add_row("before", f"{res.before.n} obs, mean {res.before.mean:.1f} ({', '.join(res.before.methods)})")
    t.add_row("after", f"{res.after.n} obs, mean {res.after.mean:.1f} ({', '.join(res.after.methods)})")
    t.add_row("naive change", f"{res.naive_change:+.1%}")
    t.add_row("calendar-adjusted change", f"{res.adjusted_change:+.1%}  ({level:.0%} CI {lo:+.1%} to {hi:+.1%}, "
                                          f"p={res.p_value:.3g})")
    t.add_row("confounded", "[bold red]YES[/]" if res.confounded else "no")
    stdout.print(t)
    for r in res.reasons:
        stdout.print(f"  [red]![/] {r}", highlight=False)
    for n in res.notes:
        stdout.print(f"  note: {n}", highlight=False)
    stdout.print(res.summary(), highlight=False)


@activity_app.command("baseline")
def baseline_cmd(
    table: Path = typer.Argument(..., help="Counts table (.parquet or .csv)."),
    out: Path = typer.Option(Path("runs/activity-baseline"), "--out", help="Output folder."),
    zone: list[str] | None = typer.Option(None, "--zone", help="Only these zones (repeatable)."),
    site: str | None = typer.Option(None, "--site", help="Site file (default: the calendar stored in the table)."),
    reference: str | None = typer.Option(None, "--reference", help="Reference period, e.g. 2015-01-01:2015-12-31."),
    start: str | None = typer.Option(None, "--start", help="First day of the expected series (default: table start)."),
    end: str | None = typer.Option(None, "--end", help="Last day of the expected series (default: table end)."),
    level: float = typer.Option(0.9, min=0.5, max=0.999, help="Level of the intervals."),
) -> None:
    """Fit the calendar-aware model per zone and class: daily expected counts with intervals, and the effects."""
    import pandas as pd

    from freightwatch.activity.baseline import ModelError, fit_baseline
    from freightwatch.activity.table import local_dates

    df, cal, name = _calendar_for(table, site)
    days = local_dates(df["time"], cal.config.timezone)
    d0 = _parse_date(start, "--start") if start else min(days)
    d1 = _parse_date(end, "--end") if end else max(days)
    grid = list(pd.date_range(d0, d1, freq="D").date)
    out.mkdir(parents=True, exist_ok=True)
    frames, models = [], []
    for z, c in dict.fromkeys(zip(df["zone"], df["class"], strict=True)):
        if zone and z not in zone:
            continue
        try:
            m = fit_baseline(df, z, c, cal, reference=reference)
        except ModelError as exc:
            console.print(f"[yellow]skipped[/] {z}/{c}: {exc}", highlight=False)
            continue
        p = m.predict(grid, level=level)
        p.insert(0, "class", c)
        p.insert(0, "zone", z)
        p.insert(0, "site", name)
        frames.append(p)
        models.append(m.summary())
    if not frames:
        raise ActivityInputError(f"{table}: no zone/class has enough usable observations for a model")
    exp = pd.concat(frames, ignore_index=True)
    exp["local_date"] = exp["local_date"].astype(str)
    exp.to_csv(out / "expected.csv", index=False, float_format="%.4g")
    exp.to_parquet(out / "expected.parquet", index=False)
    (out / "model.json").write_text(json.dumps({"site": name, "models": models}, indent=2))
    t = Table(title=f"{name}: calendar effects (x factor on an ordinary working day)")
    for col in ("zone", "class", "n", "saturday", "sunday", "lunar new year", "golden week", "holiday", "alpha"):
        t.add_column(col, justify="left" if col in ("zone", "class") else "right")
    for s in models:
        def f(k: str, s=s) -> str:
            v = s["terms"].get(k)
            return f"{v['factor']:.2f}" if v else "-"
        t.add_row(s["zone"], s["class"], str(s["n_reference"]), f("day_saturday"), f("day_sunday"),
                  f("win_lunar_new_year"), f("win_golden_week"), f("holiday"), f"{s['alpha']:.3f}")
    stdout.print(t)
    for p in ("expected.csv", "expected.parquet", "model.json"):
        typer.echo(f"wrote {out / p}")


@activity_app.command("anomalies")
def anomalies_cmd(
    table: Path = typer.Argument(..., help="Counts table (.parquet or .csv)."),
    site: str | None = typer.Option(None, "--site", help="Site file (default: the calendar stored in the table)."),
    reference: str | None = typer.Option(None, "--reference", help="Reference period of the model."),
    alpha: float = typer.Option(0.01, min=1e-6, max=0.5, help="Significance level."),
    period_days: int = typer.Option(56, "--period-days", min=7, help="Length of the periods tested."),
    out: Path | None = typer.Option(None, "--out", help="Write the anomalies to this CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Observations and periods outside their calendar-expected range, with p-values and reasons."""
    import pandas as pd

    from freightwatch.activity.baseline import ModelError, anomalies, fit_baseline, observations

    df, cal, _name = _calendar_for(table, site)
    found = []
    for z, c in dict.fromkeys(zip(df["zone"], df["class"], strict=True)):
        try:
            m = fit_baseline(df, z, c, cal, reference=reference)
        except ModelError as exc:
            console.print(f"[yellow]skipped[/] {z}/{c}: {exc}", highlight=False)
            continue
        found.append(anomalies(m, observations(df, z, c, cal), alpha=alpha, period_days=period_days))
    res = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        res.to_csv(out, index=False)
    if as_json:
        typer.echo(json.dumps(json.loads(res.to_json(orient="records", date_format="iso")), indent=2))
        return
    if res.empty:
        stdout.print(f"no anomalies at the {alpha:g} level")
    for _, r in res.iterrows():
        stdout.print(f"[bold]{r['kind']}[/] {r['start']}..{r['end']}: {r['reason']}", highlight=False)


@activity_app.command("calendar")
def calendar_cmd(
    site: str = typer.Option(..., "--site", help="Site YAML (or a bundled site name: border_crossing)."),
    start: str = typer.Option(..., "--start", help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last day, YYYY-MM-DD."),
    out: Path | None = typer.Option(None, "--out", help="Write the day-by-day calendar context to this CSV."),
) -> None:
    """Holidays, make-up working days and festival windows at a site between two dates."""
    import pandas as pd

    s = _site(site)
    cal = s.site_calendar()
    d0, d1 = _parse_date(start, "--start"), _parse_date(end, "--end")
    if out is not None:
        ctx = cal.context(list(pd.date_range(d0, d1, freq="D").date))
        out.parent.mkdir(parents=True, exist_ok=True)
        ctx.to_csv(out, index=False)
        typer.echo(f"wrote {out}")
    t = Table(title=f"{s.name}: calendar {d0} to {d1} ({', '.join(cal.countries)}; primary {cal.primary})")
    for col in ("from", "to", "what"):
        t.add_column(col)
    for _name, a, b, desc in cal.windows_between(d0, d1):
        t.add_row(str(a), str(b), f"[bold]window[/] {desc}")
    for d, code, n in cal.holidays_between(d0, d1):
        t.add_row(str(d), "", f"{code}: {n}")
    ctx = cal.context(list(pd.date_range(d0, d1, freq="D").date))
    for d in ctx.loc[ctx["makeup_workday"], "local_date"]:
        t.add_row(str(d), "", f"{cal.primary}: make-up working day ({d.strftime('%A')})")
    stdout.print(t)


@activity_app.command("report")
def report_cmd(
    table: Path = typer.Argument(..., help="Counts table (.parquet or .csv)."),
    out: Path = typer.Option(Path("runs/activity-report"), "--out", help="Output folder."),
    site: str | None = typer.Option(None, "--site", help="Site file (default: the calendar stored in the table)."),
    zone: list[str] | None = typer.Option(None, "--zone", help="Only these zones (repeatable)."),
    before: str | None = typer.Option(None, "--before", help="Compare: dates or period before."),
    after: str | None = typer.Option(None, "--after", help="Compare: dates or period after."),
    cls: str | None = typer.Option(None, "--class", help="Compare only this class."),
    reference: str | None = typer.Option(None, "--reference", help="Reference period of the model."),
    alpha: float = typer.Option(0.01, min=1e-6, max=0.5, help="Anomaly significance level."),
) -> None:
    """Markdown + HTML report with a PNG per zone/class: counts, expected band, holidays, anomalies, comparisons."""
    from freightwatch.activity.report import make_report

    df, cal, name = _calendar_for(table, site)
    pairs = [p for p in dict.fromkeys(zip(df["zone"], df["class"], strict=True))
             if (not zone or p[0] in zone) and (cls is None or p[1] == cls)]
    if not pairs:
        raise ActivityInputError(f"{table}: no rows for the chosen zones/class")
    comps = None
    if before or after:
        if not (before and after):
            raise typer.BadParameter("--before and --after go together")
        comps = [(z, c, before, after) for z, c in pairs]
    res = make_report(df, cal, out, name, pairs=pairs, comparisons=comps, reference=reference, alpha=alpha)
    for c in res.comparisons:
        stdout.print(c.summary(), highlight=False)
    console.print(f"{len(res.anomalies)} anomalies; {len(res.skipped)} series without a model", highlight=False)
    for k in ("report_md", "report_html", "anomalies_csv"):
        typer.echo(f"wrote {res.files[k]}")
