"""TensorFlow Serving's model directory layout: ``BASE/<model-name>/<version>/`` with integer versions.

TF Serving watches ``BASE/<model-name>/`` and serves the highest integer version directory; other names (such as
the hidden temporary directories below) are ignored. A version holds the SavedModel (only the variables its
signatures use, each once), ``assets.extra/export.json`` (what TF Serving keeps for extra files) and, when asked for,
``model.onnx``. A version is written into a temporary directory beside its
final place and renamed when complete, so that a server never sees half a model, and an existing version is never
replaced (:class:`~caloml.errors.OutputExistsError`): a new model gets a new version.

See ``docs/serving.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import caloml
from caloml.atomic_files import atomic_write_text, new_temporary_file
from caloml.cli_args import output_directory, positive_int
from caloml.errors import CalomlError, OutputExistsError

__all__ = [
    "EXPORT_INFO_FILE",
    "EXTRA_DIR",
    "FORMATS",
    "MEV_PER_GEV",
    "PER_EXAMPLE_SAMPLE_SIGNATURES",
    "add_format_arguments",
    "add_version_arguments",
    "existing_versions",
    "export_archive",
    "export_info_path",
    "next_version",
    "parse_formats",
    "per_example_noise",
    "per_example_sample_signatures",
    "per_example_samples",
    "software_provenance",
    "staged_version",
    "write_export_info",
    "write_formats",
]

#: The description written into every exported version directory (JSON), under :data:`EXTRA_DIR`.
EXPORT_INFO_FILE = "export.json"
#: The export formats: TF Serving's SavedModel and ONNX (``model.onnx`` in the same version directory).
FORMATS = ("saved_model", "onnx")
#: TF Serving's directory for files beside a SavedModel that are not part of it.
EXTRA_DIR = "assets.extra"


def export_info_path(version_dir: str | Path) -> Path:
    """``version_dir/assets.extra/export.json``, the description of an exported version."""
    return Path(version_dir) / EXTRA_DIR / EXPORT_INFO_FILE


def existing_versions(model_dir: str | Path) -> list[int]:
    """The integer version directories of ``model_dir``, sorted (empty when it does not exist)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: str | Path) -> int:
    """One more than the highest existing version of ``model_dir`` (1 for a new model)."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


@contextmanager
def staged_version(model_dir: str | Path, version: int | None = None) -> Iterator[tuple[Path, int]]:
    """Yield ``(temporary directory, version)``; the directory becomes ``model_dir/<version>`` when the block ends.

    ``version`` None takes :func:`next_version`. An existing version raises :class:`OutputExistsError` (before any
    work and again at the rename); an exception in the block removes the temporary directory.
    """
    model_dir = Path(model_dir)
    if version is None:
        version = next_version(model_dir)
    if int(version) < 1:
        raise CalomlError(f"{model_dir}: version must be a positive integer, got {version}")
    version = int(version)
    final = model_dir / str(version)
    if final.exists():
        raise OutputExistsError(f"{final}: version {version} exists; exported versions are never replaced")
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = new_temporary_file(final)  # caloml's naming: a re-run removes the temporary of a killed export
    tmp.unlink()
    tmp.mkdir()
    try:
        yield tmp, version
        if final.exists():
            raise OutputExistsError(f"{final}: version {version} appeared while exporting; not replaced")
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_export_info(directory: str | Path, info: Mapping[str, Any]) -> Path:
    """Write ``info`` as ``directory/assets.extra/export.json`` (sorted keys, indented, atomic); returns the path."""
    path = export_info_path(directory)
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, json.dumps(dict(info), indent=2, sort_keys=True, default=str) + "\n")
    return path


def software_provenance(model: Any, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The part of ``export.json`` every exporter shares: versions, time, the model's seed, then ``provenance``.

    ``provenance`` (the training run's configuration, seed and source, when the trainer exports) overrides the
    defaults (``source`` None, ``seed`` the model's own).
    """
    # TensorFlow is imported here, not at module level: ``python -m caloml.export`` imports this module to build its
    # parser, and a wrong path must fail before TensorFlow loads
    import keras
    import tensorflow as tf

    return {
        "caloml_version": caloml.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": getattr(model, "seed", None),  # the model's own seed (its training seed when built by the trainer)
        "source": None,
        **(provenance or {}),
    }


