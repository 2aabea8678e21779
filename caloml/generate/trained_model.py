"""Loading a trained model from the path a user gives: a run directory or a ``.keras`` file.

A run directory (what ``python -m caloml.train`` writes) holds ``model.keras`` (the selected best-epoch model, a
complete Keras archive) and ``config.yaml`` (the resolved training configuration with its seed); a ``.keras`` file
is used as it is; an exported SavedModel version directory (``saved_models/<name>/<v>/``) is accepted where the
caller allows it (``allow_export``: the generation commands, see :mod:`caloml.generate.exported_model`). Anything
else - a missing path, a directory without ``model.keras``, a file Keras cannot read, a model of another class than
asked for, a model of another particle than asked for - is a one-line :class:`caloml.errors.CalomlError` naming the
path. Keras is imported only when a model is actually loaded (the generation command line parses its arguments
without it). See ``docs/cli.md``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from caloml.errors import CalomlError

__all__ = [
    "EXPORTED_MODEL_FILE",
    "MODEL_FILE",
    "RUN_CONFIG_FILE",
    "TrainedModel",
    "load_trained_model",
    "resolve_model_file",
]

#: The model file of a run directory.
MODEL_FILE = "model.keras"
#: The file of an exported SavedModel version directory.
EXPORTED_MODEL_FILE = "saved_model.pb"
#: The resolved training configuration of a run directory.
RUN_CONFIG_FILE = "config.yaml"


@dataclass
class TrainedModel:
    """A loaded model and where it came from.

    Attributes:
        model: the Keras model (not compiled).
        path: the path the user gave (run directory or ``.keras`` file).
        model_file: the ``.keras`` file that was loaded.
        run_config: the run's ``config.yaml`` as a dict (empty when ``path`` is a bare ``.keras`` file or the run
            has none).
    """

    model: Any
    path: Path
    model_file: Path
    run_config: dict[str, Any] = field(default_factory=dict)

    @property
    def training_seed(self) -> int | None:
        """The seed of the training run (``seed`` of ``config.yaml``, top level or under ``runtime``), if known."""
        for section in (self.run_config, self.run_config.get("runtime") or {}):
            if isinstance(section, dict) and isinstance(section.get("seed"), int):
                return int(section["seed"])
        return None

    def provenance(self) -> dict[str, Any]:
        """Where the model came from, for the configuration stored next to an output."""
        return {
            "model_path": str(self.path),
            "model_file": str(self.model_file),
            "training_seed": self.training_seed,
        }

    def export_provenance(self) -> dict[str, Any]:
        """Where the model came from, for ``export.json``: ``source``, ``model_file`` and, when known, ``seed`` (the
        training seed; when unknown the exporter records the model's own seed)."""
        provenance: dict[str, Any] = {"source": str(self.path), "model_file": str(self.model_file)}
        if self.training_seed is not None:
            provenance["seed"] = self.training_seed
        return provenance


def resolve_model_file(path: str | Path) -> Path:
    """The ``.keras`` file of ``path``: ``path/model.keras`` for a run directory, ``path/saved_model.pb`` for an
    exported version directory, else ``path`` itself."""
    path = Path(path)
    if path.is_dir() and (path / EXPORTED_MODEL_FILE).is_file() and not (path / MODEL_FILE).is_file():
        return path / EXPORTED_MODEL_FILE
    if path.is_dir():
        model_file = path / MODEL_FILE
        if not model_file.is_file() and (path / "assets.extra" / "export.json").is_file():
            raise CalomlError(f"{path}: an incomplete export (no {EXPORTED_MODEL_FILE} in it); export the model again")
        if not model_file.is_file():
            raise CalomlError(f"{path}: not a run directory (no {MODEL_FILE} in it) and not a .keras model file")
        return model_file
    if not path.exists():
        raise CalomlError(f"{path}: no such model file or run directory")
    if path.suffix != ".keras":
        raise CalomlError(f"{path}: not a Keras model (expected a run directory or a .keras file)")
    return path


def _read_run_config(model_file: Path) -> dict[str, Any]:
    config_file = model_file.parent / RUN_CONFIG_FILE
    if model_file.name != MODEL_FILE or not config_file.is_file():
        return {}

    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CalomlError(f"{config_file}: unreadable run configuration ({_first_line(error)})") from None
    return config if isinstance(config, dict) else {}


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_trained_model(
    path: str | Path, model_class: type, *, particle: str | None = None, allow_export: bool = False
) -> TrainedModel:
    """Load the model of ``path`` (a run directory or a ``.keras`` file) and check what it is.

    ``model_class`` is the expected class (for example :class:`caloml.models.gan3d.GAN3D`; its module must be
    imported so that Keras knows the class); ``particle``, when given, must equal the model's ``particle``
    attribute. The model is loaded without its training state (``compile=False``). ``allow_export``: an exported
    version directory gives its generation wrapper (:func:`caloml.generate.exported_model.load_exported`), with the
    export's training seed as the run configuration's.
    """
    model_file = resolve_model_file(path)
    if model_file.name == EXPORTED_MODEL_FILE:
        if not allow_export:
            raise CalomlError(f"{path}: an exported SavedModel; this command needs the run directory or .keras file")
        from caloml.generate.exported_model import load_exported  # imports TensorFlow

        exported = load_exported(model_file.parent, model_class)
        model_particle = getattr(exported, "particle", None)
        if particle is not None and model_particle != particle:
            raise CalomlError(f"{path}: an export of a model of {model_particle} showers, not {particle}")
        seed = exported.info.get("seed")
        run_config: dict[str, Any] = {"runtime": {"seed": seed}} if isinstance(seed, int) else {}
        return TrainedModel(model=exported, path=Path(path), model_file=model_file, run_config=run_config)
    run_config = _read_run_config(model_file)
    import keras

    try:
        model = keras.saving.load_model(model_file, compile=False)
    except CalomlError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as error:
        raise CalomlError(f"{model_file}: not a readable Keras model file ({_first_line(error)})") from None
    if not isinstance(model, model_class):
        raise CalomlError(
            f"{model_file}: a {type(model).__name__} model, expected a {model_class.__name__}"
            " (a checkpoint of another model?)"
        )
    model_particle = getattr(model, "particle", None)
    if particle is not None and model_particle != particle:
        raise CalomlError(f"{model_file}: a model of {model_particle} showers, not {particle}")
    return TrainedModel(model=model, path=Path(path), model_file=model_file, run_config=run_config)
