"""Calendar context of every observation: weekends, official holidays, make-up working days, festival windows.

Official holidays, weekends and make-up working days (China moves working days onto weekends around
its holidays) come from the `holidays` package, per country. Movable festivals whose effect on
freight outlasts the official days off get *windows* around an anchor date: by default the Lunar New
Year window runs from a week before Spring Festival to the Lantern Festival (15th day of the first
lunar month), and the two Golden Weeks (National Day, Labour Day) are padded by a day on each side.
Windows are configurable per site (:class:`Window`).

Everything here is a pure function of dates: :meth:`SiteCalendar.context` turns a list of local
dates into one row each with its calendar context, which the count model uses as covariates and the
comparison uses to explain confounding.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import holidays
import pandas as pd

log = logging.getLogger(__name__)

WEEKDAY_NAMES: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ANCHORS: tuple[str, ...] = ("lunar_new_year", "lantern_festival")
"""Named movable anchors; any other anchor is a fixed ``MM-DD`` date."""

FALLBACK_COUNTRIES: dict[str, str] = {"KP": "North Korea (DPRK)"}
"""Valid codes that older `holidays` releases lack: used with weekends and festival windows only, and a warning."""


class CalendarError(ValueError):
    """A calendar setting that cannot be used (unknown country, bad window)."""


@dataclass(frozen=True)
class Window:
    """A period around a festival (or fixed dates) during which activity is expected to differ.

    Windows with the same ``name`` share one coefficient in the count model (e.g. both Golden Weeks).

    Attributes:
        name: Window name, e.g. ``lunar_new_year``; used as the model term and in reasons.
        anchor: ``lunar_new_year``, ``lantern_festival`` or a fixed ``MM-DD``; ``None`` with ``start``/``end``.
        before: Days before the anchor included.
        after: Days after the anchor included.
        start: First day of an explicit (one-off) window.
        end: Last day of an explicit window.
        label: Plain-language description for reports.
    """

    name: str
    anchor: str | None = None
    before: int = 0
    after: int = 0
    start: date | None = None
    end: date | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise CalendarError(f"window name {self.name!r} must be lower-case letters, digits and _")
        if self.anchor is None and (self.start is None or self.end is None):
            raise CalendarError(f"window {self.name!r} needs an anchor or both start and end")
        if self.anchor is not None and self.anchor not in ANCHORS and not re.fullmatch(r"\d{2}-\d{2}", self.anchor):
            raise CalendarError(f"window {self.name!r}: anchor {self.anchor!r} is not one of "
                                f"{', '.join(ANCHORS)} or a fixed MM-DD date")
        if self.before < 0 or self.after < 0:
            raise CalendarError(f"window {self.name!r}: before/after must be >= 0 days")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise CalendarError(f"window {self.name!r}: end {self.end} is before start {self.start}")

    def spans(self, year: int) -> list[tuple[date, date]]:
        """The window's ``(first, last)`` days whose anchor falls in ``year``."""
        if self.anchor is None:
            assert self.start is not None and self.end is not None
            return [(self.start, self.end)] if self.start.year == year else []
        a = anchor_date(self.anchor, year)
        return [(a - timedelta(days=self.before), a + timedelta(days=self.after))]

    def describe(self) -> str:
        """Plain-language description."""
        if self.label:
            return self.label
        if self.anchor is None:
            return f"{self.name.replace('_', ' ')} ({self.start} to {self.end})"
        return f"{self.name.replace('_', ' ')} ({self.before} days before to {self.after} days after {self.anchor})"


DEFAULT_WINDOWS: tuple[Window, ...] = (
    Window("lunar_new_year", "lunar_new_year", before=7, after=14,
           label="Lunar New Year: from a week before Spring Festival to the Lantern Festival"),
    Window("golden_week", "10-01", before=1, after=7, label="National Day Golden Week (Oct 1-7) plus a day each side"),
    Window("golden_week", "05-01", before=1, after=5, label="Labour Day holiday (May 1-5) plus a day each side"),
)
"""Default windows: the Lunar New Year travel rush to the Lantern Festival, and the Golden Weeks."""


