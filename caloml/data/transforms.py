"""Composable transforms of event batches, usable in tf.data pipelines and on NumPy batches.

A batch is a dict of arrays with the event axis first, keyed like the files (``ECAL``, ``energy``, ``showers``...).
Two kinds of transforms:

* **Event filters** (:class:`EventFilter`: :class:`MinTotalDeposit`, :class:`MaxHcalEcalRatio`,
  :class:`MaxOpeningAngle`) decide per event from its scalars. In :func:`caloml.data.pipeline.make_dataset` they
  act on each event *before* batching (on the scalar features and the ``K/sum`` array sums of the records), so
  that batches stay full. On a NumPy batch they return the batch without the rejected events.
* **Value transforms** (:class:`PowerTransform`, :class:`ScaleEnergy`, :class:`CenterCrop`, :class:`ToPointCloud`)
  map a batch to a batch, after decoding.

Every transform is a frozen dataclass (its ``repr`` is its configuration) and a callable: ``t(batch)`` runs the
NumPy version when every value of the batch is a NumPy array, the TensorFlow version otherwise (``t.numpy(batch)``
and ``t.tf(batch)`` choose explicitly). TensorFlow is imported only by the TensorFlow versions, because command
lines import this module to parse their arguments without it (``python -m caloml.data inspect`` never loads it).
Energies are GeV. See ``docs/data.md``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "CELL_KEYS",
    "CenterCrop",
    "Compose",
    "EventFilter",
    "MaxHcalEcalRatio",
    "MaxOpeningAngle",
    "MinTotalDeposit",
    "PowerTransform",
    "ScalarInRange",
    "ScaleEnergy",
    "ToPointCloud",
    "Transform",
    "dequantize",
    "split_transforms",
]

#: The calorimeter cell arrays of the layouts.
CELL_KEYS: tuple[str, ...] = ("ECAL", "HCAL", "showers")

Batch = Mapping[str, Any]


def _is_numpy_batch(batch: Batch) -> bool:
    return all(isinstance(v, np.ndarray | np.generic | numbers.Number) for v in batch.values())


def _map_values(fn: Any, x: Any) -> Any:
    """Apply an element-wise ``fn`` to a dense tensor or to the values of a ragged one."""
    import tensorflow as tf

    if isinstance(x, tf.RaggedTensor):
        return x.with_flat_values(fn(x.flat_values))
    return fn(x)


def dequantize(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer cell coordinates (float32) plus uniform noise in [0, 1), never rounded up into the next cell.

    In float32, ``x + u`` with ``u`` just below 1 rounds to ``x + 1`` once ``x`` is large enough; the result is
    clipped to the largest float32 below ``x + 1``.
    """
    cells = np.asarray(cells, dtype=np.float32)
    noisy = cells + rng.random(cells.shape, dtype=np.float32)
    return np.minimum(noisy, np.nextafter(cells + np.float32(1), cells))


class Transform:
    """Base class: a callable on batches with a NumPy and a TensorFlow implementation."""

    #: True for event filters (applied per event before batching in the pipelines).
    is_filter: ClassVar[bool] = False

    def __call__(self, batch: Batch) -> dict[str, Any]:
        """Apply to a batch: NumPy version for NumPy arrays, TensorFlow version otherwise."""
        return self.numpy(batch) if _is_numpy_batch(batch) else self.tf(batch)

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """Apply to a batch of NumPy arrays."""
        raise NotImplementedError

    def tf(self, batch: Batch) -> dict[str, Any]:
        """Apply to a batch of tensors (inside or outside tf.data)."""
        raise NotImplementedError


