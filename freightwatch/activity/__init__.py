"""Activity analysis: from counts on many dated scenes to calendar-aware series, comparisons and reports.

* :mod:`~freightwatch.activity.site` - site files (YAML + zones GeoJSON): :func:`load_site`.
* :mod:`~freightwatch.activity.catalog` - scene catalogs (folder, CSV, STAC): :func:`read_catalog`.
* :mod:`~freightwatch.activity.run` - counting scenes (detector or density model by GSD): :func:`count_scene`.
* :mod:`~freightwatch.activity.table` - the tidy counts table (Parquet + CSV).
* :mod:`~freightwatch.activity.calendar` - holidays, make-up working days, festival windows.
* :mod:`~freightwatch.activity.baseline` - the negative-binomial count model, prediction intervals, anomalies.
* :mod:`~freightwatch.activity.compare` - naive vs calendar-adjusted change, confounding reasons.
* :mod:`~freightwatch.activity.simulate` - simulated sites with known truth.
* :mod:`~freightwatch.activity.report` - Markdown/HTML reports with charts.

See ``docs/activity.md``.
"""

from freightwatch.activity.catalog import CatalogEntry, read_catalog
from freightwatch.activity.site import Site, load_site

__all__ = ["CatalogEntry", "Site", "load_site", "read_catalog"]
