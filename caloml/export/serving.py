"""TensorFlow Serving's model directory layout: ``BASE/<model-name>/<version>/`` with integer versions.

TF Serving watches ``BASE/<model-name>/`` and serves the highest integer version directory; other names (such as
the hidden temporary directories below) are ignored. A version is written into a temporary directory beside its
final place and renamed when complete, so that a server never sees half a model, and an existing version is never
replaced (:class:`~caloml.errors.OutputExistsError`): a new model gets a new version.

See ``docs/training.md``.
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
from caloml.atomic_files import new_temporary_file
from caloml.cli_args import output_directory, positive_int
from caloml.errors import CalomlError, OutputExistsError

__all__ = [
    "EXPORT_INFO_FILE",
    "add_version_arguments",
    "existing_versions",
    "export_archive",
    "next_version",
    "software_provenance",
    "staged_version",
    "write_export_info",
]

#: The description written into every exported version directory (JSON).
EXPORT_INFO_FILE = "export.json"


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


def write_export_info(directory: str | Path, info: dict[str, Any]) -> Path:
    """Write ``info`` as ``directory/export.json`` (sorted keys, indented) and return its path."""
    path = Path(directory) / EXPORT_INFO_FILE
    path.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
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


def add_version_arguments(parser: argparse.ArgumentParser) -> None:
    """The export commands' output options: ``--saved-models DIR`` (the base, ``saved_models``) and ``--version N``
    (default: the next integer version)."""
    parser.add_argument("--saved-models", type=output_directory, default="saved_models", metavar="DIR", help="base dir")
    parser.add_argument("--version", type=positive_int, default=None, help="version number (default: the next one)")


def export_archive(
    model: Any,
    model_dir: str | Path,
    version: int | None,
    endpoints: Mapping[str, Callable[..., Any]],
    info: Mapping[str, Any],
) -> Path:
    """Write ``model`` with its ``endpoints`` (name -> traced ``tf.function``) as ``model_dir/<version>/``.

    The first endpoint is also ``serving_default``. ``info`` (plus the version number) goes to ``export.json``.
    The version is staged and renamed when complete (:func:`staged_version`); returns its directory.
    """
    import keras  # lazy, see software_provenance

    with staged_version(model_dir, version) as (tmp, number):
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, function in endpoints.items():
            archive.add_endpoint(name, function)
        archive.write_out(str(tmp), verbose=False)
        write_export_info(tmp, {**info, "version": number})
    return Path(model_dir) / str(number)
