"""Inputs of the reconstruction evaluation: the models to compare and the test events they all see.

**Models** (:func:`load_model`), any mix of:

* a trained Triforce network (:class:`caloml.models.triforce.TriforceModel`): a ``.keras`` file or a run directory
  holding ``model.keras`` (what ``python -m caloml.train triforce`` writes); it classifies and regresses;
* a baseline saved by :mod:`caloml.models.baselines` (a directory with ``baseline.json``): the BDT classifier, or
  the linear or XGBoost energy regression;
* a directory of per-particle baselines: subdirectories (up to three levels down) holding ``baseline.json`` of one
  kind, each for one particle named by a ``particle`` field of its ``baseline.json``, by ``data.particle`` of the
  ``config.yaml`` beside it, or by a directory on its path (``electron``, ``chpi``, ``photon``, ``pi0``, or
  ``Ele``, ``ChPi``, ``Gamma``, ``Pi0``).

A regression fitted on one particle (found the same way: ``python -m caloml.train linreg --particle photon``
writes ``data.particle`` into the run's ``config.yaml``) predicts the events of that particle only, and several
regressions of one kind given for different particles (``--model runs/linreg-photon runs/linreg-pi0``) are
merged into one model named ``linreg-photon+linreg-pi0``. Each event's energy is predicted by the regression of
its true particle type (the paper's per-particle regressions); events of a particle without one get no
prediction and are left out of that model's metrics.

**Test events** (:func:`resolve_test_sources`), any mix of:

* LCD HDF5 files in the reconstruction layout (ECAL 51 x 51 x 25 or 25 x 25 x 25, HCAL 11 x 11 x 60): every event;
* caloml TFRecord directories of LCD showers (``python -m caloml.data convert``, or the training tasks' cached
  default data ``tf_records/lcd-rec-...-triforce``): every record;
* run directories holding ``test_events.json``::

      {"files": [{"path": "...", "particle": "electron" (or "label": 0 / 11), "test_indices": [0, 5, ...]}, ...],
       "seed": 1, "fractions": [0.6, 0.2, 0.2], "task": "e-vs-pi" (optional)}

  or the format the Triforce network and baseline runs write (``caloml-triforce-split``, see
  :mod:`caloml.tasks.triforce`): ``{"task": ..., "sources": [{"path": ..., "format": "hdf5" | "tfrecords",
  "n_events": N, "particle": ..., "label": ..., "test_indices": [...]}, ...]}``.
  ``test_indices`` are event indices of the source as stored, before the task filters (which are applied again; an
  event that fails them is dropped and counted): the row of an HDF5 file, or for a TFRecord directory the record
  number reading its shards in the order of its ``metadata.json``, as the trainers number them
  (:func:`caloml.tasks.triforce.source_events`). A source whose event count differs from the entry's ``n_events``
  is refused (the data changed since the run: its indices would name other events). Relative paths are taken
  from the working directory, else from the run directory. ``particle`` or ``label`` (a class index of the task
  or a PDG code) is checked against the source's events: a mismatch is an error, never a silent relabelling.

  A source named several times is evaluated once, on the events common to all of them (a source given directly
  means all its events): every model then sees only events none of the runs trained on.

  A per-particle regression run (``python -m caloml.train linreg|xgb --particle P``; its ``test_events.json`` has a
  top-level ``"particle": P``) tested on the events of P only (charged pions: only those passing the raw-sum cut
  ``50 (ECAL_E + HCAL_E) >= 0.3 E``, :func:`regression_subject`), so its ``test_indices`` say nothing about the
  other events of its sources (a pion file in ``xgb --particle electron`` records ``[]``). Given as ``--test``, it
  therefore restricts only the events of P that its regression would be scored on (:attr:`TestSource.restrictions`):
  those not among its test indices are dropped; every other event stays, so it never removes a class from the
  shared classification set. (A source named only by such runs is read whole, then restricted.)

**No model is scored on its own training events** (:func:`check_model_splits`). A model whose run directory holds a
``test_events.json`` (a ``.keras`` file's directory when it is ``model.keras``; every baseline directory) is
checked after the test events are read: every evaluated event of a source its run recorded (matched by resolved
path) must be among that source's recorded ``test_indices``, and the source must hold the recorded ``n_events``;
otherwise the evaluation is refused with one line naming the model and how many evaluated events it trained or
validated on (e.g. ``--test runs/triforce-dnn --model runs/bdt`` where the BDT run split the same cached data with
another seed, fractions, data order or events per particle). For a per-particle regression run only the events its
regression is scored on are checked (above). Sources a run did not record are not its training data (the match is by
path: a copy of the data under another path is not recognized). Models without a ``test_events.json`` (a bare
``.keras`` file, a baseline saved by hand) cannot be checked.

**The ECAL granularity** (``resample``: ``none``, ``atlas`` or ``cms``, seed 004 section 5.4): every batch read
passes through :func:`caloml.data.resampling.resample_events` before the task filters and the crop, whatever the
source's format (a TFRecord chunk is decoded to the same arrays as an HDF5 chunk: GeV, the full window, every
stored scalar, the expert features included). With ``atlas`` or ``cms`` it resamples the ECAL (energy conserved)
and, when the ECAL is the full 51 x 51 x 25 window and the HCAL is there, recomputes the expert features from the
resampled cells, so that the baselines see the resampled showers too; the same function the baseline trainers use.
The setting must match what the runs recorded (:func:`resolve_resample`; when not given, it is the one the test
runs record, ``none`` for plain files and TFRecord directories): a run's ``test_events.json`` records the
granularity it trained on as ``"resample"`` (:attr:`TestSource.run_resample`), and a model's run directory records
it in ``config.yaml`` (``data.resample``), ``summary.json`` or ``data_summary.json`` (``"resample"``)
(:attr:`ReconstructionModel.recorded_resample`); a model trained on CMS-like cells evaluated on CLIC cells, or the
reverse, is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloml.data.resampling import RESAMPLE_CHOICES, resample_events
from caloml.errors import CalomlError
from caloml.tasks.triforce_data import TASKS, ReconstructionTask, get_task, prepare_events

if TYPE_CHECKING:
    from caloml.tasks.triforce import Source

__all__ = [
    "ReconstructionModel",
    "TestSource",
    "check_model_resample",
    "check_model_splits",
    "infer_task",
    "iter_test_batches",
    "load_model",
    "load_models",
    "raw_energy_fraction",
    "recorded_resample",
    "regression_subject",
    "resolve_resample",
    "resolve_test_sources",
]

TEST_EVENTS_NAME = "test_events.json"
#: Source formats of ``test_events.json`` entries (the ``format`` of :class:`caloml.tasks.triforce.Source`).
SOURCE_FORMATS: tuple[str, ...] = ("hdf5", "tfrecords")
#: Key added to each batch of :func:`iter_test_batches`: the events' row indices in their file.
ROW_KEY = "caloml_row"
#: Particle names (simulator and LCD file prefixes) -> PDG code.
PARTICLE_PDG: dict[str, int] = {
    "electron": 11,
    "photon": 22,
    "pi0": 111,
    "chpi": 211,
    "Ele": 11,
    "Gamma": 22,
    "Pi0": 111,
    "ChPi": 211,
}
PDG_PARTICLE: dict[int, str] = {11: "electron", 22: "photon", 111: "pi0", 211: "chpi"}
#: Charged pions whose raw sum ``50 (ECAL_E + HCAL_E)`` is below this fraction of the true energy are left out of the
#: energy regression (the paper's selection, appendix D; the ``chpi`` regression runs drop them from every split).
CHPI_MIN_RAW_FRACTION = 0.3
CHPI_PDG = 211


def raw_energy_fraction(events: Mapping[str, np.ndarray]) -> np.ndarray:
    """``50 (ECAL_E + HCAL_E) / energy`` (N,) of prepared events (the sums in GeV, 50 = 1 / sampling fraction)."""
    raw = 50.0 * (np.asarray(events["ECAL_E"], np.float64) + np.asarray(events["HCAL_E"], np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(raw / np.asarray(events["energy"], np.float64), dtype=np.float64)


def regression_subject(pdg: np.ndarray, raw_fraction: np.ndarray, particle_pdg: int) -> np.ndarray:
    """Which events (N,) bool a regression of ``particle_pdg`` is fitted and scored on: its particle type and, for
    charged pions, a raw sum of at least :data:`CHPI_MIN_RAW_FRACTION` of the true energy."""
    mask = np.abs(np.asarray(pdg)).reshape(-1) == particle_pdg
    if particle_pdg == CHPI_PDG:
        mask &= np.asarray(raw_fraction) >= CHPI_MIN_RAW_FRACTION
    return np.asarray(mask, dtype=bool)


Regressor = Any  # LinearEnergyRegression | XGBoostEnergyRegression


# -- models -----------------------------------------------------------------------------------------------------------
@dataclass
class ReconstructionModel:
    """One model of the comparison.

    Attributes:
        name: unique display name (the run directory's or file's name).
        path: where it was loaded from.
        kind: ``triforce-dnn``, ``triforce-cnn``, ``triforce-googlenet`` (the network's class), or the baseline
            kind (``bdt_classifier``, ``linear_energy_regression``, ``xgboost_energy_regression``).
        baseline: True for the baselines.
        classifier / regressor: what it predicts.
        particles: for per-particle regressions, the particles it has a regression of (None: any particle).
        recorded_resample: the ECAL granularity its run directories record, ``{file: setting}`` (see
            :func:`recorded_resample`; empty when none records it).
        splits: the test events its run directories' ``test_events.json`` record (see
            :func:`check_model_splits`; empty when none has one).
    """

    name: str
    path: Path
    kind: str
    baseline: bool
    classifier: bool
    regressor: bool
    particles: tuple[str, ...] | None = None
    network: Any = None
    bdt: Any = None
    regressions: dict[int | None, Regressor] = field(default_factory=dict)
    merged_from: list[Path] = field(default_factory=list)
    recorded_resample: dict[str, str] = field(default_factory=dict)
    #: the splits its run directories record (their ``test_events.json``), one TestSource per recorded source
    splits: list[TestSource] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "baseline": self.baseline,
            "classifier": self.classifier,
            "regressor": self.regressor,
            "particles": None if self.particles is None else list(self.particles),
            "merged_from": [str(p) for p in self.merged_from],
            "recorded_resample": sorted(set(self.recorded_resample.values())),
        }

    def predict(self, events: Mapping[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(probability of class 1 (N,) or None, energy (N,) GeV or None) for prepared events (see
        :func:`caloml.tasks.triforce_data.prepare_events`); energies of particles without a regression are NaN."""
        n = len(events["energy"])
        if self.network is not None:
            inputs = {key: np.asarray(events[key], dtype=np.float32) for key in self.network.input_keys}
            outputs = self.network.predict_on_batch(inputs)
            probability = np.asarray(outputs["class_probability"], dtype=np.float64)
            energy = np.asarray(outputs["energy"], dtype=np.float64).reshape(-1)
            return probability[:, 1], energy
        if self.bdt is not None:
            return self.bdt.predict_proba(events)[:, 1], None
        energy = np.full(n, np.nan)
        if None in self.regressions:
            return None, np.asarray(self.regressions[None].predict(events), dtype=np.float64)
        codes = np.abs(np.asarray(events["pdgID"]).reshape(-1))
        for pdg, regression in self.regressions.items():
            selected = codes == pdg
            if np.any(selected):
                part = {key: np.asarray(value)[selected] for key, value in events.items()}
                energy[selected] = regression.predict(part)
        return None, energy


