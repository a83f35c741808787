"""Site files: what is counted where, and whose calendar matters.

A site is a YAML file next to a zones GeoJSON (:func:`freightwatch.datasets.geo.read_zones` format:
polygons with ``name``, ``kind`` and ``classes`` properties, in any CRS with a ``crs`` member, else
EPSG:4326)::

    name: border_crossing                  # required; written into every table row
    description: Dandong (CN) / Sinuiju (KP) river crossing
    countries: [CN, KP]                    # required; ISO codes whose holidays matter
    timezone: Asia/Shanghai                # IANA zone: UTC acquisition times -> local dates
    zones: border_crossing_zones.geojson   # required; relative to this file
    classes:                               # optional: override the classes counted per zone
      bridge: [truck]
    calendar:                              # optional (defaults: see freightwatch.activity.calendar)
      primary: CN                          # working week (weekend, make-up days) of this country
      weekend: {KP: [sun]}                 # override a country's weekend
      holiday_after: 0                     # pad official holidays by days
      windows:                             # replaces the default windows
        - {name: lunar_new_year, anchor: lunar_new_year, before: 7, after: 14}
        - {name: golden_week, anchor: "10-01", before: 1, after: 7}
    methods:                               # optional
      detector_max_gsd: 1.5                # scenes at or finer than this (m) -> detector; coarser -> density
      min_valid_fraction: 0.5              # zones with less valid (not nodata/cloud) area are marked, not counted
      detector_rel_error: 0.1              # detector count interval: +-(10 % + 1 object)
    simulate:                              # optional: typical counts on an ordinary working day
      typical: {lot_1: {truck: 40}, rail_yard: {railcar: 30}}

:func:`load_site` validates everything and raises :class:`SiteError` naming the file and the problem.
The module is shared by ``freightwatch activity`` and batch runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from freightwatch.activity.calendar import CalendarConfig, CalendarError, SiteCalendar
from freightwatch.datasets.geo import Zone, read_zones
from freightwatch.errors import InputFileError, ZonesError
from freightwatch.taxonomy import CLASSES

BUNDLED_SITES = ("border_crossing",)
"""Site files shipped in ``freightwatch/sites`` (usable by name: ``--site border_crossing``)."""

DEFAULT_DETECTOR_MAX_GSD = 1.5
"""Scenes with GSD up to this many metres go to the detector (trained at 0.5 m, +-25 % jitter, resampled
up to 1.5 m), coarser ones to the density model (trained 3-5 m)."""

TYPICAL_BY_KIND: dict[str, dict[str, float]] = {
    "lot": {"truck": 30.0}, "bridge": {"truck": 6.0}, "road": {"truck": 12.0}, "rail_yard": {"railcar": 30.0},
    "river": {"boat": 4.0}, "water": {"boat": 4.0}, "dock": {"boat": 3.0}, "shore": {"boat": 2.0},
}
"""Typical counts per zone kind on an ordinary working day, for simulation when the site file gives none."""


class SiteError(InputFileError):
    """A site file that is malformed or inconsistent."""


@dataclass
class Site:
    """A monitored site.

    Attributes:
        name: Site name (the ``site`` column of tables).
        path: The YAML file (``None`` for sites built in code).
        countries: ISO codes whose calendars matter.
        timezone: IANA time zone of the site.
        zones: Zones in ``zones_crs``, each with the classes counted in it.
        zones_crs: CRS of the zone geometries.
        zones_path: The zones GeoJSON (passed to the detector and density model, which reproject it).
        calendar: Calendar settings (countries, windows, time zone).
        description: Free text.
        detector_max_gsd: Method choice by GSD (see :data:`DEFAULT_DETECTOR_MAX_GSD`).
        min_valid_fraction: Zones with less valid area in a scene are marked ``masked``.
        detector_rel_error: Relative half-width of the detector count interval (plus one object).
        typical: Typical ``{zone: {class: count}}`` on an ordinary working day (simulation).
        warnings: Things to tell the user (e.g. a country calendar fallback).
    """

    name: str
    path: Path | None
    countries: tuple[str, ...]
    timezone: str
    zones: list[Zone]
    zones_crs: str | None
    zones_path: Path | None
    calendar: CalendarConfig
    description: str = ""
    detector_max_gsd: float = DEFAULT_DETECTOR_MAX_GSD
    min_valid_fraction: float = 0.5
    detector_rel_error: float = 0.1
    typical: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def zone_classes(self) -> list[tuple[str, str]]:
        """Every ``(zone, class)`` counted at the site, in file order (zones without classes: all classes)."""
        return [(z.name, c) for z in self.zones for c in (z.classes or CLASSES)]

    def zone_classes_of(self, zone: str) -> tuple[str, ...]:
        """Classes counted in one zone (all classes when its ``classes`` is empty)."""
        return self.zone(zone).classes or CLASSES

    def zone(self, name: str) -> Zone:
        """The zone called ``name``.

        Raises:
            KeyError: no such zone (the message lists the zones).
        """
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(f"site {self.name} has no zone {name!r} (zones: {', '.join(z.name for z in self.zones)})")

    def typical_count(self, zone: str, cls: str) -> float:
        """Typical count of ``cls`` in ``zone`` on an ordinary working day (site file, else by zone kind)."""
        if zone in self.typical and cls in self.typical[zone]:
            return float(self.typical[zone][cls])
        kind = self.zone(zone).kind
        return float(TYPICAL_BY_KIND.get(kind, {}).get(cls, 5.0))

    def site_calendar(self) -> SiteCalendar:
        """A :class:`SiteCalendar` for this site."""
        return SiteCalendar(self.calendar)

    def metadata(self) -> dict[str, Any]:
        """What tables store about their site, so later commands rebuild its calendar without the file."""
        return {"name": self.name, "path": str(self.path) if self.path else None, "countries": list(self.countries),
                "timezone": self.timezone, "calendar": self.calendar.as_dict()}


def bundled_site_path(name: str) -> Path:
    """Path of a site file shipped with freightwatch (``border_crossing``)."""
    return Path(str(resources.files("freightwatch") / "sites" / f"{name}.yaml"))


def resolve_site_path(path: str | Path) -> Path:
    """A site file path, or the bundled site of that name (``border_crossing``)."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and str(path) in BUNDLED_SITES:
        return bundled_site_path(str(path))
    return p


