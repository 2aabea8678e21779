"""Exporting a trained CaloPointFlow model as a TensorFlow SavedModel (``saved_models/pointflow-<geometry>/<v>/``).

The SavedModel needs only TensorFlow (no caloml, no TensorFlow Probability, no custom Keras classes) and stores the
model's variables once. Signatures: ``showers_from_seeds`` (also ``serving_default``: ``energy_gev`` (B,) float32,
``seed`` (B,) int64 -> ``showers_gev`` (B, *grid), ``n_hits`` (B,); each shower depends on its own energy and seed
only), ``showers_from_seeds_mev`` (the same in MeV, the CaloChallenge files' unit), the earlier ``sample``
(``incident_energy`` (B,) GeV, one ``seed`` (2,) int32 for the batch -> ``showers`` GeV, ``n_hits``) and ``log_prob``
(``points`` (B, P, 4), ``mask``, ``n_hits``, ``total_energy`` GeV -> per-hit log density (B, P)); see
:data:`SIGNATURES`. Incident energies outside the trained range fail the call, never clipped. :func:`export_trained` is
the exporter the trainer calls after ``--export``. The model follows "CaloPointFlow: Generating Calorimeter Showers as
Point Clouds" (Schnake, Krücker, Borras, arXiv:2211.15380).
There is no ONNX form (its sampler draws stateless random numbers inside loops). See ``docs/serving.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from caloml.cli_args import positive_int
from caloml.errors import CalomlError
from caloml.export.serving import (
    PER_EXAMPLE_SAMPLE_SIGNATURES,
    add_format_arguments,
    add_version_arguments,
    checked_sample_signature,
    per_example_sample_signatures,
    software_provenance,
    write_formats,
)
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.geometry import point_cloud_grid_of_shape
from caloml.quiet import import_tensorflow_quietly

# TensorFlow and caloml.models (which imports TensorFlow) stay imported inside the functions: ``python -m
# caloml.export`` imports this module to build its parser, and a wrong path must fail before TensorFlow is loaded.

__all__ = [
    "SIGNATURES",
    "accepted_energy_range",
    "add_pointflow_parser",
    "export_pointflow",
    "export_trained",
    "hit_log_prob",
    "run_pointflow",
    "sample_showers",
]

#: The exported signatures: name -> (inputs, outputs) as "name: shape dtype, unit" descriptions.
SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    **PER_EXAMPLE_SAMPLE_SIGNATURES,
    "sample": {
        "inputs": {
            "incident_energy": "(B,) float32, GeV, inside the trained range",
            "seed": "(2,) int32, stateless seed of every draw",
        },
        "outputs": {"showers": "(B, *grid) float32, GeV per cell", "n_hits": "(B,) int32, non-empty cells"},
    },
    "log_prob": {
        "inputs": {
            "points": "(B, P, 4) float32: continuous cell coordinates, log(E / GeV)",
            "mask": "(B, P) bool, True on real hits",
            "n_hits": "(B,) int32",
            "total_energy": "(B,) float32, GeV",
        },
        "outputs": {"log_prob": "(B, P) float32, log density of each hit in data units given the mean z; 0 at padding"},
    },
}


def geometry_name(model: Any) -> str:
    """``calochallenge-2`` or ``lcd-gen`` from the model's grid (``grid-AxBxC`` for another grid)."""
    geometry = point_cloud_grid_of_shape(model.grid_shape)
    return geometry.name if geometry else "grid-" + "x".join(str(int(n)) for n in model.grid_shape)


def accepted_energy_range(trained_gev: tuple[float, ...]) -> tuple[np.float32, np.float32]:
    """float32 bounds of the incident energies the ``sample`` signature accepts: the model's own check
    (:func:`caloml.models.pointflow.incident_energy_bounds_float32`, rounded inwards)."""
    from caloml.models.pointflow import incident_energy_bounds_float32

    return incident_energy_bounds_float32(trained_gev)


def sample_showers(model: Any, incident_energy_gev: Any, seed: Any, n_points: int) -> dict[str, Any]:
    """The ``sample`` signature's computation (TensorFlow, graph friendly): ``{"showers", "n_hits"}``.

    ``incident_energy_gev`` (B,) GeV, ``seed`` (2,) int32 (split into the latent, point and cell seeds).
    """
    import tensorflow as tf

    from caloml.models.pointflow_sampler import sample_cells_detailed

    energy = tf.reshape(tf.cast(incident_energy_gev, tf.float32), [-1])
    latent_seed, point_seed, cell_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 3))
    latent = model.sample_latent(energy, latent_seed)
    points, log_density = model.sample_points(latent["z"], int(n_points), point_seed)
    cells = sample_cells_detailed(
        points, log_density, latent["n_hits"], latent["total_energy"], model.grid_shape, cell_seed
    )
    return {"showers": tf.cast(cells.showers, tf.float32), "n_hits": tf.cast(cells.n_hits, tf.int32)}


def hit_log_prob(model: Any, points: Any, mask: Any, n_hits: Any, total_energy: Any) -> Any:
    """The ``log_prob`` signature's computation: (B, P) log densities given the encoder's mean z, 0 at padding."""
    import tensorflow as tf

    mask = tf.cast(mask, tf.bool)
    points = tf.where(mask[..., None], tf.cast(points, tf.float32), 0.0)
    mean, _ = model.encode(points, mask, n_hits, total_energy)
    log_prob = model.point_log_prob(points, mean)
    return tf.where(mask, log_prob, 0.0)


