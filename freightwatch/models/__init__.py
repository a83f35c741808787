"""freightwatch.models: the detector, the density model and how their weights are stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_safetensors(tensors: dict[str, Any], path: Path, metadata: dict[str, str]) -> Path:
    """``safetensors.torch.save_file`` with the file readable as the user's umask allows.

    safetensors 0.8 writes through a private temporary file and keeps its mode (0600), so weights
    saved for a team or bundled in a package would be readable by their owner only.
    """
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    path.chmod(0o666 & ~_umask())
    return path


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only set it: racy in threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022
