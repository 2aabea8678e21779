"""The 3DGAN training task: LCD generation-set data, the GAN3D model, and the paper's model-selection rule.

``python -m caloml.train gan`` binds :class:`caloml.models.gan3d.GAN3D` to the shared trainer. Without ``--data``
it simulates (once, cached under ``tf_records/``) the LCD generation set for the configured particle and energy
range, plus a validation set; events with an ECAL deposit below ``data.min_deposit_gev`` are dropped. The best of
the last ``trainer.selection_window`` epochs is selected by the sampling-fraction error on the validation
conditions (:func:`sampling_fraction_error`), as in "Fast simulation of a high granularity calorimeter by
generative adversarial networks" (Khattak, Vallecorsa, Carminati, Khan, Eur. Phys. J. C 82 (2022) 386,
arXiv:2109.07388), section 4.4. Presets: ``quick``, ``paper-stage1``, ``paper`` (with ``--init-from``) and
``paper-chpi``. See ``docs/3dgan.md``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.data.input_errors import pipeline_errors
from caloml.data.pipeline import make_dataset
from caloml.data.tfrecord import read_metadata
from caloml.data.transforms import MinTotalDeposit, ScalarInRange
from caloml.errors import CalomlError, DataError
from caloml.models.gan3d import GAN3D
from caloml.sim.layouts import DEGREE
from caloml.sim.particles import PARTICLES
from caloml.sim.run import SimulationRequest
from caloml.tasks.default_data import cached_simulation, training_data_flags
from caloml.training.config import TaskConfig, TrainerSection
from caloml.training.task import SelectionMetric
from caloml.training.tensorboard import ShowerSamples

#: LCD generation-set incidence angles (radians).
THETA_RANGE_RAD = (60.0 * DEGREE, 120.0 * DEGREE)
#: Arrays and scalars the GAN reads from the records.
CELL_KEY = "ECAL"


@dataclass
class GanData:
    """Data section.

    Attributes:
        records: training TFRecord directory (``python -m caloml.data convert``); empty: the embedded default.
        validation_records: validation TFRecord directory for model selection (required with ``records``).
        particle: ``electron``, ``photon``, ``pi0`` or ``chpi``; one model per particle type.
        energy_range_gev: primary energies of the default data and the model's trained range, GeV.
        theta_range_rad: incidence angles of the default data and the trained range, radians.
        train_events, validation_events: sizes of the default data.
        simulation_seed: seed of the default data (training uses ``2 s``, validation ``2 s + 1``).
        min_deposit_gev: events with a smaller ECAL deposit are dropped (paper: 0.2 GeV).
        shuffle_buffer: events in the shuffle buffer.
    """

    records: str = ""
    validation_records: str = ""
    particle: str = "electron"
    energy_range_gev: tuple[float, float] = (2.0, 500.0)
    theta_range_rad: tuple[float, float] = THETA_RANGE_RAD
    train_events: int = 2000
    validation_events: int = 500
    simulation_seed: int = 1
    min_deposit_gev: float = 0.2
    shuffle_buffer: int = 1024


@dataclass
class GanModel:
    """Model section (see :class:`caloml.models.gan3d.GAN3D`)."""

    latent_size: int = 256
    power: float = 0.85
    energy_scale_gev: float = 100.0
    condition_angle: str = "mtheta"
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"real": 3.0, "energy": 0.1, "angle": 25.0, "sum": 0.1}
    )
    label_flip_probability: float = 0.05
    dropout: float = 0.2
    batchnorm_synchronized: bool = True


@dataclass
class GanTrainer(TrainerSection):
    """Trainer section: the shared settings plus the optimizers and the selection binning.

    Attributes:
        learning_rate: RMSprop learning rate of both networks (the code's 1e-3; the paper's table says 0.01).
        selection_energy_bins: number of equal primary-energy bins of the selection metric over the validation
            energies (the paper used bins between 50 and 450 GeV).
    """

    global_batch_size: int = 64
    learning_rate: float = 1e-3
    selection_energy_bins: int = 10


@dataclass
class GanConfig(TaskConfig):
    """The whole 3DGAN run configuration."""

    data: GanData = field(default_factory=GanData)
    model: GanModel = field(default_factory=GanModel)
    trainer: GanTrainer = field(default_factory=GanTrainer)


PRESETS: dict[str, dict[str, Any]] = {
    # a 2-core laptop CPU in a few minutes: shows the whole chain, not a converged generator
    "quick": {
        "data": {"energy_range_gev": [100.0, 200.0], "train_events": 256, "validation_events": 64},
        "trainer": {"epochs": 2, "global_batch_size": 8, "steps_per_epoch": 6, "selection_window": 2},
    },
    # the paper's section 4.4, step 1: electrons 100-200 GeV, 137,342 events, 130 epochs, batch 64
    "paper-stage1": {
        "data": {"energy_range_gev": [100.0, 200.0], "train_events": 137342, "validation_events": 20000},
        "trainer": {"epochs": 130, "global_batch_size": 64},
    },
    # step 2: 2-500 GeV, 400k events per particle type, 30 epochs, from the stage-1 weights (--init-from)
    "paper": {
        "data": {"energy_range_gev": [2.0, 500.0], "train_events": 400000, "validation_events": 20000},
        "trainer": {"epochs": 30, "global_batch_size": 64},
    },
    # section 6: charged pions from random weights, 300k events, about 200 epochs
    "paper-chpi": {
        "data": {
            "particle": "chpi",
            "energy_range_gev": [2.0, 500.0],
            "train_events": 300000,
            "validation_events": 20000,
        },
        "trainer": {"epochs": 200, "global_batch_size": 64},
    },
}


@dataclass
class GanInputs:
    """Located data: the training records and the validation conditions and deposits (NumPy, GeV / rad)."""

    train_records: Path
    n_train_events: int
    condition_angle_range_rad: tuple[float, float]
    validation_energy_gev: np.ndarray
    validation_angle_rad: np.ndarray
    validation_deposit_gev: np.ndarray


class GAN3DTask:
    """Conditional 3DGAN (arXiv:2109.07388): one generator per particle type, conditioned on energy and angle."""

    name = "gan"
    config_class = GanConfig
    presets = PRESETS

    # -- command line
    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:  # type: ignore[override]
        parser.add_argument("--particle", choices=PARTICLES)
        parser.add_argument("--data", help="training TFRecord directory (default: simulate and cache)")
        parser.add_argument("--validation-data", help="validation TFRecord directory (with --data)")
        parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
        parser.add_argument("--theta-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="radians")
        parser.add_argument("--events", type=int, help="training events of the default data")
        parser.add_argument("--condition-angle", choices=["mtheta", "theta"], help="angle condition key")

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            **training_data_flags(args),
            "data.theta_range_rad": args.theta_range,
            "model.condition_angle": args.condition_angle,
        }

    def default_run_dir(self, config: GanConfig) -> Path:
        low, high = config.data.energy_range_gev
        return Path("runs") / f"gan3d-{config.data.particle}-{low:g}-{high:g}GeV"

    # -- data
    def prepare_data(self, config: GanConfig, *, chief: bool) -> GanInputs:
        self._check(config)
        data = config.data
        if data.records:
            if not data.validation_records:
                raise CalomlError("--data needs --validation-data too: model selection uses a validation split")
            train, validation = Path(data.records), Path(data.validation_records)
        else:

            def request(n: int, seed: int) -> SimulationRequest:
                return SimulationRequest("lcd-gen", data.particle, n, seed, data.energy_range_gev, data.theta_range_rad)

            progress = config.runtime.progress
            seed = config.data.simulation_seed
            train = cached_simulation(request(data.train_events, 2 * seed), "train", progress=progress, create=chief)
            validation = cached_simulation(
                request(data.validation_events, 2 * seed + 1), "validation", progress=progress, create=chief
            )
        metadata = read_metadata(train)
        for records in (train, validation):
            scalars = read_metadata(records)["scalars"]
            for key in ("energy", config.model.condition_angle):
                if key not in scalars:
                    raise DataError(f"{records}: no '{key}' in the records (available: {', '.join(scalars)})")
        energy, angle, deposit = self._validation_arrays(config, validation)
        angle_range = self._training_ranges(config, train)
        return GanInputs(train, int(metadata["n_events"]), angle_range, energy, angle, deposit)

    def _training_ranges(self, config: GanConfig, records: Path) -> tuple[float, float]:
        """The range of the angle condition in the training data (radians): the model's trained angle range.

        For the measured angle it is narrower than the true-angle range the data was simulated with (about
        1.2-1.9 rad for 60-120 degrees), and generation must stay inside what the model saw. The primary energies
        must fill ``data.energy_range_gev`` (up to the statistical gap at each end): the model records that range as
        the one it was trained on, and generation refuses energies outside it.
        """
        key = config.model.condition_angle
        dataset = make_dataset(
            records,
            global_batch_size=4096,
            shuffle=False,
            keys=[key, "energy"],
            transforms=event_filters(config),
        )
        low, high = math.inf, -math.inf
        e_low, e_high = math.inf, -math.inf
        n_events = 0
        with pipeline_errors([records], where=str(records)):  # a damaged shard: one line naming it
            for batch in dataset:
                values = batch[key].numpy()
                energies = batch["energy"].numpy()
                n_events += values.size
                if values.size:
                    low, high = min(low, float(values.min())), max(high, float(values.max()))
                    e_low, e_high = min(e_low, float(energies.min())), max(e_high, float(energies.max()))
        if not low < high:
            cut = config.data.min_deposit_gev
            raise DataError(f"{records}: no event with a valid '{key}' passes the {cut} GeV cut")
        lo, hi = config.data.energy_range_gev
        # the gap between a range's end and the extreme of n events drawn in it is about width / n: allow 7 of
        # those (a false alarm in about 1e-3 of uniform samples), at least 2% of the width
        slack = (hi - lo) * max(0.02, 7.0 / n_events)
        if not (lo - slack <= e_low <= lo + slack and hi - slack <= e_high <= hi + slack):
            raise DataError(
                f"{records}: the training energies span {e_low:.4g}-{e_high:.4g} GeV but data.energy_range_gev is "
                f"{lo:g}-{hi:g} GeV (the range the model will accept); pass --energy-range {e_low:.4g} {e_high:.4g}"
            )
        return low, high

    def _check(self, config: GanConfig) -> None:
        if config.data.particle not in PARTICLES:
            raise CalomlError(f"unknown particle {config.data.particle!r}; choose one of {', '.join(PARTICLES)}")
        for name, (low, high) in (
            ("data.energy_range_gev", config.data.energy_range_gev),
            ("data.theta_range_rad", config.data.theta_range_rad),
        ):
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise CalomlError(f"{name} must be an interval low < high, got {low:g} {high:g}")
        if config.model.condition_angle not in ("mtheta", "theta"):
            raise CalomlError(f"model.condition_angle must be 'mtheta' or 'theta', got {config.model.condition_angle}")

    def _validation_arrays(self, config: GanConfig, records: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys = ["energy", config.model.condition_angle, f"{CELL_KEY}/sum"]
        dataset = make_dataset(
            records,
            global_batch_size=1024,
            shuffle=False,
            keys=[CELL_KEY, "energy", config.model.condition_angle],
            transforms=event_filters(config),
        )
        columns: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        with pipeline_errors([records], where=str(records)):  # a damaged shard: one line naming it
            for batch in dataset:
                columns["energy"].append(batch["energy"].numpy())
                columns[config.model.condition_angle].append(batch[config.model.condition_angle].numpy())
                columns[f"{CELL_KEY}/sum"].append(tf.reduce_sum(batch[CELL_KEY], axis=(1, 2, 3)).numpy())
        if not columns["energy"]:
            raise DataError(f"{records}: no validation event passes the {config.data.min_deposit_gev} GeV cut")
        energy, angle, deposit = (np.concatenate(columns[k]).astype(np.float64) for k in keys)
        low, high = config.data.energy_range_gev
        inside = (energy >= low * (1 - 1e-6)) & (energy <= high * (1 + 1e-6))
        if not inside.all():
            raise DataError(
                f"{records}: validation energies {energy.min():.4g}-{energy.max():.4g} GeV leave the trained range "
                f"{low:g}-{high:g} GeV (data.energy_range_gev)"
            )
        return energy, angle, deposit

    def make_dataset(
        self, config: GanConfig, data: GanInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return make_dataset(
            data.train_records,
            global_batch_size=config.trainer.global_batch_size,
            input_context=input_context,
            shuffle=True,
            seed=config.runtime.seed,
            repeat=True,
            drop_remainder=True,
            shuffle_buffer=config.data.shuffle_buffer,
            keys=[CELL_KEY, "energy", config.model.condition_angle],
            transforms=event_filters(config),
        )

    def input_records(self, config: GanConfig, data: GanInputs) -> list[Path]:
        """The TFRecord directories ``fit`` reads (verified to name a shard damaged during training)."""
        return [data.train_records]

    def steps_per_epoch(self, config: GanConfig, data: GanInputs) -> int:
        return max(1, data.n_train_events // config.trainer.global_batch_size)

    # -- model
    def build_model(self, config: GanConfig, data: GanInputs) -> keras.Model:
        gan = GAN3D(
            particle=config.data.particle,
            energy_range_gev=tuple(config.data.energy_range_gev),
            theta_range_rad=data.condition_angle_range_rad,
            seed=config.runtime.seed,
            **asdict(config.model),  # the model section holds the rest of the constructor's arguments
        )
        lr = config.trainer.learning_rate
        gan.compile(  # builds both optimizers, so that a checkpoint restores their state
            discriminator_optimizer=keras.optimizers.RMSprop(lr),
            generator_optimizer=keras.optimizers.RMSprop(lr),
        )
        return gan

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return {
            "discriminator_optimizer": model.discriminator_optimizer,
            "generator_optimizer": model.generator_optimizer,
        }

    def check_init_source(self, config: GanConfig, source: keras.Model) -> None:
        if not isinstance(source, GAN3D):
            raise CalomlError(f"--init-from: a {type(source).__name__}, not a 3DGAN")
        if source.latent_size != config.model.latent_size:
            raise CalomlError(
                f"--init-from: latent size {source.latent_size}, this run uses {config.model.latent_size}"
            )
        if source.condition_angle != config.model.condition_angle:
            raise CalomlError(
                f"--init-from: that model is conditioned on '{source.condition_angle}', this run on "
                f"'{config.model.condition_angle}' (model.condition_angle)"
            )
        if source.particle != config.data.particle:
            print(f"transfer: {source.particle} weights initialize the {config.data.particle} model")

    # -- selection
    def selection_metric(self, config: GanConfig, data: GanInputs) -> SelectionMetric:
        edges = selection_bin_edges(data.validation_energy_gev, config.trainer.selection_energy_bins)
        seed = config.runtime.seed

        def compute(model: keras.Model) -> float:
            deposit = _generated_deposit(model, data.validation_energy_gev, data.validation_angle_rad, seed)
            return sampling_fraction_error(
                data.validation_energy_gev, data.validation_deposit_gev, deposit, edges=edges
            )

        return SelectionMetric(
            "sampling_fraction_error",
            compute,
            "mean over primary-energy bins of |<SF>gen - <SF>val| / <SF>val on the validation conditions",
        )

    # -- TensorBoard
    def tensorboard_samples(
        self, model: keras.Model, config: GanConfig, data: GanInputs, n_events: int = 32
    ) -> ShowerSamples:
        """The first ``n_events`` training showers passing the cuts and showers generated for their energies and
        angles (noise seeded by ``runtime.seed``, the same every epoch): the epoch's TensorBoard pictures."""
        key = config.model.condition_angle
        dataset = make_dataset(
            data.train_records,
            global_batch_size=n_events,
            shuffle=False,
            keys=[CELL_KEY, "energy", key],
            transforms=event_filters(config),
        )
        batch = next(iter(dataset))
        energy, angle = batch["energy"].numpy(), batch[key].numpy()
        noise = np.random.default_rng(config.runtime.seed).standard_normal((len(energy), model.latent_size - 2))
        generated = model({"energy_gev": energy, "theta_rad": angle, "noise": noise.astype(np.float32)}, training=False)
        return ShowerSamples(np.asarray(generated), batch[CELL_KEY].numpy(), energy)


