"""Exporting a trained Calorimeter Pyramid as a TensorFlow SavedModel (``saved_models/pyramid-<geometry>/<v>/``).

The SavedModel needs only TensorFlow (no caloml, no TensorFlow Probability, no custom Keras classes):
``tf.saved_model.load(path)`` or TF Serving; it stores the model's variables once. The default signature
``showers_from_seeds`` takes ``energy_gev`` (B,) float32 and ``seed`` (B,) int64 and returns ``showers_gev``
(B, 45, 16, 9) and ``n_hits`` (B,), each shower depending on its own energy and seed only; ``showers_from_seeds_mev``
is the same in MeV (``energy_mev`` -> ``showers_mev``). The earlier signature ``sample`` stays:
``incident_energy`` (B,) float32 GeV and ``seed`` (2,) int32 -> ``showers`` (B, 45, 16, 9) float32 **MeV** per cell
(layer, angular, radial cell; the CaloChallenge files' unit) and ``n_hits`` (B,) int32. The same seed and energies
give the same showers; a client wanting independent batches passes a new seed per call. Incident energies outside
the trained range (ends widened by a relative 1e-6, rounded inwards to float32) or not finite fail the call with
``InvalidArgumentError`` (HTTP 400 in TF Serving), never clipped. ``export.json`` records the model's configuration
and statistics, the signatures and the software versions. There is no ONNX form (the sampler draws stateless
random numbers). See ``docs/serving.md`` and ``docs/pyramid.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from caloml.errors import CalomlError
from caloml.export.serving import (
    MEV_PER_GEV,
    PER_EXAMPLE_SAMPLE_SIGNATURES,
    add_format_arguments,
    add_version_arguments,
    checked_sample_signature,
    per_example_sample_signatures,
    software_provenance,
    write_formats,
)
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.quiet import import_tensorflow_quietly

# TensorFlow and caloml.models (which imports TensorFlow) stay imported inside the functions: ``python -m
# caloml.export`` imports this module to build its parser, and a wrong path must fail before TensorFlow is loaded.

__all__ = ["SIGNATURES", "add_pyramid_parser", "export_pyramid", "export_trained", "run_pyramid"]

#: The exported signature: name -> (inputs, outputs) as "name: shape dtype, unit" descriptions.
SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    **PER_EXAMPLE_SAMPLE_SIGNATURES,
    "sample": {
        "inputs": {
            "incident_energy": "(B,) float32, GeV, inside the trained range",
            "seed": "(2,) int32, stateless seed of every draw",
        },
        "outputs": {
            "showers": "(B, 45, 16, 9) float32, MeV per cell (layer, angular, radial)",
            "n_hits": "(B,) int32, non-empty cells",
        },
    },
}


def export_pyramid(
    model: Any,
    saved_models_dir: str | Path = "saved_models",
    version: int | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("saved_model",),
) -> Path:
    """Export ``model`` (a :class:`~caloml.models.pyramid.CalorimeterPyramid`) to
    ``saved_models_dir/pyramid-calochallenge-2/<version>/``; returns the version directory. ``version`` None takes
    the next integer; an existing version is never replaced (:class:`~caloml.errors.OutputExistsError`)."""
    import tensorflow as tf

    from caloml.models.pointflow_normalization import incident_energy_bounds_float32

    trained = tuple(float(v) for v in model.statistics.incident_energy_range_gev)
    low, high = incident_energy_bounds_float32(trained)

    def draw(energy: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model.sample(energy, tf.cast(seed, tf.int64))
        return {"showers": out["showers"] * MEV_PER_GEV, "n_hits": out["n_hits"]}

    sample = checked_sample_signature(draw, low, high, trained)

    def sample_one(energy: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        return model.sample(energy, tf.stack([seed, tf.constant(0, tf.int64)]))  # GeV

    per_example = per_example_sample_signatures(sample_one, tuple(model.grid_shape), low, high, trained)
    geometry = "calochallenge-2"
    info: dict[str, Any] = {
        "model": "pyramid",
        "geometry": geometry,
        "grid_shape": list(model.grid_shape),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": model.get_config(),
        "incident_energy_range_gev": list(trained),
        "signatures": SIGNATURES,
        "serving_default": "showers_from_seeds",
        "deployed_parameters": int(model.count_params()),
        "units": {
            "showers_gev": "GeV per cell",
            "showers_mev": "MeV per cell",
            "energy_gev": "GeV",
            "energy_mev": "MeV",
            "showers": "MeV per cell",
            "incident_energy": "GeV",
        },
        **software_provenance(model, provenance),
    }
    endpoints = {**per_example, "sample": sample}  # the first endpoint is also serving_default
    return write_formats(Path(saved_models_dir) / f"pyramid-{geometry}", version, endpoints, info, formats, None)


def export_trained(model: Any, config: Any, run_dir: Path) -> Path:
    """The trainer's ``--export`` hook: export the selected model to ``saved_models/`` with its run's provenance."""
    return export_pyramid(model, provenance={"source": str(run_dir), "seed": config.runtime.seed})


# -- command line -------------------------------------------------------------------------------------------------
def add_pyramid_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``pyramid``: a trained Calorimeter Pyramid as a TF Serving SavedModel."""
    parser = subparsers.add_parser(
        "pyramid",
        help="export a trained Calorimeter Pyramid (saved_models/pyramid-<geometry>/<version>/)",
        description=(
            "Export a trained Calorimeter Pyramid (a run directory or a .keras file) as a TensorFlow SavedModel in"
            " TF Serving's layout, with the signature sample (incident_energy GeV, seed (2,) int32 -> showers in"
            " MeV, n_hits). An existing version is never replaced."
        ),
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="run directory or .keras file")
    add_version_arguments(parser)
    add_format_arguments(parser)
    return parser


def run_pyramid(args: argparse.Namespace) -> int:
    """Load the model, export it and print the version directory."""
    if "onnx" in args.format:  # refused before any model is read
        raise CalomlError(
            "--format onnx: the Calorimeter Pyramid has no ONNX form (its sampling draws random numbers inside the"
            " graph; see docs/serving.md); export with --format saved_model"
        )
    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    from caloml.models.pyramid import CalorimeterPyramid

    trained = load_trained_model(args.model, CalorimeterPyramid)
    path = export_pyramid(
        trained.model, args.saved_models, args.version, provenance=trained.export_provenance(), formats=args.format
    )
    print(
        f"exported {trained.path} to {path} (signatures: showers_from_seeds [serving_default], "
        "showers_from_seeds_mev, sample)"
    )
    return 0
