"""Exporting a trained 3DGAN as a TensorFlow SavedModel for TF Serving (``saved_models/gan3d-<particle>/<version>/``).

The SavedModel needs only TensorFlow to run (no caloml, no custom Keras classes): ``tf.saved_model.load(path)``
or TF Serving. It stores the generator's variables only (no discriminator, no counters). Signatures (see
:data:`SIGNATURES`), the showers (B, 51, 51, 25) float32 in **GeV** (the inverse power transform applied):

``showers_from_seeds`` (also ``serving_default``)
    ``energy_gev`` (B,), ``theta_rad`` (B,) float32 and ``seed`` (B,) int64: every input per example, so both of TF
    Serving's JSON formats work. Row ``i``'s noise is ``tf.random.stateless_normal`` of ``(seed[i], 0)``: a shower
    depends on its own inputs only (``GAN3D.generate(seed=s)`` of a one-shower batch gives the same one).
``showers_from_noise``
    ``energy_gev``, ``theta_rad`` and ``noise`` (B, latent_size - 2) float32 standard normal numbers, the Keras model's
    output for the same inputs; also written as ONNX (``--format onnx``: ONNX has no stateless random numbers).
``generate``, ``generate_from_noise``
    The earlier contract, kept: a scalar ``seed`` () int64 for the whole batch, and the output named ``showers``.

``theta_rad`` is the angle condition of the kind the model was trained with (``condition_angle`` in
``export.json``: the true angle ``theta`` or the measured angle ``mtheta``). Out-of-range conditions are errors,
never clipped: a non-finite energy or angle, one outside the model's trained range (widened by 0.1% of its width,
exactly as ``GAN3D.check_conditions`` accepts float32 values), or inputs of different batch sizes fail the call with
``InvalidArgumentError`` (TF Serving answers with the message, HTTP 400). ``--precision bfloat16`` exports the
generator rebuilt under Keras' ``mixed_bfloat16`` policy (float32 weights, bfloat16 arithmetic, float32 in and
out). ``assets.extra/export.json`` records the configuration, particle, trained ranges, precision, signatures,
out-of-range policy, training seed, source path and software versions.

See ``docs/serving.md`` and ``docs/3dgan.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml.errors import CalomlError
from caloml.export.onnx_export import OnnxGraph
from caloml.export.serving import (
    add_format_arguments,
    add_version_arguments,
    per_example_noise,
    software_provenance,
    write_formats,
)
from caloml.float32_bounds import float32_inside
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.quiet import import_tensorflow_quietly

if TYPE_CHECKING:
    import keras

__all__ = [
    "PRECISIONS",
    "RANGE_TOLERANCE",
    "SIGNATURES",
    "accepted_range",
    "add_gan_parser",
    "export_gan",
    "export_trained",
    "run_gan",
]

#: The exported signatures: name -> (inputs, outputs) as "name: shape dtype, unit" descriptions.
_CONDITIONS = {"energy_gev": "(B,) float32, GeV", "theta_rad": "(B,) float32, rad"}
_SHOWERS_GEV = {"showers_gev": "(B, 51, 51, 25) float32, GeV per cell"}
SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    "showers_from_seeds": {
        "inputs": {**_CONDITIONS, "seed": "(B,) int64, per-example seed of the stateless normal noise"},
        "outputs": _SHOWERS_GEV,
    },
    "showers_from_noise": {
        "inputs": {**_CONDITIONS, "noise": "(B, latent_size - 2) float32, standard normal"},
        "outputs": _SHOWERS_GEV,
    },
    "generate": {
        "inputs": {**_CONDITIONS, "seed": "() int64, seed of the whole batch's stateless normal noise"},
        "outputs": {"showers": "(B, 51, 51, 25) float32, GeV"},
    },
    "generate_from_noise": {
        "inputs": {**_CONDITIONS, "noise": "(B, latent_size - 2) float32, standard normal"},
        "outputs": {"showers": "(B, 51, 51, 25) float32, GeV"},
    },
}
#: The arithmetic an export can run in: ``float32``, or ``bfloat16`` (Keras' ``mixed_bfloat16`` policy).
PRECISIONS = ("float32", "bfloat16")

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
    formats: tuple[str, ...] = ("saved_model",),
    precision: str = "float32",
) -> Path:
    """Export ``model`` (a :class:`~caloml.models.gan3d.GAN3D`) to ``saved_models_dir/gan3d-<particle>/<version>/``.

    ``version`` None takes the next integer; an existing version is never replaced
    (:class:`~caloml.errors.OutputExistsError`). The directory is written beside its place and renamed when
    complete. ``provenance`` (for example the source path and training seed) goes into ``export.json``.
    ``formats``: ``saved_model`` and/or ``onnx`` (the ``showers_from_noise`` network as ``model.onnx``; ``onnx``
    alone adds it to an existing version, see :func:`~caloml.export.serving.write_formats`). ``precision``:
    ``float32`` or ``bfloat16``. Returns the version directory. See the module docstring for the signatures.
    """
    import tensorflow as tf  # lazy: python -m caloml.export imports this module to parse its arguments

    from caloml.models.precision import model_in_precision  # lazy too: it imports Keras and TensorFlow

    if precision not in PRECISIONS:
        raise CalomlError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    # built for the serving machine, not this one: no float32 fallback where this CPU lacks bfloat16 units
    network = model_in_precision(model, precision, for_this_machine=False)
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

    def unchecked_showers(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        inputs = {"energy_gev": energy_gev, "theta_rad": theta_rad, "noise": noise}
        return tf.cast(network(inputs, training=False), tf.float32)

    def showers_of(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        checks = checked_conditions(energy_gev, theta_rad)
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(noise)[0], tf.shape(energy_gev)[0], message="noise and energy_gev differ in length"
            )
        )
        with tf.control_dependencies(checks):
            return unchecked_showers(tf.identity(energy_gev), tf.identity(theta_rad), tf.identity(noise))

    energy_spec = tf.TensorSpec((None,), tf.float32, name="energy_gev")
    theta_spec = tf.TensorSpec((None,), tf.float32, name="theta_rad")
    noise_spec = tf.TensorSpec((None, noise_size), tf.float32, name="noise")

    @tf.function(input_signature=[energy_spec, theta_spec, tf.TensorSpec((None,), tf.int64, name="seed")])
    def showers_from_seeds(energy_gev: tf.Tensor, theta_rad: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        length = tf.debugging.assert_equal(
            tf.shape(seed)[0], tf.shape(energy_gev)[0], message="seed and energy_gev differ in length"
        )
        with tf.control_dependencies([length]):
            noise = per_example_noise(seed, noise_size)
        return {"showers_gev": showers_of(energy_gev, theta_rad, noise)}

    @tf.function(input_signature=[energy_spec, theta_spec, noise_spec])
    def showers_from_noise(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"showers_gev": showers_of(energy_gev, theta_rad, noise)}

    @tf.function(input_signature=[energy_spec, theta_spec, tf.TensorSpec((), tf.int64, name="seed")])
    def generate(energy_gev: tf.Tensor, theta_rad: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        n = tf.shape(energy_gev)[0]
        noise = tf.random.stateless_normal(
            tf.stack([n, noise_size]), seed=tf.stack([seed, tf.constant(0, tf.int64)]), dtype=tf.float32
        )
        return {"showers": showers_of(energy_gev, theta_rad, noise)}

    @tf.function(input_signature=[energy_spec, theta_spec, noise_spec])
    def generate_from_noise(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"showers": showers_of(energy_gev, theta_rad, noise)}

    @tf.function(input_signature=[energy_spec, theta_spec, noise_spec])
    def onnx_showers(energy_gev: tf.Tensor, theta_rad: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"showers_gev": unchecked_showers(energy_gev, theta_rad, noise)}

    ranges = {
        "energy_gev": [float(energy_low), float(energy_high)],
        "theta_rad": [float(theta_low), float(theta_high)],
    }
    units = {"showers_gev": "GeV per cell (inverse power applied)", "energy_gev": "GeV", "theta_rad": "rad"}

    def onnx_graph() -> OnnxGraph:
        rng = np.random.default_rng(0)
        examples = {
            "energy_gev": np.linspace(model.energy_range_gev[0], model.energy_range_gev[1], 3).astype(np.float32),
            "theta_rad": np.linspace(model.theta_range_rad[0], model.theta_range_rad[1], 3).astype(np.float32),
            "noise": rng.standard_normal((3, noise_size), dtype=np.float32),
        }
        metadata = {
            "caloml_model": f"gan3d-{model.particle}",
            "units": units,
            "accepted_ranges": ranges,
            "condition_angle": str(getattr(model, "condition_angle", "theta")),
            "precision": precision,
            "caller_must_check": "energy_gev and theta_rad finite and inside accepted_ranges; noise (B, "
            f"{noise_size}) standard normal drawn by the caller; ONNX has no range checks",
        }
        return OnnxGraph(onnx_showers, examples, metadata)

    info: dict[str, Any] = {
        "model": "gan3d",
        "particle": model.particle,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": model.get_config(),
        "latent_size": int(model.latent_size),
        "noise_size": noise_size,
        "precision": precision,
        "deployed_parameters": int(model.generator.count_params()),
        "condition_angle": getattr(model, "condition_angle", None),
        "energy_range_gev": [float(v) for v in model.energy_range_gev],
        "theta_range_rad": [float(v) for v in model.theta_range_rad],
        "accepted_energy_gev": ranges["energy_gev"],
        "accepted_theta_rad": ranges["theta_rad"],
        "signatures": SIGNATURES,
        "serving_default": "showers_from_seeds",
        "out_of_range": OUT_OF_RANGE_POLICY,
        "units": {**units, "showers": units["showers_gev"]},
        **software_provenance(model, provenance),
    }
    model_dir = Path(saved_models_dir) / f"gan3d-{model.particle}"
    endpoints = {  # the first: serving_default
        "showers_from_seeds": showers_from_seeds,
        "showers_from_noise": showers_from_noise,
        "generate": generate,
        "generate_from_noise": generate_from_noise,
    }
    return write_formats(model_dir, version, endpoints, info, formats, onnx_graph)


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
            " layout, with the signatures showers_from_seeds (energy_gev, theta_rad, seed: each (B,)) and"
            " showers_from_noise (energy_gev, theta_rad, noise), both returning showers_gev (B, 51, 51, 25) in GeV,"
            " and optionally as ONNX (the noise network). An existing version is never replaced."
        ),
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="run directory or .keras file of a GAN3D")
    parser.add_argument("--particle", help="particle the model must be trained for (default: the model's)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="float32", help="arithmetic of the export (default float32)"
    )
    add_version_arguments(parser)
    add_format_arguments(parser)
    return parser


def run_gan(args: argparse.Namespace) -> int:
    """Load the model, export it and print the version directory."""

    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    from caloml.models.gan3d import GAN3D  # imports TensorFlow: only after the argument checks above

    trained = load_trained_model(args.model, GAN3D, particle=args.particle)
    path = export_gan(
        trained.model,
        args.saved_models,
        args.version,
        provenance=trained.export_provenance(),
        formats=args.format,
        precision=args.precision,
    )
    print(
        f"exported {trained.path} to {path} ({', '.join(args.format)}; {args.precision}; serving_default:"
        " showers_from_seeds)"
    )
    return 0
