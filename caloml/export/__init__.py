"""Exporting trained models as TensorFlow SavedModels for TF Serving (``python -m caloml.export``).

``caloml.export.gan``: :func:`export_gan`, the 3DGAN with its ``generate`` and ``generate_from_noise``
signatures; ``caloml.export.serving``: TF Serving's versioned directory layout. Importing this package does not
import TensorFlow (the export functions do).
"""

from caloml.export.gan import export_gan

__all__ = ["export_gan"]
