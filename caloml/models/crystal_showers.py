"""What the three crystal-array generators share: the cell transform, the energy condition and generation.

:class:`CrystalShowerModel` is the base of :class:`~caloml.models.crystal_wgan.CrystalWGAN`,
:class:`~caloml.models.crystal_vae.CrystalVAE` and :class:`~caloml.models.crystal_vaewgan.CrystalVAEWGAN`. Its
``call`` turns ``{"energy_gev": (B,), "noise": (B, noise_size)}`` into showers (B, n, n) in GeV, so every model is
saved (``.keras``), reloaded and exported as one object; :meth:`CrystalShowerModel.generate` draws the noise from a
seed (the same stateless draw as the exported ``generate`` signature).

Inside the networks a shower is the vector u (B, n * n) of its cell fractions f = E_cell / E_primary,
u = (log10(f + 1e-4) + 2) / 2 (an empty cell is -1, the whole energy in one cell about +1); the condition is
c = 2 (ln E - ln E_low) / (ln E_high - ln E_low) - 1 over the trained range. The decoder's n * n + 1 outputs are a
shower's shape and its total: f = softmax(shape) * 0.97 exp(0.03 total), so that the sum E25 / E is one number
the network controls (a non-saturating scale around the typical containment), not the sum of 25 independent
errors. The detector's hit threshold (1.5 MeV for ``crystal-5x5``) acts on f through a soft gate,
f * sigmoid((f E - threshold) / (0.2 threshold)), that lets gradients through; generated cells below the threshold
then read zero, as in the simulation. See ``docs/vaewgan.md``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.base import CalomlModel, attribute_config
from caloml.models.batch_contract import BatchContract, BatchKey

__all__ = [
    "FRACTION_OFFSET",
    "NOISE_KEYS",
    "CrystalShowerModel",
    "condition_energy",
    "decoded_features",
    "energy_condition",
    "features_to_showers",
    "mlp",
    "replica_share",
    "showers_to_features",
]

#: Offset of the logarithmic cell transform (a fraction of the primary energy).
FRACTION_OFFSET = 1e-4
#: Relative tolerance of the trained energy range (float32 inputs at its ends are accepted).
RANGE_TOLERANCE = 1e-5
#: Optional batch keys that replace the random draws of one training step (tests, reproducibility studies), one
#: row per shower of the batch, so that ``tf.distribute`` splits them with the showers; a missing key is drawn:
#: ``noise_critic`` (B, latent_dim) standard-normal noise of the fake shower paired with each real one in the
#: critic updates; ``noise_mix`` (B,) in [0, 1], the gradient penalty's interpolation weight of each pair;
#: ``noise_generator`` (B, latent_dim) noise of the generator update (the rows of its slice);
#: ``noise_latent`` (B, latent_dim) standard-normal eps of z = mu + sigma eps of each real shower (the VAE loss).
NOISE_KEYS = ("noise_critic", "noise_mix", "noise_generator", "noise_latent")


def showers_to_features(showers_gev: tf.Tensor, energy_gev: tf.Tensor) -> tf.Tensor:
    """The network representation u (B, n * n) of showers (B, n, n) in GeV of primaries (B,) in GeV."""
    showers = tf.cast(showers_gev, tf.float32)
    flat = tf.reshape(showers, (tf.shape(showers)[0], -1))
    fraction = tf.nn.relu(flat) / tf.reshape(tf.cast(energy_gev, tf.float32), (-1, 1))
    return (tf.math.log(fraction + FRACTION_OFFSET) / math.log(10.0) + 2.0) / 2.0


def features_to_showers(features: tf.Tensor, energy_gev: tf.Tensor, n_side: int, threshold_gev: float) -> tf.Tensor:
    """Showers (B, n, n) in GeV from the representation u (B, n * n); cells below ``threshold_gev`` are zero."""
    fraction = tf.nn.relu(tf.pow(10.0, 2.0 * tf.cast(features, tf.float32) - 2.0) - FRACTION_OFFSET)
    cells = fraction * tf.reshape(tf.cast(energy_gev, tf.float32), (-1, 1))
    cells = tf.where(cells >= threshold_gev, cells, tf.zeros_like(cells))
    return tf.reshape(cells, (-1, n_side, n_side))


def energy_condition(energy_gev: tf.Tensor, energy_range_gev: tuple[float, float]) -> tf.Tensor:
    """The condition c (B, 1) of primary energies (B,) GeV: ln E mapped linearly onto [-1, 1] over the range."""
    low, high = math.log(energy_range_gev[0]), math.log(energy_range_gev[1])
    log_energy = tf.math.log(tf.reshape(tf.cast(energy_gev, tf.float32), (-1, 1)))
    return 2.0 * (log_energy - low) / (high - low) - 1.0


def condition_energy(condition: tf.Tensor, energy_range_gev: tuple[float, float]) -> tf.Tensor:
    """The primary energies (B, 1) GeV of conditions c (B, 1): the inverse of :func:`energy_condition`."""
    low, high = math.log(energy_range_gev[0]), math.log(energy_range_gev[1])
    return tf.exp(low + (tf.cast(condition, tf.float32) + 1.0) * 0.5 * (high - low))


def decoded_features(outputs: tf.Tensor, energy_gev: tf.Tensor, threshold_gev: float) -> tf.Tensor:
    """The representation u (B, n * n) of decoder outputs (B, n * n + 1) for primaries (B, 1) GeV: softmax shape
    times the total 0.97 exp(0.03 t), through the soft threshold gate (module docstring)."""
    total = 0.97 * tf.exp(0.03 * outputs[:, -1:])
    fraction = tf.nn.softmax(outputs[:, :-1], axis=1) * total
    width = 0.2 * threshold_gev
    gate = tf.sigmoid((fraction * energy_gev - threshold_gev) / width)
    return (tf.math.log(fraction * gate + FRACTION_OFFSET) / math.log(10.0) + 2.0) / 2.0


def mlp(
    inputs: Sequence[keras.KerasTensor], units: int, layers: int, outputs: int, name: str, seed: int
) -> keras.Model:
    """A functional multilayer perceptron on the concatenated ``inputs``: ``layers`` Dense(``units``) with leaky
    ReLU, then a linear Dense(``outputs``); the initial weights are drawn from ``seed``."""
    x = keras.layers.Concatenate(name=f"{name}_inputs")(list(inputs)) if len(inputs) > 1 else inputs[0]
    for index in range(layers + 1):
        initializer = keras.initializers.GlorotUniform(seed=seed + index)
        if index == layers:
            break
        x = keras.layers.Dense(units, kernel_initializer=initializer, name=f"{name}_dense_{index}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_act_{index}")(x)
    out = keras.layers.Dense(outputs, kernel_initializer=initializer, name=f"{name}_out")(x)
    return keras.Model(list(inputs), out, name=name)


class CrystalShowerModel(CalomlModel, keras.Model):
    """Base of the crystal generators: the decoder (generator) network, the condition, generation and config.

    Compile, metrics and the seeded draw counter are :class:`~caloml.models.base.CalomlModel`'s.

    Args:
        latent_dim: dimension of the latent space z.
        hidden_units, hidden_layers: width and depth of every network.
        energy_range_gev: the trained primary-energy range (GeV); generation outside it is an error.
        n_side: crystals per side of the array (5).
        threshold_gev: the hit threshold applied to generated cells (GeV).
        particle: the particle the model was trained on.
        geometry: the simulator geometry of the training data (``crystal-5x5``).
        seed: seed of the initialization and of every random draw in training.
    """

    def __init__(
        self,
        *,
        latent_dim: int = 8,
        hidden_units: int = 128,
        hidden_layers: int = 3,
        energy_range_gev: Sequence[float] = (0.5, 5.0),
        n_side: int = 5,
        threshold_gev: float = 1.5e-3,
        particle: str = "electron",
        geometry: str = "crystal-5x5",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(energy_range_gev) != 2 or not 0 < float(energy_range_gev[0]) < float(energy_range_gev[1]):
            raise ValueError(f"energy_range_gev must be (low, high) with 0 < low < high, got {tuple(energy_range_gev)}")
        for name, value in (("latent_dim", latent_dim), ("hidden_units", hidden_units), ("n_side", n_side)):
            if int(value) < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        self.latent_dim = int(latent_dim)
        self.hidden_units = int(hidden_units)
        self.hidden_layers = int(hidden_layers)
        self.energy_range_gev = (float(energy_range_gev[0]), float(energy_range_gev[1]))
        self.n_side = int(n_side)
        self.threshold_gev = float(threshold_gev)
        self.particle = str(particle)
        self.geometry = str(geometry)
        self.seed: int = int(seed) if seed is not None else random.SystemRandom().randrange(2**31 - 2**16)
        self.decoder = mlp(
            [keras.Input((self.latent_dim,), name="z"), keras.Input((1,), name="condition")],
            self.hidden_units,
            self.hidden_layers,
            self.n_cells + 1,
            "decoder",
            self.seed,
        )
        # Random draws are stateless, seeded by (seed + 2000, draw number); the counter is saved with the model.
        self.add_draw_counter(self.seed + 2000)

    # ------------------------------------------------------------------ shapes and conditions

    @property
    def n_cells(self) -> int:
        """Crystals per shower (n * n)."""
        return self.n_side * self.n_side

    @property
    def noise_size(self) -> int:
        """Standard-normal numbers per generated shower (the latent z; the VAE adds one per cell)."""
        return self.latent_dim

    def condition(self, energy_gev: tf.Tensor) -> tf.Tensor:
        """The network condition c (B, 1) of primary energies (B,) in GeV."""
        return energy_condition(energy_gev, self.energy_range_gev)

    def accepted_range(self) -> tuple[float, float]:
        """The energies (GeV) generation accepts: the trained range widened by a relative 1e-5."""
        low, high = self.energy_range_gev
        return low * (1.0 - RANGE_TOLERANCE), high * (1.0 + RANGE_TOLERANCE)

    def check_energies(self, energy_gev: Any) -> np.ndarray:
        """The energies as float32 (B,), or CalomlError for a non-finite one or one outside the trained range."""
        energy = np.asarray(energy_gev, dtype=np.float64).reshape(-1)
        low, high = self.accepted_range()
        bad = ~np.isfinite(energy) | (energy < low) | (energy > high)
        if bad.any():
            value = energy[np.flatnonzero(bad)[0]]
            raise CalomlError(
                f"energy {value:g} GeV is outside the trained range {self.energy_range_gev[0]:g}-"
                f"{self.energy_range_gev[1]:g} GeV of this {self.particle} model"
            )
        return energy.astype(np.float32)

    # ------------------------------------------------------------------ generation

    def decode(self, z: tf.Tensor, condition: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The decoder's shower u (B, n * n) for latents z (B, latent_dim) and conditions (B, 1)."""
        outputs = self.decoder([z, condition], training=training)
        return decoded_features(outputs, condition_energy(condition, self.energy_range_gev), self.threshold_gev)

    def decode_noise(self, noise: tf.Tensor, condition: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The representation u (B, n * n) generated from ``noise`` (B, noise_size) and the condition (B, 1)."""
        return self.decode(noise, condition, training=training)

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> tf.Tensor:
        """Showers (B, n, n) in GeV from ``{"energy_gev": (B,), "noise": (B, noise_size)}``."""
        energy = tf.reshape(tf.cast(inputs["energy_gev"], tf.float32), (-1,))
        noise = tf.cast(inputs["noise"], tf.float32)
        features = self.decode_noise(noise, self.condition(energy), training=training)
        return features_to_showers(features, energy, self.n_side, self.threshold_gev)

    def generate(self, energy_gev: Any, seed: int = 1, batch_size: int = 10000) -> np.ndarray:
        """Showers (B, n, n) float32 in GeV for primary energies (B,) in GeV, the noise drawn from ``seed``.

        The noise of a batch of ``batch_size`` is ``tf.random.stateless_normal(seed=(seed, batch index))``, the
        exported ``generate`` signature's draw (one batch): the same seed gives the same showers.
        """
        energy = self.check_energies(energy_gev)
        out = []
        for index, start in enumerate(range(0, energy.size, batch_size)):
            part = tf.constant(energy[start : start + batch_size])
            noise = tf.random.stateless_normal(
                (int(part.shape[0]), self.noise_size), seed=tf.constant([seed, index], tf.int64)
            )
            out.append(self({"energy_gev": part, "noise": noise}).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_side, self.n_side), np.float32)

    # ------------------------------------------------------------------ training helpers

    def normal(self, rows: tf.Tensor, columns: int) -> tf.Tensor:
        """Standard-normal numbers (rows, columns) from the next training seed (each replica its own)."""
        return tf.random.stateless_normal(tf.stack([rows, columns]), seed=self.next_seed(per_replica=True))

    def fed_noise(self, data: Any) -> dict[str, tf.Tensor]:
        """The :data:`NOISE_KEYS` a training batch holds, as float32 (B, ...); the others are drawn."""
        batch = self.batch_contract().batch(data)
        return {key: tf.cast(batch[key], tf.float32) for key in NOISE_KEYS if key in batch}

    def normal_or_fed(self, fed: Mapping[str, tf.Tensor] | None, key: str, rows: tf.Tensor, columns: int) -> tf.Tensor:
        """``fed[key]`` as (rows, columns) when the batch gave it, else :meth:`normal` (the next training draw)."""
        if fed and key in fed:
            return tf.reshape(fed[key], (-1, columns))
        return self.normal(rows, columns)

    def batch_features(self, data: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """(u (B, n * n), c (B, 1)) of a training batch ``{"showers": (B, n, n) GeV, "energy": (B,) GeV}``."""
        batch = self.batch_contract().batch(data)
        energy = tf.reshape(tf.cast(batch["energy"], tf.float32), (-1,))
        return showers_to_features(batch["showers"], energy), self.condition(energy)

    def batch_contract(self) -> BatchContract:
        """``showers`` (B, n_side, n_side) GeV per crystal and ``energy`` (B,) GeV."""
        keys = (BatchKey("showers", (self.n_side, self.n_side), "GeV"), BatchKey("energy", (), "GeV"))
        return BatchContract(type(self).__name__, keys)

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """``keras.Model.fit``; a non-finite loss (a diverging critic) stops training with a one-line CalomlError.

        The step checks its losses; the epoch in progress is not checkpointed, so the run directory keeps the
        checkpoint of the last good epoch.
        """
        try:
            return super().fit(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            if "non-finite" not in str(error):
                raise
            raise CalomlError(
                f"training stopped: a non-finite {_loss_name(str(error))} (the networks diverged); the checkpoint of "
                "the last good epoch is kept; lower the learning rate or restart from it"
            ) from None

    def get_config(self) -> dict[str, Any]:
        return attribute_config(
            self,
            "name trainable latent_dim hidden_units hidden_layers energy_range_gev n_side threshold_gev",
            "particle geometry seed",
        )


def replica_share(loss: tf.Tensor) -> tf.Tensor:
    """A replica's mean loss divided by the number of replicas in sync (1 outside ``tf.distribute``): the
    optimizers sum the replicas' gradients, so the step follows the gradient of the global batch's mean, as on
    one device (without it two replicas would step twice as far)."""
    return loss / float(tf.distribute.get_strategy().num_replicas_in_sync)


def check_finite(value: tf.Tensor, what: str) -> tf.Tensor:
    """``value`` unchanged, or an InvalidArgumentError naming ``what`` when it is NaN or infinite."""
    return tf.debugging.check_numerics(value, f"non-finite {what}")


def _loss_name(message: str) -> str:
    for line in message.splitlines():
        if "non-finite" in line:
            tail = line.split("non-finite", 1)[1].strip()
            return tail.split(":")[0].split(" Tensor")[0].strip() or "loss"
    return "loss"
