"""Exporting a trained crystal generator as a SavedModel: ``saved_models/<model>-crystal-5x5/<version>/``.

``<model>`` is ``wgan``, ``vae`` or ``vaewgan``. The SavedModel needs only TensorFlow (``tf.saved_model.load`` or TF
Serving) and stores the generating network's variables only (no critic, no encoder). Its default signature
``showers_from_seeds`` takes ``energy_gev`` (B,) float32 and ``seed`` (B,) int64 (row ``i``'s noise drawn from
``(seed[i], 0)``) and returns ``showers_gev`` (B, 5, 5) float32 GeV; ``showers_from_noise`` takes the noise instead
(also written as ONNX with ``--format onnx``). The earlier ``generate`` signature stays: it takes ``energy_gev`` (B,)
float32 primary energies in GeV and ``seed`` () int64, and returns ``{"showers": (B, 5, 5) float32}`` crystal energies
in GeV; the noise is ``tf.random.stateless_normal(seed=(seed, 0))``, the draw of ``model.generate(energy, seed)`` for
one batch, so both give the same showers. A non-finite energy or one outside the trained range (widened by a relative
1e-5) fails the call with ``InvalidArgumentError``; nothing is clipped. ``export.json`` records the model's
configuration, the trained range, the signatures, the training seed and source, and the software versions (in
``assets.extra/``).
See ``docs/serving.md`` and ``docs/vaewgan.md``.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

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
from caloml.generate.crystal import add_model_parser, model_class
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.quiet import import_tensorflow_quietly

__all__ = ["SIGNATURES", "add_crystal_export_parser", "export_crystal", "export_trained", "make_export_run"]

SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    "showers_from_seeds": {
        "inputs": {"energy_gev": "(B,) float32, GeV", "seed": "(B,) int64, per-example seed of the noise"},
        "outputs": {"showers_gev": "(B, 5, 5) float32, GeV per crystal"},
    },
    "showers_from_noise": {
        "inputs": {"energy_gev": "(B,) float32, GeV", "noise": "(B, noise_size) float32, standard normal"},
        "outputs": {"showers_gev": "(B, 5, 5) float32, GeV per crystal"},
    },
    "generate": {
        "inputs": {"energy_gev": "(B,) float32, GeV", "seed": "() int64, seed of the stateless normal noise"},
        "outputs": {"showers": "(B, 5, 5) float32, GeV per crystal"},
    },
}
_KINDS = {"CrystalWGAN": "wgan", "CrystalVAE": "vae", "CrystalVAEWGAN": "vaewgan"}


def model_kind(model: Any) -> str:
    """``wgan``, ``vae`` or ``vaewgan`` for a crystal model."""
    return _KINDS[type(model).__name__]


def export_crystal(
    model: Any,
    saved_models_dir: str | Path = "saved_models",
    version: int | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("saved_model",),
) -> Path:
    """Export a crystal generator to ``saved_models_dir/<kind>-<geometry>/<version>/`` (the next version by default;
    an existing one is never replaced) in ``formats`` (``saved_model`` and/or ``onnx``, see
    :func:`~caloml.export.serving.write_formats`); returns the version directory."""
    import tensorflow as tf  # lazy: python -m caloml.export imports this module to parse its arguments

    low, high = float32_inside(*model.accepted_range())
    noise_size = int(model.noise_size)
    trained = f"{model.energy_range_gev[0]:g}-{model.energy_range_gev[1]:g} GeV"

    def checked(energy_gev: tf.Tensor, length_of: tf.Tensor | None = None) -> tf.Tensor:
        checks = [
            tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(energy_gev)), ["energy_gev must be finite"]),
            tf.debugging.Assert(
                tf.reduce_all((energy_gev >= low) & (energy_gev <= high)),
                [f"energy_gev outside the range the model was trained on, {trained}"],
            ),
        ]
        if length_of is not None:
            checks.append(
                tf.debugging.assert_equal(
                    tf.shape(length_of)[0],
                    tf.shape(energy_gev)[0],
                    message="energy_gev and its partner differ in length",
                )
            )
        with tf.control_dependencies(checks):
            return tf.identity(energy_gev)

    def showers_of(energy_gev: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        return tf.cast(model({"energy_gev": energy_gev, "noise": noise}, training=False), tf.float32)

    energy_spec = tf.TensorSpec((None,), tf.float32, name="energy_gev")
    noise_spec = tf.TensorSpec((None, noise_size), tf.float32, name="noise")

    @tf.function(input_signature=[energy_spec, tf.TensorSpec((None,), tf.int64, name="seed")])
    def showers_from_seeds(energy_gev: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        energy = checked(energy_gev, seed)
        return {"showers_gev": showers_of(energy, per_example_noise(seed, noise_size))}

    @tf.function(input_signature=[energy_spec, noise_spec])
    def showers_from_noise(energy_gev: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"showers_gev": showers_of(checked(energy_gev, noise), noise)}

    @tf.function(input_signature=[energy_spec, tf.TensorSpec((), tf.int64, name="seed")])
    def generate(energy_gev: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        energy = checked(energy_gev)
        noise = tf.random.stateless_normal(
            tf.stack([tf.shape(energy)[0], noise_size]), seed=tf.stack([seed, tf.constant(0, tf.int64)])
        )
        return {"showers": showers_of(energy, noise)}

    @tf.function(input_signature=[energy_spec, noise_spec])
    def onnx_showers(energy_gev: tf.Tensor, noise: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"showers_gev": showers_of(energy_gev, noise)}

    def onnx_graph() -> OnnxGraph:
        examples = {
            "energy_gev": np.linspace(model.energy_range_gev[0], model.energy_range_gev[1], 3).astype(np.float32),
            "noise": np.random.default_rng(0).standard_normal((3, noise_size), dtype=np.float32),
        }
        metadata = {
            "caloml_model": f"{model_kind(model)}-{model.geometry}",
            "units": {"showers_gev": "GeV per crystal", "energy_gev": "GeV"},
            "accepted_ranges": {"energy_gev": [float(low), float(high)]},
            "caller_must_check": f"energy_gev finite and inside accepted_ranges; noise (B, {noise_size}) standard"
            " normal drawn by the caller; ONNX has no range checks",
        }
        return OnnxGraph(onnx_showers, examples, metadata)

    kind = model_kind(model)
    info: dict[str, Any] = {
        "model": kind,
        "geometry": model.geometry,
        "particle": model.particle,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": model.get_config(),
        "noise_size": noise_size,
        "energy_range_gev": list(model.energy_range_gev),
        "accepted_energy_gev": [float(low), float(high)],
        "signatures": SIGNATURES,
        "serving_default": "showers_from_seeds",
        "out_of_range": "error: a non-finite energy or one outside the trained range fails with InvalidArgumentError",
        "units": {"showers_gev": "GeV per crystal", "showers": "GeV per crystal", "energy_gev": "GeV"},
        **software_provenance(model, provenance),
    }
    model_dir = Path(saved_models_dir) / f"{kind}-{model.geometry}"
    endpoints = {
        "showers_from_seeds": showers_from_seeds,
        "showers_from_noise": showers_from_noise,
        "generate": generate,
    }
    return write_formats(model_dir, version, endpoints, info, formats, onnx_graph)  # the first: serving_default


def export_trained(model: Any, config: Any, run_dir: Path) -> Path:
    """The trainer's export after training (``--export``): ``saved_models/<kind>-crystal-5x5/<next version>/``."""
    return export_crystal(model, provenance={"source": str(run_dir), "seed": config.runtime.seed})


