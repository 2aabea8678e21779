"""The baseline reconstruction tasks: ``python -m caloml.train {bdt,linreg,xgb}``, fitted on the networks' data.

* ``bdt --task {e-vs-pi,gamma-vs-pi0}``: a gradient-boosted classifier (XGBoost) on every expert feature, tuned on
  the validation split by a seeded search (:class:`~caloml.models.baselines.BDTClassifier`);
* ``linreg --particle P``: ``E = a ECAL_E + b HCAL_E + c`` by least squares (GeV);
* ``xgb --particle P``: XGBoost energy regression with early stopping on the validation split,

the baselines of "Calorimetry with deep learning: particle simulation and reconstruction for collider physics",
Belayneh et al., arXiv:1912.06794. They are not Keras models: each task fits itself (``task.fit(config,
overwrite)``), with the conventions of ``caloml.train`` (configuration tree, presets, run directory, JSON summary).
See ``docs/reconstruction.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import caloml
from caloml.atomic_files import atomic_savez, atomic_write_json
from caloml.data.lcd_features import EXPERT_FEATURE_KEYS
from caloml.data.reconstruction_split import (
    SPLIT_FILE,
    SPLITS,
    check_split_fractions,
    filter_counts_line,
    task_of_particle,
)
from caloml.data.reconstruction_tasks import TASKS as RECO_TASKS
from caloml.data.reconstruction_tasks import ReconstructionTask, get_task
from caloml.data.resampling import check_resample
from caloml.data.split_record import write_split_record
from caloml.errors import CalomlError
from caloml.json_values import json_plain
from caloml.models.baselines import (
    BDTClassifier,
    LinearEnergyRegression,
    XGBoostEnergyRegression,
    feature_source_keys,
    regression_feature_names,
)
from caloml.observables.reconstruction_metrics import probability_metrics, regression_metrics
from caloml.particles import PDG_ID
from caloml.tasks.baselines.config import (
    BDT_PRESETS,
    REGRESSION_PRESETS,
    BDTConfig,
    LinRegConfig,
    XGBConfig,
)
from caloml.tasks.baselines.data import SplitEvents, load_split, split_events_record
from caloml.tasks.reconstruction_data import add_data_arguments, data_flags, default_data_sources, resample_suffix
from caloml.training.config import config_to_dict, write_config
from caloml.training.run_directory import RunDirectory

__all__ = [
    "BDT_TASK",
    "LINREG_TASK",
    "XGB_TASK",
    "BDTTask",
    "BaselineRunDirectory",
    "BaselineTask",
    "LinRegTask",
    "RegressionTask",
    "XGBTask",
]


# -- run directory -------------------------------------------------------------------------------------------------
class BaselineRunDirectory(RunDirectory):
    """A baseline's run directory: complete once ``summary.json`` is written (it plays the checkpoint's part)."""

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    def has_checkpoint(self) -> bool:
        """Whether a complete fit is stored."""
        return self.summary.is_file()


# -- the tasks -----------------------------------------------------------------------------------------------------
class BaselineTask:
    """What the three baselines share: flags, data, run directory, saving and the summary."""

    name = ""
    config_class: type = object
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        add_data_arguments(
            parser,
            resample_help="fit on expert features recomputed from the ECAL resampled to an ATLAS- or CMS-like"
            " granularity (default: none, CLIC's)",
        )

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return data_flags(args)

    def default_run_dir(self, config: Any) -> Path:
        """``runs/<model>-<task or particle>``, with ``-<resample>`` appended for resampled data."""
        return Path("runs") / f"{self.name}-{self._subject(config)}{resample_suffix(config.data)}"

    def _subject(self, config: Any) -> str:
        raise NotImplementedError

    def _particles(self, config: Any) -> tuple[str, ...]:
        raise NotImplementedError

    def _sources(self, config: Any) -> tuple[list[str], list[int]]:
        """The input paths and their source numbers ``k`` (the split seed is ``1000 split_seed + k``)."""
        data = config.data
        if data.files:
            return list(data.files), list(range(len(data.files)))
        paths, numbers = default_data_sources(self._particles(config), data, progress=config.runtime.progress)
        return [str(path) for path in paths], numbers

    def _threads(self, config: Any) -> int | None:
        if config.runtime.threads < 0:
            raise CalomlError(f"runtime.threads must be 0 (every core) or positive, got {config.runtime.threads}")
        return config.runtime.threads or None

    def _check(self, config: Any) -> None:
        """Refuse bad settings before any data is read."""

    def _fit(self, config: Any, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        """Fit, save into ``run_path``; returns (model, summary fields)."""
        raise NotImplementedError

    def fit(self, config: Any, *, overwrite: bool = False) -> dict[str, Any]:
        """Fit the baseline with the resolved ``config``; returns the JSON summary (see the module docstring)."""
        start = time.perf_counter()
        check_resample(config.data.resample)
        check_split_fractions(config.data.split_fractions)
        self._check(config)
        self._threads(config)  # checked before anything is written
        run_path = Path(config.runtime.run_dir) if config.runtime.run_dir else self.default_run_dir(config)
        config = replace(config, runtime=replace(config.runtime, run_dir=str(run_path)))
        run = BaselineRunDirectory(run_path)
        if run.prepare(config_to_dict(config), overwrite=overwrite):
            summary = json.loads(run.summary.read_text())
            print(f"{run_path}: already fitted with this configuration; reusing it (--overwrite to refit)")
            return {**summary, "reused": True}
        keys, task, particle = self._data_spec(config)
        paths, numbers = self._sources(config)
        split = load_split(
            paths,
            keys,
            task=task,
            fractions=config.data.split_fractions,
            seed=config.data.split_seed,
            particle=particle,
            source_numbers=numbers,
            chpi_min_raw_fraction=float(getattr(config.data, "chpi_min_raw_fraction", 0.0)),
            resample=config.data.resample,
        )
        run_path.mkdir(parents=True, exist_ok=True)
        write_config(config, run.config)
        print(filter_counts_line(task, split.per_source))
        write_split_record(run_path / SPLIT_FILE, split_events_record(split, task, config.data, particle))
        fit_start = time.perf_counter()
        _model, fields = self._fit(config, split, run_path)
        summary = {
            "model": self.name,
            "run_dir": str(run_path),
            "load_with": f"caloml.models.baselines.load_baseline({str(run_path)!r})",
            "seed": config.runtime.seed,
            "resample": config.data.resample,
            "sources": [entry.path for entry in split.entries],
            "events": {name: int(events["pdgID"].size) for name, events in split.splits.items()},
            **fields,
            "fit_seconds": round(time.perf_counter() - fit_start, 2),
            "seconds": round(time.perf_counter() - start, 2),
            "caloml_version": caloml.__version__,
        }
        atomic_write_json(run.summary, json_plain(summary))  # an undefined metric is null, never a bare NaN
        return {**summary, "reused": False}

    def _data_spec(self, config: Any) -> tuple[list[str], ReconstructionTask, str | None]:
        raise NotImplementedError


class BDTTask(BaselineTask):
    """Classification BDT (XGBoost) on every expert feature, R9 included, tuned on a validation split."""

    name = "bdt"
    config_class = BDTConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = BDT_PRESETS

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        parser.add_argument("--task", choices=sorted(RECO_TASKS), help="classification task (default e-vs-pi)")
        super().add_arguments(parser)

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {**super().flags(args), "data.task": args.task}

    def _subject(self, config: BDTConfig) -> str:
        return config.data.task

    def _particles(self, config: BDTConfig) -> tuple[str, ...]:
        return get_task(config.data.task).particles

    def _features(self, config: BDTConfig) -> list[str]:
        return list(config.model.features) or list(EXPERT_FEATURE_KEYS)

    def _check(self, config: BDTConfig) -> None:
        get_task(config.data.task)
        m, t = config.model, config.trainer
        if not (m.max_depth and m.learning_rate and m.n_estimators) or t.search_points < 1:
            raise CalomlError(
                "the BDT search needs model.max_depth, learning_rate, n_estimators and search_points >= 1"
            )
        if min(m.max_depth) < 1 or min(m.learning_rate) <= 0 or min(m.n_estimators) < 1:
            raise CalomlError("model.max_depth and n_estimators must be >= 1 and model.learning_rate > 0")

    def _data_spec(self, config: BDTConfig) -> tuple[list[str], ReconstructionTask, str | None]:
        return [*feature_source_keys(self._features(config)), "energy"], get_task(config.data.task), None

    def search_grid(self, config: BDTConfig) -> list[dict[str, float]]:
        """The ``trainer.search_points`` grid points tried, drawn without replacement with ``runtime.seed``."""
        m = config.model
        grid = [
            {"max_depth": d, "learning_rate": r, "n_estimators": n}
            for d, r, n in itertools.product(m.max_depth, m.learning_rate, m.n_estimators)
        ]
        rng = np.random.default_rng(config.runtime.seed)
        chosen = rng.choice(len(grid), size=min(config.trainer.search_points, len(grid)), replace=False)
        return [grid[int(i)] for i in chosen]

    def _fit(self, config: BDTConfig, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        train, validation, test = (split.splits[name] for name in SPLITS)
        bdt = BDTClassifier(
            self._features(config),
            seed=config.runtime.seed,
            grid=self.search_grid(config),
            early_stopping_rounds=config.trainer.early_stopping_rounds,
            threads=self._threads(config),
        )
        bdt.fit(train, train["class_label"], validation, validation["class_label"])
        bdt.save(run_path, overwrite=True)
        chosen = {k: bdt.settings[k] for k in ("max_depth", "learning_rate", "n_estimators", "best_iteration")}
        chosen["validation_logloss"] = bdt.settings["validation_logloss"]
        atomic_write_json(
            run_path / "search.json",
            {
                "criterion": "lowest validation log-loss, each point early-stopped on the validation split",
                "space": {k: getattr(config.model, k) for k in ("max_depth", "learning_rate", "n_estimators")},
                "seed": config.runtime.seed,
                "points": bdt.settings["search"],
                "chosen": chosen,
            },
        )
        probability = bdt.predict_proba(test)
        atomic_savez(
            run_path / "test_predictions.npz",
            {"source_index": test["source_index"], "event_index": test["event_index"], "truth": test["class_label"],
             "prediction": probability[:, 1]},
        )  # fmt: skip
        task = get_task(config.data.task)
        return bdt, {
            "task": task.name,
            "classes_pdg_id": list(task.classes),
            "chosen": chosen,
            "validation_metrics": probability_metrics(validation["class_label"], bdt.predict_proba(validation)),
            "test_metrics": probability_metrics(test["class_label"], probability),
        }


class RegressionTask(BaselineTask):
    presets: ClassVar[dict[str, dict[str, Any]]] = REGRESSION_PRESETS

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        parser.add_argument("--particle", choices=list(PDG_ID), help="particle type (default electron)")
        super().add_arguments(parser)

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {**super().flags(args), "data.particle": args.particle}

    def _subject(self, config: Any) -> str:
        return str(config.data.particle)

    def _particles(self, config: Any) -> tuple[str, ...]:
        return (config.data.particle,)

    def _check(self, config: Any) -> None:
        if config.data.particle not in PDG_ID:
            raise CalomlError(f"unknown particle {config.data.particle!r}; choose one of {', '.join(PDG_ID)}")

    def _features(self, config: Any) -> list[str]:
        return ["ECAL_E", "HCAL_E"]

    def _data_spec(self, config: Any) -> tuple[list[str], ReconstructionTask, str | None]:
        keys = [*feature_source_keys(self._features(config)), "ECAL_E", "HCAL_E", "energy"]
        particle = config.data.particle
        return list(dict.fromkeys(keys)), task_of_particle(particle), particle

    def _finish(self, model: Any, split: SplitEvents, run_path: Path) -> dict[str, Any]:
        model.save(run_path, overwrite=True)
        test = split.splits["test"]
        predicted = model.predict(test)
        atomic_savez(
            run_path / "test_predictions.npz",
            {"source_index": test["source_index"], "event_index": test["event_index"], "truth": test["energy"],
             "prediction": predicted},
        )  # fmt: skip
        validation = split.splits["validation"]
        return {
            "validation_metrics": regression_metrics(validation["energy"], model.predict(validation)),
            "test_metrics": regression_metrics(test["energy"], predicted),
        }


class LinRegTask(RegressionTask):
    """Linear energy regression ``E = a ECAL_E + b HCAL_E + c`` (GeV) per particle type."""

    name = "linreg"
    config_class = LinRegConfig

    def _fit(self, config: LinRegConfig, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        model = LinearEnergyRegression().fit(split.splits["train"])
        a, b, c = model.coefficients or (math.nan,) * 3
        fields = {"particle": config.data.particle, "coefficients": {"a": a, "b": b, "c_gev": c}}
        return model, {**fields, **self._finish(model, split, run_path)}


class XGBTask(RegressionTask):
    """XGBoost energy regression per particle type: depth 3, learning rate 0.3, early stopping on validation."""

    name = "xgb"
    config_class = XGBConfig

    def _features(self, config: XGBConfig) -> list[str]:
        return list(config.model.features) or list(regression_feature_names(config.data.particle))

    def _fit(self, config: XGBConfig, split: SplitEvents, run_path: Path) -> tuple[Any, dict[str, Any]]:
        m, t = config.model, config.trainer
        model = XGBoostEnergyRegression(
            self._features(config),
            seed=config.runtime.seed,
            max_depth=m.max_depth,
            learning_rate=m.learning_rate,
            min_child_weight=m.min_child_weight,
            max_rounds=t.max_rounds,
            early_stopping_rounds=t.early_stopping_rounds,
            threads=self._threads(config),
        )
        model.fit(split.splits["train"], split.splits["validation"])
        fields = {
            "particle": config.data.particle,
            "features": list(model.feature_names),
            "early_stopping": {
                k: model.settings[k] for k in ("best_iteration", "rounds_trained", "validation_rmse_gev")
            },
        }
        return model, {**fields, **self._finish(model, split, run_path)}


BDT_TASK = BDTTask()
LINREG_TASK = LinRegTask()
XGB_TASK = XGBTask()
