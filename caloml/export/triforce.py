"""Exporting a trained Triforce network as a TensorFlow SavedModel (``saved_models/triforce-<arch>-<task>/<version>/``;
a network trained on a resampled ECAL (``data.resample`` ``atlas`` or ``cms``) goes to
``saved_models/triforce-<arch>-<task>-<resample>/<version>/``, so that it never shares a name with the CLIC one).

The SavedModel needs only TensorFlow (no caloml, no custom Keras classes): ``tf.saved_model.load(path)`` or TF
Serving; it stores the network's variables only, once. ``--format onnx`` also writes ``model.onnx`` (the same input
and output names). One signature, ``reconstruct`` (also ``serving_default``):

inputs
    ``ECAL`` (B, 25, 25, 25) float32 centre-cropped ECAL cells, GeV; ``HCAL`` (B, 11, 11, 60) float32 HCAL cells, GeV
    (accepted and ignored by GoogLeNet, which reads the HCAL through its sum); ``ECAL_E`` (B,) and ``HCAL_E`` (B,)
    float32 window sums, GeV; ``recoEta`` (B,) float32; ``recoPhi`` (B,) float32, radians.
outputs
    ``class_probability`` (B, 2) float32, the probabilities of the classes in label order (``classes`` in
    ``export.json``: e-vs-pi ``[electron, chpi]``, gamma-vs-pi0 ``[photon, pi0]``); ``energy`` (B,) float32, GeV.

Inputs of different batch sizes or non-finite values fail the call with ``InvalidArgumentError``. ``export.json``
records the architecture, task, classes in label order (with their pdgID), ``resample`` (the ECAL granularity the
network was trained on: its inputs must be resampled the same way), the model's configuration, the training seed and
configuration, the signature and the caloml, TensorFlow and Keras versions (in ``assets.extra/``).
:func:`export_trained` is the ``--export`` of ``python -m caloml.train triforce``. See ``docs/serving.md`` and
``docs/reconstruction.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml.data.reconstruction_tasks import INPUT_SHAPES, get_task
from caloml.data.resampling import check_resample
from caloml.errors import CalomlError
from caloml.export.onnx_export import OnnxGraph
from caloml.export.serving import add_format_arguments, add_version_arguments, software_provenance, write_formats
from caloml.training.config import config_to_dict

if TYPE_CHECKING:
    import keras

    from caloml.tasks.triforce.config import TriforceConfig

__all__ = [
    "INPUTS",
    "SIGNATURES",
    "add_triforce_parser",
    "arch_name",
    "export_name",
    "export_trained",
    "export_triforce",
    "run_triforce",
]

#: The signature inputs, in order, with their per-event shapes (the networks' inputs).
INPUTS: dict[str, tuple[int, ...]] = INPUT_SHAPES

SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    "reconstruct": {
        "inputs": {
            "ECAL": "(B, 25, 25, 25) float32, GeV (centre crop)",
            "HCAL": "(B, 11, 11, 60) float32, GeV",
            "ECAL_E": "(B,) float32, GeV",
            "HCAL_E": "(B,) float32, GeV",
            "recoEta": "(B,) float32",
            "recoPhi": "(B,) float32, rad",
        },
        "outputs": {
            "class_probability": "(B, 2) float32, classes in label order (see classes)",
            "energy": "(B,) float32, GeV",
        },
    }
}


def arch_name(model: Any) -> str:
    """``dnn``, ``cnn`` or ``googlenet`` for a Triforce network (CalomlError for anything else)."""
    # lazy: the networks import Keras, and python -m caloml.export parses its arguments without TensorFlow
    from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

    for name, cls in (("dnn", TriforceDNN), ("cnn", TriforceCNN), ("googlenet", TriforceGoogLeNet)):
        if isinstance(model, cls):
            return name
    raise CalomlError(f"a {type(model).__name__} is not a Triforce network")


def export_name(arch: str, task: str, resample: str = "none") -> str:
    """The model directory name: ``triforce-<arch>-<task>``, with ``-<resample>`` for a resampled ECAL."""
    return f"triforce-{arch}-{task}" + ("" if resample == "none" else f"-{resample}")


def export_triforce(
    model: Any,
    task: str,
    saved_models_dir: str | Path = "saved_models",
    version: int | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    resample: str | None = None,
    formats: tuple[str, ...] = ("saved_model",),
) -> Path:
    """Export a Triforce network trained for ``task`` to ``saved_models_dir/triforce-<arch>-<task>/<version>/``
    (``.../triforce-<arch>-<task>-<resample>/<version>/`` when trained on a resampled ECAL).

    ``version`` None takes the next integer; an existing version is never replaced
    (:class:`~caloml.errors.OutputExistsError`). ``provenance`` (source, seed, training configuration...) goes into
    ``export.json``. ``resample`` (``none``, ``atlas``, ``cms``: the ECAL granularity the network was trained on)
    None takes ``provenance["resample"]``, else ``none``; it is recorded in ``export.json`` and a value contradicting
    ``provenance["resample"]`` is a CalomlError. ``formats``: ``saved_model`` and/or ``onnx`` (``model.onnx``, the
    same input and output names; see :func:`~caloml.export.serving.write_formats`). Returns the version directory.
    See the module docstring for the signature.
    """
    import tensorflow as tf  # lazy: python -m caloml.export parses its arguments without TensorFlow

    reconstruction = get_task(task)
    recorded = (provenance or {}).get("resample")
    if resample is None:
        resample = "none" if recorded is None else str(recorded)
    check_resample(resample, where="resample")
    if recorded is not None and recorded != resample:
        raise CalomlError(f"export: resample {resample!r} contradicts the provenance's resample {recorded!r}")
    arch = arch_name(model)
    keys = tuple(model.input_keys)
    specs = [tf.TensorSpec((None, *shape), tf.float32, name=name) for name, shape in INPUTS.items()]

    # the argument names are the signature input names, the networks' input keys
    @tf.function(input_signature=specs)
    def reconstruct(
        ECAL: tf.Tensor,
        HCAL: tf.Tensor,
        ECAL_E: tf.Tensor,
        HCAL_E: tf.Tensor,
        recoEta: tf.Tensor,
        recoPhi: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        given = {"ECAL": ECAL, "HCAL": HCAL, "ECAL_E": ECAL_E, "HCAL_E": HCAL_E, "recoEta": recoEta, "recoPhi": recoPhi}
        n = tf.shape(ECAL)[0]
        checks = []
        for name, value in given.items():
            checks.append(tf.debugging.assert_equal(tf.shape(value)[0], n, message=f"{name}: batch size differs"))
            checks.append(tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(value)), [f"{name} must be finite"]))
        with tf.control_dependencies(checks):
            return network_outputs({key: tf.identity(given[key]) for key in keys})

    def network_outputs(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = model(inputs, training=False)
        return {
            "class_probability": tf.cast(outputs["class_probability"], tf.float32),
            "energy": tf.cast(outputs["energy"], tf.float32),
        }

    @tf.function(input_signature=specs)
    def onnx_reconstruct(
        ECAL: tf.Tensor,
        HCAL: tf.Tensor,
        ECAL_E: tf.Tensor,
        HCAL_E: tf.Tensor,
        recoEta: tf.Tensor,
        recoPhi: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        given = {"ECAL": ECAL, "HCAL": HCAL, "ECAL_E": ECAL_E, "HCAL_E": HCAL_E, "recoEta": recoEta, "recoPhi": recoPhi}
        return network_outputs({key: given[key] for key in keys})

    units = {"cells": "GeV", "ECAL_E": "GeV", "HCAL_E": "GeV", "recoPhi": "rad", "energy": "GeV"}

    def onnx_graph() -> OnnxGraph:
        rng = np.random.default_rng(0)
        examples = {
            name: rng.exponential(0.05 if len(shape) == 3 else 20.0, (3, *shape)).astype(np.float32)
            for name, shape in INPUTS.items()
        }
        metadata = {
            "caloml_model": export_name(arch, reconstruction.name, resample),
            "units": units,
            "classes": list(reconstruction.particles),
            "resample": resample,
            "caller_must_check": "every input finite and of one batch size (ONNX has no checks); the ECAL resampled"
            " as the network was trained (resample)",
        }
        return OnnxGraph(onnx_reconstruct, examples, metadata)

    info: dict[str, Any] = {
        "model": f"triforce-{arch}",
        "arch": arch,
        "task": reconstruction.name,
        "classes": [
            {"label": i, "pdgID": pdg, "particle": particle}
            for i, (pdg, particle) in enumerate(zip(reconstruction.classes, reconstruction.particles, strict=True))
        ],
        "class_names": list(reconstruction.particles),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": model.get_config(),
        "input_keys_used": list(keys),
        "signatures": SIGNATURES,
        "serving_default": "reconstruct",
        "units": units,
        "deployed_parameters": int(model.count_params()),
        **software_provenance(model, provenance),
        "resample": resample,
    }
    model_dir = Path(saved_models_dir) / export_name(arch, reconstruction.name, resample)
    # the endpoint is also serving_default
    return write_formats(model_dir, version, {"reconstruct": reconstruct}, info, formats, onnx_graph)


def export_trained(model: keras.Model, config: TriforceConfig, run_dir: Path) -> Path:
    """Export the Triforce network selected by a training run (``--export``) to ``saved_models/``; returns the
    version directory. ``config`` is the run's resolved configuration: its task and ECAL granularity name the
    export, and the run directory, seed and whole configuration go into ``export.json``."""
    provenance = {
        "source": str(run_dir),
        "seed": config.runtime.seed,
        "resample": config.data.resample,
        "training_config": config_to_dict(config),
    }
    return Path(export_triforce(model, config.model.task, provenance=provenance))


# -- command line -------------------------------------------------------------------------------------------------
def add_triforce_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``triforce``: a trained Triforce network as a TF Serving SavedModel."""
    parser = subparsers.add_parser(
        "triforce",
        help="export a trained Triforce network (saved_models/triforce-<arch>-<task>[-<resample>]/<version>/)",
        description=(
            "Export a trained Triforce network (a run directory or a .keras file) as a TensorFlow SavedModel in TF"
            " Serving's layout, with the signature reconstruct (ECAL, HCAL, ECAL_E, HCAL_E, recoEta, recoPhi) ->"
            " class_probability (B, 2), energy (B,) GeV. A network trained on a resampled ECAL (data.resample atlas"
            " or cms in the run's config.yaml) goes to triforce-<arch>-<task>-<resample>. An existing version is"
            " never replaced."
        ),
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="run directory or .keras file")
    parser.add_argument(
        "--task", choices=("e-vs-pi", "gamma-vs-pi0"), help="the model's task (default: from the run's config.yaml)"
    )
    add_version_arguments(parser)
    add_format_arguments(parser)
    return parser


