"""Exporting trained models as TensorFlow SavedModels for TF Serving (``python -m caloml.export``).

One function per model family, each writing ``saved_models_dir/<name>/<version>/`` and returning that directory:
:func:`export_gan`, the 3DGAN with its per-example ``showers_from_seeds`` (default) and
``showers_from_noise`` signatures; ``caloml.export.serving``: TF Serving's versioned directory layout, the lean
writer and the per-example signatures; ``caloml.export.onnx_export``: ``model.onnx`` beside the SavedModel, verified
against TensorFlow; :func:`export_triforce`, :func:`export_pointflow`, :func:`export_pyramid` and
:func:`export_crystal` for the other models. Each model's exporter module
provides ``export_trained(model, config, run_dir)``, which ``python -m caloml.train MODEL --export`` hands to the
trainer (:data:`caloml.train.EXPORTERS`). Importing this package does not import TensorFlow (the export functions
do).

See ``docs/serving.md``.
"""

from caloml.export.crystal import export_crystal
from caloml.export.gan import export_gan
from caloml.export.pointflow import export_pointflow
from caloml.export.pyramid import export_pyramid
from caloml.export.triforce import export_triforce

__all__ = ["export_crystal", "export_gan", "export_pointflow", "export_pyramid", "export_triforce"]
