"""Batch throughput: scenes per minute with the local engine vs Ray on this machine.

Builds a small catalog of synthetic border-crossing sites seen by a simulated 3 m sensor (each a
different seed and date, same zones), then runs ``run_batch`` over it with the bundled density
weights: once with the local engine (one process) and once with Ray (``--workers`` actors on a
local Ray with as many CPUs). Each run starts from an empty output folder and is timed end to end
(model loading and, for Ray, starting Ray and its actors included); the per-scene worker seconds
are reported too, so the fixed start-up cost can be told apart from the per-scene cost. Both runs
must write identical tables, which is checked.

Usage:
    python benchmarks/batch_engines.py [--scenes 8] [--size-m 1500] [--workers 2] [--out runs/bench-batch]

The detector path is not timed here (``benchmarks/sliced_vs_sahi.py`` times it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freightwatch.batch import BatchConfig, Manifest, run_batch
from freightwatch.datasets.coarse import degrade_scene
from freightwatch.datasets.geo import write_zones
from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site


def build_catalog(root: Path, n: int, size_m: float, gsd: float) -> tuple[Path, Path]:
    """``n`` coarse synthetic scenes under ``root/catalog`` and a site file for their zones."""
    cat = root / "catalog"
    site_file = root / "site.yaml"
    if cat.is_dir() and len(list(cat.glob("*/scene.tif"))) == n and site_file.is_file():
        return cat, site_file
    shutil.rmtree(cat, ignore_errors=True)
    t0 = datetime(2016, 1, 4, 2, 30, tzinfo=UTC)
    for i in range(n):
        cfg = SiteConfig(size_m=size_m, gsd=1.0, seed=100 + i, activity=0.3 + 0.6 * (i % 4) / 3,
                         acquired=t0 + timedelta(days=9 * i))
        site = generate_site(cfg)
        hi = write_site(site, root / "hires" / f"s{i:02d}")
        degrade_scene(hi["image"], site.labels, gsd, cat / f"s{i:02d}", seed=i)
        (cat / f"s{i:02d}" / "density.tif").unlink()  # the simulated truth is not a scene
        if i == 0:  # each seed lays out its own site: the first one's zones serve all (throughput, not accuracy)
            write_zones(root / "zones.geojson", site.zones, cfg.crs)
    site_file.write_text("name: bench_site\ncountries: [CN, KP]\ntimezone: Asia/Shanghai\nzones: zones.geojson\n")
    return cat, site_file


def timed_run(catalog: Path, site: Path, out: Path, cfg: BatchConfig) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = run_batch(catalog, site, out, cfg)
    wall = time.perf_counter() - t0
    worker_s = sum(r.seconds for r in Manifest(out).latest.values() if r.status == "done")
    return {"scenes": res.done, "failed": len(res.failed), "wall_s": round(wall, 2),
            "scenes_per_min": round(res.done / wall * 60, 2), "worker_s_per_scene": round(worker_s / res.done, 3),
            **{f"engine_{k}": v for k, v in res.engine_stats.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--size-m", type=float, default=1500.0)
    ap.add_argument("--gsd", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-batch"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    catalog, site = build_catalog(args.out, args.scenes, args.size_m, args.gsd)
    print(f"catalog: {args.scenes} scenes of {args.size_m:g} m at {args.gsd:g} m ({time.perf_counter() - t0:.0f} s)")
    results = {}
    for engine in ("local", "ray"):
        cfg = BatchConfig(method="density", engine=engine, num_workers=args.workers, show_progress=False)
        results[engine] = timed_run(catalog, site, args.out / f"out-{engine}", cfg)
        print(engine, results[engine])
    same = (args.out / "out-local" / "counts.csv").read_bytes() == (args.out / "out-ray" / "counts.csv").read_bytes()
    report = {"written": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "scenes": args.scenes, "size_m": args.size_m, "gsd": args.gsd,
              "workers": args.workers, "results": results, "identical_tables": same}
    (args.out / "batch_engines.json").write_text(json.dumps(report, indent=2))
    print(f"{'engine':<8}{'scenes/min':>12}{'wall s':>9}{'s/scene in worker':>20}")
    for engine, r in results.items():
        print(f"{engine:<8}{r['scenes_per_min']:>12.1f}{r['wall_s']:>9.1f}{r['worker_s_per_scene']:>20.2f}")
    print(f"identical tables: {same}; report: {args.out / 'batch_engines.json'}")


if __name__ == "__main__":
    main()
