"""The three Triforce networks, as published (section 5.1 and appendix E of "Calorimetry with deep learning:
particle simulation and reconstruction for collider physics", arXiv:1912.06794).

Each is a :class:`~caloml.models.triforce.TriforceModel` (inputs, outputs, input scaling, energy skip connection,
loss and gradient accumulation are described there); the defaults are the paper's best hyperparameters.

* :class:`TriforceDNN` - ECAL and HCAL cells flattened and concatenated with the 4 scaled scalars (22,889 inputs)
  -> ``n_hidden_layers`` x [Dense(``hidden_units``) ReLU Dropout] -> last layer. Paper: 4 x 512, dropout 0.04,
  Adam 2e-4.
* :class:`TriforceCNN` - ECAL Conv3D(``ecal_filters``, ``ecal_kernel``) ReLU MaxPool(2) and HCAL
  Conv3D(3, (2, 2, 6)) ReLU MaxPool(2), flattened and concatenated with the scalars -> dense stack as the DNN.
  Paper: 6 ECAL filters of 6 x 6 x 6, 4 x 512, dropout 0.12, Adam 4e-4 (the code's default was 3 filters of
  4 x 4 x 4).
* :class:`TriforceGoogLeNet` - ECAL only (the HCAL enters through its sum, as in the paper): instance normalization
  -> Conv3D(192, 3) BN ReLU -> Inception x 2 -> MaxPool(3, stride 2) -> Inception x 5 -> MaxPool -> Inception x 2
  -> AveragePool(7) -> concat scalars -> Dense(``dense_units`` = 1024) ReLU -> last layer. Adam 1e-4. The widths
  are the paper's times ``width_multiplier`` (1.0; smaller for tests and small machines); the "5 x 5 x 5" branch is
  two 3 x 3 x 3 convolutions, as in the original code (``factorized_5x5``). Its memory needs micro-batches on a
  GPU (the paper: 10 events per micro-batch, 1000 per step): set ``micro_batch_size``.

Layout: channels last; "valid" convolutions in the DNN/CNN (as the original), "same" in GoogLeNet (padding 1).
Batch normalization: epsilon 1e-5 and momentum 0.9 (PyTorch's defaults, which the original used). See
``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import keras
import tensorflow as tf

from caloml.models.base import attribute_config
from caloml.models.bf16_conv3d_guard import GuardedConv3D
from caloml.models.depth_folded_conv3d import DepthFoldedConv3D
from caloml.models.triforce import (
    INPUT_SHAPES,
    TriforceModel,
    common_arguments,
    make_inputs,
    scalar_inputs,
    seed_for,
)

__all__ = ["INCEPTION_WIDTHS", "Inception3D", "TriforceCNN", "TriforceDNN", "TriforceGoogLeNet"]

_BATCHNORM = {"epsilon": 1e-5, "momentum": 0.9}

#: The nine inception blocks of appendix E: (B, C, D, E, F, G) of Inception(A, B, C, D, E, F, G) (A is the input
#: width, B + D + F + G the output width); ``"pool"`` marks the MaxPool(3, stride 2) between groups.
INCEPTION_WIDTHS: tuple[tuple[int, int, int, int, int, int] | str, ...] = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "pool",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    "pool",
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)
_STEM_FILTERS = 192


def _scalars(inputs: dict[str, keras.KerasTensor], common: dict[str, Any]) -> tuple[Any, Any]:
    """The scaled sums and angles of the symbolic inputs, with the common scaling arguments."""
    sum_scale = float(common["cell_scale"]) / float(common["energy_scale_gev"])
    return scalar_inputs(inputs, sum_scale=sum_scale, angle_scale=float(common["angle_scale"]))


def _dense_stack(
    x: keras.KerasTensor, n_layers: int, units: int, dropout: float, seed: int | None
) -> keras.KerasTensor:
    for index in range(1, n_layers + 1):
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed_for(seed, index)),
            name=f"dense_{index}",
        )(x)
        x = keras.layers.Dropout(dropout, seed=seed_for(seed, 100 + index), name=f"dropout_{index}")(x)
    return x


def _check_dense(n_hidden_layers: int, hidden_units: int, dropout: float) -> None:
    if int(n_hidden_layers) < 1 or int(hidden_units) < 1:
        raise ValueError(f"need at least one hidden layer of one unit, got {n_hidden_layers} x {hidden_units}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _scale(factor: float, name: str) -> keras.layers.Layer:
    # float32 under any policy: TensorFlow's element-wise bfloat16 kernels on the CPU are slower than float32 ones;
    # the next layer casts once
    return keras.layers.Rescaling(factor, dtype="float32", name=name)


@keras.saving.register_keras_serializable(package="caloml")
class TriforceDNN(TriforceModel):
    """Fully connected Triforce network (see the module docstring; common arguments in
    :mod:`caloml.models.triforce`).

    Parameters
    ----------
    n_hidden_layers, hidden_units, dropout:
        The dense stack (4, 512, 0.04).
    n_classes:
        Number of classes (2).
    energy_loss_weight:
        Weight of the energy MSE in the loss (200, the paper's).
    energy_scale_gev, cell_scale, angle_scale:
        Input scaling and energy unit (100 GeV, 50, 10).
    initial_energy_coefficients:
        ``(a, b, c)``: at initialization ``energy = a * ECAL_E + b * HCAL_E + c`` GeV ((50, 50, 0)).
    micro_batch_size:
        Gradient accumulation over micro-batches of this many events (None: off).
    seed:
        Seed of the initializers and dropout masks (None: Keras' global seed).
    """

    default_learning_rate: ClassVar[float] = 2e-4

    def __init__(
        self,
        n_hidden_layers: int = 4,
        hidden_units: int = 512,
        dropout: float = 0.04,
        *,
        n_classes: int = 2,
        energy_loss_weight: float = 200.0,
        energy_scale_gev: float = 100.0,
        cell_scale: float = 50.0,
        angle_scale: float = 10.0,
        initial_energy_coefficients: Sequence[float] = (50.0, 50.0, 0.0),
        micro_batch_size: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        _check_dense(n_hidden_layers, hidden_units, dropout)
        common = common_arguments(
            n_classes,
            energy_loss_weight,
            energy_scale_gev,
            cell_scale,
            angle_scale,
            initial_energy_coefficients,
            micro_batch_size,
            seed,
        )
        inputs = make_inputs(self.input_keys)
        sums, angles = _scalars(inputs, common)
        ecal = keras.layers.Flatten(dtype="float32", name="ecal_flat")(_scale(cell_scale, "ecal_scale")(inputs["ECAL"]))
        hcal = keras.layers.Flatten(dtype="float32", name="hcal_flat")(_scale(cell_scale, "hcal_scale")(inputs["HCAL"]))
        # float32 until the first Dense layer, which casts once (see _scale)
        x = keras.layers.Concatenate(dtype="float32", name="dnn_input")([ecal, hcal, sums, angles])
        hidden = _dense_stack(x, int(n_hidden_layers), int(hidden_units), float(dropout), seed)
        self._build_with_heads(inputs, hidden, sums, angles, common, **kwargs)
        self.n_hidden_layers = int(n_hidden_layers)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)

    def get_config(self) -> dict[str, Any]:
        return {**self._common_config(), **attribute_config(self, "n_hidden_layers hidden_units dropout")}


@keras.saving.register_keras_serializable(package="caloml")
class TriforceCNN(TriforceModel):
    """3D-convolutional Triforce network (see the module docstring).

    Parameters
    ----------
    ecal_filters, ecal_kernel:
        The ECAL convolution (6 filters, 6 x 6 x 6: the paper's best point).
    hcal_filters, hcal_kernel:
        The HCAL convolution (3 filters, 2 x 2 x 6).
    n_hidden_layers, hidden_units, dropout:
        The dense stack (4, 512, 0.12).
    Other arguments: as :class:`TriforceDNN`.
    """

    default_learning_rate: ClassVar[float] = 4e-4

    def __init__(
        self,
        ecal_filters: int = 6,
        ecal_kernel: Sequence[int] = (6, 6, 6),
        hcal_filters: int = 3,
        hcal_kernel: Sequence[int] = (2, 2, 6),
        n_hidden_layers: int = 4,
        hidden_units: int = 512,
        dropout: float = 0.12,
        *,
        n_classes: int = 2,
        energy_loss_weight: float = 200.0,
        energy_scale_gev: float = 100.0,
        cell_scale: float = 50.0,
        angle_scale: float = 10.0,
        initial_energy_coefficients: Sequence[float] = (50.0, 50.0, 0.0),
        micro_batch_size: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        _check_dense(n_hidden_layers, hidden_units, dropout)
        ecal_kernel = tuple(int(k) for k in ecal_kernel)
        hcal_kernel = tuple(int(k) for k in hcal_kernel)
        for name, kernel, shape in (
            ("ecal_kernel", ecal_kernel, INPUT_SHAPES["ECAL"]),
            ("hcal_kernel", hcal_kernel, INPUT_SHAPES["HCAL"]),
        ):
            if len(kernel) != 3 or not all(1 <= k <= n - 1 for k, n in zip(kernel, shape, strict=True)):
                raise ValueError(f"{name} must be 3 sizes in [1, {min(shape) - 1}], got {kernel}")
        if int(ecal_filters) < 1 or int(hcal_filters) < 1:
            raise ValueError(f"need at least one filter, got ecal {ecal_filters}, hcal {hcal_filters}")
        common = common_arguments(
            n_classes,
            energy_loss_weight,
            energy_scale_gev,
            cell_scale,
            angle_scale,
            initial_energy_coefficients,
            micro_batch_size,
            seed,
        )
        inputs = make_inputs(self.input_keys)
        sums, angles = _scalars(inputs, common)
        branches = []
        for index, (key, filters, kernel) in enumerate(
            (("ECAL", ecal_filters, ecal_kernel), ("HCAL", hcal_filters, hcal_kernel)), start=1
        ):
            name = key.lower()
            x = keras.layers.Reshape((*INPUT_SHAPES[key], 1), name=f"{name}_channel")(inputs[key])
            x = _scale(cell_scale, f"{name}_scale")(x)
            x = DepthFoldedConv3D(  # single-channel input: folded in bfloat16 (5-10x faster on AMX)
                int(filters),
                kernel,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed_for(seed, 50 + index)),
                name=f"{name}_conv",
            )(x)
            x = keras.layers.MaxPooling3D(2, name=f"{name}_pool")(x)
            branches.append(keras.layers.Flatten(name=f"{name}_flat")(x))
        x = keras.layers.Concatenate(name="dense_input")([*branches, sums, angles])
        hidden = _dense_stack(x, int(n_hidden_layers), int(hidden_units), float(dropout), seed)
        self._build_with_heads(inputs, hidden, sums, angles, common, **kwargs)
        self.ecal_filters = int(ecal_filters)
        self.ecal_kernel = ecal_kernel
        self.hcal_filters = int(hcal_filters)
        self.hcal_kernel = hcal_kernel
        self.n_hidden_layers = int(n_hidden_layers)
        self.hidden_units = int(hidden_units)
        self.dropout = float(dropout)

    def get_config(self) -> dict[str, Any]:
        return {
            **self._common_config(),
            **attribute_config(
                self, "ecal_filters ecal_kernel hcal_filters hcal_kernel n_hidden_layers hidden_units dropout"
            ),
        }


@keras.saving.register_keras_serializable(package="caloml")
class Inception3D(keras.layers.Layer):
    """A 3D inception block Inception(A, B, C, D, E, F, G) of appendix E; A is the input width.

    Four branches on (B, nx, ny, nz, A), each convolution followed by BatchNorm and ReLU, concatenated to
    B + D + F + G channels: 1x1x1 -> B; 1x1x1 -> C, 3x3x3 -> D; 1x1x1 -> E, then 5x5x5 -> F (or, with
    ``factorized_5x5``, two 3x3x3 -> F as the original code); MaxPool(3, stride 1) then 1x1x1 -> G.
    ``widths`` = (B, C, D, E, F, G).
    """

    def __init__(
        self,
        widths: Sequence[int],
        factorized_5x5: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(widths) != 6 or min(int(w) for w in widths) < 1:
            raise ValueError(f"widths must be 6 positive channel counts (B, C, D, E, F, G), got {widths}")
        self.widths = tuple(int(w) for w in widths)
        self.factorized_5x5 = bool(factorized_5x5)
        self.seed = seed
        b, c, d, e, f, g = self.widths
        counter = iter(range(1000))

        def conv_bn(filters: int, kernel: int, label: str) -> list[keras.layers.Layer]:
            return [
                GuardedConv3D(
                    filters,
                    kernel,
                    padding="same",
                    kernel_initializer=keras.initializers.HeUniform(seed=seed_for(seed, next(counter))),
                    name=f"{label}_conv",
                ),
                keras.layers.BatchNormalization(**_BATCHNORM, name=f"{label}_bn"),
                keras.layers.ReLU(name=f"{label}_relu"),
            ]

        wide = [*conv_bn(f, 3, "b3_3a"), *conv_bn(f, 3, "b3_3b")] if self.factorized_5x5 else conv_bn(f, 5, "b3_5")
        self.branches: list[list[keras.layers.Layer]] = [
            conv_bn(b, 1, "b1_1"),
            [*conv_bn(c, 1, "b2_1"), *conv_bn(d, 3, "b2_3")],
            [*conv_bn(e, 1, "b3_1"), *wide],
            [keras.layers.MaxPooling3D(3, strides=1, padding="same", name="b4_pool"), *conv_bn(g, 1, "b4_1")],
        ]

    @property
    def output_channels(self) -> int:
        b, _, d, _, f, g = self.widths
        return b + d + f + g

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        for branch in self.branches:
            shape = input_shape
            for layer in branch:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        outputs = []
        for branch in self.branches:
            x = inputs
            for layer in branch:
                x = layer(x, training=training) if isinstance(layer, keras.layers.BatchNormalization) else layer(x)
            outputs.append(x)
        return tf.concat(outputs, axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.output_channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **attribute_config(self, "widths factorized_5x5 seed")}


@keras.saving.register_keras_serializable(package="caloml")
class TriforceGoogLeNet(TriforceModel):
    """GoogLeNet-based Triforce network on the ECAL (see the module docstring).

    Parameters
    ----------
    dense_units:
        Units of the dense layer before the last layer (1024).
    width_multiplier:
        Every convolution width is the paper's times this, rounded, at least 1 (1.0).
    factorized_5x5:
        The wide inception branch as two 3x3x3 convolutions (True, as the original code) or one 5x5x5.
    micro_batch_size:
        Gradient accumulation (the paper: 10).
    Other arguments: as :class:`TriforceDNN`.
    """

    input_keys: ClassVar[tuple[str, ...]] = ("ECAL", "ECAL_E", "HCAL_E", "recoEta", "recoPhi")
    default_learning_rate: ClassVar[float] = 1e-4

    def __init__(
        self,
        dense_units: int = 1024,
        width_multiplier: float = 1.0,
        factorized_5x5: bool = True,
        *,
        n_classes: int = 2,
        energy_loss_weight: float = 200.0,
        energy_scale_gev: float = 100.0,
        cell_scale: float = 50.0,
        angle_scale: float = 10.0,
        initial_energy_coefficients: Sequence[float] = (50.0, 50.0, 0.0),
        micro_batch_size: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if int(dense_units) < 1 or not float(width_multiplier) > 0:
            raise ValueError(
                f"dense_units and width_multiplier must be positive, got {dense_units}, {width_multiplier}"
            )
        common = common_arguments(
            n_classes,
            energy_loss_weight,
            energy_scale_gev,
            cell_scale,
            angle_scale,
            initial_energy_coefficients,
            micro_batch_size,
            seed,
        )

        def width(n: int) -> int:
            return max(1, round(n * float(width_multiplier)))

        inputs = make_inputs(self.input_keys)
        sums, angles = _scalars(inputs, common)
        x = keras.layers.Reshape((*INPUT_SHAPES["ECAL"], 1), name="ecal_channel")(inputs["ECAL"])
        # Instance normalization of the one-channel image (no affine parameters, as PyTorch's InstanceNorm3d).
        x = keras.layers.GroupNormalization(groups=1, center=False, scale=False, epsilon=1e-5, name="instance_norm")(x)
        x = GuardedConv3D(
            width(_STEM_FILTERS),
            3,
            padding="same",
            kernel_initializer=keras.initializers.HeUniform(seed=seed_for(seed, 1)),
            name="stem_conv",
        )(x)
        x = keras.layers.BatchNormalization(**_BATCHNORM, name="stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
        n_pool = 0
        for index, spec in enumerate(INCEPTION_WIDTHS, start=1):
            if isinstance(spec, str):
                n_pool += 1
                x = keras.layers.MaxPooling3D(3, strides=2, padding="same", name=f"pool_{n_pool}")(x)
            else:
                x = Inception3D(
                    [width(w) for w in spec],
                    factorized_5x5,
                    seed=seed_for(seed, 1000 * index),
                    name=f"inception_{index}",
                )(x)
        x = keras.layers.GlobalAveragePooling3D(name="average_pool")(x)  # the 7 x 7 x 7 average of the paper
        x = keras.layers.Concatenate(name="dense_input")([x, sums, angles])
        hidden = keras.layers.Dense(
            int(dense_units),
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed_for(seed, 2)),
            name="dense",
        )(x)
        self._build_with_heads(inputs, hidden, sums, angles, common, **kwargs)
        self.dense_units = int(dense_units)
        self.width_multiplier = float(width_multiplier)
        self.factorized_5x5 = bool(factorized_5x5)

    def get_config(self) -> dict[str, Any]:
        return {**self._common_config(), **attribute_config(self, "dense_units width_multiplier factorized_5x5")}
