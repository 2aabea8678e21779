"""The 3DGAN discriminator (arXiv:2109.07388): a power-space ECAL image -> four outputs.

Layer by layer as published (channels last, LeakyReLU slope 0.3, BatchNorm epsilon 1e-6):

    input (B, 51, 51, 25, 1), cells in GeV ** power
    Conv3D(16, (5, 6, 6), same) LeakyReLU Dropout(0.2)                             (B, 51, 51, 25, 16)
    ZeroPadding3D((0, 0, 1)) Conv3D(8, (5, 6, 6), valid) LeakyReLU BatchNorm Dropout  (B, 47, 46, 22, 8)
    ZeroPadding3D((0, 0, 1)) Conv3D(8, (5, 6, 6), valid) LeakyReLU BatchNorm Dropout  (B, 43, 41, 19, 8)
    Conv3D(8, (5, 6, 6), valid) LeakyReLU BatchNorm Dropout                           (B, 39, 36, 14, 8)
    AveragePooling3D(2) Flatten                                                        (B, 19152)

Outputs (a dict, each (B, 1)):

* ``"real"`` - Dense(1, sigmoid): probability that the image is real (O_GAN);
* ``"energy"`` - Dense(1, linear): regression of Ep / 100 (O_P);
* ``"angle"`` - the measured angle (radians) of the inverse-power image (O_theta, not trainable), see
  :func:`caloml.observables.differentiable.measured_angle_tf`;
* ``"sum"`` - the total deposit (GeV) of the inverse-power image (O_sum, not trainable).

87,402 parameters (the paper quotes about 87 k).

See ``docs/3dgan.md``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from caloml.models.base import attribute_config
from caloml.models.bf16_conv3d_guard import GuardedConv3D
from caloml.models.gan3d_generator import IMAGE_SHAPE, conv_block, layer_seed
from caloml.observables.differentiable import measured_angle_tf, total_energy_tf

__all__ = ["Discriminator3D", "InversePower", "MeasuredAngle", "TotalEnergy"]

_LEAKY_SLOPE = 0.3
_KERNEL = (5, 6, 6)

# (filters, padding mode, zero padding before the convolution or None, batch normalization after the activation)
_CONV_STACK: tuple[tuple[int, str, tuple[int, int, int] | None, bool], ...] = (
    (16, "same", None, False),
    (8, "valid", (0, 0, 1), True),
    (8, "valid", (0, 0, 1), True),
    (8, "valid", None, True),
)


@keras.saving.register_keras_serializable(package="caloml")
class InversePower(keras.layers.Layer):
    """``max(x, 0) ** (1 / power)``: a power-space image back to GeV (no weights)."""

    def __init__(self, power: float = 0.85, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not power > 0:
            raise ValueError(f"power must be positive, got {power}")
        self.power = float(power)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.pow(tf.nn.relu(inputs), 1.0 / self.power)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "power": self.power}


class _ShowerObservable(keras.layers.Layer):
    """A per-shower observable of GeV images (B, nx, ny, nz[, 1]) -> (B, 1) (no weights)."""

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], 1)


@keras.saving.register_keras_serializable(package="caloml")
class MeasuredAngle(_ShowerObservable):
    """Measured incidence angle of GeV images (B, nx, ny, nz[, 1]) -> (B, 1) radians (no weights)."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return measured_angle_tf(inputs)[:, None]


@keras.saving.register_keras_serializable(package="caloml")
class TotalEnergy(_ShowerObservable):
    """Total deposit of GeV images (B, nx, ny, nz[, 1]) -> (B, 1) GeV (no weights)."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return total_energy_tf(inputs)[:, None]


@keras.saving.register_keras_serializable(package="caloml")
class Discriminator3D(keras.Model):
    """The 3DGAN discriminator, a functional model with one image input and a dict of four (B, 1) outputs.

    Parameters
    ----------
    power:
        Exponent of the power transform of the input image (0.85): the ``"angle"`` and ``"sum"`` outputs are
        computed on ``image ** (1 / power)``, in GeV.
    dropout:
        Dropout rate after each convolution block (0.2).
    batchnorm_synchronized:
        Batch statistics over the global batch under ``tf.distribute``.
    seed:
        Seed of the weight initializers and of the dropout masks (``seed + index`` per layer); None draws from
        Keras' global seed.
    """

    def __init__(
        self,
        power: float = 0.85,
        dropout: float = 0.2,
        batchnorm_synchronized: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        # === Layers ===
        blocks: list[list[keras.layers.Layer]] = []
        for index, (filters, mode, padding, batchnorm) in enumerate(_CONV_STACK, start=1):
            initializer = keras.initializers.GlorotUniform(seed=layer_seed(seed, index))
            conv = GuardedConv3D(filters, _KERNEL, padding=mode, kernel_initializer=initializer, name=f"conv_{index}")
            activation = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE, name=f"leaky_relu_{index}")
            block = conv_block(index, padding, conv, activation, batchnorm_synchronized if batchnorm else None)
            block.append(
                keras.layers.Dropout(float(dropout), seed=layer_seed(seed, 100 + index), name=f"dropout_{index}")
            )
            blocks.append(block)
        pooling = keras.layers.AveragePooling3D(pool_size=(2, 2, 2), name="average_pooling")
        flatten = keras.layers.Flatten(name="flatten")
        real_head = keras.layers.Dense(
            1,
            activation="sigmoid",
            dtype="float32",  # the loss clips at 1 - 1e-7: not representable in bfloat16
            kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(seed, 10)),
            name="real",
        )
        energy_head = keras.layers.Dense(
            1,
            activation="linear",
            dtype="float32",
            kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(seed, 11)),
            name="energy",
        )
        inverse_power = InversePower(power, dtype="float32", name="inverse_power")
        angle_output = MeasuredAngle(dtype="float32", name="angle")
        sum_output = TotalEnergy(dtype="float32", name="sum")

        # === Functional model ===
        image = keras.Input(shape=IMAGE_SHAPE, name="image")
        x = image
        for block in blocks:
            for layer in block:
                x = layer(x)
        features = flatten(pooling(x))
        cells_gev = inverse_power(image)
        outputs = {
            "real": real_head(features),
            "energy": energy_head(features),
            "angle": angle_output(cells_gev),
            "sum": sum_output(cells_gev),
        }
        super().__init__(inputs=image, outputs=outputs, **kwargs)

        # === Config ===
        self.power = float(power)
        self.dropout = float(dropout)
        self.batchnorm_synchronized = bool(batchnorm_synchronized)
        self.seed = seed

    def get_config(self) -> dict[str, Any]:
        return attribute_config(self, "name trainable power dropout batchnorm_synchronized seed")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Discriminator3D:
        return cls(**config)
