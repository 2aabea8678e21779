"""Exporting trained models as TensorFlow SavedModels for TF Serving (``python -m caloml.export``).

One function per model family, each writing ``saved_models_dir/<name>/<version>/`` (the next version by default;
an existing one is never replaced) and returning that directory: :func:`export_gan` (the 3DGAN, ``generate`` and
``generate_from_noise`` signatures), :func:`export_triforce`, :func:`export_pointflow`, :func:`export_pyramid` and
:func:`export_crystal` (the crystal-5x5 generators). ``caloml.export.serving`` holds TF Serving's versioned
directory layout. Each model's exporter module also provides ``export_trained(model, config, run_dir)``, which
``python -m caloml.train MODEL --export`` hands to the trainer (:data:`caloml.train.EXPORTERS`). Importing this
package does not import TensorFlow (the export functions do). See ``docs/serving.md``.
"""

from caloml.export.crystal import export_crystal
from caloml.export.gan import export_gan
from caloml.export.pointflow import export_pointflow
from caloml.export.pyramid import export_pyramid
from caloml.export.triforce import export_triforce

__all__ = ["export_crystal", "export_gan", "export_pointflow", "export_pyramid", "export_triforce"]
