"""The conditional 3DGAN: generator, discriminator and the paper's training algorithm in one Keras model.

:class:`GAN3D` holds a :class:`~caloml.models.gan3d_generator.Generator3D` and a
:class:`~caloml.models.gan3d_discriminator.Discriminator3D` and trains them with ``fit`` through a custom
``train_step`` (Algorithm 1 of "Fast simulation of a high granularity calorimeter by generative adversarial
networks", Khattak, Vallecorsa, Carminati, Khan, Eur. Phys. J. C 82 (2022) 386, arXiv:2109.07388). Its ``call``
generates showers in GeV, so the model can be saved (``.keras``), reloaded and exported as one object.

Units: showers (B, 51, 51, 25) in GeV, primary energies in GeV, angles in radians. Inside the networks the images
are in power space (cells ** 0.85) and the energy condition is Ep / 100 (``energy_scale_gev``).

The loss of every discriminator output, per example::

    L = WG * BCE(real) + WP * MAPE(energy vs Ep / 100) + WA * MAE(angle vs input angle) + WE * MAPE(sum vs real sum)

with MAPE in percent and the default weights WG = 3, WP = 0.1, WA = 25, WE = 0.1, summed and divided by the
global batch size (:func:`tf.nn.compute_average_loss`). See ``docs/3dgan.md``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.base import CalomlModel, attribute_config
from caloml.models.batch_contract import BatchContract, BatchKey
from caloml.models.gan3d_discriminator import Discriminator3D, InversePower, MeasuredAngle, TotalEnergy
from caloml.models.gan3d_generator import IMAGE_SHAPE, Generator3D

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "GAN3D",
    "METRIC_NAMES",
    "OVERRIDE_KEYS",
    "Discriminator3D",
    "Generator3D",
    "InversePower",
    "MeasuredAngle",
    "TotalEnergy",
]

#: Loss weights of the four discriminator outputs (WG, WP, WA, WE of the paper).
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"real": 3.0, "energy": 0.1, "angle": 25.0, "sum": 0.1}

#: Optional batch keys that replace the random draws of one training step (tests, reproducibility studies):
#: ``noise_d`` (B, latent_size - 2) noise of the fake batch shown to the discriminator; ``noise_g1`` and
#: ``noise_g2`` (B, latent_size - 2) noise of the two generator updates; ``flip_real`` and ``flip_fake`` (B,) bool or
#: 0/1, whether the discriminator's label of each real / fake example is flipped.
OVERRIDE_KEYS = ("noise_d", "noise_g1", "noise_g2", "flip_real", "flip_fake")

#: The running means of training (see :meth:`GAN3D.train_step`).
METRIC_NAMES = (
    *("d_loss", "d_loss_real", "d_loss_fake", "d_bce", "d_energy_mape", "d_angle_mae", "d_sum_mape"),
    *("g_loss", "g_bce", "g_energy_mape", "g_angle_mae", "g_sum_mape"),
)
_CONDITION_ANGLES = ("mtheta", "theta")
_OUTPUTS = ("real", "energy", "angle", "sum")
#: Relative tolerance (fraction of the range width) of :meth:`GAN3D.check_conditions`.
_RANGE_TOLERANCE = 1e-3
_EPSILON = 1e-7  # Keras' epsilon: probability clipping of the BCE, smallest MAPE denominator


def _bce(labels: tf.Tensor, probability: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy per example, (B, 1) -> (B,), probabilities clipped to [eps, 1 - eps]."""
    probability = tf.clip_by_value(probability, _EPSILON, 1.0 - _EPSILON)
    loss = -(labels * tf.math.log(probability) + (1.0 - labels) * tf.math.log(1.0 - probability))
    return tf.reduce_mean(loss, axis=-1)