def checked_incident_energy(incident_energy: Any, low: Any, high: Any, trained_gev: tuple[float, ...]) -> Any:
    """``incident_energy`` (B,) GeV unchanged, with an assertion that fails the signature call
    (``InvalidArgumentError``) when a value is outside the float32 bounds ``[low, high]`` or not finite."""
    import tensorflow as tf  # lazy, see software_provenance

    inside = tf.debugging.Assert(
        tf.reduce_all((incident_energy >= low) & (incident_energy <= high)),  # False for NaN
        [
            f"incident_energy outside the range the model was trained on, [{trained_gev[0]:g}, {trained_gev[1]:g}]"
            " GeV, or not finite"
        ],
    )
    with tf.control_dependencies([inside]):
        return tf.identity(incident_energy)


def per_example_noise(seed: Any, noise_size: int) -> Any:
    """Standard normal noise (B, noise_size) float32, row ``i`` drawn from the stateless seed ``(seed[i], 0)``.

    ``seed`` (B,) int64. A row depends on its own seed only (not on the batch it came in), and equals the first row
    of ``tf.random.stateless_normal((n, noise_size), seed=(seed[i], 0))`` for any n.
    """
    import tensorflow as tf  # lazy, see software_provenance

    def row(one_seed: Any) -> Any:
        return tf.random.stateless_normal(
            (1, noise_size), seed=tf.stack([one_seed, tf.constant(0, tf.int64)]), dtype=tf.float32
        )[0]

    return tf.map_fn(row, tf.cast(seed, tf.int64), fn_output_signature=tf.TensorSpec((noise_size,), tf.float32))


def per_example_samples(
    sample_one: Callable[[Any, Any], dict[str, Any]], energy: Any, seed: Any, outputs: Mapping[str, Any]
) -> dict[str, Any]:
    """``sample_one(energy[i:i+1], seed[i])`` for every example, stacked: each example depends on its own seed only.

    ``energy`` (B,) float32, ``seed`` (B,) int64; ``sample_one`` returns tensors of leading size 1 with the keys and
    per-example ``tf.TensorSpec`` s of ``outputs``. The examples run one after the other (``tf.map_fn``).
    """
    import tensorflow as tf  # lazy, see software_provenance

    def one(pair: tuple[Any, Any]) -> dict[str, Any]:
        drawn = sample_one(tf.reshape(pair[0], [1]), pair[1])
        return {key: tf.reshape(drawn[key], spec.shape) for key, spec in outputs.items()}

    return tf.map_fn(one, (energy, tf.cast(seed, tf.int64)), fn_output_signature=dict(outputs))


def checked_sample_signature(
    sample: Callable[[Any, Any], dict[str, Any]], low: Any, high: Any, trained_gev: tuple[float, ...]
) -> Any:
    """The traced ``sample`` signature of a generator's export: ``incident_energy`` (B,) float32 GeV and ``seed``
    (2,) int32 -> ``sample(energy, seed)``, after :func:`checked_incident_energy` with the float32 bounds
    ``[low, high]`` of the trained range ``trained_gev``."""
    import tensorflow as tf  # lazy, see software_provenance

    @tf.function(
        input_signature=[
            tf.TensorSpec((None,), tf.float32, name="incident_energy"),
            tf.TensorSpec((2,), tf.int32, name="seed"),
        ]
    )
    def signature(incident_energy: tf.Tensor, seed: tf.Tensor) -> dict[str, Any]:
        return sample(checked_incident_energy(incident_energy, low, high, trained_gev), seed)

    return signature