# -- event filters --------------------------------------------------------------------------------------------------
def with_sums(batch: Batch) -> dict[str, Any]:
    """The batch plus ``K/sum`` (total energy per event, GeV) for each cell array ``K`` present without one."""
    out = dict(batch)
    for key in CELL_KEYS:
        if key in batch and f"{key}/sum" not in batch:
            value = batch[key]
            if isinstance(value, np.ndarray):
                out[f"{key}/sum"] = value.reshape(len(value), -1).sum(axis=1, dtype=np.float64).astype(np.float32)
            else:
                import tensorflow as tf

                out[f"{key}/sum"] = tf.reduce_sum(tf.reshape(value, [tf.shape(value)[0], -1]), axis=1)
    return out


class EventFilter(Transform):
    """Keeps the events whose scalars satisfy :meth:`keep`; see the module docstring for where it acts."""

    is_filter: ClassVar[bool] = True

    @property
    def required_keys(self) -> tuple[str, ...]:
        """Scalar keys :meth:`keep` reads."""
        raise NotImplementedError

    def keep(self, scalars: Batch) -> Any:
        """Boolean per event (NumPy array or tensor, scalar for one event) from the scalar values."""
        raise NotImplementedError

    def _scalars(self, batch: Batch) -> dict[str, Any]:
        scalars = with_sums(batch)
        missing = [k for k in self.required_keys if k not in scalars]
        if missing:
            raise KeyError(f"{self!r} needs key '{missing[0]}', the batch has {sorted(batch)}")
        return scalars

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """The batch without the rejected events."""
        mask = np.asarray(self.keep(self._scalars(batch)), dtype=bool).reshape(-1)
        return {k: v[mask] for k, v in batch.items()}

    def tf(self, batch: Batch) -> dict[str, Any]:
        """The batch (of dense or ragged tensors) without the rejected events."""
        import tensorflow as tf

        mask = tf.reshape(self.keep(self._scalars(batch)), [-1])
        return {k: tf.ragged.boolean_mask(v, mask) if isinstance(v, tf.RaggedTensor) else tf.boolean_mask(v, mask)
                for k, v in batch.items()}  # fmt: skip


@dataclass(frozen=True)
class MinTotalDeposit(EventFilter):
    """Keep events whose total deposit in ``key`` is above ``min_gev`` (3DGAN: ECAL sum > 0.2 GeV)."""

    min_gev: float = 0.2
    key: str = "ECAL"

    @property
    def required_keys(self) -> tuple[str, ...]:
        """The array sum ``K/sum``."""
        return (f"{self.key}/sum",)

    def keep(self, scalars: Batch) -> Any:
        """``sum > min_gev``."""
        return scalars[f"{self.key}/sum"] > self.min_gev


@dataclass(frozen=True)
class MaxHcalEcalRatio(EventFilter):
    """Keep events with HCAL / ECAL energy below ``max_ratio`` (Triforce charged pions: 0.1).

    Uses the files' window sums ``HCAL_E`` and ``ECAL_E`` by default (full windows even for cropped ECAL);
    ``hcal_key="HCAL/sum", ecal_key="ECAL/sum"`` uses the sums of the arrays instead. Written as
    ``hcal < max_ratio * ecal``, so an event without ECAL energy is rejected.
    """

    max_ratio: float = 0.1
    hcal_key: str = "HCAL_E"
    ecal_key: str = "ECAL_E"

    @property
    def required_keys(self) -> tuple[str, ...]:
        """The HCAL and ECAL energies."""
        return (self.hcal_key, self.ecal_key)

    def keep(self, scalars: Batch) -> Any:
        """``hcal < max_ratio * ecal``."""
        return scalars[self.hcal_key] < self.max_ratio * scalars[self.ecal_key]


@dataclass(frozen=True)
class MaxOpeningAngle(EventFilter):
    """Keep events whose photon opening angle is below ``max_rad`` (Triforce neutral pions: 0.01 rad).

    Events without a pi0 decay have ``openingAngle = -1`` and are kept. (The original conversion code meant to
    apply this cut and never did; this one does.)
    """

    max_rad: float = 0.01
    key: str = "openingAngle"

    @property
    def required_keys(self) -> tuple[str, ...]:
        """The opening angle."""
        return (self.key,)

    def keep(self, scalars: Batch) -> Any:
        """``openingAngle < max_rad``."""
        return scalars[self.key] < self.max_rad


