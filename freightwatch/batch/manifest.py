"""The batch manifest: what has been done to which scene, so a rerun skips finished work.

``DIR/manifest.jsonl`` holds one JSON object per line, appended as each scene finishes or fails
(one ``write`` per line, flushed and fsynced, so a crash loses at most the scene in progress and
never the record of a finished one). The latest line for a scene wins; a torn last line (power
cut mid-write) is ignored. At the end of a run the file is compacted (rewritten atomically with
only the latest line per scene, those of other catalogs run into the same folder included).

A scene is *finished*, and skipped by a rerun, when its latest record says ``done``, the scene
file (and its cloud mask) still has the recorded size and modification time, the settings key
(site, zones, method, weights, ...) is the same, and its output file exists with the recorded size.
Anything else is redone: a scene never recorded, one whose run was cut off, a changed input, changed
settings, a deleted output, and (unless told to skip them) failed scenes.

Record fields: ``scene`` (catalog id), ``path``, ``input`` (``{"size", "mtime_ns"}`` of the scene
and of its mask), ``settings`` (key), ``status`` (``done`` / ``failed``), ``output`` (path relative
to DIR), ``output_size``, ``rows``, ``method``, ``seconds``, ``error`` (one line) and
``error_type`` for failures, ``engine`` and ``finished`` (UTC time).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from freightwatch.datasets.geo import atomic_write_bytes

MANIFEST = "manifest.jsonl"
FAILURES = "failures.csv"
FAILURE_COLUMNS: tuple[str, ...] = ("scene", "path", "error_type", "reason", "finished")
"""Columns of ``failures.csv``, in order."""


def file_state(path: str | Path | None) -> dict[str, int] | None:
    """Size and modification time of a file (``None`` when absent): cheap, and changes when it is rewritten."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def file_digest(path: str | Path | None, block: int = 1 << 20) -> str | None:
    """SHA-256 of a (small) file's bytes, ``None`` when absent: for settings files whose edits matter."""
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short stable hash of the settings that decide a scene's result."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Record:
    """One line of the manifest (see the module notes for the fields)."""

    scene: str
    path: str
    status: str
    settings: str
    input: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    output_size: int | None = None
    rows: int = 0
    method: str | None = None
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    engine: str | None = None
    finished: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Build from a parsed line; unknown keys (from newer versions) are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Manifest:
    """The manifest of one output folder.

    Args:
        out_dir: The batch output folder (the manifest is ``out_dir/manifest.jsonl``).
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST
        self.latest: dict[str, Record] = {}
        self.ignored_lines = 0
        if self.path.is_file():
            for line in self.path.read_text(errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = Record.from_dict(json.loads(line))
                except (json.JSONDecodeError, TypeError, ValueError):
                    self.ignored_lines += 1  # a torn or foreign line: the scene is simply redone
                    continue
                self.latest[rec.scene] = rec

    def append(self, record: Record) -> None:
        """Add a record (one write, flushed to disk before returning)."""
        line = json.dumps(asdict(record), default=str, allow_nan=False) + "\n"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.latest[record.scene] = record

    def finished(self, scene: str, inputs: Mapping[str, Any], settings: str) -> Record | None:
        """The ``done`` record of a scene if it is still valid (see the module notes), else ``None``."""
        rec = self.latest.get(scene)
        if rec is None or rec.status != "done" or rec.settings != settings or rec.input != dict(inputs):
            return None
        if rec.output is None:
            return None
        out = self.out_dir / rec.output
        state = file_state(out)
        if state is None or (rec.output_size is not None and state["size"] != rec.output_size):
            return None
        return rec

    def failed(self, scene: str, inputs: Mapping[str, Any], settings: str) -> Record | None:
        """The ``failed`` record of a scene whose input and settings are unchanged, else ``None``."""
        rec = self.latest.get(scene)
        if rec is None or rec.status != "failed" or rec.settings != settings or rec.input != dict(inputs):
            return None
        return rec

    def compact(self, keep: Iterable[str] | None = None) -> None:
        """Rewrite the file atomically with the latest record per scene (only ``keep`` scenes, if given)."""
        scenes = list(self.latest) if keep is None else [s for s in keep if s in self.latest]
        text = "".join(json.dumps(asdict(self.latest[s]), default=str, allow_nan=False) + "\n" for s in scenes)
        atomic_write_bytes(self.path, text.encode())


def write_failures(path: str | Path, records: Iterable[Record]) -> Path:
    """Write ``failures.csv`` (columns :data:`FAILURE_COLUMNS`) atomically; a header only when none failed."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(FAILURE_COLUMNS)
    for r in records:
        w.writerow([r.scene, r.path, r.error_type or "", r.error or "", r.finished])
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def read_failures(path: str | Path) -> list[dict[str, str]]:
    """Rows of a ``failures.csv``."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
