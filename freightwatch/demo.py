"""The demo behind ``make demo``: a synthetic border-crossing site, end to end, offline.

It generates a site at 0.5 m with exact labels and zones, renders an overlay, runs the bundled
detector on the 0.5 m scene (GeoJSON, counts per zone, overlay PNG), simulates the 3 m sensor with
density targets, runs the bundled density model on the 3 m scene, and prints the true counts per
zone next to the detector's and the density model's (with its 90 % interval), so a new user sees
every stage produce files they can open. Model steps are skipped when their weights are absent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import geometry_mask

from freightwatch.datasets.coarse import SensorModel, degrade_scene
from freightwatch.datasets.geo import Zone, count_by_zone, zone_of_points
from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site
from freightwatch.taxonomy import CLASSES
from freightwatch.viz import draw_annotations, save_png


@dataclass
class DemoResult:
    """Files and figures of a demo run.

    Attributes:
        files: Name -> path of every file written.
        true_counts: (zone, class) -> objects present (ground truth, 0.5 m labels).
        density_counts: (zone, class) -> integral of the 3 m density target over the zone.
        model_counts: (zone, class) -> (count, lower, upper) from the density model at 3 m.
        detector_counts: (zone, class) -> detections at 0.5 m (empty without detector weights).
        boat_states: (zone, state) -> detected boats by state (docked / undocked / unknown).
        true_boat_states: (zone, state) -> true boats by state.
    """

    files: dict[str, Path] = field(default_factory=dict)
    true_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    density_counts: dict[tuple[str, str], float] = field(default_factory=dict)
    model_counts: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict)
    detector_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    boat_states: Counter[tuple[str, str]] = field(default_factory=Counter)
    true_boat_states: Counter[tuple[str, str]] = field(default_factory=Counter)


def density_zone_sums(density_path: Path, zones: list[Zone]) -> dict[tuple[str, str], float]:
    """Integral of each density band over each zone.

    A pixel belongs to the first zone (file order) containing its centre, as objects do in
    :func:`count_by_zone`, so overlapping zones (a bridge over a river) are not counted twice.
    """
    out: dict[tuple[str, str], float] = {}
    with rasterio.open(density_path) as ds:
        dens = ds.read()
        names = [d or CLASSES[i] for i, d in enumerate(ds.descriptions)]
        claimed = np.zeros((ds.height, ds.width), dtype=bool)
        for z in zones:
            inside = ~geometry_mask([z.geometry], out_shape=(ds.height, ds.width), transform=ds.transform)
            inside &= ~claimed
            claimed |= inside
            for b, cls in enumerate(names):
                out[(z.name, cls)] = float(dens[b][inside].sum())
    return out


def run_demo(out_dir: str | Path = "runs/demo", seed: int = 0, size_m: float = 1000.0) -> DemoResult:
    """Run the demo and write everything under ``out_dir``.

    Args:
        out_dir: Output folder.
        seed: Site seed.
        size_m: Site side in metres (0.5 m pixels).
    """
    out = Path(out_dir)
    res = DemoResult()
    site = generate_site(SiteConfig(size_m=size_m, gsd=0.5, seed=seed, activity=0.7))
    res.files.update({f"site_{k}": v for k, v in write_site(site, out / "site").items()})
    res.files["labels_png"] = save_png(
        out / "site_labels.png", draw_annotations(site.image, site.labels.annotations, thickness=2), max_side=2000
    )
    res.true_counts = count_by_zone(site.labels, site.zones)
    cen = site.labels.centers()
    mx, my = site.labels.transform @ (cen[:, 0], cen[:, 1])
    zone_of = zone_of_points(np.column_stack([mx, my]), site.zones)
    for a, z in zip(site.labels.annotations, zone_of, strict=True):
        if a.cls == "boat":
            res.true_boat_states[(z or "outside", a.state.value)] += 1
    from freightwatch.models.detector import bundled_detector

    if bundled_detector().is_file():
        from freightwatch.inference.detect import DetectConfig, detect_scene, write_detections
        from freightwatch.models.detector import Detector

        det = detect_scene(res.files["site_image"], Detector.load(None), DetectConfig(),
                           zones_path=res.files["site_zones"])
        res.files.update({f"detect_{k}": v for k, v in
                          write_detections(det, res.files["site_image"], out / "detect_0.5m").items()})
        for (z, c, state), n in det.counts().items():
            if z != "all":
                res.detector_counts[(z, c)] += n
                if c == "boat":
                    res.boat_states[(z, state)] += n
    coarse = degrade_scene(res.files["site_image"], site.labels, 3.0, out / "coarse_3m",
                           sensor=SensorModel(gsd=3.0), seed=seed)
    res.files.update({f"coarse_{k}": v for k, v in coarse.items()})
    res.density_counts = density_zone_sums(coarse["density"], site.zones)
    from freightwatch.models.density import bundled_density

    if bundled_density().is_file():
        from freightwatch.inference.density import density_to_dir

        est = density_to_dir(coarse["scene"], out / "density_3m", zones=res.files["site_zones"])
        res.files.update({f"density_{k}": v for k, v in est.files.items()})
        res.model_counts = {(r["zone"], r["class"]): (float(r["count"]), float(r["lower"]), float(r["upper"]))
                            for r in est.rows}
    return res
