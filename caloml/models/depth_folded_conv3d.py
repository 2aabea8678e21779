"""A Conv3D on single-channel images computed, in bfloat16, as a Conv2D with the depth axis folded into channels.

oneDNN's Conv3D is slow for one input channel (the Triforce CNN's ECAL and HCAL convolutions): nothing to vectorize
over. With the depth axis (z, ``nz`` cells) as input channels and a banded ("Toeplitz") kernel that holds every
output depth as a group of output channels, the same convolution is a Conv2D of ``nz`` input and
``(nz - kz + 1) x filters`` output channels: ``nz / kz`` times the multiply-adds, but in the matrix-unit-friendly
shape. Measured (2-core Xeon with AMX, TensorFlow 2.21, 25^3 ECAL, 6 filters of 6^3, batch 200, machine shared):
direct float32 609 events/s, direct bfloat16 410, folded float32 422, folded bfloat16 3,914. So the layer folds
only in bfloat16, and only when the extra work ``nz / kz`` is at most :data:`MAX_FOLD_INFLATION`.

Weights and config are those of ``keras.layers.Conv3D``. See ``docs/3dgan.md`` (Precision).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.models.bf16_conv3d_guard import GuardedConv3D

__all__ = ["MAX_FOLD_INFLATION", "DepthFoldedConv3D", "folded_kernel"]

#: Largest ratio of folded to direct multiply-adds (depth cells / kernel depth) for which the layer folds.
MAX_FOLD_INFLATION = 5.0


def folded_kernel(kernel: Any, depth: int) -> Any:
    """The banded Conv2D kernel (kx, ky, depth, n_out * filters) of a Conv3D kernel (kx, ky, kz, 1, filters) on
    images ``depth`` cells deep (valid padding, n_out = depth - kz + 1): entry ``[i, j, z, o * filters + f]`` is
    ``kernel[i, j, z - o, 0, f]`` for ``0 <= z - o < kz``, else 0."""
    kx, ky, kz, _, filters = (int(side) for side in kernel.shape)
    n_out = depth - kz + 1
    offset = np.arange(depth)[:, None] - np.arange(n_out)[None, :]  # (depth, n_out): z - o
    inside = ((offset >= 0) & (offset < kz)).astype(np.float32)
    taps = tf.gather(kernel[:, :, :, 0, :], np.clip(offset, 0, kz - 1).reshape(-1), axis=2)
    banded = tf.reshape(taps, (kx, ky, depth, n_out, filters)) * tf.constant(
        inside[None, None, :, :, None], kernel.dtype
    )
    return tf.reshape(banded, (kx, ky, depth, n_out * filters))


@keras.saving.register_keras_serializable(package="caloml")
class DepthFoldedConv3D(GuardedConv3D):
    """``keras.layers.Conv3D`` that, in bfloat16 on a single-channel input with valid padding and unit strides and
    dilation, computes as a Conv2D with the depth folded into channels (see the module docstring). Otherwise it
    is a :class:`~caloml.models.bf16_conv3d_guard.GuardedConv3D`."""

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        depth = input_shape[3]
        self._fold_depth: int | None = None
        if (
            self.compute_dtype == "bfloat16"
            and self.data_format == "channels_last"
            and int(input_shape[-1]) == 1
            and self.padding == "valid"
            and tuple(self.strides) == (1, 1, 1)
            and tuple(self.dilation_rate) == (1, 1, 1)
            and depth is not None
            and int(depth) <= MAX_FOLD_INFLATION * int(self.kernel_size[2])
        ):
            self._fold_depth = int(depth)

    def call(self, inputs: Any) -> Any:
        depth = getattr(self, "_fold_depth", None)
        if depth is None:
            return super().call(inputs)
        # Conv2D -> BiasAdd -> Relu in this order, so that TensorFlow's graph optimizer fuses them into one oneDNN
        # call (separate bfloat16 element-wise ops on the large output cost twice the convolution itself).
        n_out = depth - int(self.kernel_size[2]) + 1
        kernel = tf.cast(self.kernel, self.compute_dtype)
        planes = tf.nn.conv2d(tf.cast(inputs[..., 0], self.compute_dtype), folded_kernel(kernel, depth), 1, "VALID")
        if self.use_bias:
            planes = tf.nn.bias_add(planes, tf.tile(tf.cast(self.bias, self.compute_dtype), [n_out]))
        if self.activation is keras.activations.relu:
            planes = tf.nn.relu(planes)
        outputs = tf.reshape(planes, tf.concat([tf.shape(planes)[:3], [n_out, self.filters]], axis=0))
        if self.activation is not None and self.activation is not keras.activations.relu:
            outputs = self.activation(outputs)
        return outputs