def anchor_date(anchor: str, year: int) -> date:
    """The Gregorian date of a window anchor in ``year``.

    ``lunar_new_year`` is the first day of the first month of the Chinese lunisolar calendar (the
    same day as Korean Seollal in almost every year), ``lantern_festival`` its 15th day.
    """
    if anchor in ("lunar_new_year", "lantern_festival"):
        lny = _lunar_new_year(year)
        return lny + timedelta(days=14) if anchor == "lantern_festival" else lny
    month, day = (int(v) for v in anchor.split("-"))
    return date(year, month, day)


def _lunar_new_year(year: int) -> date:
    try:  # the holidays package's lunisolar tables (1901-2100)
        from holidays.calendars import _ChineseLunisolar

        d, exact = _ChineseLunisolar().lunar_new_year_date(year)
        if d is not None:
            return d
    except Exception:  # noqa: BLE001 - private API of holidays; fall back to its public CN calendar
        pass
    cn = holidays.country_holidays("CN", years=year, language="en_US")
    days = sorted(d for d, n in cn.items() if "Spring Festival" in n or "Chinese New Year" in n)
    if not days:
        raise CalendarError(f"no Lunar New Year date known for {year}")
    return days[0]


def supported_country(code: str) -> bool:
    """Whether the installed `holidays` package has a calendar for ``code``."""
    return code in holidays.list_supported_countries()