def per_example_sample_signatures(
    sample_one: Callable[[Any, Any], dict[str, Any]],
    grid_shape: tuple[int, ...],
    low: Any,
    high: Any,
    trained_gev: tuple[float, ...],
) -> dict[str, Any]:
    """The per-example signatures of a point-cloud generator: ``showers_from_seeds`` (``energy_gev`` (B,) float32,
    ``seed`` (B,) int64 -> ``showers_gev`` (B, *grid_shape) float32, ``n_hits`` (B,) int32) and
    ``showers_from_seeds_mev`` (``energy_mev`` -> ``showers_mev``, ``n_hits``), the files' unit.

    ``sample_one(energy_gev (1,), seed ())`` returns ``{"showers": (1, *grid) GeV, "n_hits": (1,)}``; energies
    outside the float32 bounds ``[low, high]`` GeV of the trained range or not finite fail the call.
    """
    import tensorflow as tf  # lazy, see software_provenance

    outputs = {"showers": tf.TensorSpec(grid_shape, tf.float32), "n_hits": tf.TensorSpec((), tf.int32)}

    def draw(energy_gev: Any, seed: Any) -> dict[str, Any]:
        length = tf.debugging.assert_equal(tf.shape(seed)[0], tf.shape(energy_gev)[0], message="seed length differs")
        with tf.control_dependencies([length]):
            energy = checked_incident_energy(energy_gev, low, high, trained_gev)
        return per_example_samples(sample_one, energy, seed, outputs)

    seed_spec = tf.TensorSpec((None,), tf.int64, name="seed")

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.float32, name="energy_gev"), seed_spec])
    def showers_from_seeds(energy_gev: Any, seed: Any) -> dict[str, Any]:
        drawn = draw(energy_gev, seed)
        return {"showers_gev": drawn["showers"], "n_hits": tf.cast(drawn["n_hits"], tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.float32, name="energy_mev"), seed_spec])
    def showers_from_seeds_mev(energy_mev: Any, seed: Any) -> dict[str, Any]:
        drawn = showers_from_seeds(energy_mev / MEV_PER_GEV, seed)  # a call of the GeV graph: traced once
        return {"showers_mev": drawn["showers_gev"] * MEV_PER_GEV, "n_hits": drawn["n_hits"]}

    return {"showers_from_seeds": showers_from_seeds, "showers_from_seeds_mev": showers_from_seeds_mev}


#: The signatures :func:`per_example_sample_signatures` makes, as "name: shape dtype, unit" descriptions.
PER_EXAMPLE_SAMPLE_SIGNATURES: dict[str, dict[str, dict[str, str]]] = {
    "showers_from_seeds": {
        "inputs": {
            "energy_gev": "(B,) float32, GeV, inside the trained range",
            "seed": "(B,) int64, per-example seed of every draw",
        },
        "outputs": {"showers_gev": "(B, *grid) float32, GeV per cell", "n_hits": "(B,) int32, non-empty cells"},
    },
    "showers_from_seeds_mev": {
        "inputs": {
            "energy_mev": "(B,) float32, MeV, inside the trained range",
            "seed": "(B,) int64, per-example seed of every draw",
        },
        "outputs": {"showers_mev": "(B, *grid) float32, MeV per cell", "n_hits": "(B,) int32, non-empty cells"},
    },
}
#: MeV per GeV.
MEV_PER_GEV = 1000.0


def add_version_arguments(parser: argparse.ArgumentParser) -> None:
    """The export commands' output options: ``--saved-models DIR`` (the base, ``saved_models``) and ``--version N``
    (default: the next integer version)."""
    parser.add_argument("--saved-models", type=output_directory, default="saved_models", metavar="DIR", help="base dir")
    parser.add_argument("--version", type=positive_int, default=None, help="version number (default: the next one)")


