"""Make ultralytics safe to run offline, with settings in a directory freightwatch controls.

Must run before ``ultralytics`` is first imported: ultralytics reads these variables at import
time (settings directory, offline flag) and would otherwise write ``~/.config/Ultralytics`` and
try the network (fonts, hub, AMP-check weights, pip requirement checks).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def freightwatch_home() -> Path:
    """Where freightwatch keeps tool settings: ``$FREIGHTWATCH_HOME`` or a per-user temp folder."""
    env = os.environ.get("FREIGHTWATCH_HOME")
    if env:
        return Path(env)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"freightwatch-{uid}"


def configure() -> Path:
    """Set ultralytics' environment for offline use and return its settings directory.

    Idempotent. Warns (once) when ultralytics was imported before this ran, since its settings
    directory is then already fixed.
    """
    cfg = freightwatch_home() / "ultralytics"
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg))
    os.environ.setdefault("YOLO_OFFLINE", "true")
    os.environ.setdefault("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    # ultralytics pins OMP_NUM_THREADS=1 when unset, which halves CPU inference speed on 2 cores.
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                  else os.cpu_count() or 1))
    if "ultralytics" not in sys.modules:
        return cfg
    from ultralytics.utils import SETTINGS

    # Turn off anything that phones home even when imported early.
    off = {k: False for k in ("sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune",
                              "tensorboard", "wandb", "vscode_msg") if k in SETTINGS and SETTINGS[k] is not False}
    if off:  # settings keys differ between ultralytics versions: only touch those that exist
        SETTINGS.update(off)
    return cfg


def yolo():
    """Import and return ``ultralytics.YOLO`` after :func:`configure`."""
    configure()
    from ultralytics import YOLO

    configure()  # now that ultralytics is imported, switch its integrations off
    import torch
    from ultralytics.utils import torch_utils

    wanted = int(os.environ.get("OMP_NUM_THREADS", "1"))
    # select_device() resets torch to cpu_count-1 threads (1 on a 2-core machine) on every setup.
    torch_utils.NUM_THREADS = max(torch_utils.NUM_THREADS, wanted)
    if torch.get_num_threads() < wanted:
        torch.set_num_threads(wanted)
    return YOLO
