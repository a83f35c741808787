"""The tidy counts table shared by ``activity run``, ``activity simulate`` and everything downstream.

One row per scene, zone and class. Columns (:data:`COLUMNS`, in order; extra columns are kept):

========================  =============================================================================
``site``                  site name
``zone``                  zone name
``class``                 truck, railcar or boat
``time``                  acquisition time, UTC (ISO 8601 with ``Z`` in CSV)
``count``                 objects in the zone (scaled to the whole zone when partly covered); empty when masked
``lower``, ``upper``      interval of the count (coverage in ``coverage``)
``method``                ``detector`` or ``density`` (the counting method, also for simulated rows)
``gsd``                   ground sample distance of the scene, metres
``valid_fraction``        fraction of the zone with valid pixels (not nodata, not cloud)
``status``                ``ok``; ``partial`` (some of the zone invalid, count scaled up from the valid part);
                          ``masked`` (too little valid area: not counted, *not* zero)
``scene``                 scene file or id
``coverage``              nominal coverage of ``lower``-``upper`` (e.g. 0.9)
``count_observed``        count over the valid part only
``local_date`` ...        calendar context (see :data:`freightwatch.activity.calendar.CONTEXT_COLUMNS`)
========================  =============================================================================

Simulated tables add ``expected`` (the true expected count), ``true_count`` and ``simulated``.
Tables are written as Parquet (with the site's calendar in the file metadata) and CSV.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from freightwatch.activity.calendar import SiteCalendar
from freightwatch.datasets.geo import atomic_write_bytes
from freightwatch.errors import InputFileError

COLUMNS: tuple[str, ...] = (
    "site", "zone", "class", "time", "count", "lower", "upper", "method", "gsd", "valid_fraction", "status",
    "scene", "coverage", "count_observed",
)
"""Columns of every counts table, in order."""

REQUIRED: tuple[str, ...] = ("zone", "class", "time", "count", "lower", "upper", "method")
"""Columns a table must have to be analysed."""

CALENDAR_COLUMNS: tuple[str, ...] = ("local_date", "weekday", "day_type", "holiday_names", "window", "category")
"""Calendar context written with each row."""

STATUSES: tuple[str, ...] = ("ok", "partial", "masked")
USABLE: tuple[str, ...] = ("ok", "partial")
"""Statuses whose counts are used by the model (masked rows are kept, never as zeros)."""

META_KEY = b"freightwatch.site"


class TableError(InputFileError):
    """A counts table that cannot be used."""


def local_dates(times: pd.Series, timezone: str) -> pd.Series:
    """Local calendar dates of UTC times at the site."""
    t = pd.to_datetime(times, utc=True)
    return t.dt.tz_convert(ZoneInfo(timezone)).dt.date


def add_calendar(df: pd.DataFrame, calendar: SiteCalendar) -> pd.DataFrame:
    """Add (or refresh) the calendar context columns of each row from its acquisition time."""
    out = df.copy()
    days = local_dates(out["time"], calendar.config.timezone)
    ctx = calendar.context(list(days))
    for col in CALENDAR_COLUMNS:
        out[col] = ctx[col].to_numpy() if len(ctx) else []
    return out


def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Standard columns first (those present), then calendar context, then the rest."""
    first = [c for c in COLUMNS if c in df.columns]
    cal = [c for c in CALENDAR_COLUMNS if c in df.columns and c not in first]
    rest = [c for c in df.columns if c not in first and c not in cal]
    return df[first + cal + rest]


def table_paths(path: str | Path) -> tuple[Path, Path]:
    """``(parquet, csv)`` paths for a table path given with either suffix, or none."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix.lower() in (".parquet", ".csv") else p
    return base.with_name(base.name + ".parquet"), base.with_name(base.name + ".csv")


def write_table(df: pd.DataFrame, path: str | Path, site_meta: Mapping[str, Any] | None = None) -> list[Path]:
    """Write a counts table as Parquet (site metadata in the schema) and CSV, atomically.

    Args:
        df: The table (:data:`COLUMNS` at least where known).
        path: ``name.parquet``, ``name.csv`` or ``name``: both ``name.parquet`` and ``name.csv`` are written.
        site_meta: :meth:`freightwatch.activity.site.Site.metadata`, stored in the Parquet file.

    Returns:
        The two files.
    """
    pq_path, csv_path = table_paths(path)
    out = order_columns(df.copy())
    out["time"] = pd.to_datetime(out["time"], utc=True)
    if "local_date" in out.columns:
        out["local_date"] = out["local_date"].astype(str)
    tbl = pa.Table.from_pandas(out, preserve_index=False)
    if site_meta:
        meta = dict(tbl.schema.metadata or {})
        meta[META_KEY] = json.dumps(dict(site_meta)).encode()
        tbl = tbl.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(tbl, buf)
    atomic_write_bytes(pq_path, buf.getvalue())
    csv_df = out.copy()
    csv_df["time"] = csv_df["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_bytes(csv_path, csv_df.to_csv(index=False, float_format="%.4g").encode())
    # The atomic write goes through a private temporary file (0600): give tables the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    for p in (pq_path, csv_path):
        os.chmod(p, 0o666 & ~umask)
    return [pq_path, csv_path]


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a counts table (Parquet or CSV).

    Returns:
        The table (``time`` as UTC timestamps, ``count``/``lower``/``upper`` as floats) and the site
        metadata stored with it (empty for CSV).

    Raises:
        TableError: missing file, unreadable file, missing columns or unparseable times.
    """
    p = Path(path)
    if not p.is_file():
        pq_path, csv_path = table_paths(p)
        p = pq_path if pq_path.is_file() else csv_path
        if not p.is_file():
            raise TableError(path, "table does not exist")
    meta: dict[str, Any] = {}
    try:
        if p.suffix.lower() == ".parquet":
            tbl = pq.read_table(p)
            raw = (tbl.schema.metadata or {}).get(META_KEY)
            if raw:
                meta = json.loads(raw)
            df = tbl.to_pandas()
        else:
            df = pd.read_csv(p, keep_default_na=True, dtype={"zone": str, "class": str, "method": str})
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise TableError(p, f"not a readable table ({str(exc).splitlines()[0][:200]})") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise TableError(p, f"missing column(s) {', '.join(missing)} (a table from `freightwatch activity run` "
                            f"or `simulate` has {', '.join(COLUMNS)})")
    try:
        df["time"] = pd.to_datetime(df["time"], utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise TableError(p, f"column 'time' has values that are not ISO times ({exc})") from exc
    for c in ("count", "lower", "upper", "gsd", "valid_fraction", "coverage"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if "status" not in df.columns:
        df["status"] = "ok"
    df["status"] = df["status"].fillna("ok").astype(str)
    if "coverage" not in df.columns:
        df["coverage"] = 0.9
    if "site" not in df.columns:
        df["site"] = meta.get("name", "")
    return df, meta
