"""Triforce end-to-end reconstruction: the part the three networks share.

The networks of "Calorimetry with deep learning: particle simulation and reconstruction for collider physics"
(arXiv:1912.06794). :class:`TriforceModel` is the base of :class:`~caloml.models.triforce_nets.TriforceDNN`,
:class:`~caloml.models.triforce_nets.TriforceCNN` and :class:`~caloml.models.triforce_nets.TriforceGoogLeNet`:
Keras 3 functional models that classify a shower (e vs pi+-, gamma vs pi0) and regress its energy at once, trained
with ``fit`` through the ``train_step`` here::

    model = TriforceDNN()
    model.compile()                # Adam at the paper's learning rate, or compile(keras.optimizers.Adam(1e-4))
    model.fit(dataset)             # batches: dicts with the input keys, "class_label" and "energy"
    out = model.predict(dataset)   # {"class_logits", "class_probability", "energy"}; or model(inputs_dict)

Inputs (a dict, :data:`INPUT_SHAPES`; GoogLeNet takes no ``HCAL``): ``ECAL`` (B, 25, 25, 25) centre-cropped ECAL
cells, GeV; ``HCAL`` (B, 11, 11, 60) HCAL cells, GeV; ``ECAL_E`` (B,) sum of the file's whole ECAL window (51 x 51 x
25), GeV; ``HCAL_E`` (B,) sum of the HCAL cells, GeV; ``recoEta``, ``recoPhi`` (B,) pseudorapidity and azimuth
(radians) of the barycentre. Outputs: ``class_logits`` and ``class_probability`` (B, n_classes), ``energy`` (B,) GeV.

Input scaling (fixed constants): cells x ``cell_scale`` (50), sums x ``cell_scale / energy_scale_gev``, angles x
``angle_scale`` (10). The energy unit of the last layer (:class:`SkipEnergyHead`, the paper's skip connection)
starts, exactly, as the linear calibration ``a * ECAL_E + b * HCAL_E + c`` GeV of ``initial_energy_coefficients``
and learns a correction to it. Loss per event: ``cross_entropy + energy_loss_weight * ((energy - true_energy) /
energy_scale_gev) ** 2``, summed and divided by the global batch size. ``micro_batch_size``: gradient accumulation
over micro-batches. The details: ``docs/reconstruction.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import keras
import tensorflow as tf

from caloml.data.reconstruction_tasks import INPUT_SHAPES
from caloml.models.base import CalomlModel, attribute_config
from caloml.models.batch_contract import BatchContract, BatchKey

__all__ = [
    "ENERGY_KEY",
    "INPUT_KEYS",
    "INPUT_SHAPES",
    "LABEL_KEY",
    "ScalarFeatures",
    "SkipEnergyHead",
    "TriforceModel",
    "build_heads",
    "common_arguments",
    "make_inputs",
    "scalar_inputs",
    "seed_for",
]

#: Input keys of the networks that read both calorimeters.
INPUT_KEYS: tuple[str, ...] = tuple(INPUT_SHAPES)
#: Batch key of the class index (int, 0 .. n_classes - 1) and of the true energy (GeV).
LABEL_KEY = "class_label"
ENERGY_KEY = "energy"
_SCALAR_KEYS = ("ECAL_E", "HCAL_E", "recoEta", "recoPhi")


def seed_for(seed: int | None, offset: int) -> int | None:
    """Seed of one layer's initializer or dropout: ``seed + offset`` (None: Keras' global seed)."""
    return None if seed is None else int(seed) + offset


@keras.saving.register_keras_serializable(package="caloml")
class ScalarFeatures(keras.layers.Layer):
    """``[ECAL_E, HCAL_E, recoEta, recoPhi]`` (each (B,)) -> ``[sums (B, 2), angles (B, 2)]``, scaled.

    ``sums`` = ``[ECAL_E, HCAL_E] * sum_scale`` with ``sum_scale = cell_scale / energy_scale_gev`` (see the module
    docstring), ``angles`` = ``[recoEta, recoPhi] * angle_scale``. No weights.
    """

    def __init__(self, sum_scale: float, angle_scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sum_scale = float(sum_scale)
        self.angle_scale = float(angle_scale)

    def call(self, inputs: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        ecal, hcal, eta, phi = (tf.reshape(tf.cast(x, self.compute_dtype), (-1,)) for x in inputs)
        sums = tf.stack([ecal, hcal], axis=-1) * self.sum_scale
        angles = tf.stack([eta, phi], axis=-1) * self.angle_scale
        return [sums, angles]

    def compute_output_shape(self, input_shape: Sequence[tuple[int | None, ...]]) -> list[tuple[int | None, ...]]:
        return [(input_shape[0][0], 2), (input_shape[0][0], 2)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sum_scale": self.sum_scale, "angle_scale": self.angle_scale}


@keras.saving.register_keras_serializable(package="caloml")
class SkipEnergyHead(keras.layers.Layer):
    """Energy unit of the last layer: ``[features (B, F), scaled sums (B, 2)]`` -> energy (B,) in GeV.

    ``energy = energy_scale_gev * (features @ kernel + sums @ sum_coefficients + offset)`` with ``kernel``
    initialized to zero, ``sum_coefficients`` to ``initial_sum_coefficients`` and ``offset`` to
    ``initial_offset``: one dense unit over ``[features, sums]`` whose initial output is linear in the sums.
    """

    def __init__(
        self,
        energy_scale_gev: float = 100.0,
        initial_sum_coefficients: Sequence[float] = (1.0, 1.0),
        initial_offset: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(initial_sum_coefficients) != 2:
            raise ValueError(f"initial_sum_coefficients must be 2 numbers, got {initial_sum_coefficients}")
        self.energy_scale_gev = float(energy_scale_gev)
        self.initial_sum_coefficients = (float(initial_sum_coefficients[0]), float(initial_sum_coefficients[1]))
        self.initial_offset = float(initial_offset)

    def build(self, input_shape: Sequence[tuple[int | None, ...]]) -> None:
        n_features = int(input_shape[0][-1])  # type: ignore[arg-type]
        self.kernel = self.add_weight(shape=(n_features, 1), initializer="zeros", name="kernel")
        self.sum_coefficients = self.add_weight(
            shape=(2,), initializer=keras.initializers.Constant(self.initial_sum_coefficients), name="sum_coefficients"
        )
        self.offset = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_offset), name="offset"
        )

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        features, sums = inputs
        z = tf.matmul(features, tf.cast(self.kernel, features.dtype))[:, 0]
        z += tf.reduce_sum(sums * tf.cast(self.sum_coefficients, sums.dtype), axis=-1)
        z += tf.cast(self.offset, z.dtype)
        return self.energy_scale_gev * z

    def compute_output_shape(self, input_shape: Sequence[tuple[int | None, ...]]) -> tuple[int | None, ...]:
        return (input_shape[0][0],)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "energy_scale_gev": self.energy_scale_gev,
            "initial_sum_coefficients": list(self.initial_sum_coefficients),
            "initial_offset": self.initial_offset,
        }


def build_heads(
    hidden: keras.KerasTensor,
    sums: keras.KerasTensor,
    angles: keras.KerasTensor,
    *,
    n_classes: int,
    energy_scale_gev: float,
    cell_scale: float,
    initial_energy_coefficients: Sequence[float],
    seed: int | None,
) -> dict[str, keras.KerasTensor]:
    """The last layer: class logits, probabilities and the energy from ``hidden`` and the scaled sums and angles.

    ``sums`` and ``angles`` (B, 2 each) are the outputs of :class:`ScalarFeatures`; they are concatenated again to
    ``hidden`` before the last layer (the paper's skip connection).
    """
    a, b, c = (float(v) for v in initial_energy_coefficients)
    features = keras.layers.Concatenate(name="head_features")([hidden, sums, angles])
    logits = keras.layers.Dense(
        n_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed_for(seed, 900)),
        dtype="float32",
        name="class_logits",
    )(features)
    probability = keras.layers.Softmax(dtype="float32", name="class_probability")(logits)
    energy_features = keras.layers.Concatenate(name="energy_features")([hidden, angles])
    energy = SkipEnergyHead(
        energy_scale_gev,
        (a / cell_scale, b / cell_scale),
        c / energy_scale_gev,
        dtype="float32",
        name="energy",
    )([energy_features, sums])
    return {"class_logits": logits, "class_probability": probability, "energy": energy}


def scalar_inputs(
    inputs: Mapping[str, keras.KerasTensor], *, sum_scale: float, angle_scale: float
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The scaled sums and angles (B, 2 each) of the symbolic ``inputs``."""
    sums, angles = ScalarFeatures(sum_scale, angle_scale, dtype="float32", name="scalar_features")(
        [inputs[k] for k in _SCALAR_KEYS]
    )
    return sums, angles


def make_inputs(keys: Sequence[str]) -> dict[str, keras.KerasTensor]:
    """Symbolic inputs for ``keys`` (see :data:`INPUT_SHAPES`)."""
    return {key: keras.Input(shape=INPUT_SHAPES[key], name=key) for key in keys}


def common_arguments(
    n_classes: int,
    energy_loss_weight: float,
    energy_scale_gev: float,
    cell_scale: float,
    angle_scale: float,
    initial_energy_coefficients: Sequence[float],
    micro_batch_size: int | None,
    seed: int | None,
) -> dict[str, Any]:
    """The arguments every Triforce network takes (see :class:`~caloml.models.triforce_nets.TriforceDNN`), checked
    (``ValueError``), as a dict for :meth:`TriforceModel._build_with_heads`."""
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if not float(energy_loss_weight) >= 0:
        raise ValueError(f"energy_loss_weight must be >= 0, got {energy_loss_weight}")
    if not (float(energy_scale_gev) > 0 and float(cell_scale) > 0):
        raise ValueError(f"energy_scale_gev and cell_scale must be positive, got {energy_scale_gev}, {cell_scale}")
    if len(initial_energy_coefficients) != 3:
        raise ValueError(f"initial_energy_coefficients must be (a, b, c), got {initial_energy_coefficients}")
    if micro_batch_size is not None and int(micro_batch_size) < 1:
        raise ValueError(f"micro_batch_size must be positive or None, got {micro_batch_size}")
    return {
        "n_classes": n_classes,
        "energy_loss_weight": energy_loss_weight,
        "energy_scale_gev": energy_scale_gev,
        "cell_scale": cell_scale,
        "angle_scale": angle_scale,
        "initial_energy_coefficients": initial_energy_coefficients,
        "micro_batch_size": micro_batch_size,
        "seed": seed,
    }


class TriforceModel(CalomlModel, keras.Model):
    """Base of the three Triforce networks: inputs, losses, metrics, ``train_step`` with gradient accumulation.

    A subclass checks its arguments with :func:`common_arguments`, builds its functional graph from
    :func:`make_inputs` and :func:`scalar_inputs` to a last hidden layer and ends with :meth:`_build_with_heads`.
    See the module docstring for the inputs, outputs, scaling, energy initialization and loss.
    """

    #: Input keys the network reads (a subclass may read fewer).
    input_keys: ClassVar[tuple[str, ...]] = INPUT_KEYS
    #: Learning rate of the default Adam optimizer of :meth:`compile` (the paper's best point per architecture).
    default_learning_rate: ClassVar[float] = 1e-3

    def _build_with_heads(
        self,
        inputs: dict[str, keras.KerasTensor],
        hidden: keras.KerasTensor,
        sums: keras.KerasTensor,
        angles: keras.KerasTensor,
        common: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        """The end of a subclass's ``__init__``: the last layer (:func:`build_heads`) on ``hidden`` and the scaled
        ``sums`` and ``angles``, the functional model from ``inputs`` to its outputs, and the common attributes.
        ``common``: :func:`common_arguments`; ``kwargs``: ``keras.Model`` arguments (``name``, ``trainable``)."""
        outputs = build_heads(
            hidden,
            sums,
            angles,
            n_classes=int(common["n_classes"]),
            energy_scale_gev=float(common["energy_scale_gev"]),
            cell_scale=float(common["cell_scale"]),
            initial_energy_coefficients=common["initial_energy_coefficients"],
            seed=common["seed"],
        )
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.n_classes = int(common["n_classes"])
        self.energy_loss_weight = float(common["energy_loss_weight"])
        self.energy_scale_gev = float(common["energy_scale_gev"])
        self.cell_scale = float(common["cell_scale"])
        self.angle_scale = float(common["angle_scale"])
        self.initial_energy_coefficients = tuple(float(v) for v in common["initial_energy_coefficients"])
        micro_batch_size, seed = common["micro_batch_size"], common["seed"]
        self.micro_batch_size = None if micro_batch_size is None else int(micro_batch_size)
        self.seed = None if seed is None else int(seed)
        self.track_metrics(("loss", "cross_entropy", "energy_mse", "accuracy"))

    def _common_config(self) -> dict[str, Any]:
        return attribute_config(
            self,
            "name trainable n_classes energy_loss_weight energy_scale_gev cell_scale angle_scale",
            "initial_energy_coefficients micro_batch_size seed",
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    # ------------------------------------------------------------------ inputs

    def select_inputs(self, batch: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        """The model's inputs from a batch dict with more keys (float32; (B, 1) scalars flattened).

        Raises ``KeyError`` naming the first missing input.
        """
        missing = [k for k in self.input_keys if k not in batch]
        if missing:
            raise KeyError(f"{type(self).__name__} needs input '{missing[0]}', the batch has {sorted(batch)}")
        out = {}
        for key in self.input_keys:
            value = tf.cast(batch[key], tf.float32)
            shape = INPUT_SHAPES[key]
            out[key] = tf.reshape(value, (-1, *shape)) if shape else tf.reshape(value, (-1,))
        return out

    def batch_contract(self) -> BatchContract:
        """The input keys (:data:`INPUT_SHAPES`, GeV; ``recoEta`` and ``recoPhi`` rad), ``class_label`` (B,) int and
        ``energy`` (B,) GeV, in one dict or an ``(inputs, targets)`` pair of dicts."""
        units = {"recoEta": "", "recoPhi": "rad"}
        keys = [BatchKey(key, INPUT_SHAPES[key], units.get(key, "GeV")) for key in self.input_keys]
        keys += [BatchKey(LABEL_KEY, (), "int"), BatchKey(ENERGY_KEY, (), "GeV")]
        return BatchContract(type(self).__name__, tuple(keys), pairs=True)

    def _unpack(self, data: Any) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        """(inputs, class labels (B,) int32, true energies (B,) GeV) from a dict batch or an ``(x, y)`` pair."""
        targets = dict(self.batch_contract().batch(data))
        labels = tf.reshape(tf.cast(targets[LABEL_KEY], tf.int32), (-1,))
        energy = tf.reshape(tf.cast(targets[ENERGY_KEY], tf.float32), (-1,))
        return self.select_inputs(targets), labels, energy

    # ------------------------------------------------------------------ losses

    def per_event_losses(
        self, outputs: Mapping[str, tf.Tensor], labels: tf.Tensor, energy_gev: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Per-event loss terms (B,): ``cross_entropy``, ``energy_mse`` (of energy / energy_scale_gev), ``loss``."""
        logits = tf.cast(outputs["class_logits"], tf.float32)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        error = (tf.cast(outputs["energy"], tf.float32) - energy_gev) / self.energy_scale_gev
        energy_mse = tf.square(error)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)
        return {
            "loss": cross_entropy + self.energy_loss_weight * energy_mse,
            "cross_entropy": cross_entropy,
            "energy_mse": energy_mse,
            "accuracy": correct,
        }

    # ------------------------------------------------------------------ training

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        """Adam at :attr:`default_learning_rate`."""
        return keras.optimizers.Adam(self.default_learning_rate)

    def compile(self, optimizer: Any = None, **kwargs: Any) -> None:
        """As :meth:`CalomlModel.compile`, with ``jit_compile`` False by default (the micro-batch loop has dynamic
        shapes)."""
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer, **kwargs)

    def compute_gradients(self, data: Any, micro_batch_size: int | None = None) -> list[tf.Tensor]:
        """Gradients of the mean loss of the global batch w.r.t. ``trainable_variables`` (updates the metrics).

        With ``micro_batch_size``, the batch is processed in micro-batches of that many events and their gradients
        summed (each micro-batch loss is its summed per-event loss over the global batch size).
        """
        inputs, labels, energy = self._unpack(data)
        variables = self.trainable_variables
        batch_size = tf.shape(labels)[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_size = tf.cast(batch_size * replicas, tf.float32)

        def loss_and_gradients(x: Mapping[str, tf.Tensor], y: tf.Tensor, e: tf.Tensor) -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                outputs = self(x, training=True)
                parts = self.per_event_losses(outputs, y, e)
                loss = tf.reduce_sum(parts["loss"]) / global_size
                scaled = self.optimizer.scale_loss(loss) if self.optimizer is not None else loss
            self.update_metrics(parts)
            return list(tape.gradient(scaled, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO))

        if micro_batch_size is None:
            return loss_and_gradients(inputs, labels, energy)
        size = int(micro_batch_size)
        n_micro = (batch_size + size - 1) // size

        def body(i: tf.Tensor, accumulated: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
            start = i * size
            stop = tf.minimum(start + size, batch_size)
            x = {k: v[start:stop] for k, v in inputs.items()}
            gradients = loss_and_gradients(x, labels[start:stop], energy[start:stop])
            return i + 1, [a + tf.cast(g, a.dtype) for a, g in zip(accumulated, gradients, strict=True)]

        zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
        _, gradients = tf.while_loop(lambda i, _: i < n_micro, body, (tf.constant(0), zeros))
        return list(gradients)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimizer step on a batch (micro-batched when ``micro_batch_size`` is set); returns the metrics.

        ``data``: a dict with the input keys, ``class_label`` (B,) int and ``energy`` (B,) GeV (other keys are
        ignored), or a pair ``(inputs, targets)``.
        """
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__}.compile() must be called before training")
        gradients = self.compute_gradients(data, self.micro_batch_size)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return self.metric_results()

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """The metrics of a batch in inference mode."""
        inputs, labels, energy = self._unpack(data)
        self.update_metrics(self.per_event_losses(self(inputs, training=False), labels, energy))
        return self.metric_results()

    def predict_step(self, data: Any) -> dict[str, tf.Tensor]:
        """The outputs of a batch dict (extra keys such as the labels are ignored)."""
        batch = data[0] if isinstance(data, (tuple, list)) else data
        return dict(self(self.select_inputs(batch), training=False))

    def initial_energy(self, ecal_gev: Any, hcal_gev: Any) -> Any:
        """The energy (GeV) the untrained network predicts for the sums: ``a * ECAL_E + b * HCAL_E + c``."""
        a, b, c = self.initial_energy_coefficients
        return a * ecal_gev + b * hcal_gev + c
