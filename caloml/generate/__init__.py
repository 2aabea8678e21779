"""Generating showers with trained models into the real file layouts (``python -m caloml.generate``).

``caloml.generate.gan``: the 3DGAN (:func:`generate_showers` in memory, :func:`generate_file` into an LCD file);
``caloml.generate.pointflow``: CaloPointFlow (:func:`generate_pointflow_file`); ``caloml.generate.pyramid``: the
Calorimeter Pyramid (:func:`generate_pyramid_file`); ``caloml.generate.crystal``: the crystal-5x5 generators
(:func:`generate_crystal_file`); ``caloml.generate.trained_model``: :func:`load_trained_model` from a run directory
or a ``.keras`` file, with one-line errors. Importing this package does not import TensorFlow. See ``docs/cli.md``.
"""

from caloml.generate.crystal import generate_crystal_file
from caloml.generate.gan import GenerationRequest, generate_file, generate_showers
from caloml.generate.pointflow import PointFlowGenerationRequest, generate_pointflow_file
from caloml.generate.pyramid import generate_pyramid_file
from caloml.generate.trained_model import TrainedModel, load_trained_model

__all__ = [
    "GenerationRequest",
    "PointFlowGenerationRequest",
    "TrainedModel",
    "generate_crystal_file",
    "generate_file",
    "generate_pointflow_file",
    "generate_pyramid_file",
    "generate_showers",
    "load_trained_model",
]
