"""The CaloPointFlow training task: the point-cloud VAE bound to the shared trainer, selected by validation ELBO.

``python -m caloml.train pointflow --geometry {calochallenge-2,lcd-gen}`` trains
:class:`caloml.models.pointflow.PointFlowVAE` ("CaloPointFlow: Generating Calorimeter Showers as Point Clouds",
Schnake, Krücker, Borras, arXiv:2211.15380) on the simulator's showers or the user's files. The export after
training (``--export``) is :func:`caloml.export.pointflow.export_trained`. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.data.pipeline import make_dataset
from caloml.data.transforms import MinTotalDeposit
from caloml.errors import CalomlError
from caloml.geometry import POINT_CLOUD_GRIDS, get_point_cloud_grid
from caloml.models.pointflow import PointCloudNormalization, PointFlowVAE
from caloml.models.pointflow_sampler import PointFlowShowerSampler
from caloml.sim.particles import PARTICLES
from caloml.tasks.default_data import training_data_flags
from caloml.tasks.pointflow.config import (
    ARCHITECTURE_KEYS,
    PRESETS,
    InitSource,
    PointFlowConfig,
    check_config,
    check_init_settings,
    energy_range,
    hit_threshold,
)
from caloml.tasks.pointflow.data import (
    BATCH_KEYS,
    check_records,
    collect_showers,
    locate_records,
    point_cloud_dataset,
    prepare_normalization,
    resuming_run,
    scan_records,
)
from caloml.training.task import SelectionMetric
from caloml.training.tensorboard import ShowerSamples

__all__ = ["TASK", "PointFlowInputs", "PointFlowTask", "validation_negative_elbo"]


@dataclass
class PointFlowInputs:
    """Located data: the training records, the normalization, the cloud size and the validation showers."""

    train_records: Path
    n_train_events: int
    normalization: PointCloudNormalization
    max_points: int
    hit_threshold_gev: float
    validation: dict[str, np.ndarray]
    #: the coupling-split rule of the model (a run resumed from before the rule existed keeps "legacy")
    coupling_rule: str = "alternating"


class PointFlowTask:
    """CaloPointFlow: point-cloud VAE with normalizing flows, conditioned on the incident energy."""

    name = "pointflow"
    config_class = PointFlowConfig
    presets = PRESETS

    # -- command line
    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:  # type: ignore[override]
        parser.add_argument(
            "--geometry", choices=sorted(POINT_CLOUD_GRIDS), help="calochallenge-2 (default) or lcd-gen"
        )
        parser.add_argument("--particle", choices=PARTICLES, help="particle of the default data")
        parser.add_argument("--data", nargs="+", metavar="PATH", help="TFRecord directory or HDF5 files")
        parser.add_argument("--validation-data", nargs="+", metavar="PATH", help="validation data (with --data)")
        parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV, default data")
        parser.add_argument("--events", type=int, help="training showers of the default data")
        parser.add_argument("--max-points", type=int, help="largest padded point-cloud size")
        parser.add_argument("--flow", choices=["rqs", "maf"], help="coupling layers: splines or autoregressive")
        parser.add_argument("--latent-dim", type=int, help="latent dimensions (plus n_hits and the total energy)")

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            **training_data_flags(args),
            "data.geometry": args.geometry,
            "data.max_points": args.max_points,
            "model.flow": args.flow,
            "model.latent_dim": args.latent_dim,
        }

    def default_run_dir(self, config: PointFlowConfig) -> Path:
        data = config.data
        if data.records:
            return Path("runs") / f"pointflow-{data.geometry}-{Path(data.records[0]).stem}"
        return Path("runs") / f"pointflow-{data.geometry}-{data.particle}"

    # -- data
    def prepare_data(self, config: PointFlowConfig, *, chief: bool) -> PointFlowInputs:
        grid = check_config(config, resuming=resuming_run(config))
        train, validation = locate_records(config, grid, chief=chief)
        check_records(validation, grid)
        scan = scan_records(train, grid)
        if scan.n_empty:
            print(f"{train}: dropping {scan.n_empty} of {scan.n_events} training showers without any cell")
        trained_range = scan.energy_range_gev if config.data.records else energy_range(config)
        threshold = hit_threshold(config)
        prepared = prepare_normalization(config, grid, train, trained_range, threshold, chief=chief)
        sample = collect_showers(
            validation,
            grid,
            n_showers=config.data.max_validation_showers,
            max_points=prepared.max_points,
            hit_threshold_gev=threshold,
            seed=config.runtime.seed + 1,
            shuffle=False,
        )
        if sample.n_below_threshold:
            print(f"{validation}: dropping {sample.n_below_threshold} validation showers without a hit above "
                  f"{threshold:g} GeV")  # fmt: skip
        return PointFlowInputs(
            train,
            scan.n_events - scan.n_empty,
            prepared.normalization,
            prepared.max_points,
            threshold,
            sample.arrays,
            prepared.coupling_rule,
        )

    def make_dataset(
        self, config: PointFlowConfig, data: PointFlowInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return point_cloud_dataset(
            data.train_records,
            get_point_cloud_grid(config.data.geometry),
            global_batch_size=config.trainer.global_batch_size,
            max_points=data.max_points,
            hit_threshold_gev=data.hit_threshold_gev,
            seed=config.runtime.seed,
            input_context=input_context,
            shuffle=True,
            repeat=True,
            drop_remainder=True,
            shuffle_buffer=config.data.shuffle_buffer,
        )

    def input_records(self, config: PointFlowConfig, data: PointFlowInputs) -> list[Path]:
        """The TFRecord directories ``fit`` reads (verified to name a shard damaged during training)."""
        return [data.train_records]

    def steps_per_epoch(self, config: PointFlowConfig, data: PointFlowInputs) -> int:
        return max(1, data.n_train_events // config.trainer.global_batch_size)

    # -- model
    def build_model(self, config: PointFlowConfig, data: PointFlowInputs) -> keras.Model:
        model = PointFlowVAE(
            normalization=data.normalization,
            seed=config.runtime.seed,
            coupling_rule=data.coupling_rule,
            **asdict(config.model),  # the model section holds the rest of the constructor's arguments
        )
        model.compile(optimizer=keras.optimizers.Adam(config.trainer.learning_rate))
        _build(model, data)
        return model

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return {"optimizer": model.optimizer}

    def check_init_source(self, config: PointFlowConfig, source: keras.Model) -> None:
        """Refuse a loaded ``--init-from`` model of another class, architecture, grid or seed (see
        :func:`check_init_settings`), and reset its draw counter: the copied weights then start this run's
        training draws at 0, as in a fresh run (a checkpoint source keeps its counter)."""
        if not isinstance(source, PointFlowVAE):
            raise CalomlError(f"--init-from: a {type(source).__name__}, not a PointFlowVAE")
        settings = source.get_config()
        path = Path(config.trainer.init_from)
        check_init_settings(
            config,
            InitSource(
                path,
                int(source.seed),
                {k: settings[k] for k in ARCHITECTURE_KEYS},
                source.coupling_rule,
                settings["normalization"],
            ),
        )
        source.random_draws.assign(0)

    # -- selection
    def selection_metric(self, config: PointFlowConfig, data: PointFlowInputs) -> SelectionMetric:
        validation = data.validation
        batch_size = config.trainer.global_batch_size
        seed = config.runtime.seed

        cache: dict[int, tuple[keras.Model, Any]] = {}

        def compute(model: keras.Model) -> float:
            return validation_negative_elbo(model, validation, batch_size=batch_size, seed=seed, cache=cache)

        return SelectionMetric(
            "validation_negative_elbo",
            compute,
            f"negative ELBO per shower in data units (reconstruction with the normalization's Jacobian + prior + "
            f"entropy, one seeded draw of z) on "
            f"{len(validation['n_hits'])} validation showers with fixed dequantization",
        )

    # -- TensorBoard
    def tensorboard_samples(
        self,
        model: keras.Model,
        config: PointFlowConfig,
        data: PointFlowInputs,
        n_events: int = 16,
        n_points: int = 2000,
    ) -> ShowerSamples:
        """The first ``n_events`` training showers with a cell and showers sampled for their incident energies
        (``n_points`` flow points per shower, seed ``runtime.seed``, the same every epoch): the epoch's TensorBoard
        pictures, (N, X, Y, Z) GeV with the depth last (CaloChallenge (layers, angles, radii) becomes (angles,
        radii, layers); LCD (x, y, z) stays)."""
        grid = get_point_cloud_grid(config.data.geometry)
        dataset = make_dataset(
            data.train_records,
            global_batch_size=n_events,
            shuffle=False,
            keys=[grid.cell_key, grid.energy_key],
            transforms=[MinTotalDeposit(0.0, grid.cell_key)],
        )
        batch = next(iter(dataset))
        reference = batch[grid.cell_key].numpy()
        energy = batch[grid.energy_key].numpy().reshape(len(reference)).astype(np.float32)
        sampler = PointFlowShowerSampler(model, n_points)
        generated = sampler.generate(energy, batch_size=len(energy), seed=config.runtime.seed).showers
        if grid.file_layout == "calochallenge":
            generated, reference = np.moveaxis(generated, 1, -1), np.moveaxis(reference, 1, -1)
        return ShowerSamples(generated, reference, energy)


def validation_negative_elbo(
    model: keras.Model,
    showers: dict[str, np.ndarray],
    *,
    batch_size: int,
    seed: int,
    cache: dict[int, tuple[keras.Model, Any]] | None = None,
) -> float:
    """Mean negative ELBO per shower in data units (reconstruction + prior + entropy, unweighted; the
    reconstruction includes the normalization's Jacobian, so runs with different normalizations compare) of
    ``showers`` (NumPy batch arrays, see :data:`BATCH_KEYS`), with the reparameterization noise of batch ``k``
    seeded by ``(seed, k)``: the same model gives the same value, so that epochs compare without sampling noise.
    Does not change the model. ``cache`` keeps the traced computation between calls (one trace per model, not per
    epoch)."""

    cache = {} if cache is None else cache
    terms = cache.get(id(model))
    if terms is None or terms[0] is not model:

        @tf.function(reduce_retracing=True)
        def summed(batch: dict[str, tf.Tensor], batch_seed: tf.Tensor) -> tf.Tensor:
            values = model.elbo_terms(batch, batch_seed)
            return tf.reduce_sum(values["reconstruction"] + values["prior"] + values["entropy"])

        terms = cache[id(model)] = (model, summed)
    total, count = 0.0, 0
    n = len(showers["n_hits"])
    for index, start in enumerate(range(0, n, batch_size)):
        batch = {k: tf.convert_to_tensor(showers[k][start : start + batch_size]) for k in BATCH_KEYS}
        total += float(terms[1](batch, tf.constant([seed, index], tf.int64)))
        count += len(batch["n_hits"])
    return total / max(count, 1)


def _build(model: keras.Model, data: PointFlowInputs) -> None:
    """Make sure the optimizer's slots exist, so that a checkpoint restores them (the model builds its weights in
    its constructor and, from its ``compile``, its optimizer; it also skips Keras' symbolic build, which averages a
    distributed batch and fails on the boolean ``mask`` under ``MirroredStrategy``)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


TASK = PointFlowTask()