def _load_network(path: Path) -> tuple[str, Any]:
    import keras

    import caloml.models.triforce_nets  # noqa: F401  (registers the networks' classes with Keras)
    from caloml.models.triforce import TriforceModel

    try:
        network = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for files it cannot read
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CalomlError(f"{path}: cannot load it as a Keras model ({message[:200]})") from None
    if not isinstance(network, TriforceModel):
        raise CalomlError(f"{path}: a Keras {type(network).__name__}, not a Triforce network (caloml.models.triforce)")
    if network.n_classes != 2:
        raise CalomlError(f"{path}: the network has {network.n_classes} classes; the reconstruction tasks have 2")
    kind = {"TriforceDNN": "triforce-dnn", "TriforceCNN": "triforce-cnn", "TriforceGoogLeNet": "triforce-googlenet"}
    return kind.get(type(network).__name__, f"triforce-{type(network).__name__.lower()}"), network


#: Files of a run directory that record the ECAL granularity it trained on: config.yaml's ``data.resample`` (every
#: trainer), ``summary.json`` (the baselines) and ``data_summary.json`` (the Triforce networks)'s ``resample``.
RESAMPLE_RECORDS: tuple[str, ...] = ("config.yaml", "summary.json", "data_summary.json")


def _check_recorded(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in RESAMPLE_CHOICES:
        raise CalomlError(f"{where}: unknown resample {value!r} recorded (one of {', '.join(RESAMPLE_CHOICES)})")
    return value


def recorded_resample(directory: str | os.PathLike) -> dict[str, str]:
    """The ECAL granularity (``none``, ``atlas``, ``cms``) a run directory says its model was trained on,
    ``{file: setting}`` for each of :data:`RESAMPLE_RECORDS` that records it (empty: none does). Unreadable files
    are skipped; a recorded value outside :data:`~caloml.data.resampling.RESAMPLE_CHOICES` is a CalomlError."""
    import yaml

    directory = Path(directory)
    found: dict[str, str] = {}
    for name in RESAMPLE_RECORDS:
        path = directory / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
            record = yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
            continue
        if name.endswith(".yaml"):
            record = record.get("data") if isinstance(record, dict) else None
        if isinstance(record, dict) and record.get("resample") is not None:
            found[str(path)] = _check_recorded(record["resample"], str(path))
    return found


def _config_particle(directory: Path) -> str | None:
    """``data.particle`` of a run directory's ``config.yaml`` (what ``python -m caloml.train linreg|xgb`` writes)."""
    import yaml

    try:
        config = yaml.safe_load((directory / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    data = config.get("data") if isinstance(config, dict) else None
    particle = data.get("particle") if isinstance(data, dict) else None
    return particle if isinstance(particle, str) else None


def _particle_of(baseline_json: Path, root: Path) -> int | None:
    """The particle a regression was fitted on: ``particle`` in its baseline.json, ``data.particle`` of the run's
    config.yaml, or a directory below ``root`` named like a particle; None when unknown (any particle)."""
    try:
        record = json.loads(baseline_json.read_text())
    except (OSError, ValueError):
        record = {}
    named = record.get("particle") if isinstance(record, dict) else None
    named = named if isinstance(named, str) else _config_particle(baseline_json.parent)
    if named in PARTICLE_PDG:
        return PARTICLE_PDG[named]
    for part in baseline_json.parent.relative_to(root).parts[::-1]:
        if part in PARTICLE_PDG:
            return PARTICLE_PDG[part]
    return None


def _load_baseline_dir(path: Path) -> tuple[str, Any, dict[int | None, Regressor]]:
    """(kind, BDT or None, regressions by PDG code) of a baseline directory or a directory of per-particle ones."""
    from caloml.models.baselines import BDTClassifier, load_baseline

    if (path / "baseline.json").is_file():
        baseline = load_baseline(path)
        if isinstance(baseline, BDTClassifier):
            if int(baseline.settings.get("n_classes", 2)) != 2:
                raise CalomlError(f"{path}: the BDT has {baseline.settings['n_classes']} classes; the tasks have 2")
            return baseline.kind, baseline, {}
        particle = _particle_of(path / "baseline.json", path)
        return baseline.kind, None, {particle: baseline}
    found = _baseline_files(path)
    if not found:
        raise CalomlError(
            f"{path}: no model there (no model.keras, no baseline.json, no per-particle baselines in subdirectories)"
        )
    loaded = [(p.parent, load_baseline(p.parent)) for p in found]
    kinds = sorted({b.kind for _, b in loaded})
    if len(kinds) > 1:
        raise CalomlError(f"{path}: holds baselines of several kinds ({', '.join(kinds)}); pass each directory alone")
    if len(loaded) == 1:
        return _load_baseline_dir(loaded[0][0])
    if kinds[0] == BDTClassifier.kind:
        raise CalomlError(f"{path}: holds {len(loaded)} BDT classifiers; pass the one to evaluate")
    regressions: dict[int | None, Regressor] = {}
    for directory, baseline in loaded:
        pdg = _particle_of(directory / "baseline.json", path)
        if pdg is None:
            raise CalomlError(f"{directory}: cannot tell its particle (no 'particle' field, no particle directory)")
        if pdg in regressions:
            raise CalomlError(f"{path}: two regressions of particle {PDG_PARTICLE[pdg]} (one is {directory})")
        regressions[pdg] = baseline
    return kinds[0], None, regressions


def load_model(path: str | os.PathLike, name: str | None = None) -> ReconstructionModel:
    """Load one model (see the module docstring); CalomlError for a missing path or a model of another kind.

    Its :attr:`~ReconstructionModel.recorded_resample` comes from the run directory (``path``; for a ``.keras``
    file, the directory of a ``model.keras``; for baselines, also every directory holding one of them).
    """
    model = _load_model(Path(path), name)
    directories: list[Path] = []
    if model.path.is_dir():
        directories.append(model.path)
        if model.baseline:
            directories += [p.parent for p in _baseline_files(model.path)]
    elif model.path.name == "model.keras":
        directories.append(model.path.parent)
    for directory in directories:
        model.recorded_resample.update(recorded_resample(directory))
        if (directory / TEST_EVENTS_NAME).is_file():
            model.splits += _read_test_events(directory)
    return model


def _baseline_files(path: Path) -> list[Path]:
    """The ``baseline.json`` files up to three directory levels below ``path``."""
    return sorted(p for pattern in ("*/baseline.json", "*/*/baseline.json", "*/*/*/baseline.json")
                  for p in path.glob(pattern))  # fmt: skip


def _load_model(path: Path, name: str | None) -> ReconstructionModel:
    if not path.exists():
        raise CalomlError(f"{path}: no such model file or directory")
    display = name or (path.parent.name if path.stem == "model" and path.suffix == ".keras" else path.stem or path.name)
    if path.is_file():
        if path.suffix != ".keras":
            raise CalomlError(f"{path}: not a model (a Triforce network is a .keras file, a baseline a directory)")
        kind, network = _load_network(path)
        return ReconstructionModel(display, path, kind, False, True, True, network=network)
    if (path / "model.keras").is_file():
        kind, network = _load_network(path / "model.keras")
        return ReconstructionModel(path.name, path, kind, False, True, True, network=network)
    kind, bdt, regressions = _load_baseline_dir(path)
    if bdt is not None:
        return ReconstructionModel(path.name, path, kind, True, True, False, bdt=bdt)
    particles = None if None in regressions else tuple(PDG_PARTICLE[p] for p in sorted(k for k in regressions if k))
    return ReconstructionModel(path.name, path, kind, True, False, True, particles=particles, regressions=regressions)


def _merge_particle_regressions(models: list[ReconstructionModel]) -> list[ReconstructionModel]:
    """Regressions of one kind fitted on single, different particles (``linreg --particle photon`` and ``pi0``)
    become one model named ``name1+name2``, which predicts each event with the regression of its particle."""
    merged: list[ReconstructionModel] = []
    groups: dict[str, ReconstructionModel] = {}
    for model in models:
        single = model.regressor and model.baseline and model.particles is not None and len(model.particles) == 1
        group = groups.get(model.kind) if single else None
        if group is None or model.particles is None:
            merged.append(model)
            if single:
                groups[model.kind] = model
            continue
        assert group.particles is not None
        if set(model.particles) & set(group.particles):
            raise CalomlError(
                f"{model.path} and {group.path}: two {model.kind} models of particle {model.particles[0]}; pass one"
            )
        group.merged_from = group.merged_from or [group.path]
        group.merged_from.append(model.path)
        group.name = f"{group.name}+{model.name}"
        group.regressions.update(model.regressions)
        group.recorded_resample.update(model.recorded_resample)
        group.splits += model.splits
        group.particles = tuple(PDG_PARTICLE[p] for p in sorted(k for k in group.regressions if k is not None))
    return merged


def load_models(paths: Sequence[str | os.PathLike]) -> list[ReconstructionModel]:
    """Load every model (single-particle regressions of one kind merged, see :func:`_merge_particle_regressions`);
    display names made unique by a ``-2``, ``-3``... suffix."""
    if not paths:
        raise CalomlError("no model to evaluate (--model)")
    models = []
    seen: dict[str, int] = {}
    for model in _merge_particle_regressions([load_model(path) for path in paths]):
        base = model.name
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            model.name = f"{base}-{seen[base]}"
        models.append(model)
    return models


# -- test events ------------------------------------------------------------------------------------------------------
@dataclass
class TestSource:
    """The test events of one source.

    Attributes:
        path: the LCD HDF5 file or the TFRecord directory.
        indices: sorted event indices (HDF5 rows or TFRecord record numbers; None: every event).
        expected_pdg: the PDG code its events must have (from ``test_events.json``), or None.
        origins: the arguments that named it.
        task: the task named by its ``test_events.json``, or None.
        format: ``hdf5`` or ``tfrecords``.
        n_events: the source's event count recorded by its ``test_events.json`` (checked when read), or None.
        run_resample: the ECAL granularity recorded by the ``test_events.json`` files that name it,
            ``{test_events.json path: setting}`` (empty: none records it).
        regression_pdg: set when the ``test_events.json`` is a per-particle regression run's (its top-level
            ``particle``): ``indices`` then bound only the events of that particle (module docstring).
        restrictions: ``(pdg, allowed indices, origin)`` of the per-particle regression runs naming it: an event of
            that particle (charged pions: passing the raw-sum cut) is kept only if its index is allowed.
    """

    __test__ = False  # not a pytest test class

    path: Path
    indices: np.ndarray | None
    expected_pdg: int | None = None
    origins: list[str] = field(default_factory=list)
    task: str | None = None
    format: str = "hdf5"
    n_events: int | None = None
    run_resample: dict[str, str] = field(default_factory=dict)
    regression_pdg: int | None = None
    restrictions: list[tuple[int, np.ndarray, str]] = field(default_factory=list)

    def describe(self, n_rows: int) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "rows": int(n_rows),
            "all_rows": self.indices is None,
            "expected_particle": None if self.expected_pdg is None else PDG_PARTICLE.get(self.expected_pdg),
            "named_by": list(self.origins),
            "run_resample": sorted(set(self.run_resample.values())),
        }


def _expected_pdg(entry: Mapping[str, Any], where: str) -> int | None:
    if "particle" in entry and entry["particle"] is not None:
        particle = entry["particle"]
        if not isinstance(particle, str) or particle not in PARTICLE_PDG:
            raise CalomlError(f"{where}: unknown particle {particle!r} (use one of {', '.join(PDG_PARTICLE.values())})")
        return PARTICLE_PDG[particle]
    if "label" in entry and entry["label"] is not None:
        label = entry["label"]
        if isinstance(label, str) and label in PARTICLE_PDG:
            return PARTICLE_PDG[label]
        if isinstance(label, bool) or not isinstance(label, int):
            raise CalomlError(f"{where}: 'label' must be a class index, a PDG code or a particle name, got {label!r}")
        if abs(label) in PDG_PARTICLE:
            return abs(label)
        if label in (0, 1):
            return -1 - label  # a class index, resolved against the task later (-1: class 0, -2: class 1)
        raise CalomlError(f"{where}: 'label' {label} is neither a class index (0, 1) nor a PDG code")
    return None


def _read_test_events(directory: Path) -> list[TestSource]:
    path = directory / TEST_EVENTS_NAME
    if not path.is_file():
        raise CalomlError(f"{directory}: a directory without {TEST_EVENTS_NAME} (pass LCD files or a run directory)")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CalomlError(f"{path}: not readable JSON ({str(error).splitlines()[0]})") from None
    files = record.get("files", record.get("sources")) if isinstance(record, dict) else None
    if not isinstance(files, list) or not files:
        raise CalomlError(f"{path}: malformed, needs a non-empty list 'files' (or 'sources')")
    task = record.get("task")
    if task is not None and task not in TASKS:
        raise CalomlError(f"{path}: unknown task {task!r}")
    resample = record.get("resample")
    run_resample = {} if resample is None else {str(path): _check_recorded(resample, str(path))}
    regression_particle = record.get("particle")
    if regression_particle is not None and regression_particle not in PARTICLE_PDG:
        raise CalomlError(f"{path}: unknown regression particle {regression_particle!r}")
    regression_pdg = None if regression_particle is None else PARTICLE_PDG[regression_particle]
    sources = []
    for number, entry in enumerate(files):
        where = f"{path} files[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise CalomlError(f"{where}: malformed, needs 'path' (a string) and 'test_indices'")
        source_format = entry.get("format", "hdf5")
        if source_format not in SOURCE_FORMATS:
            raise CalomlError(
                f"{where}: unknown source format {source_format!r} (the evaluation reads {', '.join(SOURCE_FORMATS)})"
            )
        n_events = entry.get("n_events")
        if n_events is not None and (isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0):
            raise CalomlError(f"{where}: 'n_events' must be a non-negative integer, got {n_events!r}")
        indices = entry.get("test_indices")
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise CalomlError(f"{where}: 'test_indices' must be a list of integers")
        if any(i < 0 for i in indices):
            raise CalomlError(f"{where}: negative index in 'test_indices'")
        file_path = Path(entry["path"])
        if not file_path.is_absolute() and not file_path.exists() and (directory / file_path).exists():
            file_path = directory / file_path
        sources.append(
            TestSource(
                file_path,
                np.unique(np.asarray(indices, dtype=np.int64)),
                # a regression's entries describe the events it kept (its particle), not the whole source
                _expected_pdg(entry, where) if regression_pdg is None else None,
                [str(directory)],
                task,
                source_format,
                n_events,
                dict(run_resample),
                regression_pdg,
            )
        )
    return sources


def resolve_resample(requested: str | None, sources: Sequence[TestSource]) -> tuple[str, str]:
    """The ECAL granularity of the evaluation and where it comes from: ``(setting, "option" | "runs" | "default")``.

    ``requested`` (``--resample``) None: the setting the ``test_events.json`` files record (they must agree), else
    ``none`` (plain HDF5 files and TFRecord directories record nothing). Given: it must match every recorded
    setting. Disagreements are one-line CalomlErrors naming the files.
    """
    recorded: dict[str, str] = {}
    for source in sources:
        recorded.update(source.run_resample)
    first: dict[str, str] = {}  # setting -> the first file recording it
    for where, setting in recorded.items():
        first.setdefault(setting, where)
    if len(first) > 1:
        listed = "; ".join(f"{where} records resample {setting}" for setting, where in first.items())
        raise CalomlError(f"the --test runs were trained on different ECAL granularities ({listed}); evaluate apart")
    if requested is None:
        return (next(iter(first)), "runs") if first else ("none", "default")
    if requested not in RESAMPLE_CHOICES:
        raise CalomlError(f"unknown resample {requested!r}; choose one of {', '.join(RESAMPLE_CHOICES)}")
    for setting, where in first.items():
        if setting != requested:
            raise CalomlError(
                f"--resample {requested} contradicts {where}, which records resample {setting} (the run's model was"
                f" trained on that granularity); drop --resample or pass --resample {setting}"
            )
    return requested, "option"


def check_model_resample(models: Sequence[ReconstructionModel], resample: str) -> None:
    """One-line CalomlError when a model's run directory records another ECAL granularity than ``resample``."""
    for model in models:
        for where, setting in model.recorded_resample.items():
            if setting != resample:
                raise CalomlError(
                    f"{model.path}: trained on resample {setting} ({where}), but the evaluation uses resample"
                    f" {resample}; evaluate it on test events of its own granularity (--resample {setting})"
                )


def _is_records_dir(path: Path) -> bool:
    from caloml.data.tfrecord import METADATA_FILE

    return path.is_dir() and (path / METADATA_FILE).is_file() and not (path / TEST_EVENTS_NAME).is_file()


def resolve_test_sources(paths: Sequence[str | os.PathLike]) -> list[TestSource]:
    """The test files and rows named by ``paths`` (files and run directories, see the module docstring)."""
    if not paths:
        raise CalomlError("no test events (--test)")
    merged: dict[Path, TestSource] = {}
    for item in paths:
        path = Path(item)
        if _is_records_dir(path):
            sources = [TestSource(path, None, None, [str(path)], format="tfrecords")]
        elif path.is_dir():
            sources = _read_test_events(path)
        elif path.is_file():
            sources = [TestSource(path, None, None, [str(path)])]
        else:
            raise CalomlError(f"{path}: no such test file, TFRecord directory or run directory")
        for source in sources:
            if source.regression_pdg is not None:  # bounds only its particle's events: a restriction, kept apart
                assert source.indices is not None
                source.restrictions = [(source.regression_pdg, source.indices, source.origins[0])]
                source.indices = None
            key = source.path.resolve()
            if key not in merged:
                merged[key] = source
                continue
            old = merged[key]
            old.restrictions += source.restrictions
            if source.format != old.format:
                raise CalomlError(f"{source.path}: named as {old.format} and as {source.format}")
            if source.n_events is not None:
                if old.n_events is not None and old.n_events != source.n_events:
                    raise CalomlError(
                        f"{source.path}: the test_events.json files disagree on its event count"
                        f" ({old.n_events} and {source.n_events})"
                    )
                old.n_events = source.n_events
            old.run_resample.update(source.run_resample)
            if old.indices is None:
                old.indices = source.indices
            elif source.indices is not None:
                old.indices = np.intersect1d(old.indices, source.indices)
            if source.expected_pdg is not None:
                if old.expected_pdg is not None and old.expected_pdg != source.expected_pdg:
                    raise CalomlError(f"{source.path}: the test_events.json files disagree on its particle")
                old.expected_pdg = source.expected_pdg
            old.task = old.task or source.task
            old.origins += source.origins
    return list(merged.values())


def _file_pdg_codes(source: TestSource) -> set[int]:
    if source.format == "tfrecords":
        from caloml.tasks.triforce import read_scalars

        scalars, _arrays = read_scalars(_open_records(source), ["pdgID"])
        if "pdgID" not in scalars:
            raise CalomlError(f"{source.path}: no pdgID in the records; the class is unknown")
        codes = scalars["pdgID"]
        if source.indices is not None:
            codes = codes[source.indices[source.indices < len(codes)]]
        return {int(c) for c in np.unique(np.abs(codes))}
    from caloml.data.lcd import LCDReader

    reader = LCDReader(source.path, keys=["ECAL", "energy"])
    try:
        pdg = reader.pdg_id
    finally:
        reader.close()
    if pdg is not None:
        return {abs(pdg)}
    with LCDReader(source.path) as full:
        if "pdgID" not in full.keys:
            raise CalomlError(f"{source.path}: no pdgID in the file and none in its name; the class is unknown")
        codes = full.read_key("pdgID")
    if source.indices is not None:
        codes = codes[source.indices[source.indices < len(codes)]]
    return {int(c) for c in np.unique(np.abs(codes))}


def infer_task(sources: Sequence[TestSource], task: str | None) -> ReconstructionTask:
    """The task: ``task`` when given, else the one named by the test_events.json files, else the one whose
    classes are the PDG codes of the files."""
    if task is not None:
        return get_task(task)
    named = {s.task for s in sources if s.task is not None}
    if len(named) > 1:
        raise CalomlError(f"the test_events.json files name different tasks ({', '.join(sorted(named))}); pass --task")
    if named:
        return get_task(named.pop())
    codes: set[int] = set()
    for source in sources:
        codes |= _file_pdg_codes(source)
    for candidate in TASKS.values():
        if codes <= set(candidate.classes):
            return candidate
    raise CalomlError(
        f"the test files hold pdgID {sorted(codes)}, which fit no task ("
        + "; ".join(f"{t.name}: {t.classes}" for t in TASKS.values())
        + ")"
    )


def _expected_label(source: TestSource, task: ReconstructionTask) -> int | None:
    if source.expected_pdg is None:
        return None
    if source.expected_pdg < 0:
        return -1 - source.expected_pdg
    if source.expected_pdg not in task.label_of:
        raise CalomlError(
            f"{source.path}: test_events.json gives particle {PDG_PARTICLE[source.expected_pdg]},"
            f" which is not in task {task.name}"
        )
    return task.label_of[source.expected_pdg]


@dataclass
class SourceBatch:
    """Prepared events of one chunk of a source, and the bookkeeping of the rows read."""

    source_index: int
    events: dict[str, np.ndarray]
    rows_read: int


def _open_records(source: TestSource) -> Source:
    """The TFRecord directory of ``source`` (the Triforce task's :class:`~caloml.tasks.triforce.Source`)."""
    from caloml.tasks.triforce import Source

    if not source.path.is_dir():
        raise CalomlError(f"{source.path}: no such TFRecord directory (named by {', '.join(source.origins)})")
    return Source.open(source.path)


def _check_count(source: TestSource, n: int, indices: np.ndarray) -> None:
    if source.n_events is not None and source.n_events != n:
        raise CalomlError(
            f"{source.path}: holds {n} events, its test_events.json says {source.n_events} (the data changed since"
            " the run; its test indices would name other events)"
        )
    if indices.size and indices[-1] >= n:
        raise CalomlError(f"{source.path}: test index {int(indices[-1])} out of range for {n} events")


def _hdf5_chunks(source: TestSource, chunk_events: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(rows, events)`` chunks of the test rows of an LCD HDF5 file (GeV, the file's window, every key)."""
    from caloml.data.lcd import LCDReader

    if not source.path.is_file():
        raise CalomlError(f"{source.path}: no such test file (named by {', '.join(source.origins)})")
    with LCDReader(source.path, chunk_events=chunk_events) as reader:
        if "HCAL" not in reader.keys:
            raise CalomlError(
                f"{source.path}: no 'HCAL' in the file (the reconstruction needs the 11 x 11 x 60 HCAL files)"
            )
        n = len(reader)
        indices = np.arange(n) if source.indices is None else source.indices
        _check_count(source, n, indices)
        for start in range(0, indices.size, chunk_events):
            chunk = indices[start : start + chunk_events]
            contiguous = chunk[-1] - chunk[0] + 1 == chunk.size
            yield chunk, reader.read(slice(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else chunk)


def _tfrecord_chunks(source: TestSource, chunk_events: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(record numbers, events)`` chunks of the test records of a TFRecord directory.

    The records are numbered as the trainers number them (the shards in the order of ``metadata.json``, through
    the Triforce task's reader); only the test records are decoded, into every stored array (dense, GeV) and
    scalar (the expert features included), as :class:`caloml.data.lcd.LCDReader` gives them for an HDF5 file.
    Non-finite values and negative energies are refused like the HDF5 reader does.
    """
    import tensorflow as tf

    from caloml.data.checks import check_values
    from caloml.data.lcd import LCDReader
    from caloml.data.tfrecord import decode_batch, read_metadata
    from caloml.tasks.triforce import _ordered_records

    records = _open_records(source)
    metadata = read_metadata(records.path)
    if "HCAL" not in metadata["arrays"]:
        raise CalomlError(
            f"{source.path}: no 'HCAL' in the records (the reconstruction needs the 11 x 11 x 60 HCAL showers)"
        )
    n = records.n_events
    indices = np.arange(n) if source.indices is None else source.indices
    _check_count(source, n, indices)
    if not indices.size:
        return
    wanted = np.zeros(n, dtype=bool)
    wanted[indices] = True
    keep = tf.constant(wanted)

    def selected(number: tf.Tensor, serialized: tf.Tensor) -> tf.Tensor:
        return tf.gather(keep, number)

    def decode(numbers: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        return numbers, decode_batch(serialized, metadata)

    dataset = (
        _ordered_records(records.path, metadata)
        .take(int(indices[-1]) + 1)
        .enumerate()
        .filter(selected)
        .batch(chunk_events)
        .map(decode)
        .prefetch(1)
    )
    done = 0
    try:
        for numbers, decoded in dataset.as_numpy_iterator():
            rows = np.asarray(numbers, dtype=np.int64)
            events = {key: np.asarray(value) for key, value in decoded.items()}
            check_values(events, file=source.path, energy_keys=LCDReader.energy_keys, offset=rows)
            done += rows.size
            yield rows, events
    except tf.errors.OpError as error:
        message = str(error.message).strip().splitlines()[0][:200] if error.message else type(error).__name__
        raise CalomlError(f"{source.path}: unreadable TFRecord shard ({message})") from None
    if done != indices.size:
        raise CalomlError(
            f"{source.path}: the shards end after {done} of the {indices.size} test records (metadata says {n} events)"
        )


def iter_test_batches(
    sources: Sequence[TestSource],
    task: ReconstructionTask,
    *,
    chunk_events: int = 128,
    resample: str = "none",
) -> Iterator[SourceBatch]:
    """Read the test events chunk by chunk (HDF5 rows or TFRecord records), pass each chunk through
    :func:`caloml.data.resampling.resample_events` (``resample``), then the task's filters, labels and crop
    (:func:`caloml.tasks.triforce_data.prepare_events`). Each batch's events carry :data:`ROW_KEY`, their event
    indices in the source.

    Memory is bounded by one chunk (ECAL + HCAL about 0.33 MB per event before the crop). Raises CalomlError for
    a source that is missing, unreadable, lacks HCAL or another input, holds NaN, holds another number of events
    than its test_events.json says, or whose events contradict the particle of its test_events.json entry.
    """
    for number, source in enumerate(sources):
        expected = _expected_label(source, task)
        chunks = (
            _tfrecord_chunks(source, chunk_events)
            if source.format == "tfrecords"
            else _hdf5_chunks(source, chunk_events)
        )
        for rows, raw in chunks:
            raw[ROW_KEY] = rows.astype(np.int64)
            events = prepare_events(resample_events(raw, resample), task, source=str(source.path), require_all=False)
            if source.restrictions:
                events = _apply_restrictions(events, source.restrictions)
            if expected is not None and np.any(events["class_label"] != expected):
                found = int(np.abs(events["pdgID"][events["class_label"] != expected][0]))
                raise CalomlError(
                    f"{source.path}: test_events.json says class {task.classes[expected]} "
                    f"({PDG_PARTICLE[task.classes[expected]]}), the file holds pdgID {found}"
                )
            yield SourceBatch(number, events, int(rows.size))


def _apply_restrictions(
    events: dict[str, np.ndarray], restrictions: Sequence[tuple[int, np.ndarray, str]]
) -> dict[str, np.ndarray]:
    """Drop the events a per-particle regression run given as ``--test`` did not test on: those of its particle
    (charged pions: passing the raw-sum cut, :func:`regression_subject`) whose index is not in its test indices."""
    rows = np.asarray(events[ROW_KEY])
    raw_fraction = raw_energy_fraction(events)
    keep = np.ones(rows.size, dtype=bool)
    for pdg, allowed, _origin in restrictions:
        keep &= ~regression_subject(events["pdgID"], raw_fraction, pdg) | np.isin(rows, allowed)
    if keep.all():
        return events
    return {key: np.asarray(value)[keep] for key, value in events.items()}


def _event_count(source: TestSource) -> int:
    """The number of events a test source holds (checked against its test_events.json when it was read)."""
    if source.n_events is not None:
        return source.n_events
    if source.format == "tfrecords":
        return int(_open_records(source).n_events)
    from caloml.data.lcd import LCDReader

    with LCDReader(source.path) as reader:
        return len(reader)


def check_model_splits(
    models: Sequence[ReconstructionModel],
    sources: Sequence[TestSource],
    file_index: np.ndarray,
    rows: np.ndarray,
    pdg: np.ndarray,
    raw_fraction: np.ndarray,
) -> None:
    """Refuse (one-line CalomlError) to score a model on events its own run trained or validated on.

    For every model whose run directory holds a ``test_events.json`` (:attr:`ReconstructionModel.splits`), every
    evaluated event ``(source, row)`` (``file_index``, ``rows``, ``pdg`` and ``raw_fraction`` (N,) of the evaluated
    events, after every filter) of a source the run recorded (same resolved path) must be among that source's
    recorded test indices, and the source must hold the recorded ``n_events``. For a per-particle regression run
    (top-level ``particle``) only the events that regression is scored on count (its particle; charged pions
    passing the raw-sum cut): the others were never in its splits. Sources the run did not record are not its
    training data (matched by path: a copy of the data elsewhere cannot be recognized).
    """
    by_path = {source.path.resolve(): number for number, source in enumerate(sources)}
    for model in models:
        seen_in_training = 0
        where: set[str] = set()
        for split in model.splits:
            number = by_path.get(split.path.resolve())
            if number is None:
                continue
            if split.n_events is not None and split.n_events != (count := _event_count(sources[number])):
                raise CalomlError(
                    f"{model.path}: its run's {TEST_EVENTS_NAME} ({split.origins[0]}) records {split.path} with"
                    f" {split.n_events} events, the test source holds {count} (other data: its test indices would"
                    " name other events); evaluate it on the data it was trained on"
                )
            mine = file_index == number
            if split.regression_pdg is not None:
                mine &= regression_subject(pdg, raw_fraction, split.regression_pdg)
            assert split.indices is not None
            outside = int(np.sum(mine & ~np.isin(rows, split.indices)))
            if outside:
                seen_in_training += outside
                where.update(split.origins)
        if seen_in_training:
            raise CalomlError(
                f"{model.path}: {seen_in_training} of the evaluated events are not in its run's test split"
                f" ({', '.join(sorted(where))}/{TEST_EVENTS_NAME}), so it trained or validated on them (another"
                " data order, split seed, fractions or events per particle); evaluate it on its own run's test"
                " events (--test with its run directory)"
            )