@dataclass(frozen=True)
class ScalarInRange(EventFilter):
    """Keep events with ``low <= key <= high`` (e.g. a measured angle below pi, which drops the sentinel 100 of
    events whose angle could not be measured)."""

    key: str
    low: float
    high: float

    @property
    def required_keys(self) -> tuple[str, ...]:
        """The scalar."""
        return (self.key,)

    def keep(self, scalars: Batch) -> Any:
        """``low <= value <= high`` (False for NaN)."""
        value = scalars[self.key]
        return (value >= self.low) & (value <= self.high)


# -- value transforms ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerTransform(Transform):
    """Cells to the power ``exponent`` (3DGAN: 0.85), on the dense arrays ``K`` or sparse values ``K/values``.

    :meth:`inverse` raises to ``1 / exponent`` (negative inputs, possible from a generator, are clipped to 0).
    """

    exponent: float = 0.85
    keys: tuple[str, ...] = CELL_KEYS

    def _targets(self, batch: Batch) -> list[str]:
        return [k for key in self.keys for k in (key, f"{key}/values") if k in batch]

    def _apply(self, batch: Batch, exponent: float, clip: bool) -> dict[str, Any]:
        out = dict(batch)
        targets = self._targets(batch)
        if _is_numpy_batch(batch):
            for key in targets:
                value = np.maximum(batch[key], 0) if clip else batch[key]
                out[key] = np.power(value, np.asarray(exponent, dtype=value.dtype))
            return out
        import tensorflow as tf

        def power(x: tf.Tensor) -> tf.Tensor:
            return tf.pow(tf.maximum(x, 0.0) if clip else x, tf.cast(exponent, x.dtype))

        for key in targets:
            out[key] = _map_values(power, batch[key])
        return out

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """Forward on NumPy arrays."""
        return self._apply(batch, self.exponent, clip=False)

    def tf(self, batch: Batch) -> dict[str, Any]:
        """Forward on tensors."""
        return self._apply(batch, self.exponent, clip=False)

    def inverse(self, batch: Batch) -> dict[str, Any]:
        """Back to GeV: ``max(x, 0) ** (1 / exponent)`` (NumPy or tensors)."""
        return self._apply(batch, 1.0 / self.exponent, clip=True)


@dataclass(frozen=True)
class ScaleEnergy(Transform):
    """Multiply ``key`` by ``factor`` (3DGAN: ``energy`` / 100); :meth:`inverse` divides."""

    factor: float = 0.01
    key: str = "energy"

    def _apply(self, batch: Batch, factor: float) -> dict[str, Any]:
        out = dict(batch)
        if self.key not in batch:
            raise KeyError(f"{self!r}: no key '{self.key}' in the batch ({sorted(batch)})")
        value = batch[self.key]
        if isinstance(value, np.ndarray):
            out[self.key] = value * np.asarray(factor, dtype=value.dtype)
        else:
            out[self.key] = value * factor
        return out

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """Scale a NumPy batch."""
        return self._apply(batch, self.factor)

    def tf(self, batch: Batch) -> dict[str, Any]:
        """Scale a tensor batch."""
        return self._apply(batch, self.factor)

    def inverse(self, batch: Batch) -> dict[str, Any]:
        """Undo the scaling."""
        return self._apply(batch, 1.0 / self.factor)