def load_site(path: str | Path) -> Site:
    """Read and validate a site file (YAML + zones GeoJSON).

    Args:
        path: The YAML file, or the name of a bundled site (``border_crossing``).

    Returns:
        The :class:`Site`.

    Raises:
        SiteError: unreadable YAML, missing or wrong fields, unknown country codes or time zones,
            classes freightwatch does not count, or a zones file that cannot be read.
    """
    path = resolve_site_path(path)
    if not path.is_file():
        raise SiteError(path, "site file does not exist" + (
            f" (bundled sites: {', '.join(BUNDLED_SITES)})" if path.suffix in ("", ".yaml", ".yml") else ""))
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SiteError(path, f"not a readable YAML file ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise SiteError(path, "expected a YAML mapping with name, countries and zones")
    return site_from_dict(data, path)


def site_from_dict(data: Mapping[str, Any], path: Path | None = None, zones: list[Zone] | None = None,
                   zones_crs: str | None = None) -> Site:
    """Build a :class:`Site` from a parsed site file (``zones`` given directly for sites made in code).

    Raises:
        SiteError: as :func:`load_site`.
    """
    where = path or Path("<site>")
    known = {"name", "description", "countries", "timezone", "zones", "classes", "calendar", "methods", "simulate"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SiteError(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SiteError(where, "'name' is required (a non-empty string)")
    countries = data.get("countries")
    if isinstance(countries, str):
        countries = [countries]
    if not isinstance(countries, list) or not countries:
        raise SiteError(where, "'countries' is required: a list of ISO codes such as [CN, KP]")
    tz = str(data.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SiteError(where, f"unknown time zone {tz!r} (use an IANA name such as Asia/Shanghai)") from None
    cal_data = dict(data.get("calendar") or {})
    if not isinstance(data.get("calendar") or {}, dict):
        raise SiteError(where, "'calendar' must be a mapping")
    cal_data.update({"countries": countries, "timezone": tz})
    try:
        calendar = CalendarConfig.from_dict(cal_data)
        cal = SiteCalendar(calendar)
    except (CalendarError, KeyError, TypeError, ValueError) as exc:
        raise SiteError(where, f"calendar: {exc}") from exc
    calendar.countries = cal.countries
    # zones
    zones_path: Path | None = None
    if zones is None:
        zref = data.get("zones")
        if not isinstance(zref, str) or not zref:
            raise SiteError(where, "'zones' is required: the path of a zones GeoJSON, relative to the site file")
        zones_path = (where.parent / zref) if path is not None else Path(zref)
        if not zones_path.is_file():
            raise SiteError(where, f"zones file {zones_path} does not exist")
        try:
            zones, zones_crs = read_zones(zones_path)
        except ZonesError:
            raise
    if not zones:
        raise SiteError(where, "the site has no zones")
    overrides = data.get("classes") or {}
    if not isinstance(overrides, dict):
        raise SiteError(where, "'classes' must map zone names to lists of classes")
    names = {z.name for z in zones}
    for zname, cls in overrides.items():
        if zname not in names:
            raise SiteError(where, f"'classes' names zone {zname!r}, which is not in the zones file "
                                   f"({', '.join(sorted(names))})")
        if isinstance(cls, str):
            cls = [cls]
        for z in zones:
            if z.name == zname:
                z.classes = tuple(cls)
    for z in zones:
        bad = [c for c in z.classes if c not in CLASSES]
        if bad:
            raise SiteError(where, f"zone {z.name!r} counts unknown class(es) {', '.join(map(str, bad))} "
                                   f"(freightwatch counts {', '.join(CLASSES)})")
    methods = data.get("methods") or {}
    sim = data.get("simulate") or {}
    if not isinstance(methods, dict) or not isinstance(sim, dict):
        raise SiteError(where, "'methods' and 'simulate' must be mappings")
    try:
        max_gsd = float(methods.get("detector_max_gsd", DEFAULT_DETECTOR_MAX_GSD))
        min_valid = float(methods.get("min_valid_fraction", 0.5))
        rel = float(methods.get("detector_rel_error", 0.1))
    except (TypeError, ValueError) as exc:
        raise SiteError(where, f"methods: {exc}") from None
    if not 0.0 <= min_valid <= 1.0:
        raise SiteError(where, f"methods.min_valid_fraction must be within [0, 1], got {min_valid}")
    typical: dict[str, dict[str, float]] = {}
    for zname, per in (sim.get("typical") or {}).items():
        if zname not in names or not isinstance(per, dict):
            raise SiteError(where, f"simulate.typical: {zname!r} is not a zone with a class mapping")
        typical[zname] = {str(c): float(v) for c, v in per.items()}
    return Site(
        name=name.strip(), path=path, countries=cal.countries, timezone=tz, zones=zones, zones_crs=zones_crs,
        zones_path=zones_path, calendar=calendar, description=str(data.get("description") or ""),
        detector_max_gsd=max_gsd, min_valid_fraction=min_valid, detector_rel_error=rel, typical=typical,
        warnings=list(cal.warnings),
    )


def site_from_metadata(meta: Mapping[str, Any]) -> tuple[str, CalendarConfig]:
    """Site name and calendar stored in a table's metadata (see :meth:`Site.metadata`)."""
    return str(meta.get("name", "")), CalendarConfig.from_dict(meta.get("calendar") or {})
