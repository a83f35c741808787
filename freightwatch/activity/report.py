"""Markdown and HTML reports with charts: counts over time against their calendar-expected band.

For every zone and class with enough usable observations the report fits the baseline model and
draws one PNG: observations with their intervals (by method), the expected count and its
prediction band for the true count, festival windows and official holidays shaded, masked scenes
marked at the bottom, anomalous observations ringed and anomalous periods barred. Comparisons
asked for are tabulated (naive vs calendar-adjusted change, confounding reasons).
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from freightwatch.activity.baseline import ModelConfig, ModelError, anomalies, fit_baseline, observations
from freightwatch.activity.calendar import SiteCalendar
from freightwatch.activity.compare import CompareError, Comparison, compare
from freightwatch.activity.table import USABLE, local_dates

log = logging.getLogger(__name__)

WINDOW_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22")
METHOD_STYLE = {"density": dict(fmt="o", color="#1f77b4", ms=4), "detector": dict(fmt="D", color="black", ms=5)}


@dataclass
class ReportResult:
    """Files and findings of a report.

    Attributes:
        files: Written files by name (``report_md``, ``report_html``, ``anomalies_csv``, charts).
        anomalies: All anomalies found.
        comparisons: Comparisons made.
        skipped: ``zone/class: why`` for series without a chart.
    """

    files: dict[str, Path] = field(default_factory=dict)
    anomalies: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: list[Comparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def plot_series(model: Any, obs: pd.DataFrame, masked_days: list[Any], anoms: pd.DataFrame, calendar: SiteCalendar,
                path: Path, title: str, level: float = 0.9) -> Path:
    """Draw one zone/class chart (see the module docstring) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    days = list(obs["local_date"]) + list(masked_days)
    start, end = min(days) - timedelta(days=10), max(days) + timedelta(days=10)
    grid = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    # The band is drawn for working days (windows and holidays included) so weekends do not turn it into
    # a comb; the calendar-expected value of each observation's own day is marked beside it.
    pred = model.predict(grid, level=level, as_workday=True)
    x = pd.to_datetime(pd.Series(grid))
    fig, ax = plt.subplots(figsize=(12, 4.6), dpi=110)
    # Shaded calendar: windows by name, official holidays as thin grey spans.
    colours: dict[str, str] = {}
    for name, a, b, _desc in calendar.windows_between(start, end):
        first = name not in colours
        col = colours.setdefault(name, WINDOW_COLOURS[len(colours) % len(WINDOW_COLOURS)])
        ax.axvspan(pd.Timestamp(a), pd.Timestamp(b) + pd.Timedelta(days=1), color=col, alpha=0.13, lw=0,
                   label=f"{name.replace('_', ' ')} window" if first else None)
    for d, _c, _n in calendar.holidays_between(start, end):
        ax.axvspan(pd.Timestamp(d), pd.Timestamp(d) + pd.Timedelta(days=1), color="0.55", alpha=0.12, lw=0)
    ax.fill_between(x, pred["lower"], pred["upper"], color="#2ca02c", alpha=0.18, lw=0,
                    label=f"expected on a working day, {level:.0%} band (true count)")
    ax.plot(x, pred["expected"], color="#2ca02c", lw=1.2, label="expected on a working day (calendar model)")
    t = pd.to_datetime(pd.Series(list(obs["local_date"])))
    if len(obs):
        own = model.predict(list(obs["local_date"]), level=level)
        ax.plot(t, own["expected"], "_", color="#1a7f1a", ms=9, mew=2, label="expected on the observation's day")
    for method, grp in obs.groupby("method"):
        style = dict(METHOD_STYLE.get(str(method), dict(fmt="s", color="#17becf", ms=4)))
        tt = t[grp.index]
        yerr = np.vstack([(grp["count"] - grp["lower"]).clip(lower=0).fillna(0),
                          (grp["upper"] - grp["count"]).clip(lower=0).fillna(0)])
        ax.errorbar(tt, grp["count"], yerr=yerr, fmt=style["fmt"], color=style["color"], ms=style["ms"], lw=0.8,
                    capsize=0, alpha=0.85, label=f"{method} count ({len(grp)}) with interval")
    if masked_days:
        ax.plot(pd.to_datetime(pd.Series(masked_days)), np.zeros(len(masked_days)), "x", color="0.4", ms=5,
                label=f"masked by cloud/nodata ({len(masked_days)}), not counted")
    obs_an = anoms[anoms["kind"] == "observation"] if len(anoms) else anoms
    if len(obs_an):
        ax.plot(pd.to_datetime(pd.Series(list(obs_an["start"]))), obs_an["observed"], "o", mfc="none", mec="red",
                ms=13, mew=1.8, label="anomalous observation")
    per = anoms[anoms["kind"] == "period"] if len(anoms) else anoms
    top = max(float(np.nanmax(obs["upper"].to_numpy(float))) if len(obs) else 1.0, float(pred["upper"].max()))
    for i, (_, r) in enumerate(per.iterrows()):
        ax.plot([pd.Timestamp(r["start"]), pd.Timestamp(r["end"])], [top * 1.04] * 2, color="red", lw=4,
                solid_capstyle="butt", label="anomalous period" if i == 0 else None)
    holiday_proxy = plt.Rectangle((0, 0), 1, 1, color="0.55", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(holiday_proxy)
    labels.append("official holiday")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_ylim(bottom=min(0, ax.get_ylim()[0]), top=top * 1.1)
    ax.set_xlim(pd.Timestamp(start), pd.Timestamp(end))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=6, maxticks=14))
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_ylabel("objects in zone")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(axis="y", color="0.9")
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in r.to_numpy()) + " |")
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.0%}"


