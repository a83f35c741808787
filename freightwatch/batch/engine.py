"""Batch runs over scene catalogs: resumable, idempotent, fault-isolated, local or on Ray.

:func:`run_batch` counts every scene of a catalog at a site (detector or density model per scene,
:func:`freightwatch.activity.run.count_scene`) and writes, under the output folder ``DIR``:

* ``scenes/<scene>-<hash>.csv``: the tidy rows of one scene (site, zone, class, time, count, lower,
  upper, method, gsd, valid_fraction, ...), written atomically (temporary file, then ``os.replace``)
  the moment the scene is done;
* ``manifest.jsonl``: one record per scene (see :mod:`freightwatch.batch.manifest`), so a rerun
  skips finished scenes and redoes the rest;
* ``failures.csv``: scenes that could not be counted, with the reason (the batch goes on);
* ``counts.parquet`` / ``counts.csv``: every finished scene of the catalog in one table, with the
  site's calendar context (the ``freightwatch activity`` table format);
* ``batch.json``: settings, engine, scene counts and throughput of the last run.

Only the driver process writes files; workers return rows. The scene files and the table are the
same whatever the engine (each scene is counted by the same function with the same models).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from freightwatch import __version__
from freightwatch._progress import progress
from freightwatch.batch.manifest import (
    FAILURES,
    Manifest,
    Record,
    file_digest,
    file_state,
    settings_key,
    write_failures,
)
from freightwatch.datasets.geo import atomic_write_bytes
from freightwatch.errors import FreightwatchError, InputFileError

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "ray")
METHODS: tuple[str, ...] = ("auto", "detector", "density")
SCENES_DIR = "scenes"

CountFn = Callable[..., list[dict[str, Any]]]
"""The per-scene unit: ``fn(entry, site, *, detector, density_model, config) -> rows`` (as
:func:`freightwatch.activity.run.count_scene`). It raises for a scene it cannot count."""


class BatchError(InputFileError):
    """A batch that cannot run at all: its output folder is in use, an unknown engine or method
    (``path`` is the folder or the bad value)."""


@dataclass
class BatchConfig:
    """How a batch runs.

    Attributes:
        method: ``auto`` (detector up to the site's ``detector_max_gsd``, density model above),
            ``detector`` or ``density`` for every scene.
        weights: Detector weights (default: the bundled ones, when they exist).
        density_weights: Density weights (default: the bundled demo weights).
        engine: ``local`` (this process) or ``ray``.
        address: Ray cluster address (``ray://host:10001`` or ``host:6379``); local Ray when ``None``.
        num_workers: Ray actors, each holding its own copy of the models (default: 2 locally, the
            cluster's CPUs with ``address``).
        max_in_flight: Scenes handed to Ray but not yet finished (default: 2 per worker). Bounds
            the driver's and the object store's memory whatever the catalog size.
        coverage: Nominal coverage of the count intervals.
        retry_failed: Retry scenes that failed before (default). ``False`` skips those whose
            file and settings are unchanged.
        keep_maps: Keep per-scene density maps / detections under ``DIR/maps`` (off: rows only).
        time_pattern: Filename pattern(s) for scenes without time metadata (see the catalog).
        show_progress: Progress bar (``None``: when stderr is a terminal).
    """

    method: str = "auto"
    weights: Path | None = None
    density_weights: Path | None = None
    engine: str = "local"
    address: str | None = None
    num_workers: int | None = None
    max_in_flight: int | None = None
    coverage: float = 0.9
    retry_failed: bool = True
    keep_maps: bool = False
    time_pattern: str | list[str] | None = None
    show_progress: bool | None = None


@dataclass
class SceneJob:
    """One scene to count (sent to a worker).

    Attributes:
        scene: Catalog id.
        entry: The catalog entry (:class:`freightwatch.activity.catalog.CatalogEntry`).
        method: ``detector`` or ``density``.
        inputs: File states of the scene and its mask (for the manifest).
        settings: Settings key for this scene's method.
        output: Output file, relative to the batch folder.
    """

    scene: str
    entry: Any
    method: str
    inputs: dict[str, Any]
    settings: str
    output: str


@dataclass
class SceneResult:
    """What a worker returns for one scene: rows, or the reason it failed.

    Attributes:
        scene: Catalog id.
        rows: Row dicts (``None`` when failed).
        error: One-line reason (``None`` when done).
        error_type: Exception class name.
        seconds: Wall time the worker spent on it.
    """

    scene: str
    rows: list[dict[str, Any]] | None
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the scene was counted."""
        return self.error is None


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes:
        out_dir: The output folder.
        scenes: Scenes in the catalog.
        done: Scenes counted in this run.
        skipped: Scenes skipped as already finished (or as failed before, with ``retry_failed`` off).
        failed: Scenes that failed (this run or, when skipped, before), with their records.
        seconds: Wall time of the run.
        engine: Engine used.
        engine_stats: ``workers``, ``peak_in_flight`` (most scenes submitted and not yet collected)
            and ``restarts`` (workers replaced after a crash).
        files: Written files by name.
    """

    out_dir: Path
    scenes: int
    done: int = 0
    skipped: int = 0
    failed: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "local"
    engine_stats: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def scenes_per_minute(self) -> float:
        """Scenes counted per minute of wall time in this run (NaN when none were counted)."""
        return self.done / self.seconds * 60.0 if self.done and self.seconds > 0 else math.nan

    def summary(self) -> str:
        """One line: what happened and where the failures are listed."""
        text = (f"{self.scenes} scene(s): {self.done} counted, {self.skipped} already done, "
                f"{len(self.failed)} failed")
        if self.failed:
            text += f" (reasons in {self.out_dir / FAILURES})"
        return text + f"; {self.seconds:.1f} s with the {self.engine} engine"


# -- models and the per-scene worker -----------------------------------------------------------------
def load_models(methods: Iterable[str], weights: Path | None, density_weights: Path | None) -> tuple[Any, Any]:
    """Load the models the given methods need (each once).

    Raises:
        InputFileError: weights that are missing or not usable (the bundled detector, until it ships).
    """
    methods = set(methods)
    detector = density = None
    if "detector" in methods:
        from freightwatch.models.detector import Detector, bundled_detector

        if weights is None and not bundled_detector().is_file():
            raise InputFileError(bundled_detector(), "some scenes need the detector, but no detector weights are "
                                                     "installed: pass --weights W (train with `freightwatch train "
                                                     "detector`), or --method density")
        detector = Detector.load(weights)
    if "density" in methods:
        from freightwatch.models.density import DensityModel

        density = DensityModel.load(density_weights)
    return detector, density


@dataclass
class CounterSpec:
    """Everything a worker needs to count scenes (picklable: Ray ships it to each actor).

    Attributes:
        site: The :class:`freightwatch.activity.site.Site`.
        methods: Methods the pending scenes need (only those models are loaded).
        config: The batch config.
        maps_dir: Where per-scene maps go (``None``: not kept).
        count_fn: The per-scene function (default :func:`freightwatch.activity.run.count_scene`).
    """

    site: Any
    methods: frozenset[str]
    config: BatchConfig
    maps_dir: Path | None = None
    count_fn: CountFn | None = None


class SceneCounter:
    """Holds a site and its loaded models and counts one scene at a time; never raises for a scene.

    Weights load once, in the constructor (once per Ray actor). A scene that cannot be counted
    comes back as a :class:`SceneResult` with the reason, so one bad scene costs only itself.

    Raises:
        InputFileError: from the constructor, when weights cannot be loaded.
    """

    def __init__(self, spec: CounterSpec) -> None:
        from freightwatch.activity.run import RunConfig, count_scene
        from freightwatch.inference.density import DensityRunConfig
        from freightwatch.inference.detect import DetectConfig

        self.spec = spec
        self.count_fn: CountFn = spec.count_fn or count_scene
        cfg = spec.config
        self.detector, self.density_model = load_models(spec.methods, cfg.weights, cfg.density_weights)
        self.run_config = RunConfig(method=cfg.method, coverage=cfg.coverage, maps_dir=spec.maps_dir,
                                    detect=DetectConfig(), density=DensityRunConfig(show_progress=False))

    def __call__(self, job: SceneJob) -> SceneResult:
        """Count one scene."""
        t0 = time.perf_counter()
        try:
            rows = self.count_fn(job.entry, self.spec.site, detector=self.detector, density_model=self.density_model,
                                 config=self.run_config)
            return SceneResult(job.scene, list(rows), seconds=time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - fault isolation: any scene error is that scene's failure
            reason = one_line(exc)
            if not isinstance(exc, FreightwatchError):  # freightwatch's own errors already name the file
                log.debug("%s: unexpected error", job.entry.path, exc_info=True)
                reason = f"{job.entry.path}: {reason}"
            return SceneResult(job.scene, None, reason, type(exc).__name__, time.perf_counter() - t0)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception as one line: freightwatch errors as they are (they name the file), others with their type."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not isinstance(exc, FreightwatchError):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first[:limit]


# -- engines ----------------------------------------------------------------------------------------
def run_local(jobs: list[SceneJob], spec: CounterSpec, stats: dict[str, Any] | None = None) -> Iterator[SceneResult]:
    """Count scenes one after another in this process (models loaded once).

    Args:
        jobs: Scenes to count.
        spec: Site, models and settings.
        stats: Filled with ``workers`` and ``peak_in_flight``.
    """
    if stats is not None:
        stats.update(workers=1, peak_in_flight=min(1, len(jobs)), restarts=0)
    if not jobs:
        return
    counter = SceneCounter(spec)
    for job in jobs:
        yield counter(job)


def _engine(name: str) -> Callable[..., Iterator[SceneResult]]:
    if name == "local":
        return run_local
    if name == "ray":
        from freightwatch.batch.ray_engine import run_ray

        return run_ray
    raise BatchError(name, f"unknown engine (choose one of {', '.join(ENGINES)})")


# -- the driver -------------------------------------------------------------------------------------
def output_name(scene: str) -> str:
    """File name of a scene's rows: readable, and unique even when ids differ only in odd characters."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", scene).strip("._")[:80] or "scene"
    return f"{safe}-{hashlib.sha1(scene.encode()).hexdigest()[:8]}.csv"


def _weights_state(path: Path | None, bundled: Callable[[], Path]) -> dict[str, Any]:
    p = Path(path) if path is not None else bundled()
    return {"path": str(p.resolve()), "file": file_state(p), "card": file_state(p.with_suffix(".json"))}


def _settings(site: Any, cfg: BatchConfig, method: str, count_fn: CountFn | None) -> str:
    """The key of everything that decides a scene's rows, for one method (the engine is not part of it)."""
    from freightwatch.models.density import bundled_density
    from freightwatch.models.detector import bundled_detector

    s: dict[str, Any] = {
        "version": __version__, "method": method, "method_option": cfg.method, "coverage": cfg.coverage,
        "site": {"name": site.name, "file": file_digest(getattr(site, "path", None)),
                 "zones": file_digest(getattr(site, "zones_path", None))},
        "count_fn": None if count_fn is None else f"{count_fn.__module__}.{count_fn.__qualname__}",
    }
    if method == "detector":
        s["weights"] = _weights_state(cfg.weights, bundled_detector)
    else:
        s["weights"] = _weights_state(cfg.density_weights, bundled_density)
    return settings_key(s)


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One batch per output folder at a time (the lock goes with the process, however it ends)."""
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".batch.lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BatchError(out, "another batch is writing to this folder (wait for it, or use another --out)") \
                from None
        yield
    finally:
        fh.close()


def _clean_partial(out: Path) -> int:
    """Remove temporary files left by a run that was killed mid-write."""
    n = 0
    for p in (out / SCENES_DIR).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def _rows_csv(rows: list[dict[str, Any]]) -> bytes:
    from freightwatch.activity.table import COLUMNS, order_columns

    df = order_columns(pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COLUMNS)))
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"], utc=True).map(lambda t: t.isoformat())
    return df.to_csv(index=False).encode()


def _read_rows(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"zone": str, "class": str, "scene": str})
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    return df


def _fail_record(scene: str, path: Path, settings: str, inputs: dict[str, Any], error: str, error_type: str,
                 engine: str, method: str | None = None, seconds: float = 0.0) -> Record:
    return Record(scene=scene, path=str(path), status="failed", settings=settings, input=inputs, error=error,
                  error_type=error_type, engine=engine, method=method, seconds=round(seconds, 3))


def run_batch(
    catalog: str | Path,
    site: str | Path | Any,
    out_dir: str | Path,
    config: BatchConfig | None = None,
    count_fn: CountFn | None = None,
) -> BatchResult:
    """Count every scene of a catalog at a site; resumable, idempotent, fault-isolated.

    Args:
        catalog: Folder of GeoTIFFs, CSV or STAC JSON (:func:`freightwatch.activity.catalog.read_catalog`).
        site: Site file (or bundled site name), or a loaded :class:`freightwatch.activity.site.Site`.
        out_dir: Output folder (see the module notes for what goes in it).
        config: Engine and method settings.
        count_fn: Per-scene function (default :func:`freightwatch.activity.run.count_scene`); a
            module-level function so Ray can ship it.

    Returns:
        The :class:`BatchResult` (``failed`` non-empty when some scenes could not be counted).

    Raises:
        FreightwatchError: the run cannot start (unreadable catalog or site, weights that do not
            load, the folder in use by another batch). Scene problems never raise: they are recorded.
    """
    from freightwatch.activity.catalog import read_catalog
    from freightwatch.activity.run import RunConfig, choose_method
    from freightwatch.activity.site import load_site

    cfg = config or BatchConfig()
    if cfg.engine not in ENGINES:
        raise BatchError(cfg.engine, f"unknown engine (choose one of {', '.join(ENGINES)})")
    if cfg.method not in METHODS:
        raise BatchError(cfg.method, f"unknown method (choose one of {', '.join(METHODS)})")
    t_start = time.perf_counter()
    site_obj = site if hasattr(site, "zones") and hasattr(site, "name") else load_site(site)
    entries = read_catalog(catalog, cfg.time_pattern)
    out = Path(out_dir)
    result = BatchResult(out, len(entries), engine=cfg.engine)
    with _lock(out):
        (out / SCENES_DIR).mkdir(parents=True, exist_ok=True)
        if n := _clean_partial(out):
            log.info("%s: removed %d partial file(s) of an interrupted run", out, n)
        manifest = Manifest(out)
        choose_cfg = RunConfig(method=cfg.method)
        jobs: list[SceneJob] = []
        settings_cache: dict[str, str] = {}

        def settings_for(method: str) -> str:
            if method not in settings_cache:
                settings_cache[method] = _settings(site_obj, cfg, method, count_fn)
            return settings_cache[method]

        seen: set[str] = set()
        for e in entries:
            if e.scene_id in seen:  # two catalog records for one id would overwrite each other's rows
                raise InputFileError(catalog, f"scene id {e.scene_id!r} appears twice in the catalog")
            seen.add(e.scene_id)
            inputs = {"scene": file_state(e.path), "mask": file_state(e.mask)}
            try:
                if e.error:
                    raise InputFileError(e.path, e.error)
                if e.time is None:
                    raise InputFileError(e.path, "no acquisition time (catalog, TIFF tags, sidecar JSON or file "
                                                 "name): add it to a CSV catalog or pass --time-pattern")
                method = choose_method(e, site_obj, choose_cfg)
            except FreightwatchError as exc:
                log.warning("%s", one_line(exc))
                key = settings_for("none")
                if not cfg.retry_failed and manifest.failed(e.scene_id, inputs, key):
                    result.skipped += 1
                else:
                    manifest.append(_fail_record(e.scene_id, e.path, key, inputs, one_line(exc), type(exc).__name__,
                                                 cfg.engine))
                continue
            key = settings_for(method)
            if manifest.finished(e.scene_id, inputs, key) or (
                    not cfg.retry_failed and manifest.failed(e.scene_id, inputs, key)):
                result.skipped += 1
                continue
            jobs.append(SceneJob(e.scene_id, e, method, inputs, key, f"{SCENES_DIR}/{output_name(e.scene_id)}"))

        spec = CounterSpec(site=site_obj, methods=frozenset(j.method for j in jobs), config=cfg,
                           maps_dir=(out / "maps") if cfg.keep_maps else None, count_fn=count_fn)
        by_scene = {j.scene: j for j in jobs}
        try:
            with progress(disable=None if cfg.show_progress is None else not cfg.show_progress) as bar:
                task = bar.add_task(f"batch ({cfg.engine})", total=len(jobs))
                results = _engine(cfg.engine)(jobs, spec, result.engine_stats)
                with contextlib.closing(results) as stream:
                    for res in stream:
                        job = by_scene[res.scene]
                        if res.ok:
                            data = _rows_csv(res.rows or [])
                            atomic_write_bytes(out / job.output, data)
                            manifest.append(Record(
                                scene=job.scene, path=str(job.entry.path), status="done", settings=job.settings,
                                input=job.inputs, output=job.output, output_size=len(data), rows=len(res.rows or []),
                                method=job.method, seconds=round(res.seconds, 3), engine=cfg.engine))
                            result.done += 1
                        else:
                            log.warning("%s", res.error)
                            manifest.append(_fail_record(job.scene, job.entry.path, job.settings, job.inputs,
                                                         res.error or "", res.error_type or "", cfg.engine, job.method,
                                                         res.seconds))
                        bar.advance(task)
        finally:
            # Whatever happened (Ctrl-C included), finished scenes are on disk and listed.
            result.seconds = time.perf_counter() - t_start
            _finish(out, entries, manifest, site_obj, cfg, result)
    return result


def _finish(out: Path, entries: list[Any], manifest: Manifest, site: Any, cfg: BatchConfig,
            result: BatchResult) -> None:
    """Compact the manifest and write failures.csv, the combined table and batch.json."""
    from freightwatch.activity.table import COLUMNS, add_calendar, order_columns, write_table

    ids = [e.scene_id for e in entries]
    manifest.compact()  # records of scenes outside this catalog stay: a later run of a larger one reuses them
    result.failed = [manifest.latest[s] for s in ids if s in manifest.latest and manifest.latest[s].status == "failed"]
    result.files["failures"] = write_failures(out / FAILURES, result.failed)
    frames = []
    for s in ids:
        rec = manifest.latest.get(s)
        if rec is not None and rec.status == "done" and rec.rows and rec.output and (out / rec.output).is_file():
            frames.append(_read_rows(out / rec.output))
    frames = [f for f in frames if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    if len(table):
        table = add_calendar(table, site.site_calendar())
    paths = write_table(order_columns(table), out / "counts", site.metadata())
    result.files.update({"parquet": paths[0], "csv": paths[1]})
    summary = {
        "written": datetime.now(UTC).isoformat(timespec="seconds"), "version": __version__,
        "site": site.metadata(), "engine": cfg.engine, "address": cfg.address, "method": cfg.method,
        "scenes": result.scenes, "counted": result.done, "skipped": result.skipped,
        "failed": len(result.failed), "seconds": round(result.seconds, 2),
        "scenes_per_minute": None if math.isnan(result.scenes_per_minute) else round(result.scenes_per_minute, 2),
        "rows": int(len(table)), "engine_stats": result.engine_stats,
    }
    atomic_write_bytes(out / "batch.json", json.dumps(summary, indent=2, default=str).encode())
    result.files["summary"] = out / "batch.json"
    result.files["manifest"] = manifest.path


__all__ = ["BatchConfig", "BatchError", "BatchResult", "CounterSpec", "SceneCounter", "SceneJob", "SceneResult",
           "load_models", "run_batch", "run_local"]
