"""The CaloPointFlow training task ("CaloPointFlow: Generating Calorimeter Showers as Point Clouds", Schnake,
Krücker, Borras, arXiv:2211.15380).

:mod:`~caloml.tasks.pointflow.config` holds the configuration and presets, :mod:`~caloml.tasks.pointflow.data` the
records scan, point-cloud batches and normalization, :mod:`~caloml.tasks.pointflow.task` the task (``TASK``).
See ``docs/pointflow.md``.
"""
