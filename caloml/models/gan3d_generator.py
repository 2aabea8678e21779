"""The 3DGAN generator (arXiv:2109.07388): (Ep/100, angle, noise) -> a 51 x 51 x 25 ECAL image.

Layer by layer as published, in the channels-last layout of caloml's arrays (x, y, z = depth, channel):

    concat(Ep/100, angle [rad], noise (latent_size - 2))          (B, 256)
    Dense(5184) -> Reshape (9, 9, 8, 8) -> UpSampling3D(6, 6, 6)  (B, 54, 54, 48, 8)
    Conv3D(8, (6, 6, 8), valid, he_uniform) ReLU BatchNorm        (B, 49, 49, 41, 8)
    3 x [ZeroPadding3D((2, 2, 1)) Conv3D(6, (4, 4, 6)) ReLU BatchNorm]   -> (50, 50, 38), (51, 51, 35), (52, 52, 32)
    ZeroPadding3D((1, 1, 0)) Conv3D(6, (3, 3, 5)) ReLU BatchNorm  (B, 52, 52, 28, 6)
    ZeroPadding3D((1, 1, 0)) Conv3D(6, (3, 3, 3)) ReLU            (B, 52, 52, 26, 6)
    Conv3D(1, (2, 2, 2), glorot_normal) ReLU                      (B, 51, 51, 25, 1)

BatchNorm epsilon 1e-6. The image is in "power space": cell energies in GeV raised to the power 0.85; the final
ReLU gives exact zeros (sparse images). 1,365,047 parameters (the paper quotes about 1.37 M).

Mixed precision: under a mixed policy (``mixed_bfloat16``) the layers up to ``relu_4`` compute in bfloat16 and the
tail from ``batchnorm_4`` on (6% of the multiply-adds) in float32. The image is a thin positive fringe of a mostly
negative last convolution (0.2% of the cells hit in the trained generator studied), so its total energy is
ill-conditioned in the tail's weights and inputs: perturbing the weights at random by bfloat16's rounding size moves
the total energy by up to 1.6%, and a fully bfloat16 generator gave showers 1.6-2% low against float32 on the same
noise. With the float32 tail the difference is -0.04 +- 0.09% (32 showers, ``python -m caloml.evaluate precision``),
at the cost measured in ``docs/benchmarks.md``.

See ``docs/3dgan.md``.
"""

from __future__ import annotations

from typing import Any

import keras

from caloml.geometry import CLIC_ECAL
from caloml.models.base import attribute_config
from caloml.models.bf16_conv3d_guard import GuardedConv3D

__all__ = ["Generator3D"]

#: Output image shape (x, y, depth, channel) of the CLIC ECAL window.
IMAGE_SHAPE: tuple[int, int, int, int] = (*CLIC_ECAL.shape, 1)

#: Number of conditioning inputs before the noise: Ep / 100 and the angle.
N_CONDITIONS = 2

_BATCHNORM_EPSILON = 1e-6

#: The float32 tail under a mixed precision policy (see the module docstring) starts at the batch normalization of
#: this convolution block: ``batchnorm_4`` and every layer after it.
FLOAT32_TAIL_BLOCK = 4
FLOAT32_TAIL_FROM = f"batchnorm_{FLOAT32_TAIL_BLOCK}"

# (filters, kernel, zero padding before the convolution or None, batch normalization after the ReLU)
_CONV_STACK: tuple[tuple[int, tuple[int, int, int], tuple[int, int, int] | None, bool], ...] = (
    (8, (6, 6, 8), None, True),
    (6, (4, 4, 6), (2, 2, 1), True),
    (6, (4, 4, 6), (2, 2, 1), True),
    (6, (4, 4, 6), (2, 2, 1), True),
    (6, (3, 3, 5), (1, 1, 0), True),
    (6, (3, 3, 3), (1, 1, 0), False),
)


def layer_seed(seed: int | None, offset: int) -> int | None:
    """A distinct initializer seed per layer (Keras initializers repeat their values for one seed)."""
    return None if seed is None else int(seed) + offset


def conv_block(
    index: int,
    zero_padding: tuple[int, int, int] | None,
    conv: keras.layers.Layer,
    activation: keras.layers.Layer,
    batchnorm_synchronized: bool | None,
    *,
    pad_dtype: str | None = None,
    batchnorm_dtype: str | None = None,
) -> list[keras.layers.Layer]:
    """The layers of convolution block ``index`` of the 3DGAN networks, in order: ``pad_<index>`` (when
    ``zero_padding`` is given), ``conv``, ``activation``, then ``batchnorm_<index>`` unless
    ``batchnorm_synchronized`` is None (the block has no batch normalization). ``pad_dtype`` / ``batchnorm_dtype``:
    the dtype policy of the padding / batch normalization (None: the global one)."""
    block: list[keras.layers.Layer] = []
    if zero_padding is not None:
        block.append(keras.layers.ZeroPadding3D(zero_padding, dtype=pad_dtype, name=f"pad_{index}"))
    block += [conv, activation]
    if batchnorm_synchronized is not None:
        block.append(
            keras.layers.BatchNormalization(
                epsilon=_BATCHNORM_EPSILON,
                synchronized=batchnorm_synchronized,
                dtype=batchnorm_dtype,
                name=f"batchnorm_{index}",
            )
        )
    return block