def _mape(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Mean absolute percentage error per example (percent), (B, 1) -> (B,)."""
    error = tf.abs(target - prediction) / tf.maximum(tf.abs(target), _EPSILON)
    return 100.0 * tf.reduce_mean(error, axis=-1)


def _mae(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Mean absolute error per example, (B, 1) -> (B,)."""
    return tf.reduce_mean(tf.abs(target - prediction), axis=-1)


def _column(values: Any) -> tf.Tensor:
    """A batch of scalars as a float32 (B, 1) column."""
    return tf.reshape(tf.cast(values, tf.float32), (-1, 1))


@keras.saving.register_keras_serializable(package="caloml")
class GAN3D(CalomlModel, keras.Model):
    """The conditional 3DGAN: generation in GeV through ``call``/``generate``, training through ``fit``.

    Parameters
    ----------
    generator, discriminator:
        The two networks; built from the other arguments when None.
    particle:
        Particle type the model is trained for (recorded in the config, e.g. for exported models).
    latent_size:
        Generator input length: 2 conditions + ``latent_size - 2`` noise values (256).
    power:
        Exponent of the cell-energy power transform (0.85).
    energy_scale_gev:
        The energy condition is Ep / ``energy_scale_gev`` (100 GeV).
    condition_angle:
        Batch key of the angle condition in training: ``"mtheta"`` (the angle measured from the image, as in the
        paper) or ``"theta"`` (the true angle). Generation must be conditioned on the same kind of angle.
    loss_weights:
        Weights of the ``"real"``, ``"energy"``, ``"angle"`` and ``"sum"`` losses; missing keys keep the defaults
        of :data:`DEFAULT_LOSS_WEIGHTS`.
    label_flip_probability:
        Probability that the discriminator's real/fake label of an example is flipped (0.05).
    dropout:
        Dropout rate of the discriminator (used only when ``discriminator`` is None).
    energy_range_gev, theta_range_rad:
        Conditions the model was trained on, enforced by :meth:`check_conditions`.
    seed:
        Seed of the noise, the label flips and (when the networks are built here) of the weight initializers and
        dropout masks; None draws a random one, recorded in :meth:`get_config`. The draws of ``train_step`` and
        ``generate`` are stateless random numbers seeded by (seed, number of draws so far); that counter is the
        model weight ``random_draws``, saved with the model. (The dropout layers' own seed states are not saved by
        Keras: a resumed training is deterministic but its dropout masks restart their sequence.)
    batchnorm_synchronized:
        Batch normalization over the global batch under ``tf.distribute`` (for networks built here).
    """

    def __init__(
        self,
        generator: Generator3D | None = None,
        discriminator: Discriminator3D | None = None,
        *,
        particle: str = "electron",
        latent_size: int = 256,
        power: float = 0.85,
        energy_scale_gev: float = 100.0,
        condition_angle: str = "mtheta",
        loss_weights: Mapping[str, float] | None = None,
        label_flip_probability: float = 0.05,
        dropout: float = 0.2,
        energy_range_gev: Sequence[float] = (2.0, 500.0),
        theta_range_rad: Sequence[float] = (1.047, 2.094),
        seed: int | None = None,
        batchnorm_synchronized: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if condition_angle not in _CONDITION_ANGLES:
            raise ValueError(f"condition_angle must be one of {_CONDITION_ANGLES}, got {condition_angle!r}")
        weights = dict(DEFAULT_LOSS_WEIGHTS)
        unknown = set(loss_weights or {}) - set(_OUTPUTS)
        if unknown:
            raise ValueError(f"unknown loss_weights keys {sorted(unknown)}; expected some of {list(_OUTPUTS)}")
        weights.update({key: float(value) for key, value in (loss_weights or {}).items()})
        if not 0.0 <= float(label_flip_probability) <= 1.0:
            raise ValueError(f"label_flip_probability must be in [0, 1], got {label_flip_probability}")
        if not float(energy_scale_gev) > 0:
            raise ValueError(f"energy_scale_gev must be positive, got {energy_scale_gev}")
        for name, bounds in (("energy_range_gev", energy_range_gev), ("theta_range_rad", theta_range_rad)):
            if len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
                raise ValueError(f"{name} must be (low, high) with low < high, got {tuple(bounds)}")

        seed = int(seed) if seed is not None else random.SystemRandom().randrange(2**31 - 2**16)

        # === Networks ===
        if generator is None:
            generator = Generator3D(latent_size, batchnorm_synchronized=batchnorm_synchronized, seed=seed)
        elif generator.latent_size != int(latent_size):
            raise ValueError(f"generator.latent_size {generator.latent_size} != latent_size {latent_size}")
        if discriminator is None:
            discriminator = Discriminator3D(
                power,
                dropout,
                batchnorm_synchronized=batchnorm_synchronized,
                seed=seed + 1000,
            )
        elif not math.isclose(discriminator.power, float(power)):
            raise ValueError(f"discriminator.power {discriminator.power} != power {power}")
        self.generator = generator
        self.discriminator = discriminator
        self.inverse_power = InversePower(power, dtype="float32", name="inverse_power")
        self.inverse_power.build((None, *IMAGE_SHAPE))
        # Random draws (noise, label flips) are stateless, seeded by (seed, draw number), see CalomlModel.
        self.add_draw_counter(seed + 2000)
        self.track_metrics(METRIC_NAMES)

        # === Config ===
        self.particle = str(particle)
        self.latent_size = int(latent_size)
        self.power = float(power)
        self.energy_scale_gev = float(energy_scale_gev)
        self.condition_angle = condition_angle
        self.loss_weights = weights
        self.label_flip_probability = float(label_flip_probability)
        self.dropout = float(dropout)
        self.energy_range_gev = (float(energy_range_gev[0]), float(energy_range_gev[1]))
        self.theta_range_rad = (float(theta_range_rad[0]), float(theta_range_rad[1]))
        self.seed: int = seed
        self.batchnorm_synchronized = bool(batchnorm_synchronized)
        # set by compile(): keras.optimizers.Optimizer instances
        self.discriminator_optimizer: Any = None
        self.generator_optimizer: Any = None
        self.built = True  # the two functional networks hold every weight

    # ------------------------------------------------------------------ generation

    @property
    def noise_size(self) -> int:
        """Number of noise values per shower (latent_size - 2)."""
        return self.latent_size - 2

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        """Showers (B, 51, 51, 25) in GeV from ``{"energy_gev": (B,), "theta_rad": (B,), "noise": (B, latent - 2)}``.

        ``theta_rad`` is the angle condition (of the kind named by ``condition_angle``), in radians.
        """
        energy = _column(inputs["energy_gev"]) / self.energy_scale_gev
        angle = _column(inputs["theta_rad"])
        noise = tf.cast(inputs["noise"], tf.float32)
        image = self.generator([energy, angle, noise], training=training)
        return tf.squeeze(self.inverse_power(image), axis=-1)

    def generate(
        self,
        energy_gev: Any,
        theta_rad: Any,
        noise: Any = None,
        seed: int | None = None,
        training: bool = False,
    ) -> tf.Tensor:
        """Generate showers (B, 51, 51, 25) in GeV for primary energies (B,) GeV and angles (B,) rad.

        ``noise`` (B, latent_size - 2): standard-normal noise; when None it is drawn from ``seed`` (stateless, the
        same showers for the same seed) or, without a seed, from the model's seeded stream of draws (advancing it).
        ``training=True`` runs the batch normalization on the batch statistics. The conditions are not checked
        here: call :meth:`check_conditions` first on user input.
        """
        energy = tf.reshape(tf.cast(energy_gev, tf.float32), (-1,))
        theta = tf.reshape(tf.cast(theta_rad, tf.float32), (-1,))
        if noise is None:
            shape = tf.stack([tf.shape(energy)[0], self.noise_size])
            draw_seed = tf.constant([int(seed), 0], tf.int64) if seed is not None else self.next_seed()
            noise = tf.random.stateless_normal(shape, seed=draw_seed)
        return self({"energy_gev": energy, "theta_rad": theta, "noise": noise}, training=training)

    def check_conditions(self, energy_gev: Any, theta_rad: Any) -> None:
        """Raise :class:`~caloml.errors.CalomlError` unless the conditions are finite and inside the trained ranges.

        ``energy_gev`` and ``theta_rad``: scalars or arrays of the same length (GeV, rad); ranges are
        ``energy_range_gev`` and ``theta_range_rad`` widened by 0.1% of their width.
        """
        energy = np.atleast_1d(np.asarray(energy_gev, dtype=np.float64))
        theta = np.atleast_1d(np.asarray(theta_rad, dtype=np.float64))
        if energy.ndim != 1 or theta.ndim != 1 or (energy.size != theta.size and 1 not in (energy.size, theta.size)):
            raise CalomlError(f"energy_gev {energy.shape} and theta_rad {theta.shape} must be 1-D of the same length")
        for name, values, (low, high), unit in (
            ("energy_gev", energy, self.energy_range_gev, "GeV"),
            ("theta_rad", theta, self.theta_range_rad, "rad"),
        ):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise CalomlError(f"{name} is not finite ({values[bad[0]]}) at index {bad[0]}")
            tolerance = _RANGE_TOLERANCE * (high - low)
            bad = np.flatnonzero((values < low - tolerance) | (values > high + tolerance))
            if bad.size:
                raise CalomlError(
                    f"{name} {values[bad[0]]:g} at index {bad[0]} is outside the range the {self.particle} model "
                    f"was trained on, [{low:g}, {high:g}] {unit} ({bad.size} value(s) out of range)"
                )

    # ------------------------------------------------------------------ training

    def compile(  # type: ignore[override]  # two optimizers instead of one
        self,
        discriminator_optimizer: keras.optimizers.Optimizer | None = None,
        generator_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Set the two optimizers (RMSprop(1e-3) each by default) and build their variables.

        Call it inside the ``strategy.scope()`` the model was created in. Other keyword arguments
        (``run_eagerly``, ``jit_compile``, ``steps_per_execution``) go to :meth:`keras.Model.compile`.
        """
        self.refuse_compile_losses(kwargs, also=("optimizer",))
        keras.Model.compile(self, optimizer=None, **kwargs)  # not CalomlModel's: two optimizers, set here
        self.discriminator_optimizer = keras.optimizers.get(discriminator_optimizer or keras.optimizers.RMSprop(1e-3))
        self.generator_optimizer = keras.optimizers.get(generator_optimizer or keras.optimizers.RMSprop(1e-3))
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.generator_optimizer.build(self.generator.trainable_variables)

    def compiled_optimizers(self) -> dict[str, Any]:
        return {
            "discriminator_optimizer": self.discriminator_optimizer,
            "generator_optimizer": self.generator_optimizer,
        }

    def batch_contract(self) -> BatchContract:
        """``ECAL`` (B, 51, 51, 25) GeV, ``energy`` (B,) GeV and the angle condition (B,) rad."""
        keys = (BatchKey("ECAL", IMAGE_SHAPE[:3], "GeV"), BatchKey("energy", (), "GeV"))
        return BatchContract(type(self).__name__, (*keys, BatchKey(self.condition_angle, (), "rad")))

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One step of Algorithm 1 on a batch dict; returns the running means of the losses.

        ``data``: ``"ECAL"`` (B, 51, 51, 25[, 1]) cells in GeV (not power-transformed), ``"energy"`` (B,) GeV,
        ``data[condition_angle]`` (B,) rad, optionally the :data:`OVERRIDE_KEYS`; other keys are ignored.

        1. a fake batch from the real batch's Ep and angle with fresh noise;
        2. a discriminator update on the real batch (labels 1), then one on the fake batch (labels 0), labels
           flipped with probability ``label_flip_probability``; auxiliary targets are the real Ep / 100, the
           input angle and the real total deposit (GeV);
        3. two generator updates with fresh noise through the discriminator (not updated), target label 1.

        Metrics: ``d_loss`` (weighted loss over the real and fake batches), ``d_loss_real``, ``d_loss_fake``,
        ``g_loss`` (weighted loss of the two generator updates) and the unweighted components ``*_bce``,
        ``*_energy_mape`` (%), ``*_angle_mae`` (rad), ``*_sum_mape`` (%).
        """
        if self.discriminator_optimizer is None or self.generator_optimizer is None:
            raise RuntimeError("GAN3D.compile() must be called before training")
        batch = self.batch_contract().batch(data)
        cells = tf.cast(batch["ECAL"], tf.float32)
        cells = tf.reshape(cells, tf.concat([tf.shape(cells)[:1], IMAGE_SHAPE], axis=0))
        energy_scaled = _column(batch["energy"]) / self.energy_scale_gev
        angle = _column(batch[self.condition_angle])
        real_images = tf.pow(tf.nn.relu(cells), self.power)
        real_sum = tf.reduce_sum(cells, axis=(1, 2, 3, 4))[:, None]
        batch_size = tf.shape(cells)[0]
        targets = (energy_scaled, angle, real_sum)

        noise_d = self._noise(batch, "noise_d", batch_size)
        flip_real = self._flips(batch, "flip_real", batch_size)
        flip_fake = self._flips(batch, "flip_fake", batch_size)
        ones = tf.ones_like(energy_scaled)
        real_labels = tf.where(flip_real, 0.0, ones)
        fake_labels = tf.where(flip_fake, ones, 0.0)

        fake_images = tf.stop_gradient(self.generator([energy_scaled, angle, noise_d], training=True))
        d_real = self._update(self.discriminator, lambda: real_images, real_labels, targets)
        d_fake = self._update(self.discriminator, lambda: fake_images, fake_labels, targets)
        for name, parts in (("d_loss_real", d_real), ("d_loss_fake", d_fake)):
            self.update_metrics({name: parts["loss"]})
            self.update_metrics(parts, prefix="d_")

        for key in ("noise_g1", "noise_g2"):
            inputs = [energy_scaled, angle, self._noise(batch, key, batch_size)]
            generated = partial(self.generator.__call__, inputs, training=True)
            self.update_metrics(self._update(self.generator, generated, ones, targets), prefix="g_")
        return self.metric_results()

    def _update(
        self,
        network: keras.Model,
        images: Callable[[], tf.Tensor],
        labels: tf.Tensor,
        targets: tuple[tf.Tensor, tf.Tensor, tf.Tensor],
    ) -> dict[str, tf.Tensor]:
        """One optimizer step of ``network`` (the discriminator or the generator) on the discriminator's loss.

        ``images()`` makes the images shown to the discriminator (called under the gradient tape, so that the
        generator's step differentiates through it); returns the per-example loss terms (B,).
        """
        optimizer = self.generator_optimizer if network is self.generator else self.discriminator_optimizer
        with tf.GradientTape() as tape:
            outputs = self.discriminator(images(), training=True)
            parts = self._loss_terms(outputs, labels, targets)
            loss = tf.nn.compute_average_loss(parts["loss"])
        variables = network.trainable_variables
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return parts

    def _loss_terms(
        self, outputs: Mapping[str, tf.Tensor], labels: tf.Tensor, targets: tuple[tf.Tensor, tf.Tensor, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        """Per-example loss components (B,) and their weighted sum ``"loss"``."""
        energy_scaled, angle, real_sum = targets
        parts = {
            "bce": _bce(labels, outputs["real"]),
            "energy_mape": _mape(energy_scaled, outputs["energy"]),
            "angle_mae": _mae(angle, outputs["angle"]),
            "sum_mape": _mape(real_sum, outputs["sum"]),
        }
        weights = self.loss_weights
        parts["loss"] = (
            weights["real"] * parts["bce"]
            + weights["energy"] * parts["energy_mape"]
            + weights["angle"] * parts["angle_mae"]
            + weights["sum"] * parts["sum_mape"]
        )
        return parts

    def _noise(self, batch: Mapping[str, Any], key: str, batch_size: tf.Tensor) -> tf.Tensor:
        if key in batch:
            return tf.reshape(tf.cast(batch[key], tf.float32), (-1, self.noise_size))
        return tf.random.stateless_normal(
            tf.stack([batch_size, self.noise_size]), seed=self.next_seed(per_replica=True)
        )

    def _flips(self, batch: Mapping[str, Any], key: str, batch_size: tf.Tensor) -> tf.Tensor:
        if key in batch:
            return tf.reshape(tf.cast(batch[key], tf.bool), (-1, 1))
        uniform = tf.random.stateless_uniform(tf.stack([batch_size, 1]), seed=self.next_seed(per_replica=True))
        return uniform < self.label_flip_probability

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        return {
            **attribute_config(self, "name trainable"),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            **attribute_config(self, "particle latent_size power energy_scale_gev condition_angle"),
            "loss_weights": dict(self.loss_weights),
            **attribute_config(
                self, "label_flip_probability dropout energy_range_gev theta_range_rad seed batchnorm_synchronized"
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GAN3D:
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        config["energy_range_gev"] = tuple(config["energy_range_gev"])
        config["theta_range_rad"] = tuple(config["theta_range_rad"])
        return cls(**config)