@dataclass(frozen=True)
class CenterCrop(Transform):
    """Central ``nx`` x ``ny`` window of the transverse axes 1, 2 of the dense ``key`` (Triforce: ECAL 25 x 25).

    For an odd size the window is centred on the central cell: 51 -> 25 keeps cells 13..37.
    """

    nx: int = 25
    ny: int = 25
    key: str = "ECAL"

    def _crop(self, batch: Batch) -> dict[str, Any]:
        if self.key not in batch:
            hint = " (sparse output: crop needs dense arrays)" if f"{self.key}/values" in batch else ""
            raise KeyError(f"{self!r}: no dense '{self.key}' in the batch{hint}")
        value = batch[self.key]
        size_x, size_y = int(value.shape[1]), int(value.shape[2])
        if self.nx > size_x or self.ny > size_y:
            raise ValueError(f"{self!r}: cannot crop '{self.key}' of transverse size {size_x} x {size_y}")
        x0, y0 = (size_x - self.nx) // 2, (size_y - self.ny) // 2
        out = dict(batch)
        out[self.key] = value[:, x0 : x0 + self.nx, y0 : y0 + self.ny]
        return out

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """Crop a NumPy batch (a view)."""
        return self._crop(batch)

    def tf(self, batch: Batch) -> dict[str, Any]:
        """Crop a tensor batch."""
        return self._crop(batch)


@dataclass(frozen=True)
class ToPointCloud(Transform):
    """Hits of ``key`` as a padded point cloud, for point-cloud models.

    Each non-empty cell becomes a point (c_1, ..., c_d, log E): its integer cell coordinates along the array's axes
    (x, y, z for LCD; layer, alpha, radius for CaloChallenge) plus uniform noise in [0, 1) when ``dequantize``
    (so that a point never leaves its cell; the cell centre c + 0.5 otherwise), and the log of its energy in GeV.
    Output keys: ``points`` (B, max_points, d + 1) float32, sorted by decreasing energy, zero-padded; ``mask``
    (B, max_points) bool, True on real points; ``n_hits`` (B,) int32, the number of hits before truncation to the
    ``max_points`` most energetic ones. The source array is dropped unless ``keep_source``.

    The TensorFlow version reads either the sparse pipeline output (``K/coords``, ``K/values``) or a dense ``K``;
    the NumPy version reads a dense ``K`` (as the readers give it).
    """

    key: str
    max_points: int
    seed: int = 0
    dequantize: bool = True
    keep_source: bool = False
    _rng: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_points < 1:
            raise ValueError(f"max_points must be positive, got {self.max_points}")

    def _rng_numpy(self) -> np.random.Generator:
        if self._rng is None:
            object.__setattr__(self, "_rng", np.random.default_rng(self.seed))
        return self._rng

    def _output(self, batch: Batch, points: Any, mask: Any, n_hits: Any) -> dict[str, Any]:
        out = dict(batch)
        if not self.keep_source:
            for key in (self.key, f"{self.key}/coords", f"{self.key}/values", f"{self.key}/sum"):
                out.pop(key, None)
        out.update(points=points, mask=mask, n_hits=n_hits)
        return out

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """Point clouds of a dense NumPy batch (N, *shape) of ``key``."""
        if self.key not in batch:
            raise KeyError(f"{self!r}: no dense '{self.key}' in the batch ({sorted(batch)})")
        cells = np.asarray(batch[self.key])
        n, ndim = len(cells), cells.ndim - 1
        rng = self._rng_numpy()
        points = np.zeros((n, self.max_points, ndim + 1), dtype=np.float32)
        mask = np.zeros((n, self.max_points), dtype=bool)
        n_hits = np.zeros(n, dtype=np.int32)
        for i in range(n):
            coords = np.nonzero(cells[i] > 0)
            values = cells[i][coords]
            n_hits[i] = len(values)
            order = np.argsort(-values, kind="stable")[: self.max_points]
            k = len(order)
            position = np.stack(coords, axis=1)[order].astype(np.float32)
            if self.dequantize:
                position = dequantize(position, rng)
            else:
                position += np.float32(0.5)
            points[i, :k, :ndim] = position
            points[i, :k, ndim] = np.log(values[order])
            mask[i, :k] = True
        return self._output(batch, points, mask, n_hits)

    def tf(self, batch: Batch) -> dict[str, Any]:
        """Point clouds of a tensor batch (sparse ``K/coords`` + ``K/values``, or dense ``K``)."""
        import tensorflow as tf

        if f"{self.key}/coords" in batch:
            coords, values = batch[f"{self.key}/coords"], batch[f"{self.key}/values"]
        elif self.key in batch:
            dense = tf.convert_to_tensor(batch[self.key])
            where = tf.where(dense > 0)
            n_rows = tf.shape(dense, out_type=tf.int64)[0]
            coords = tf.RaggedTensor.from_value_rowids(where[:, 1:], where[:, 0], nrows=n_rows)
            values = tf.RaggedTensor.from_value_rowids(tf.gather_nd(dense, where), where[:, 0], nrows=n_rows)
        else:
            raise KeyError(f"{self!r}: no '{self.key}' or '{self.key}/coords' in the batch ({sorted(batch)})")
        ndim = coords.shape[-1]
        n_hits = tf.cast(values.row_lengths(), tf.int32)
        width = tf.maximum(tf.reduce_max(tf.concat([n_hits, [0]], axis=0)), self.max_points)
        n_rows = tf.shape(n_hits)[0]
        padded_values = values.to_tensor(default_value=-np.inf, shape=tf.stack([n_rows, width]))
        padded_coords = coords.to_tensor(default_value=0, shape=tf.stack([n_rows, width, ndim]))
        top_values, top = tf.math.top_k(padded_values, k=self.max_points, sorted=True)
        mask = tf.math.is_finite(top_values)
        position = tf.cast(tf.gather(padded_coords, top, batch_dims=1), tf.float32)
        if self.dequantize:
            noisy = position + tf.random.uniform(tf.shape(position), seed=self.seed, dtype=tf.float32)
            position = tf.minimum(noisy, tf.math.nextafter(position + 1.0, position))  # stay inside the cell
        else:
            position = position + 0.5
        log_energy = tf.math.log(tf.where(mask, top_values, tf.ones_like(top_values)))
        points = tf.concat([position, log_energy[..., None]], axis=-1) * tf.cast(mask, tf.float32)[..., None]
        return self._output(batch, points, mask, n_hits)