def run_triforce(args: argparse.Namespace) -> int:
    """Load the model, export it and print the version directory."""
    from caloml.generate.trained_model import load_trained_model, resolve_model_file
    from caloml.quiet import import_tensorflow_quietly

    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    from caloml.models.triforce import TriforceModel

    trained = load_trained_model(args.model, TriforceModel)
    model_section = trained.run_config.get("model") or {}
    run_task = model_section.get("task") if isinstance(model_section, dict) else None
    task = args.task or run_task
    if task is None:
        raise CalomlError(f"{args.model}: no run configuration says the model's task; pass --task")
    if run_task is not None and args.task is not None and args.task != run_task:
        raise CalomlError(f"{args.model}: trained for {run_task}, not {args.task}")
    provenance = trained.export_provenance()
    if trained.run_config:
        provenance["training_config"] = trained.run_config
    data_section = trained.run_config.get("data") or {}
    resample = data_section.get("resample") if isinstance(data_section, dict) else None
    if resample is not None and not isinstance(resample, str):
        raise CalomlError(f"{args.model}: data.resample of its config.yaml is {resample!r}, not a name")
    provenance["resample"] = resample or "none"
    path = export_triforce(
        trained.model, task, args.saved_models, args.version, provenance=provenance, formats=args.format
    )
    print(f"exported {trained.path} to {path} ({', '.join(args.format)}; signature: reconstruct [serving_default])")
    return 0
