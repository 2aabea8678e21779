"""Exporting a trained crystal generator as a SavedModel: ``saved_models/<model>-crystal-5x5/<version>/``.

``<model>`` is ``wgan``, ``vae`` or ``vaewgan``. The SavedModel needs only TensorFlow (``tf.saved_model.load`` or TF
Serving). Its ``generate`` signature (also ``serving_default``) takes ``energy_gev`` (B,) float32 primary energies in
GeV and ``seed`` () int64, and returns ``{"showers": (B, 5, 5) float32}`` crystal energies in GeV; the noise is
``tf.random.stateless_normal(seed=(seed, 0))``, the draw of ``model.generate(energy, seed)`` for one batch, so both
give the same showers. A non-finite energy or one outside the trained range (widened by a relative 1e-5) fails the
call with ``InvalidArgumentError``; nothing is clipped. ``export.json`` records the model's configuration, the
trained range, the signature, the training seed and source, and the software versions. See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from caloml.errors import CalomlError
from caloml.export.serving import add_version_arguments, export_archive, software_provenance
from caloml.float32_bounds import float32_inside
from caloml.generate.crystal import add_model_parser, model_class
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.quiet import import_tensorflow_quietly

__all__ = ["SIGNATURES", "add_crystal_export_parser", "export_crystal", "export_trained", "make_export_run"]

SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    "generate": {
        "inputs": {"energy_gev": "(B,) float32, GeV", "seed": "() int64, seed of the stateless normal noise"},
        "outputs": {"showers": "(B, 5, 5) float32, GeV per crystal"},
    }
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
) -> Path:
    """Export a crystal generator to ``saved_models_dir/<kind>-<geometry>/<version>/`` (the next version by default;
    an existing one is never replaced); returns the version directory."""
    import tensorflow as tf  # lazy: python -m caloml.export imports this module to parse its arguments

    low, high = float32_inside(*model.accepted_range())
    noise_size = int(model.noise_size)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None,), tf.float32, name="energy_gev"),
            tf.TensorSpec((), tf.int64, name="seed"),
        ]
    )
    def generate(energy_gev: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        trained = f"{model.energy_range_gev[0]:g}-{model.energy_range_gev[1]:g} GeV"
        checks = [
            tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(energy_gev)), ["energy_gev must be finite"]),
            tf.debugging.Assert(
                tf.reduce_all((energy_gev >= low) & (energy_gev <= high)),
                [f"energy_gev outside the range the model was trained on, {trained}"],
            ),
        ]
        with tf.control_dependencies(checks):
            energy = tf.identity(energy_gev)
        noise = tf.random.stateless_normal(
            tf.stack([tf.shape(energy)[0], noise_size]), seed=tf.stack([seed, tf.constant(0, tf.int64)])
        )
        return {"showers": tf.cast(model({"energy_gev": energy, "noise": noise}, training=False), tf.float32)}

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
        "serving_default": "generate",
        "out_of_range": "error: a non-finite energy or one outside the trained range fails with InvalidArgumentError",
        "units": {"showers": "GeV per crystal", "energy_gev": "GeV"},
        **software_provenance(model, provenance),
    }
    model_dir = Path(saved_models_dir) / f"{kind}-{model.geometry}"
    return export_archive(model, model_dir, version, {"generate": generate}, info)


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
        path = export_crystal(trained.model, args.saved_models, args.version, provenance=trained.export_provenance())
        print(f"exported {trained.path} to {path} (signature: generate [serving_default])")
        return 0

    return run