def parse_formats(text: str) -> tuple[str, ...]:
    """``--format``: a comma-separated subset of :data:`FORMATS` (``saved_model,onnx``), in that order."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(FORMATS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"formats are comma-separated among {', '.join(FORMATS)}, got {text!r}")
    return tuple(name for name in FORMATS if name in names)


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format saved_model|onnx|saved_model,onnx`` (default ``saved_model``)."""
    parser.add_argument(
        "--format",
        type=parse_formats,
        default=("saved_model",),
        metavar="FORMATS",
        help="saved_model (default), onnx or saved_model,onnx; onnx alone adds model.onnx to an existing version"
        " (--version, default the latest)",
    )


def write_formats(
    model_dir: str | Path,
    version: int | None,
    endpoints: Mapping[str, Callable[..., Any]],
    info: Mapping[str, Any],
    formats: tuple[str, ...] | list[str],
    onnx_graph: Callable[[], Any] | None,
) -> Path:
    """Write an export in ``formats`` and return its version directory.

    With ``saved_model`` a new version is written (:func:`export_archive`), with ``model.onnx`` in it when ``onnx``
    is asked for too. ``onnx`` alone adds ``model.onnx`` to the existing version ``version`` (None: the latest) and
    records it in its ``export.json``: a version without a SavedModel would stop TF Serving. ``onnx_graph`` makes
    the :class:`~caloml.export.onnx_export.OnnxGraph`; None for a model without an ONNX form (asking for one is a
    CalomlError).
    """
    from caloml.export.onnx_export import ONNX_FILE, onnx_writer

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise CalomlError(f"formats must be among {', '.join(FORMATS)}, got {list(formats)}")
    if "onnx" in formats and onnx_graph is None:
        raise CalomlError(f"{info.get('model')}: this model has no ONNX form (see docs/serving.md)")
    if "saved_model" in formats:
        extra = onnx_writer(onnx_graph) if "onnx" in formats and onnx_graph is not None else None
        return export_archive(None, model_dir, version, endpoints, info, extra)
    assert onnx_graph is not None
    versions = existing_versions(model_dir)
    number = int(version) if version is not None else (versions[-1] if versions else None)
    if number is None or number not in versions:
        raise CalomlError(
            f"{model_dir}: no version {number if number is not None else ''} to add model.onnx to; export the"
            " SavedModel first or pass --format saved_model,onnx".replace("version  ", "version ")
        )
    directory = Path(model_dir) / str(number)
    if (directory / ONNX_FILE).exists():
        raise OutputExistsError(f"{directory / ONNX_FILE}: exists; exported versions are never replaced")
    existing = json.loads(export_info_path(directory).read_text()) if export_info_path(directory).is_file() else {}
    added = onnx_writer(onnx_graph)(directory, existing)
    write_export_info(directory, {**existing, **added})
    return directory


def export_archive(
    model: Any,
    model_dir: str | Path,
    version: int | None,
    endpoints: Mapping[str, Callable[..., Any]],
    info: Mapping[str, Any],
    extra: Callable[[Path, Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``model``'s ``endpoints`` (name -> traced ``tf.function``) as ``model_dir/<version>/``.

    The first endpoint is also ``serving_default``. Only the variables the endpoints use are stored, each once (the
    model itself is not tracked: a GAN's discriminator, an optimizer or training counters stay out). ``info`` (plus
    the version number) goes to ``assets.extra/export.json``. ``extra`` (optional) is called with the staged
    directory and the info before the rename and returns entries added to ``export.json`` (the ONNX writer). The
    version is staged and renamed when complete (:func:`staged_version`); returns its directory.
    """
    import keras  # lazy, see software_provenance

    del model  # the endpoints reach its variables; tracking the model would store every variable it has
    with staged_version(model_dir, version) as (tmp, number):
        archive = keras.export.ExportArchive()
        for name, function in endpoints.items():
            archive.add_endpoint(name, function)
        archive.write_out(str(tmp), verbose=False)
        full_info = {**info, "version": number}
        if extra is not None:
            full_info.update(extra(tmp, full_info))
        write_export_info(tmp, full_info)
    return Path(model_dir) / str(number)