def comparison_table(comps: list[Comparison]) -> pd.DataFrame:
    """One row per comparison: sides, naive and adjusted change, CI, confounded and why."""
    rows = []
    for c in comps:
        lo, hi = c.adjusted_ci
        rows.append({"zone": c.zone, "class": c.cls, "before": f"{c.before.spec} (n={c.before.n})",
                     "after": f"{c.after.spec} (n={c.after.n})", "naive change": _pct(c.naive_change),
                     "adjusted change": _pct(c.adjusted_change),
                     f"{c.level:.0%} CI": f"{_pct(lo)} to {_pct(hi)}",
                     "significant": "yes" if c.significant else "no",
                     "confounded": "YES" if c.confounded else "no", "why": "; ".join(c.reasons) or "-"})
    return pd.DataFrame(rows)


def make_report(
    table: pd.DataFrame,
    calendar: SiteCalendar,
    out_dir: str | Path,
    site_name: str = "",
    pairs: list[tuple[str, str]] | None = None,
    comparisons: list[tuple[str, str, str, str]] | None = None,
    reference: str | None = None,
    level: float = 0.9,
    alpha: float = 0.01,
    config: ModelConfig | None = None,
) -> ReportResult:
    """Write ``report.md``, ``report.html``, one PNG per zone/class and ``anomalies.csv``.

    Args:
        table: Counts table.
        calendar: Site calendar.
        out_dir: Output folder.
        site_name: Name for titles.
        pairs: ``(zone, class)`` series to chart (default: every one in the table).
        comparisons: ``(zone, class, before, after)`` to tabulate.
        reference: Reference period of the baseline model (default: all observations).
        level: Level of the expected bands.
        alpha: Anomaly significance level.
        config: Model settings.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = ReportResult()
    if pairs is None:
        pairs = list(dict.fromkeys(zip(table["zone"], table["class"], strict=True)))
    blocks: list[tuple[str, Any]] = []
    days = local_dates(table["time"], calendar.config.timezone)
    title = f"freightwatch activity report: {site_name or 'site'}"
    blocks.append(("h1", title))
    blocks.append(("p", f"{len(table)} rows, {table['scene'].nunique() if 'scene' in table else '?'} scenes from "
                        f"{min(days)} to {max(days)}; countries {', '.join(calendar.countries)}; local time zone "
                        f"{calendar.config.timezone}. Masked rows (cloud/nodata) are shown but never counted as "
                        "zero. Expected bands come from a negative-binomial model with weekday, holiday-window, "
                        "season and trend terms that weighs each count by its measurement noise "
                        "(docs/activity.md)."))
    summary = []
    for zone, cls in pairs:
        sel = table[(table["zone"] == zone) & (table["class"] == cls)]
        usable = sel[sel["status"].isin(USABLE) & sel["count"].notna()]
        summary.append({"zone": zone, "class": cls, "observations": len(usable),
                        "masked": int((~sel["status"].isin(USABLE)).sum()),
                        "methods": ", ".join(sorted(set(usable["method"]))) or "-",
                        "mean count": f"{usable['count'].mean():.1f}" if len(usable) else "-"})
    blocks.append(("h2", "Series"))
    blocks.append(("table", pd.DataFrame(summary)))
    if comparisons:
        blocks.append(("h2", "Comparisons"))
        for zone, cls, before, after in comparisons:
            try:
                res.comparisons.append(compare(table, calendar, zone, cls, before, after, reference=reference,
                                               config=config))
            except (CompareError, ModelError) as exc:
                blocks.append(("p", f"{zone}/{cls} {before} vs {after}: not compared ({exc})"))
        blocks.append(("table", comparison_table(res.comparisons)))
        for c in res.comparisons:
            blocks.append(("p", c.summary() + (" Notes: " + "; ".join(c.notes) + "." if c.notes else "")))
    all_anoms = []
    blocks.append(("h2", "Counts over time"))
    for zone, cls in pairs:
        try:
            model = fit_baseline(table, zone, cls, calendar, reference=reference, config=config)
        except ModelError as exc:
            res.skipped.append(f"{zone}/{cls}: {exc}")
            blocks.append(("h3", f"{cls} in {zone}"))
            blocks.append(("p", f"No chart: {exc}"))
            continue
        obs = observations(table, zone, cls, calendar)
        an = anomalies(model, obs, alpha=alpha, level=level)
        all_anoms.append(an)
        sel = table[(table["zone"] == zone) & (table["class"] == cls)]
        masked = sel[~sel["status"].isin(USABLE) | sel["count"].isna()]
        masked_days = list(local_dates(masked["time"], calendar.config.timezone))
        png = plot_series(model, obs, masked_days, an, calendar, out / f"counts_{_safe(zone)}_{_safe(cls)}.png",
                          f"{cls}s in {zone} ({site_name})", level)
        res.files[f"chart_{zone}_{cls}"] = png
        blocks.append(("h3", f"{cls} in {zone}"))
        blocks.append(("img", png.name))
        s = model.summary()
        eff = ", ".join(f"{k.replace('day_', '').replace('win_', '').replace('_', ' ')} x{v['factor']:.2f}"
                        for k, v in s["terms"].items() if k.startswith(("day_", "win_", "holiday")))
        blocks.append(("p", f"Model on {s['n_reference']} observations ({s['reference'][0]} to "
                            f"{s['reference'][1]}): {eff or 'no calendar effects estimable'}; overdispersion "
                            f"alpha={s['alpha']:.3f}." + (" " + " ".join(s["notes"]) if s["notes"] else "")))
        if len(an):
            shown = an.assign(p_value=an["p_value"].map(lambda v: f"{v:.2g}"),
                              change=an["change"].map(_pct))[["kind", "start", "end", "n", "change", "p_value",
                                                               "reason"]]
            blocks.append(("table", shown))
        else:
            blocks.append(("p", f"No anomalies at the {alpha:.0%} level."))
    res.anomalies = pd.concat(all_anoms, ignore_index=True) if all_anoms else pd.DataFrame()
    an_path = out / "anomalies.csv"
    res.anomalies.to_csv(an_path, index=False)
    res.files["anomalies_csv"] = an_path
    if res.skipped:
        blocks.append(("h2", "Series without a model"))
        blocks.append(("p", "; ".join(res.skipped)))
    res.files["report_md"] = _write_md(blocks, out / "report.md")
    res.files["report_html"] = _write_html(blocks, out / "report.html", title)
    return res


def _write_md(blocks: list[tuple[str, Any]], path: Path) -> Path:
    parts = []
    for kind, val in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + val + "\n")
        elif kind == "p":
            parts.append(val + "\n")
        elif kind == "table":
            parts.append(_md_table(val))
        elif kind == "img":
            parts.append(f"![{val}]({val})\n")
    path.write_text("\n".join(parts))
    return path


def _write_html(blocks: list[tuple[str, Any]], path: Path, title: str) -> Path:
    body = []
    for kind, val in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(val)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(val)}</p>")
        elif kind == "table":
            body.append(val.to_html(index=False, border=0, classes="t", escape=True) if len(val)
                        else "<p><i>none</i></p>")
        elif kind == "img":
            body.append(f'<p><img src="{html.escape(val)}" alt="{html.escape(val)}"></p>')
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}"
             "table.t{border-collapse:collapse;font-size:0.9em}table.t td,table.t th{border-bottom:1px solid #ddd;"
             "padding:3px 8px;text-align:left;vertical-align:top}img{max-width:100%}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return path