def add_export_parser(subparsers: argparse._SubParsersAction, kind: str) -> argparse.ArgumentParser:
    """The ``export`` command ``kind`` (``wgan``, ``vae`` or ``vaewgan``): a trained model as a SavedModel."""
    parser = add_model_parser(
        subparsers,
        kind,
        f"export a trained {kind} as a SavedModel (saved_models/{kind}-crystal-5x5/<version>/)",
        f"Export a trained {kind} (a run directory or a .keras file) as a TensorFlow SavedModel with the"
        " signature generate (energy_gev, seed) returning showers (B, 5, 5) in GeV.",
    )
    add_version_arguments(parser)
    add_format_arguments(parser)
    return parser


def add_crystal_export_parser(kind: str) -> Any:
    """The add-parser function of the ``export`` command ``kind`` (what ``python -m caloml.export`` registers)."""
    return functools.partial(add_export_parser, kind=kind)


def make_export_run(kind: str) -> Any:
    """The run function of the ``export`` command ``kind``."""

    def run(args: argparse.Namespace) -> int:
        resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
        import_tensorflow_quietly()
        trained = load_trained_model(args.model, model_class(kind))
        if model_kind(trained.model) != kind:
            raise CalomlError(f"{trained.model_file}: a {type(trained.model).__name__} model, not a {kind}")
        path = export_crystal(
            trained.model,
            args.saved_models,
            args.version,
            provenance=trained.export_provenance(),
            formats=args.format,
        )
        print(f"exported {trained.path} to {path} ({', '.join(args.format)}; serving_default: showers_from_seeds)")
        return 0

    return run
