"""The Ray engine: model-holding actors, bounded in-flight scenes, crash isolation.

* **Actors hold the models.** Each actor builds one :class:`~freightwatch.batch.engine.SceneCounter`
  (so weights load once per actor, not once per scene) and counts the scenes sent to it, one at
  a time; the slices of a scene go through the model in batches inside it, as in a local run.
* **Back-pressure.** At most ``max_in_flight`` scenes are submitted and not yet collected
  (default 2 per actor: one running, one queued so the actor never waits on the driver). The
  driver submits the next scene only when one comes back (``ray.wait``), so memory in the driver
  and in the object store stays bounded whatever the catalog size.
* **Crash isolation.** A scene that kills its worker process (a GDAL segfault on a corrupt file,
  running out of memory) is recorded as failed; the actor is replaced and the scenes queued behind
  it are resubmitted.
* **Offline.** Usage statistics are switched off (``RAY_USAGE_STATS_ENABLED=0``) before Ray is
  imported; a local Ray binds to 127.0.0.1 with no dashboard. ``address`` connects to an existing
  cluster instead (its workers need freightwatch installed and the scene files at the same paths).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

from freightwatch.batch.engine import CounterSpec, SceneCounter, SceneJob, SceneResult
from freightwatch.errors import FreightwatchError, InputFileError

log = logging.getLogger(__name__)

LOCAL_CPUS = 2
"""CPUs a local Ray gets by default (and so actors, one CPU each)."""

OBJECT_STORE_BYTES = 128 * 1024**2
"""Object store of a local Ray: results are a few rows per scene, so a small store is plenty."""


def init_ray(address: str | None = None, num_cpus: int | None = None) -> tuple[Any, bool]:
    """Import and start (or connect to) Ray without any network access beyond the given address.

    Returns:
        The ``ray`` module and whether this call started it (and so should shut it down).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
    import ray

    if ray.is_initialized():
        return ray, False
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus or LOCAL_CPUS, object_store_memory=OBJECT_STORE_BYTES,
                 _node_ip_address="127.0.0.1", **common)
    return ray, True


class _Worker:
    """The actor: a SceneCounter plus the error its construction raised, if any."""

    def __init__(self, spec: CounterSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.counter: SceneCounter | None = None
        self.error: tuple[str, str, str] | None = None
        try:
            self.counter = SceneCounter(spec)
        except FreightwatchError as exc:
            # Exceptions with extra constructor arguments do not survive pickling: send the parts.
            self.error = (type(exc).__name__, getattr(exc, "path", ""), getattr(exc, "message", str(exc)))

    def ready(self) -> tuple[str, str, str] | None:
        """``None`` when the models loaded, else ``(error type, file, message)``."""
        return self.error

    def count(self, job: SceneJob) -> SceneResult:
        """Count one scene (never raises for a scene problem)."""
        assert self.counter is not None
        return self.counter(job)


def run_ray(jobs: list[SceneJob], spec: CounterSpec, stats: dict[str, Any] | None = None) -> Iterator[SceneResult]:
    """Count scenes on Ray actors, yielding results as they finish (not in catalog order).

    Args:
        jobs: Scenes to count.
        spec: Site, models and settings (shipped to every actor once).
        stats: Filled with ``workers``, ``peak_in_flight`` and ``restarts``.

    Raises:
        FreightwatchError: the models cannot be loaded on the workers (before any scene runs).
    """
    stats = {} if stats is None else stats
    stats.update(workers=0, peak_in_flight=0, restarts=0)
    if not jobs:
        return
    cfg = spec.config
    ray, started = init_ray(cfg.address, cfg.num_workers)
    from ray.exceptions import RayActorError, RayTaskError

    actors: list[Any] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(cfg.num_workers or cpus, len(jobs)))
        cap = cfg.max_in_flight or 2 * n
        n = min(n, cap)  # an actor that can never get a scene would only hold memory
        per_actor = max(1, math.ceil(cap / n))
        worker_cls = ray.remote(num_cpus=1, max_restarts=0)(_Worker)
        spec_ref = ray.put(spec)

        def start() -> Any:
            return worker_cls.remote(spec_ref, 1)

        actors = [start() for _ in range(n)]
        stats["workers"] = n
        for err in ray.get([a.ready.remote() for a in actors]):
            if err is not None:
                _, path, message = err
                raise InputFileError(path, message) if path else FreightwatchError(message)

        queue: deque[SceneJob] = deque(jobs)
        inflight: dict[Any, tuple[int, SceneJob]] = {}
        per: list[deque[Any]] = [deque() for _ in range(n)]  # refs of each actor, oldest first

        def fill(i: int) -> None:
            while queue and len(per[i]) < per_actor and len(inflight) < cap:
                job = queue.popleft()
                ref = actors[i].count.remote(job)
                inflight[ref] = (i, job)
                per[i].append(ref)
            stats["peak_in_flight"] = max(stats["peak_in_flight"], len(inflight))

        def fill_all() -> None:
            for k in sorted(range(n), key=lambda k: len(per[k])):  # idle actors first
                fill(k)

        fill_all()
        while inflight:
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            i, job = inflight.pop(ref)
            try:
                res = ray.get(ref)
                per[i].remove(ref)
            except RayActorError as exc:
                # The actor died. Its oldest scene was running and is blamed; the rest were only
                # queued behind it and go back to the front of the queue for a fresh actor.
                refs = list(per[i])  # ObjectRefs compare by id with ==, not by identity
                blamed = inflight[refs[0]][1] if refs and refs[0] != ref else job
                for r in reversed(refs):
                    if r != ref:
                        _, other = inflight.pop(r)
                        if other is not blamed:
                            queue.appendleft(other)
                per[i].clear()
                if blamed is not job:
                    queue.appendleft(job)
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                res = SceneResult(blamed.scene, None, f"{blamed.entry.path}: the worker process died while "
                                  f"counting this scene ({reason})", "WorkerDied")
                log.warning("worker %d died on %s; starting a new one", i, blamed.entry.path)
                actors[i] = start()
                stats["restarts"] += 1
                ray.get(actors[i].ready.remote())
            except RayTaskError as exc:  # SceneCounter catches scene errors: this is a bug, still isolated
                per[i].remove(ref)
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                res = SceneResult(job.scene, None, f"{job.entry.path}: {type(cause).__name__}: "
                                  f"{str(cause).splitlines()[0][:300] if str(cause) else ''}", type(cause).__name__)
            yield res
            fill_all()
    finally:
        for a in actors:
            with contextlib.suppress(Exception):  # already dead, or Ray shutting down
                ray.kill(a)
        if started:
            ray.shutdown()