@keras.saving.register_keras_serializable(package="caloml")
class Generator3D(keras.Model):
    """The conditional 3DGAN generator, a functional model with three inputs.

    Inputs: ``energy_scaled`` (B, 1) = Ep [GeV] / 100, ``angle`` (B, 1) in radians (the angle condition the
    model is trained with), ``noise`` (B, latent_size - 2) standard normal. Output: (B, 51, 51, 25, 1), the image
    in power space (cells in GeV ** power, power 0.85 by default), non-negative with exact zeros.

    Parameters
    ----------
    latent_size:
        Length of the concatenated input vector (256 in the paper: 2 conditions + 254 noise values).
    batchnorm_synchronized:
        Batch statistics over the global batch under ``tf.distribute`` (so that training does not depend on the
        number of replicas); no effect on a single device.
    seed:
        Seed of the weight initializers (each layer gets ``seed + index``); None draws from Keras' global seed.
    float32_tail:
        Under a mixed policy, compute the layers from :data:`FLOAT32_TAIL_FROM` on in float32 (the default; see the
        module docstring). False: every layer follows the global policy (for precision studies:
        :mod:`caloml.evaluate.precision_sensitivity`).
    """

    def __init__(
        self,
        latent_size: int = 256,
        batchnorm_synchronized: bool = True,
        seed: int | None = None,
        float32_tail: bool = True,
        **kwargs: Any,
    ) -> None:
        if int(latent_size) <= N_CONDITIONS:
            raise ValueError(f"latent_size must exceed {N_CONDITIONS} (Ep and angle), got {latent_size}")
        latent_size = int(latent_size)

        # === Layers ===
        concatenate = keras.layers.Concatenate(axis=-1, name="conditions_and_noise")
        dense = keras.layers.Dense(
            5184, kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(seed, 0)), name="dense"
        )
        reshape = keras.layers.Reshape((9, 9, 8, 8), name="reshape")
        upsample = keras.layers.UpSampling3D(size=(6, 6, 6), name="upsample")
        tail = _float32_tail_dtype() if float32_tail else None  # "float32" under a mixed policy, else None
        blocks: list[list[keras.layers.Layer]] = []
        for index, (filters, kernel, padding, batchnorm) in enumerate(_CONV_STACK, start=1):
            in_tail = index > FLOAT32_TAIL_BLOCK
            layer_dtype = tail if in_tail else None
            initializer = keras.initializers.HeUniform(seed=layer_seed(seed, index))
            conv = GuardedConv3D(
                filters,
                kernel,
                padding="valid",
                kernel_initializer=initializer,
                dtype=layer_dtype,
                name=f"conv_{index}",
            )
            activation = keras.layers.ReLU(dtype=layer_dtype, name=f"relu_{index}")
            blocks.append(
                conv_block(
                    index,
                    padding,
                    conv,
                    activation,
                    batchnorm_synchronized if batchnorm else None,
                    pad_dtype=layer_dtype,
                    batchnorm_dtype=tail if index >= FLOAT32_TAIL_BLOCK else None,
                )
            )
        last = len(_CONV_STACK) + 1
        output_conv = GuardedConv3D(
            1,
            (2, 2, 2),
            padding="valid",
            kernel_initializer=keras.initializers.GlorotNormal(seed=layer_seed(seed, last)),
            dtype=tail,
            name=f"conv_{last}",
        )
        output_relu = keras.layers.ReLU(dtype="float32", name="image")  # float32 image under any policy

        # === Functional model ===
        energy_input = keras.Input(shape=(1,), name="energy_scaled")
        angle_input = keras.Input(shape=(1,), name="angle")
        noise_input = keras.Input(shape=(latent_size - N_CONDITIONS,), name="noise")
        x = concatenate([energy_input, angle_input, noise_input])
        x = upsample(reshape(dense(x)))
        for block in blocks:
            for layer in block:
                x = layer(x)
        image = output_relu(output_conv(x))
        super().__init__(inputs=[energy_input, angle_input, noise_input], outputs=image, **kwargs)

        # === Config ===
        self.latent_size = latent_size
        self.batchnorm_synchronized = bool(batchnorm_synchronized)
        self.seed = seed
        self.float32_tail = bool(float32_tail)

    @property
    def noise_size(self) -> int:
        """Number of noise values per event (latent_size - 2)."""
        return self.latent_size - N_CONDITIONS

    def get_config(self) -> dict[str, Any]:
        return attribute_config(self, "name trainable latent_size batchnorm_synchronized seed float32_tail")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Generator3D:
        return cls(**config)


def _float32_tail_dtype() -> str | None:
    """``"float32"`` under a mixed policy (float32 variables, lower-precision arithmetic: the tail then computes in
    float32), else None (the tail follows the global policy: float32, or a policy whose variables are not float32)."""
    policy = keras.config.dtype_policy()
    if policy.variable_dtype == "float32" and policy.compute_dtype != "float32":
        return "float32"
    return None