def check_countries(codes: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """Validate country codes; returns the upper-cased codes and warnings for fallback countries.

    Raises:
        CalendarError: a code that is neither in `holidays` nor a known fallback.
    """
    out, warns = [], []
    for raw in codes:
        code = str(raw).strip().upper()
        if supported_country(code):
            out.append(code)
        elif code in FALLBACK_COUNTRIES:
            out.append(code)
            warns.append(f"holidays {holidays.__version__} has no calendar for {code} ({FALLBACK_COUNTRIES[code]}): "
                         f"its official holidays are ignored; weekends (Sat/Sun unless set) and the festival windows "
                         f"still apply. Upgrade the holidays package for {code} holidays")
        else:
            raise CalendarError(f"unknown country code {raw!r}: expected an ISO 3166-1 alpha-2 code that the "
                                f"holidays package supports (e.g. CN, KP, KR, RU)")
    if not out:
        raise CalendarError("at least one country is needed for the calendar")
    return tuple(dict.fromkeys(out)), warns


@dataclass
class CalendarConfig:
    """Which calendars matter at a site and how festival effects are windowed.

    Attributes:
        countries: ISO codes whose official holidays matter (e.g. ``("CN", "KP")``).
        primary: Country whose working week (weekend and make-up working days) defines the day type;
            default the first country (for a border crossing, the side whose customs sets the rhythm).
        weekend: Weekend weekdays (0 = Monday) per country, overriding `holidays`' defaults.
        windows: Festival windows (default :data:`DEFAULT_WINDOWS`).
        holiday_before: Days before each official holiday also counted as holiday.
        holiday_after: Days after each official holiday also counted as holiday.
        timezone: IANA time zone of the site; acquisition times (UTC) are turned into local dates.
    """

    countries: tuple[str, ...] = ("CN",)
    primary: str | None = None
    weekend: dict[str, tuple[int, ...]] = field(default_factory=dict)
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    holiday_before: int = 0
    holiday_after: int = 0
    timezone: str = "UTC"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored in tables so later commands rebuild the same calendar)."""
        return {
            "countries": list(self.countries), "primary": self.primary,
            "weekend": {k: list(v) for k, v in self.weekend.items()},
            "windows": [{"name": w.name, "anchor": w.anchor, "before": w.before, "after": w.after,
                         "start": w.start.isoformat() if w.start else None,
                         "end": w.end.isoformat() if w.end else None, "label": w.label} for w in self.windows],
            "holiday_before": self.holiday_before, "holiday_after": self.holiday_after, "timezone": self.timezone,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalendarConfig:
        """Inverse of :meth:`as_dict` (also the ``calendar:`` section of a site file)."""
        windows = data.get("windows")
        wins = DEFAULT_WINDOWS if windows is None else tuple(
            Window(name=str(w["name"]), anchor=w.get("anchor"), before=int(w.get("before", 0)),
                   after=int(w.get("after", 0)), start=_as_date(w.get("start")), end=_as_date(w.get("end")),
                   label=str(w.get("label") or "")) for w in windows
        )
        weekend = {str(k).upper(): tuple(_weekday_index(d) for d in v) for k, v in (data.get("weekend") or {}).items()}
        return cls(
            countries=tuple(str(c).upper() for c in data.get("countries", ("CN",))),
            primary=(str(data["primary"]).upper() if data.get("primary") else None), weekend=weekend, windows=wins,
            holiday_before=int(data.get("holiday_before", 0)), holiday_after=int(data.get("holiday_after", 0)),
            timezone=str(data.get("timezone", "UTC")),
        )


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise CalendarError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _weekday_index(value: Any) -> int:
    if isinstance(value, int) and 0 <= value <= 6:
        return value
    text = str(value).strip().lower()
    for i, n in enumerate(WEEKDAY_NAMES):
        if n.startswith(text[:3]) and len(text) >= 3:
            return i
    raise CalendarError(f"not a weekday: {value!r} (use mon..sun or 0-6, 0 = Monday)")


CONTEXT_COLUMNS: tuple[str, ...] = (
    "local_date", "weekday", "day_type", "weekend", "makeup_workday", "holiday", "holiday_names", "window",
    "window_detail", "category",
)
"""Columns of :meth:`SiteCalendar.context`."""


class SiteCalendar:
    """Calendar context for a site's local dates.

    Args:
        config: Countries, windows and time zone.

    Raises:
        CalendarError: unknown country codes or bad windows.
    """

    def __init__(self, config: CalendarConfig) -> None:
        self.config = config
        self.countries, self.warnings = check_countries(config.countries)
        self.primary = (config.primary or self.countries[0]).upper()
        if self.primary not in self.countries:
            raise CalendarError(f"primary country {self.primary} is not one of the site's countries "
                                f"{', '.join(self.countries)}")
        for w in self.warnings:
            log.warning(w)
        self._cache: dict[str, Any] = {}

    def _holidays(self, code: str, years: Sequence[int]) -> Any:
        if not supported_country(code):
            return None
        h = self._cache.get(code)
        if h is None:
            h = holidays.country_holidays(code, years=list(years), language="en_US")
            self._cache[code] = h
        else:
            for y in years:
                _ = date(y, 1, 1) in h  # `in` populates a missing year (expand=True)
        return h

    def weekend_days(self, code: str) -> tuple[int, ...]:
        """Weekend weekdays (0 = Monday) of a country: the site's override, else `holidays`' default."""
        if code in self.config.weekend:
            return self.config.weekend[code]
        h = self._holidays(code, [2000])
        return tuple(sorted(h.weekend)) if h is not None else (5, 6)

    @cached_property
    def _window_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w.name for w in self.config.windows))

    @property
    def window_names(self) -> tuple[str, ...]:
        """Distinct window names, in configuration order (model terms)."""
        return self._window_names

    def windows_between(self, start: date, end: date) -> list[tuple[str, date, date, str]]:
        """Every window ``(name, first, last, description)`` overlapping ``start..end``."""
        out = []
        for year in range(start.year - 1, end.year + 2):
            for w in self.config.windows:
                for a, b in w.spans(year):
                    if b >= start and a <= end:
                        out.append((w.name, a, b, w.describe()))
        return sorted(out, key=lambda t: t[1])

    def holidays_between(self, start: date, end: date) -> list[tuple[date, str, str]]:
        """Official holidays ``(date, country, name)`` between two dates (inclusive)."""
        years = list(range(start.year, end.year + 1))
        out = []
        for code in self.countries:
            h = self._holidays(code, years)
            if h is None:
                continue
            out.extend((d, code, n) for d, n in h.items() if start <= d <= end)
        return sorted(out)

    def context(self, dates: Iterable[date]) -> pd.DataFrame:
        """One row of calendar context per local date (duplicates allowed, order kept).

        Columns (:data:`CONTEXT_COLUMNS`): ``local_date``; ``weekday`` (monday..sunday); ``day_type``
        (``workday``, or the weekday name of a weekend day in the primary country that is not a
        make-up working day); ``weekend`` and ``makeup_workday`` (primary country); ``holiday``
        (an official holiday in any of the countries, padded by ``holiday_before/after``) with
        ``holiday_names`` (``CN: National Day; KP: ...``); ``window`` (the first configured window
        containing the date, or ``""``) with ``window_detail``; ``category`` (the window name, else
        ``holiday``, else ``none``: the model's holiday term).
        """
        days = [d if isinstance(d, date) else pd.Timestamp(d).date() for d in dates]
        if not days:
            return pd.DataFrame(columns=list(CONTEXT_COLUMNS))
        lo, hi = min(days), max(days)
        pad_lo = lo - timedelta(days=self.config.holiday_after + 1)
        pad_hi = hi + timedelta(days=self.config.holiday_before + 1)
        hol: dict[date, list[str]] = {}
        for d, code, name in self.holidays_between(pad_lo, pad_hi):
            for k in range(-self.config.holiday_before, self.config.holiday_after + 1):
                hol.setdefault(d + timedelta(days=k), []).append(f"{code}: {name}" + (
                    "" if k == 0 else f" ({'+' if k > 0 else ''}{k} d)"))
        makeup: set[date] = set()
        ph = self._holidays(self.primary, list(range(lo.year, hi.year + 1)))
        if ph is not None:
            makeup = {d for d in getattr(ph, "weekend_workdays", set()) if lo <= d <= hi}
        weekend = set(self.weekend_days(self.primary))
        wins = self.windows_between(lo, hi)
        rows = []
        for d in days:
            wd = d.weekday()
            is_makeup = d in makeup
            is_weekend = wd in weekend and not is_makeup
            names = sorted(set(hol.get(d, [])))
            win = next(((n, a, b, desc) for n, a, b, desc in wins if a <= d <= b), None)
            category = win[0] if win else ("holiday" if names else "none")
            rows.append({
                "local_date": d, "weekday": WEEKDAY_NAMES[wd],
                "day_type": WEEKDAY_NAMES[wd] if is_weekend else "workday",
                "weekend": is_weekend, "makeup_workday": is_makeup, "holiday": bool(names),
                "holiday_names": "; ".join(names), "window": win[0] if win else "",
                "window_detail": f"{win[3]}: {win[1]} to {win[2]}" if win else "", "category": category,
            })
        return pd.DataFrame(rows, columns=list(CONTEXT_COLUMNS))

    def describe_day(self, row: Mapping[str, Any]) -> list[str]:
        """Plain-language reasons why a day (a :meth:`context` row) is not an ordinary working day."""
        d = row["local_date"]
        out = []
        if row["window"]:
            out.append(f"{d} ({row['weekday'].title()}) is in the {row['window_detail']}")
        if row["holiday"]:
            out.append(f"{d} is an official holiday ({row['holiday_names']})")
        if row["weekend"]:
            out.append(f"{d} is a {row['weekday'].title()}, a weekend day in {self.primary}")
        if row["makeup_workday"]:
            out.append(f"{d} is a {row['weekday'].title()} but an official make-up working day in {self.primary}")
        return out
