"""A guard against a wrong bfloat16 Conv3D: a once-per-process self-check per convolution shape, and a Conv3D layer
that computes in a right form where the check fails.

TensorFlow 2.21's oneDNN bfloat16 Conv3D on x86 returns about 0.25x the right value for a (6, 6, 8) kernel on 8
input channels (the 3DGAN generator's first layer); the same data with the kernel axes permuted, or other kernel
shapes, are right. :func:`bf16_conv3d_is_right` compares, once per process and shape, a bfloat16 convolution with
float32 on the same bfloat16-rounded inputs. :class:`GuardedConv3D` is a ``keras.layers.Conv3D`` (same weights,
same config) that, when its compute dtype is bfloat16 and the check fails for its shape, convolves with the spatial
axes of input and kernel permuted (the first permutation that passes the check), or in float32 when none does; it
logs one line (once per process and shape) when it does so.

Measured on a 2-core Xeon with AMX (TensorFlow 2.21, the generator's first layer at batch 8, input
54 x 54 x 48 x 8): wrong bfloat16 29 ms, permuted y <-> z bfloat16 49 ms, float32 for that layer 187 ms; so the
permuted layout is the form chosen, float32 the last resort. See ``docs/3dgan.md`` (Precision).
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = ["CHECK_RELATIVE_TOLERANCE", "GuardedConv3D", "bf16_conv3d_is_right", "guarded_form"]

LOGGER = logging.getLogger(__name__)

#: Largest mean relative error of a bfloat16 Conv3D against float32 on the same rounded (positive) inputs that
#: bfloat16 rounding explains: the output is rounded to 8 bits of mantissa (0.4%), accumulation is in float32.
CHECK_RELATIVE_TOLERANCE = 0.02
#: Spatial axis orders tried when the direct form is wrong, in order (y <-> z first: the fastest one measured).
_PERMUTATIONS: tuple[tuple[int, int, int], ...] = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
_CHECKED: dict[tuple[Any, ...], bool] = {}
_FORMS: dict[tuple[Any, ...], tuple[int, int, int] | None] = {}


def _convolve(inputs: tf.Tensor, kernel: tf.Tensor, strides: Any, padding: str, dilation: Any, order: Any) -> Any:
    """Conv3D (channels last) with the spatial axes of ``inputs``, ``kernel``, strides and dilation in ``order``."""
    order = tuple(order)
    if order == (0, 1, 2):
        return tf.nn.conv3d(inputs, kernel, (1, *strides, 1), padding.upper(), dilations=(1, *dilation, 1))
    forward = [0, *(1 + axis for axis in order), 4]
    backward = [int(i) for i in np.argsort(forward)]
    outputs = tf.nn.conv3d(
        tf.transpose(inputs, forward),
        tf.transpose(kernel, [*order, 3, 4]),
        (1, *(strides[axis] for axis in order), 1),
        padding.upper(),
        dilations=(1, *(dilation[axis] for axis in order), 1),
    )
    return tf.transpose(outputs, backward)


def bf16_conv3d_is_right(
    kernel_shape: tuple[int, int, int],
    in_channels: int,
    out_channels: int,
    spatial_shape: tuple[int, int, int] | None = None,
    strides: tuple[int, int, int] = (1, 1, 1),
    padding: str = "valid",
    dilation: tuple[int, int, int] = (1, 1, 1),
    order: tuple[int, int, int] = (0, 1, 2),
) -> bool:
    """Whether a bfloat16 Conv3D of this shape agrees with float32 on the same bfloat16-rounded inputs.

    One eager convolution of batch 1 on seeded uniform [0, 1) data of ``spatial_shape`` (x, y, z; default a cube
    of twice the largest kernel side + 8, each side capped at 64), computed with the spatial axes in ``order``
    (see :class:`GuardedConv3D`); mean relative error below :data:`CHECK_RELATIVE_TOLERANCE`. Cached per process.
    """
    if spatial_shape is None:
        spatial_shape = (2 * max(kernel_shape) + 8,) * 3
    spatial_shape = tuple(min(int(side), 64) for side in spatial_shape)  # type: ignore[assignment]
    key: tuple[Any, ...] = (tuple(kernel_shape), int(in_channels), int(out_channels), spatial_shape)
    key += (tuple(strides), padding, tuple(dilation), tuple(order))
    if key not in _CHECKED:
        rng = np.random.default_rng(20260)
        with tf.init_scope():  # eager, also when first reached while a tf.function is traced
            inputs = tf.cast(rng.random((1, *spatial_shape, int(in_channels)), dtype=np.float32), tf.bfloat16)
            kernel = tf.cast(rng.random((*kernel_shape, int(in_channels), int(out_channels)), np.float32), tf.bfloat16)
            exact = _convolve(
                tf.cast(inputs, tf.float32), tf.cast(kernel, tf.float32), strides, padding, dilation, order
            )
            rounded = tf.cast(_convolve(inputs, kernel, strides, padding, dilation, order), tf.float32)
            error = float(tf.reduce_sum(tf.abs(rounded - exact)) / tf.maximum(tf.reduce_sum(tf.abs(exact)), 1e-30))
        _CHECKED[key] = error < CHECK_RELATIVE_TOLERANCE
    return _CHECKED[key]


def guarded_form(
    kernel_shape: tuple[int, int, int],
    in_channels: int,
    out_channels: int,
    spatial_shape: tuple[int, int, int] | None = None,
    strides: tuple[int, int, int] = (1, 1, 1),
    padding: str = "valid",
    dilation: tuple[int, int, int] = (1, 1, 1),
) -> tuple[int, int, int] | None:
    """The spatial axis order in which a bfloat16 Conv3D of this shape is right: ``(0, 1, 2)`` (direct) when the
    check passes, else the first permutation that passes, else None (compute in float32). Cached per process."""
    key: tuple[Any, ...] = (tuple(kernel_shape), int(in_channels), int(out_channels), spatial_shape)
    key += (tuple(strides), padding, tuple(dilation))
    if key not in _FORMS:
        form: tuple[int, int, int] | None = None
        for order in ((0, 1, 2), *_PERMUTATIONS):
            shape = (kernel_shape, in_channels, out_channels, spatial_shape, strides, padding, dilation)
            if bf16_conv3d_is_right(*shape, order=order):
                form = order
                break
        _FORMS[key] = form
        if form != (0, 1, 2):
            how = "in float32" if form is None else f"in bfloat16 with the spatial axes in the order {form}"
            LOGGER.warning(
                "caloml: TensorFlow %s's bfloat16 Conv3D is wrong for kernel %s on %d input channels; such layers "
                "compute %s (x, y, z = 0, 1, 2)",
                tf.__version__,
                tuple(kernel_shape),
                int(in_channels),
                how,
            )
    return _FORMS[key]


@keras.saving.register_keras_serializable(package="caloml")
class GuardedConv3D(keras.layers.Conv3D):
    """``keras.layers.Conv3D`` (channels last, ``groups=1``) that is right in bfloat16 where TensorFlow's kernel is not.

    Weights, config and float32 behaviour are those of ``keras.layers.Conv3D`` (checkpoints of either load into
    the other). When the layer's compute dtype is bfloat16, :meth:`build` runs :func:`guarded_form` for its shape
    (once per process and shape): if the direct bfloat16 convolution is wrong, the layer convolves with the spatial
    axes permuted (a right and fast form) or in float32, and logs one line saying which.
    """

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self._form: tuple[int, int, int] | None = (0, 1, 2)
        if self.compute_dtype != "bfloat16" or self.data_format != "channels_last" or self.groups != 1:
            return
        spatial = tuple(input_shape[1:4])
        known = None if any(side is None for side in spatial) else tuple(int(side) for side in spatial)
        kernel_shape = tuple(int(side) for side in self.kernel_size)
        in_channels = int(input_shape[-1])
        self._form = guarded_form(
            kernel_shape,  # type: ignore[arg-type]
            in_channels,
            self.filters,
            known,  # type: ignore[arg-type]
            tuple(self.strides),  # type: ignore[arg-type]
            self.padding,
            tuple(self.dilation_rate),  # type: ignore[arg-type]
        )

    def call(self, inputs: Any) -> Any:
        if self.data_format != "channels_last" or not self.use_bias:
            return super().call(inputs)
        # tf.nn.bias_add (not an element-wise add): TensorFlow's graph optimizer fuses Conv3D + BiasAdd into one
        # oneDNN call, which matters in bfloat16 (TensorFlow's element-wise bfloat16 kernels are slow on CPUs).
        outputs = tf.nn.bias_add(self.convolution_op(inputs, self.kernel), tf.cast(self.bias, self.compute_dtype))
        return outputs if self.activation is None else self.activation(outputs)

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        form = getattr(self, "_form", (0, 1, 2))
        if form == (0, 1, 2):
            return super().convolution_op(inputs, kernel)
        strides, dilation = tuple(self.strides), tuple(self.dilation_rate)
        if form is None:
            outputs = _convolve(
                tf.cast(inputs, tf.float32), tf.cast(kernel, tf.float32), strides, self.padding, dilation, (0, 1, 2)
            )
            return tf.cast(outputs, inputs.dtype)
        return _convolve(inputs, kernel, strides, self.padding, dilation, form)