def export_pointflow(
    model: Any,
    saved_models_dir: str | Path = "saved_models",
    version: int | None = None,
    *,
    n_points: int = 10_000,
    provenance: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("saved_model",),
) -> Path:
    """Export ``model`` (a :class:`~caloml.models.pointflow.PointFlowVAE`) to
    ``saved_models_dir/pointflow-<geometry>/<version>/``; returns the version directory.

    ``version`` None takes the next integer; an existing version is never replaced
    (:class:`~caloml.errors.OutputExistsError`). ``n_points``: flow points per shower of the ``sample`` signature.
    See the module docstring for the signatures.
    """
    import tensorflow as tf

    if int(n_points) < 1:
        raise CalomlError(f"n_points must be positive, got {n_points}")
    grid = tuple(int(n) for n in model.grid_shape)
    trained = tuple(float(v) for v in model.normalization.incident_energy_range_gev)
    low, high = accepted_energy_range(trained)

    sample = checked_sample_signature(
        lambda energy, seed: sample_showers(model, energy, seed, int(n_points)), low, high, trained
    )

    def sample_one(energy: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        return sample_showers(model, energy, tf.bitcast(seed, tf.int32), int(n_points))  # int64 -> (2,) int32

    per_example = per_example_sample_signatures(sample_one, grid, low, high, trained)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, None, 4), tf.float32, name="points"),
            tf.TensorSpec((None, None), tf.bool, name="mask"),
            tf.TensorSpec((None,), tf.int32, name="n_hits"),
            tf.TensorSpec((None,), tf.float32, name="total_energy"),
        ]
    )
    def log_prob(points: tf.Tensor, mask: tf.Tensor, n_hits: tf.Tensor, total_energy: tf.Tensor) -> dict[str, Any]:
        checks = [
            tf.debugging.assert_equal(tf.shape(points)[:2], tf.shape(mask), message="points and mask differ"),
            tf.debugging.assert_equal(tf.shape(n_hits)[0], tf.shape(points)[0], message="n_hits length"),
            tf.debugging.assert_equal(tf.shape(total_energy)[0], tf.shape(points)[0], message="total_energy length"),
        ]
        with tf.control_dependencies(checks):
            points = tf.identity(points)
        return {"log_prob": hit_log_prob(model, points, mask, n_hits, total_energy)}

    geometry = geometry_name(model)
    info: dict[str, Any] = {
        "model": "pointflow",
        "geometry": geometry,
        "grid_shape": list(grid),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": model.get_config(),
        "normalization": model.normalization.to_dict(),
        "incident_energy_range_gev": list(model.normalization.incident_energy_range_gev),
        "n_points": int(n_points),
        "signatures": SIGNATURES,
        "serving_default": "showers_from_seeds",
        "deployed_parameters": int(model.count_params()),
        "out_of_range": "incident energies outside the trained range (ends widened by a relative 1e-6) or not finite"
        " fail the sample call with InvalidArgumentError; nothing is clipped",
        "units": {
            "showers_gev": "GeV per cell",
            "showers_mev": "MeV per cell",
            "energy_gev": "GeV",
            "energy_mev": "MeV",
            "showers": "GeV per cell",
            "incident_energy": "GeV",
            "points": "cell coordinates, log(E/GeV)",
        },
        **software_provenance(model, provenance),
    }
    model_dir = Path(saved_models_dir) / f"pointflow-{geometry}"
    endpoints = {**per_example, "sample": sample, "log_prob": log_prob}  # the first is also serving_default
    return write_formats(model_dir, version, endpoints, info, formats, None)


def export_trained(model: Any, config: Any, run_dir: Path) -> Path:
    """The trainer's export after ``--export``: ``model`` (the selected PointFlowVAE of the run in ``run_dir``,
    trained with ``config``, a :class:`~caloml.tasks.pointflow.config.PointFlowConfig`) to ``saved_models/``,
    recording the run directory and the training seed; returns the version directory."""
    provenance = {"source": str(run_dir), "seed": config.runtime.seed, "particle": config.data.particle}
    return export_pointflow(model, provenance=provenance)


# -- command line -------------------------------------------------------------------------------------------------
def add_pointflow_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``pointflow``: a trained CaloPointFlow model as a TF Serving SavedModel."""
    parser = subparsers.add_parser(
        "pointflow",
        help="export a trained CaloPointFlow model (saved_models/pointflow-<geometry>/<version>/)",
        description=(
            "Export a trained CaloPointFlow model (a run directory or a .keras file) as a TensorFlow SavedModel in TF"
            " Serving's layout, with the signatures sample (incident_energy GeV, seed (2,) int32 -> showers in GeV,"
            " n_hits) and log_prob (points, mask, n_hits, total_energy -> per-hit log density). An existing version"
            " is never replaced."
        ),
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="run directory or .keras file")
    add_version_arguments(parser)
    add_format_arguments(parser)
    parser.add_argument("--n-points", type=positive_int, default=10_000, help="flow points per shower (10000)")
    return parser


def run_pointflow(args: argparse.Namespace) -> int:
    """Load the model, export it and print the version directory."""
    if "onnx" in args.format:  # refused before any model is read
        raise CalomlError(
            "--format onnx: CaloPointFlow has no ONNX form (its sampling draws random numbers inside the"
            " graph; see docs/serving.md); export with --format saved_model"
        )
    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    from caloml.models.pointflow import PointFlowVAE

    trained = load_trained_model(args.model, PointFlowVAE)
    provenance = trained.export_provenance()
    particle = (trained.run_config.get("data") or {}).get("particle")
    if isinstance(particle, str):  # an LCD-grid file of generated showers carries its pdgID (generate from export)
        provenance["particle"] = particle
    path = export_pointflow(
        trained.model,
        args.saved_models,
        args.version,
        n_points=args.n_points,
        provenance=provenance,
        formats=args.format,
    )
    print(
        f"exported {trained.path} to {path} (signatures: showers_from_seeds [serving_default],"
        " showers_from_seeds_mev, sample, log_prob)"
    )
    return 0