def event_filters(config: GanConfig) -> list[Any]:
    """The per-event cuts of training, selection and range measurement: the ECAL deposit above
    ``data.min_deposit_gev`` and a valid angle condition (the measured angle of an unmeasurable shower is 100)."""
    return [
        MinTotalDeposit(config.data.min_deposit_gev, CELL_KEY),
        ScalarInRange(config.model.condition_angle, 0.0, math.pi),
    ]


def selection_bin_edges(energy_gev: np.ndarray, n_bins: int) -> np.ndarray:
    """Edges (GeV) of ``n_bins`` equal primary-energy bins over ``energy_gev`` (N,), the last edge just above the
    largest energy: the bins of the model-selection metric :func:`sampling_fraction_error`."""
    low, high = float(energy_gev.min()), float(energy_gev.max())
    return np.linspace(low, np.nextafter(high, math.inf), max(1, n_bins) + 1)


def _generated_deposit(
    model: keras.Model, energy_gev: np.ndarray, angle_rad: np.ndarray, seed: int, batch_size: int = 64
) -> np.ndarray:
    """ECAL deposits (GeV) of showers generated for the given conditions, with noise fixed by ``seed``."""
    rng = np.random.default_rng(seed)

    @tf.function(reduce_retracing=True)
    def deposits(e: tf.Tensor, a: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        showers = model({"energy_gev": e, "theta_rad": a, "noise": noise}, training=False)
        return tf.reduce_sum(showers, axis=(1, 2, 3))

    out = []
    for start in range(0, len(energy_gev), batch_size):
        e = energy_gev[start : start + batch_size].astype(np.float32)
        a = angle_rad[start : start + batch_size].astype(np.float32)
        noise = rng.standard_normal((len(e), model.latent_size - 2)).astype(np.float32)
        out.append(deposits(e, a, noise).numpy())
    return np.concatenate(out).astype(np.float64)


def sampling_fraction_error(
    energy_gev: np.ndarray, real_deposit_gev: np.ndarray, generated_deposit_gev: np.ndarray, *, edges: np.ndarray
) -> float:
    """Mean over energy bins of the relative error of the mean sampling fraction (generated vs real).

    All arrays are (N,) for the same N events; ``edges`` are the primary-energy bin edges in GeV. Bins without
    events are skipped; NaN when no bin has events.
    """
    index = np.digitize(energy_gev, edges) - 1
    errors = []
    for b in range(len(edges) - 1):
        inside = index == b
        if not inside.any():
            continue
        real = np.mean(real_deposit_gev[inside] / energy_gev[inside])
        generated = np.mean(generated_deposit_gev[inside] / energy_gev[inside])
        errors.append(abs(generated - real) / real)
    return float(np.mean(errors)) if errors else math.nan


TASK = GAN3DTask()