@dataclass(frozen=True)
class Compose(Transform):
    """Apply ``transforms`` in order (filters included, on NumPy or tensor batches)."""

    transforms: tuple[Transform, ...] = ()

    def numpy(self, batch: Batch) -> dict[str, Any]:
        """Apply each NumPy version in turn."""
        out = dict(batch)
        for transform in self.transforms:
            out = transform.numpy(out)
        return out

    def tf(self, batch: Batch) -> dict[str, Any]:
        """Apply each TensorFlow version in turn."""
        out = dict(batch)
        for transform in self.transforms:
            out = transform.tf(out)
        return out


def split_transforms(transforms: Sequence[Transform]) -> tuple[list[EventFilter], list[Transform]]:
    """Split a pipeline's transforms into event filters and value transforms (flattening :class:`Compose`).

    Filters act before batching, on the raw scalars, so a filter listed after a value transform would not see its
    effect: that order raises ``ValueError``.
    """

    def flatten(items: Sequence[Transform]) -> list[Transform]:
        return [t for item in items for t in (flatten(item.transforms) if isinstance(item, Compose) else [item])]

    flat = flatten(transforms)
    filters: list[EventFilter] = []
    values: list[Transform] = []
    for transform in flat:
        if not isinstance(transform, Transform):
            raise TypeError(f"not a caloml transform: {transform!r}")
        if isinstance(transform, EventFilter):
            if values:
                raise ValueError(f"event filter {transform!r} must come before the value transforms {values!r}")
            filters.append(transform)
        else:
            values.append(transform)
    return filters, values
