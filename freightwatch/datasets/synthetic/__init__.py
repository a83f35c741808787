"""Procedural border-crossing scenes: the bundled demo data and the detector's training data.

A site has a river with a road bridge, customs truck lots, a rail yard, quays and piers, roads,
buildings, fields and trees, drawn as an overhead satellite-like RGB image at any GSD, with one
oriented label per truck, railcar and boat (cars and containers are unlabelled distractors) and
the site's zones (lots, bridge, rail yard, river, docks, main roads) in the scene CRS.

Example::

    from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site

    site = generate_site(SiteConfig(size_m=1000, gsd=0.5, seed=3, activity=0.8))
    write_site(site, "data/demo")  # scene.tif, labels.json, zones.geojson
"""

from freightwatch.datasets.synthetic.layout import Layout, Sun, Vehicle, plan_site
from freightwatch.datasets.synthetic.render import render_layout
from freightwatch.datasets.synthetic.site import (
    DEFAULT_ORIGIN,
    SiteConfig,
    SyntheticSite,
    generate_site,
    site_zones,
    write_site,
)

__all__ = [
    "DEFAULT_ORIGIN", "Layout", "SiteConfig", "Sun", "SyntheticSite", "Vehicle", "generate_site", "plan_site",
    "render_layout", "site_zones", "write_site",
]
