"""freightwatch.evaluation: detection and counting metrics, the benchmark and the GSD sweep.

* :mod:`~freightwatch.evaluation.detection`: COCO AP/AR (pycocotools) with overhead size buckets,
  greedy matching, precision-recall curves, best-F1 thresholds.
* :mod:`~freightwatch.evaluation.counting`: MAE, RMSE, relative MAE, bias, share within +-10 %,
  interval coverage.
* :mod:`~freightwatch.evaluation.benchmark`: ``freightwatch benchmark`` (with
  :mod:`~.samples`, :mod:`~.predict`, :mod:`~.sweep` and :mod:`~.report`).

Submodules are imported on demand: the metrics alone do not need torch.
"""
