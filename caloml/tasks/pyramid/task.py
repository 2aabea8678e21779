"""The Calorimeter Pyramid bound to the shared trainer: ``python -m caloml.train pyramid``.

Data: see :mod:`caloml.tasks.pyramid.data`. The statistics (count CDFs of the three stages, normalizations of the
energy stage) come from ``data.statistics_showers`` training showers, are part of the model's configuration and
are written to ``RUN/statistics.json``; a resumed run reads them back. ``--stage`` trains one stage (``layers``,
``radii``, ``angles``, ``energy``) or all jointly (``all``); stage by stage, each run starts ``--init-from`` the
run before it and keeps its statistics (its weights expect them; same seed and architecture, checked).
Selection: the validation negative log-likelihood per shower of the trained stages (fixed dequantization noise)
after every epoch. Export after training
(``--export``) goes through :func:`caloml.export.pyramid.export_trained`. See ``docs/pyramid.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.geometry import POINT_CLOUD_GRIDS
from caloml.models.pyramid import STAGES, CalorimeterPyramid, PyramidStatistics
from caloml.tasks.default_data import training_data_flags
from caloml.tasks.pointflow.data import check_records, resolve_records, scan_records
from caloml.tasks.pyramid.config import (
    PRESETS,
    STAGE_CHOICES,
    PyramidConfig,
    check_config,
    energy_range,
    hit_threshold,
)
from caloml.tasks.pyramid.data import PyramidInputs, collect_showers, compute_statistics, shower_dataset
from caloml.training.task import SelectionMetric
from caloml.training.tensorboard import ShowerSamples

__all__ = ["STATISTICS_FILE", "TASK", "PyramidTask", "read_source_statistics", "validation_negative_log_likelihood"]

#: The statistics written into the run directory.
STATISTICS_FILE = "statistics.json"
#: Model-section fields that shape the weights: an ``--init-from`` source must match them (and the seed).
ARCHITECTURE_KEYS = (
    "n_flow_layers",
    "n_bins",
    "spline_bound",
    "hidden_units",
    "conditioner_blocks",
    "embedding_units",
    "summary_units",
    "n_energy_layers",
)


class PyramidTask:
    """The Calorimeter Pyramid: hit layers, radial and angular cells (Gumbel top-k), then cell energies."""

    name = "pyramid"
    config_class = PyramidConfig
    presets = PRESETS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data", nargs="+", metavar="PATH", help="training TFRecord directory or HDF5 files")
        parser.add_argument("--validation-data", nargs="+", metavar="PATH", help="validation data (with --data)")
        parser.add_argument("--particle", help="particle of the default simulated data (electron)")
        parser.add_argument("--events", type=int, help="training showers of the default data")
        parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
        parser.add_argument("--stage", choices=STAGE_CHOICES, help="train one stage, or all jointly (default)")

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {**training_data_flags(args), "trainer.stage": args.stage}

    def default_run_dir(self, config: PyramidConfig) -> Path:
        data = config.data
        suffix = Path(data.records[0]).stem if data.records else data.particle
        stage = "" if config.trainer.stage == "all" else f"-{config.trainer.stage}"
        return Path("runs") / f"pyramid-{data.geometry}-{suffix}{stage}"

    # -- data
    def prepare_data(self, config: PyramidConfig, *, chief: bool) -> PyramidInputs:
        check_config(config)
        data = config.data
        geometry = POINT_CLOUD_GRIDS[data.geometry]
        progress = config.runtime.progress
        if data.records:
            train = resolve_records(list(data.records), "training", progress=progress, create=chief)
            validation = resolve_records(list(data.validation_records), "validation", progress=progress, create=chief)
        else:
            from caloml.sim.run import SimulationRequest
            from caloml.tasks.default_data import cached_simulation

            def request(n: int, seed: int) -> Any:
                return SimulationRequest(geometry.name, data.particle, n, seed, energy_range(config), None)

            seed = data.simulation_seed
            train = cached_simulation(request(data.train_events, 2 * seed), "train", progress=progress, create=chief)
            validation = cached_simulation(
                request(data.validation_events, 2 * seed + 1), "validation", progress=progress, create=chief
            )
        check_records(validation, geometry)
        scan = scan_records(train, geometry)
        trained_range = scan.energy_range_gev if data.records else energy_range(config)
        threshold = hit_threshold(config)
        path = Path(config.runtime.run_dir) / STATISTICS_FILE
        if _resuming(config):
            statistics = PyramidStatistics.from_dict(json.loads(path.read_text())["statistics"])
            print(f"resuming with the statistics of {path}")
        elif config.trainer.init_from:  # the source's weights expect its statistics
            statistics = read_source_statistics(Path(config.trainer.init_from))
            print(f"keeping the statistics of the --init-from source {config.trainer.init_from}")
        else:
            statistics = compute_statistics(
                train,
                n_showers=data.statistics_showers,
                hit_threshold_gev=threshold,
                trained_range_gev=(float(trained_range[0]), float(trained_range[1])),
                seed=config.runtime.seed,
            )
        if chief and not _resuming(config):
            from caloml.atomic_files import atomic_write_json

            record = {"statistics": statistics.to_dict(), "records": str(train), "seed": config.runtime.seed}
            atomic_write_json(path, record)
        sample = collect_showers(
            validation, n_showers=data.max_validation_showers, hit_threshold_gev=threshold, seed=0, shuffle=False
        )
        return PyramidInputs(train, scan.n_events - scan.n_empty, statistics, sample, threshold)

    def make_dataset(
        self, config: PyramidConfig, data: PyramidInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return shower_dataset(
            data.train_records,
            global_batch_size=config.trainer.global_batch_size,
            hit_threshold_gev=data.hit_threshold_gev,
            seed=config.runtime.seed,
            input_context=input_context,
            repeat=True,
            drop_remainder=True,
            shuffle_buffer=config.data.shuffle_buffer,
        )

    def input_records(self, config: PyramidConfig, data: PyramidInputs) -> list[Path]:
        """The TFRecord directories ``fit`` reads (verified to name a shard damaged during training)."""
        return [data.train_records]

    def steps_per_epoch(self, config: PyramidConfig, data: PyramidInputs) -> int:
        return max(1, data.n_train_events // config.trainer.global_batch_size)

    # -- model
    def build_model(self, config: PyramidConfig, data: PyramidInputs) -> keras.Model:
        m = config.model
        stage = config.trainer.stage
        model = CalorimeterPyramid(
            data.statistics,
            n_flow_layers=m.n_flow_layers,
            n_bins=m.n_bins,
            spline_bound=m.spline_bound,
            hidden_units=m.hidden_units,
            conditioner_blocks=m.conditioner_blocks,
            embedding_units=m.embedding_units,
            summary_units=m.summary_units,
            n_energy_layers=m.n_energy_layers,
            train_stages=STAGES if stage == "all" else (stage,),
            seed=config.runtime.seed,
        )
        model.compile(optimizer=keras.optimizers.Adam(config.trainer.learning_rate))
        return model

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return {"optimizer": model.optimizer}

    def check_init_source(self, config: PyramidConfig, source: keras.Model) -> None:
        """Refuse an ``--init-from`` model that is no Pyramid, or of another architecture, seed or statistics
        (the weights would mean other things); reset its draw counter."""
        if not isinstance(source, CalorimeterPyramid):
            raise CalomlError(f"--init-from: a {type(source).__name__}, not a CalorimeterPyramid")
        settings = source.get_config()
        wanted = {k: getattr(config.model, k) for k in ARCHITECTURE_KEYS}
        found = {k: settings[k] for k in ARCHITECTURE_KEYS}
        if found != wanted or int(settings["seed"]) != int(config.runtime.seed):
            raise CalomlError(
                f"--init-from: the source has another architecture or seed ({found}, seed {settings['seed']}) than"
                f" this run ({wanted}, seed {config.runtime.seed})"
            )
        stored = Path(config.runtime.run_dir) / STATISTICS_FILE
        if stored.is_file() and json.loads(stored.read_text())["statistics"] != settings["statistics"]:
            raise CalomlError(f"--init-from: the source's statistics differ from those of {stored}")
        source.random_draws.assign(0)

    # -- selection
    def selection_metric(self, config: PyramidConfig, data: PyramidInputs) -> SelectionMetric:
        validation = data.validation
        batch_size = config.trainer.global_batch_size
        seed = config.runtime.seed
        cache: dict[int, Any] = {}

        def compute(model: keras.Model) -> float:
            return validation_negative_log_likelihood(model, validation, batch_size=batch_size, seed=seed, cache=cache)

        return SelectionMetric(
            "validation_negative_log_likelihood",
            compute,
            f"negative log-likelihood per shower of the trained stages (normalized units, fixed dequantization "
            f"noise) on {len(validation['incident_energy'])} validation showers",
        )

    # -- TensorBoard
    def tensorboard_samples(
        self, model: keras.Model, config: PyramidConfig, data: PyramidInputs, n_events: int = 16
    ) -> ShowerSamples:
        """The first ``n_events`` training showers with a hit and showers sampled for their incident energies (the
        stateless seed ``(runtime.seed, 0)``, the same every epoch): the epoch's TensorBoard pictures. Showers go
        from (N, 45 layers, 16 angles, 9 radii) to (N, 16, 9, 45) GeV, the layers (depth) last as the pictures
        expect."""
        reference = collect_showers(
            data.train_records, n_showers=n_events, hit_threshold_gev=data.hit_threshold_gev, seed=0, shuffle=False
        )
        energy = reference["incident_energy"].astype(np.float32)
        sampled = model.sample(energy, tf.constant([config.runtime.seed, 0], tf.int64))["showers"]
        return ShowerSamples(_layers_last(np.asarray(sampled)), _layers_last(reference["showers"]), energy)


def validation_negative_log_likelihood(
    model: keras.Model, showers: dict[str, np.ndarray], *, batch_size: int, seed: int, cache: dict[int, Any] | None
) -> float:
    """Mean negative log-likelihood per shower of the model's trained stages on ``showers``, the noise of batch
    ``k`` seeded by ``(seed, k)`` (the same model gives the same value); ``cache`` keeps the traced function."""
    cache = {} if cache is None else cache
    entry = cache.get(id(model))
    if entry is None or entry[0] is not model:

        @tf.function(reduce_retracing=True)
        def summed(batch: dict[str, tf.Tensor], batch_seed: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(model.negative_log_likelihood(batch, batch_seed)["loss"])

        entry = cache[id(model)] = (model, summed)
    total, count = 0.0, 0
    n = len(showers["incident_energy"])
    for index, start in enumerate(range(0, n, batch_size)):
        batch = {k: tf.convert_to_tensor(v[start : start + batch_size]) for k, v in showers.items()}
        total += float(entry[1](batch, tf.constant([seed, index], tf.int64)))
        count += len(batch["incident_energy"])
    return total / max(count, 1)


def read_source_statistics(source: Path) -> PyramidStatistics:
    """The statistics of an ``--init-from`` source: its run's ``statistics.json`` (a run directory or a checkpoint
    ``RUN/checkpoints/ckpt-N``), else the configuration inside a ``.keras`` file; a one-line CalomlError when
    neither can be read."""
    import zipfile

    for run in (source, source.parent.parent):
        if (run / STATISTICS_FILE).is_file():
            return PyramidStatistics.from_dict(json.loads((run / STATISTICS_FILE).read_text())["statistics"])
    try:
        with zipfile.ZipFile(source) as archive:
            return PyramidStatistics.from_dict(json.loads(archive.read("config.json"))["config"]["statistics"])
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        raise CalomlError(f"--init-from {source}: no Pyramid run directory, checkpoint or .keras file") from None


def _layers_last(showers: np.ndarray) -> np.ndarray:
    """(N, layers, angles, radii) -> (N, angles, radii, layers)."""
    return np.moveaxis(showers, 1, -1)


def _resuming(config: PyramidConfig) -> bool:
    run_dir = Path(config.runtime.run_dir)
    return (run_dir / STATISTICS_FILE).is_file() and bool(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))


TASK = PyramidTask()
