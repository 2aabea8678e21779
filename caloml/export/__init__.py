"""Exporting trained models as TensorFlow SavedModels for TF Serving (``python -m caloml.export``).

``caloml.export.gan``: :func:`export_gan`, the 3DGAN with its per-example ``showers_from_seeds`` (default) and
``showers_from_noise`` signatures; ``caloml.export.serving``: TF Serving's versioned directory layout, the lean
writer and the per-example signatures; ``caloml.export.onnx_export``: ``model.onnx`` beside the SavedModel, verified
against TensorFlow. Each model's exporter module
provides ``export_trained(model, config, run_dir)``, which ``python -m caloml.train MODEL --export`` hands to the
trainer (:data:`caloml.train.EXPORTERS`). Importing this package does not import TensorFlow (the export functions
do).

See ``docs/serving.md``.
"""

from caloml.export.gan import export_gan

__all__ = ["export_gan"]
