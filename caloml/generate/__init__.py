"""Generating showers with trained models into the real file layouts (``python -m caloml.generate``).

``caloml.generate.gan``: the 3DGAN (:func:`generate_showers` in memory, :func:`generate_file` into an LCD file);
``caloml.generate.trained_model``: :func:`load_trained_model` from a run directory or a ``.keras`` file, with
one-line errors. Importing this package does not import TensorFlow. See ``docs/cli.md``.
"""

from caloml.generate.gan import GenerationRequest, generate_file, generate_showers
from caloml.generate.trained_model import TrainedModel, load_trained_model

__all__ = ["GenerationRequest", "TrainedModel", "generate_file", "generate_showers", "load_trained_model"]
