"""Batch runs over scene catalogs, locally or on Ray: resumable, idempotent and fault-isolated.

See :func:`freightwatch.batch.engine.run_batch` and ``docs/batch.md``.
"""

from freightwatch.batch.engine import BatchConfig, BatchError, BatchResult, run_batch
from freightwatch.batch.manifest import Manifest, Record, read_failures

__all__ = ["BatchConfig", "BatchError", "BatchResult", "Manifest", "Record", "read_failures", "run_batch"]
