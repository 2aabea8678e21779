"""Exporting a trained 3DGAN as a TensorFlow SavedModel for TF Serving (``saved_models/gan3d-<particle>/<version>/``).

The SavedModel needs only TensorFlow to run (no caloml, no custom Keras classes): ``tf.saved_model.load(path)``
or TF Serving. Two signatures, each returning ``{"showers": (B, 51, 51, 25) float32}``, the cells in **GeV**
(the inverse power transform applied):

``generate`` (also ``serving_default``)
    ``energy_gev`` (B,) float32 primary energies in GeV, ``theta_rad`` (B,) float32 incidence angles in radians,
    ``seed`` () int64. The noise is ``tf.random.stateless_normal`` of the seed, so a call is deterministic for a
    given seed and batch (it is not the noise stream of ``python -m caloml.generate``, which draws with NumPy).
``generate_from_noise``
    ``energy_gev`` (B,), ``theta_rad`` (B,) as above and ``noise`` (B, latent_size - 2) float32 standard normal
    numbers; the Keras model's output for the same inputs.

``theta_rad`` is the angle condition of the kind the model was trained with (``condition_angle`` in
``export.json``: the true angle ``theta`` or the measured angle ``mtheta``).

Out-of-range conditions are errors, never clipped: a non-finite energy or angle, one outside the model's trained
range (widened by 0.1% of its width, exactly as ``GAN3D.check_conditions`` accepts float32 values), or inputs
of different batch sizes make the call fail with
``InvalidArgumentError`` (TF Serving answers with the message, HTTP 400) instead of returning a shower the model
was never trained to produce. ``export.json`` in the version directory records the model's configuration,
particle, trained ranges, signatures, out-of-range policy, training seed, source path and the caloml,
TensorFlow and Keras versions.

See ``docs/3dgan.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml.export.serving import add_version_arguments, export_archive, software_provenance
from caloml.float32_bounds import float32_inside
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.quiet import import_tensorflow_quietly

if TYPE_CHECKING:
    import keras

__all__ = [
    "RANGE_TOLERANCE",
    "SIGNATURES",
    "accepted_range",
    "add_gan_parser",
    "export_gan",
    "export_trained",
    "run_gan",
]

#: The exported signatures: name -> (inputs, outputs) as "name: shape dtype, unit" descriptions.
SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    "generate": {
        "inputs": {
            "energy_gev": "(B,) float32, GeV",
            "theta_rad": "(B,) float32, rad",
            "seed": "() int64, seed of the stateless normal noise",
        },
        "outputs": {"showers": "(B, 51, 51, 25) float32, GeV"},
    },
    "generate_from_noise": {
        "inputs": {
            "energy_gev": "(B,) float32, GeV",
            "theta_rad": "(B,) float32, rad",
            "noise": "(B, latent_size - 2) float32, standard normal",
        },
        "outputs": {"showers": "(B, 51, 51, 25) float32, GeV"},
    },
}

#: Tolerance of the trained ranges, a fraction of their width (the same as ``GAN3D.check_conditions``).
RANGE_TOLERANCE = 1e-3

OUT_OF_RANGE_POLICY = (
    "error: non-finite or out-of-trained-range energy_gev/theta_rad (ranges widened by 0.1% of their width, as"
    " GAN3D.check_conditions), or mismatched batch sizes, fail the call with InvalidArgumentError; nothing is clipped"
)


def accepted_range(trained: tuple[float, float]) -> tuple[np.float32, np.float32]:
    """float32 bounds that the exported signatures accept for a trained range (``low``, ``high``).

    The range widened by :data:`RANGE_TOLERANCE` of its width, then rounded inwards to float32: a float32 input is
    accepted exactly when ``GAN3D.check_conditions`` accepts it.
    """
    tolerance = RANGE_TOLERANCE * (float(trained[1]) - float(trained[0]))
    low, high = float(trained[0]) - tolerance, float(trained[1]) + tolerance
    return float32_inside(low, high)


def export_gan(
    model: Any,
    saved_models_dir: str | Path = "saved_models",
    version: int | None = None,
    *,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` (a :class:`~caloml.models.gan3d.GAN3D`) to ``saved_models_dir/gan3d-<particle>/<version>/``.

    ``version`` None takes the next integer; an existing version is never replaced
    (:class:`~caloml.errors.OutputExistsError`). The directory is written beside its place and renamed when
    complete. ``provenance`` (for example the source path and training seed) goes into ``export.json``.
    Returns the version directory. See the module docstring for the signatures.
    """
    import tensorflow as tf  # lazy: python -m caloml.export imports this module to parse its arguments

    noise_size = int(model.latent_size) - 2
    energy_low, energy_high = accepted_range(model.energy_range_gev)
    theta_low, theta_high = accepted_range(model.theta_range_rad)

    def checked_conditions(energy_gev: tf.Tensor, theta_rad: tf.Tensor) -> list[Any]:
        unit = {"energy_gev": "GeV", "theta_rad": "rad"}
        trained = {"energy_gev": list(model.energy_range_gev), "theta_rad": list(model.theta_range_rad)}
        checks = [
            tf.debugging.assert_equal(
                tf.shape(energy_gev)[0], tf.shape(theta_rad)[0], message="energy_gev and theta_rad differ in length"
            )
        ]
        for name, values, low, high in (
            ("energy_gev", energy_gev, energy_low, energy_high),
            ("theta_rad", theta_rad, theta_low, theta_high),
        ):
            checks.append(tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(values)), [f"{name} must be finite"]))
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all((values >= low) & (values <= high)),
                    [f"{name} outside the range the model was trained on, {trained[name]} {unit[name]}"],
                )
            )
        return checks

    def showers_of(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.control_dependencies(checked_conditions(energy_gev, theta_rad)):
            inputs = {
                "energy_gev": tf.identity(energy_gev),
                "theta_rad": tf.identity(theta_rad),
                "noise": tf.identity(noise),
            }
        showers = model(inputs, training=False)
        return {"showers": tf.cast(showers, tf.float32)}

    energy_spec = tf.TensorSpec((None,), tf.float32, name="energy_gev")
    theta_spec = tf.TensorSpec((None,), tf.float32, name="theta_rad")

    @tf.function(input_signature=[energy_spec, theta_spec, tf.TensorSpec((), tf.int64, name="seed")])
    def generate(energy_gev: tf.Tensor, theta_rad: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        n = tf.shape(energy_gev)[0]
        noise = tf.random.stateless_normal(
            tf.stack([n, noise_size]), seed=tf.stack([seed, tf.constant(0, tf.int64)]), dtype=tf.float32
        )
        return showers_of(energy_gev, theta_rad, noise)

    @tf.function(input_signature=[energy_spec, theta_spec, tf.TensorSpec((None, noise_size), tf.float32, name="noise")])
    def generate_from_noise(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        length = tf.debugging.assert_equal(
            tf.shape(noise)[0], tf.shape(energy_gev)[0], message="noise and energy_gev differ in length"
        )
        with tf.control_dependencies([length]):
            return showers_of(energy_gev, theta_rad, tf.identity(noise))

    info: dict[str, Any] = {
        "model": "gan3d",
        "particle": model.particle,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": model.get_config(),
        "latent_size": int(model.latent_size),
        "noise_size": noise_size,
        "condition_angle": getattr(model, "condition_angle", None),
        "energy_range_gev": [float(v) for v in model.energy_range_gev],
        "theta_range_rad": [float(v) for v in model.theta_range_rad],
        "accepted_energy_gev": [float(v) for v in (energy_low, energy_high)],
        "accepted_theta_rad": [float(v) for v in (theta_low, theta_high)],
        "signatures": SIGNATURES,
        "serving_default": "generate",
        "out_of_range": OUT_OF_RANGE_POLICY,
        "units": {"showers": "GeV per cell (inverse power applied)", "energy_gev": "GeV", "theta_rad": "rad"},
        **software_provenance(model, provenance),
    }
    model_dir = Path(saved_models_dir) / f"gan3d-{model.particle}"
    endpoints = {"generate": generate, "generate_from_noise": generate_from_noise}  # the first: serving_default
    return export_archive(model, model_dir, version, endpoints, info)


def export_trained(model: keras.Model, config: Any, run_dir: Path) -> Path:
    """Export the 3DGAN selected by a training run (``--export``) to ``saved_models/``; returns the version directory.

    ``config`` is the run's resolved configuration; its seed and the run directory go into ``export.json``.
    """
    return export_gan(model, provenance={"source": str(run_dir), "seed": config.runtime.seed})


# -- command line -------------------------------------------------------------------------------------------------
def add_gan_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``gan``: a trained 3DGAN as a TF Serving SavedModel."""
    parser = subparsers.add_parser(
        "gan",
        help="export a trained 3DGAN as a SavedModel (saved_models/gan3d-<particle>/<version>/)",
        description=(
            "Export a trained 3DGAN (a run directory or a .keras file) as a TensorFlow SavedModel in TF Serving's"
            " layout, with the signatures generate (energy_gev, theta_rad, seed) and generate_from_noise"
            " (energy_gev, theta_rad, noise), both returning showers (B, 51, 51, 25) in GeV. An existing version is"
            " never replaced."
        ),
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="run directory or .keras file of a GAN3D")
    parser.add_argument("--particle", help="particle the model must be trained for (default: the model's)")
    add_version_arguments(parser)
    return parser


def run_gan(args: argparse.Namespace) -> int:
    """Load the model, export it and print the version directory."""

    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    from caloml.models.gan3d import GAN3D  # imports TensorFlow: only after the argument checks above

    trained = load_trained_model(args.model, GAN3D, particle=args.particle)
    path = export_gan(trained.model, args.saved_models, args.version, provenance=trained.export_provenance())
    print(f"exported {trained.path} to {path} (signatures: generate [serving_default], generate_from_noise)")
    return 0
