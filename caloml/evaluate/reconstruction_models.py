"""Models of the reconstruction evaluation: Triforce networks and baselines, loaded from files or run directories.

A Triforce network is a ``.keras`` file or a run directory holding ``model.keras``; a baseline a directory with
``baseline.json`` (:mod:`caloml.models.baselines`), or a directory of per-particle ones. Single-particle regressions
of one kind are merged into one model. What a model's run directory records (its ECAL granularity, its split) is
checked against the evaluation, so that no model is scored on its own training events. The networks are rebuilt in
the evaluation's precision (:func:`networks_in_precision`). See ``docs/reconstruction.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from caloml.data.reconstruction_tasks import regression_subject
from caloml.data.resampling import RESAMPLE_CHOICES
from caloml.errors import CalomlError
from caloml.evaluate.reconstruction_sources import TEST_EVENTS_NAME, TestSource, event_count, read_test_events
from caloml.particles import PARTICLE_PDG, PDG_PARTICLE

__all__ = [
    "RESAMPLE_RECORDS",
    "ReconstructionModel",
    "check_model_resample",
    "check_model_splits",
    "load_model",
    "load_models",
    "networks_in_precision",
    "recorded_resample",
]

if TYPE_CHECKING:
    from caloml.models.baselines import LinearEnergyRegression, XGBoostEnergyRegression

    Regressor = LinearEnergyRegression | XGBoostEnergyRegression


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
        precision: the arithmetic a Triforce network computes in (``float32``, ``bfloat16``; see
            :func:`networks_in_precision`); None for the baselines, which ``--precision`` does not affect.
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
    precision: str | None = None

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
            "precision": self.precision,
        }

    def predict(self, events: Mapping[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(probability of class 1 (N,) or None, energy (N,) GeV or None) for prepared events (see
        :func:`caloml.data.reconstruction_tasks.prepare_events`); energies of particles without a regression are NaN."""
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
    # lazy: the networks import Keras, and python -m caloml.evaluate parses its arguments without TensorFlow
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
    # lazy: importing caloml.models imports Keras, and python -m caloml.evaluate parses without TensorFlow
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
        assert not isinstance(baseline, BDTClassifier)  # one kind, not the BDT's (above)
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
            model.splits += read_test_events(directory)
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
        return ReconstructionModel(display, path, kind, False, True, True, network=network, precision="float32")
    if (path / "model.keras").is_file():
        kind, network = _load_network(path / "model.keras")
        return ReconstructionModel(path.name, path, kind, False, True, True, network=network, precision="float32")
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


def networks_in_precision(models: Sequence[ReconstructionModel], precision: str) -> str:
    """Rebuild every Triforce network of ``models`` in ``precision`` (``float32`` or ``bfloat16``: Keras'
    ``mixed_bfloat16``, bfloat16 arithmetic on the same float32 weights) and return the precision in force.

    On a machine without bfloat16 units bfloat16 becomes float32 with one warning line
    (:func:`caloml.models.precision.resolve_policy`); the returned name says which. The baselines (BDT, linear and
    XGBoost regressions) keep their own arithmetic: their :attr:`~ReconstructionModel.precision` stays None.
    """
    # lazy: it imports Keras and TensorFlow, and python -m caloml.evaluate parses its arguments without them
    from caloml.models.precision import model_in_precision, resolve_policy

    policy = resolve_policy(precision)  # once: one fallback line however many networks
    resolved = "bfloat16" if "bfloat16" in policy else "float32"
    for model in models:
        if model.network is not None:
            model.network = model_in_precision(model.network, policy, for_this_machine=False)
            model.precision = resolved
    return resolved


def check_model_resample(models: Sequence[ReconstructionModel], resample: str) -> None:
    """One-line CalomlError when a model's run directory records another ECAL granularity than ``resample``."""
    for model in models:
        for where, setting in model.recorded_resample.items():
            if setting != resample:
                raise CalomlError(
                    f"{model.path}: trained on resample {setting} ({where}), but the evaluation uses resample"
                    f" {resample}; evaluate it on test events of its own granularity (--resample {setting})"
                )


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
            if split.n_events is not None and split.n_events != (count := event_count(sources[number])):
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
