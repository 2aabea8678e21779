"""The Calorimeter Pyramid: which cells are hit, generated exactly by a three-stage clustering pyramid with Gumbel
top-k quantization, then the hit cells' energies.

After Schnake, Krücker, Käch, Scham and Borras, "The Calorimeter Pyramid: rethinking the design of generative
calorimeter shower models" (poster; hit-cell generation only), completed here with an energy stage. A shower is a
cylinder of (L, A, R) cells (CaloChallenge dataset 2: 45 layers x 16 angular x 9 radial cells), a cell is hit when
its energy reaches the readout threshold. Stages (``STAGES``), each a conditional flow
(:class:`caloml.models.flows.ConditionalFlow`, rational-quadratic-spline coupling layers):

1. ``layers``: the L layer-cells (cells clustered over alpha and r), one vector per shower: L normalized Gumbel
   values (:func:`~caloml.models.pyramid_quantization.gumbel_dequantize`) and the CDF-dequantized number k of hit
   layers (:class:`~caloml.models.pyramid_quantization.CountCDF`), given the incident energy.
2. ``radii``: for every hit layer, its R radial cells (clustered over alpha): R Gumbel values and their hit count,
   given the incident energy, the layer's position embedding and a permutation-invariant summary of the set of
   hit layers (:class:`~caloml.models.pyramid_stages.SetSummary`: its size and a DeepSets mean embedding).
3. ``angles``: for every hit (layer, radius) cell, its A angular cells, given the incident energy, the parent's
   position embedding and the summary of the set of hit (layer, radius) cells.
4. ``energy``: the total deposit, log(E_dep / E_inc), given the incident energy and the total hit count; then the
   energy of every hit cell as ``E_i = t + w_i / sum(w) (E_dep - n t)`` (t: the threshold, n: the hits), the log
   weight of every cell given the incident energy, the cell's position embedding, the summary of the hit pattern,
   the hit count and the total deposit (:class:`~caloml.models.pyramid_stages.ConditionalSpline1D`). Every cell
   then reaches the threshold and the cells sum exactly to the sampled deposit.

Stages 2-4 apply one flow to every element of a variable-length set (flattened over the batch), so the density is
invariant under permutations of the set. Generation takes the k largest Gumbel values (``top_k_mask``): the hit
subcells are distinct by construction, a shower never has a double hit. The loss is the sum over the trained
stages (``train_stages``) of the negative log-likelihood per shower in the flows' normalized units (the constant
Jacobians of the normalizations are left out). Incident energies outside the trained range or not finite raise
:class:`~caloml.errors.CalomlError` (eager) or fail a ``tf.debugging.Assert`` (graphs); nothing is clipped.
See ``docs/pyramid.md``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.base import CalomlModel, attribute_config
from caloml.models.batch_contract import BatchContract, BatchKey
from caloml.models.flows import ConditionalFlow
from caloml.models.pointflow_normalization import incident_energy_bounds
from caloml.models.pyramid_quantization import CountCDF, gumbel_dequantize, top_k_mask
from caloml.models.pyramid_stages import ConditionalSpline1D, PositionEmbedding, SetSummary

__all__ = ["NOISE_KEYS", "STAGES", "CalorimeterPyramid", "PyramidStatistics", "check_pyramid_energies"]

#: The stages, in generation order.
STAGES = ("layers", "radii", "angles", "energy")
#: Optional batch keys that replace the dequantization draws of :meth:`CalorimeterPyramid.negative_log_likelihood`
#: (tests, reproducibility studies): uniform numbers in (0, 1) on the whole grid, one row per shower so that
#: ``tf.distribute`` splits them with the showers; each stage reads them at its hit elements; a missing key is
#: drawn. ``noise_layers`` (B, L) (the Gumbel draws of the layers), ``noise_layer_count`` (B,) (the count's CDF
#: dequantization), ``noise_radii`` (B, L, R) and ``noise_radius_count`` (B, L) (of each hit layer),
#: ``noise_angles`` (B, L, A, R) and ``noise_angle_count`` (B, L, R) (of each hit (layer, radius) cell).
NOISE_KEYS = (
    "noise_layers",
    "noise_layer_count",
    "noise_radii",
    "noise_radius_count",
    "noise_angles",
    "noise_angle_count",
)
#: Smallest standard deviation of a statistic.
_STD_FLOOR = 1e-2
#: Logs of sampled weights and responses are clipped to +-this (float32 exp overflows near 88).
_MAX_ABS_LOG = 30.0
#: Offset (in units of the threshold) that keeps the log of a cell's excess above the threshold finite.
_EXCESS_OFFSET = 1e-3


@dataclass(frozen=True)
class PyramidStatistics:
    """What the model knows of its training data (part of its configuration).

    Attributes:
        grid_shape: (layers, angular cells, radial cells).
        incident_energy_range_gev: the trained incident-energy range, GeV.
        hit_threshold_gev: a cell is hit from this energy on, GeV.
        layer_counts, radius_counts, angle_counts: the count distributions of stages 1-3 (hit layers per shower,
            hit radial cells per hit layer, hit angular cells per hit (layer, radius)).
        log_hits_mean, log_hits_std: log of the number of hit cells per shower.
        log_response_mean, log_response_std: log(E_dep / E_inc).
        log_weight_mean, log_weight_std: log((E_i - t + 1e-3 t) / (E_dep - n t)) over hit cells.
    """

    grid_shape: tuple[int, int, int]
    incident_energy_range_gev: tuple[float, float]
    hit_threshold_gev: float
    layer_counts: CountCDF
    radius_counts: CountCDF
    angle_counts: CountCDF
    log_hits_mean: float
    log_hits_std: float
    log_response_mean: float
    log_response_std: float
    log_weight_mean: float
    log_weight_std: float

    @classmethod
    def from_showers(
        cls,
        cells_gev: np.ndarray,
        incident_energy_gev: np.ndarray,
        hit_threshold_gev: float,
        incident_energy_range_gev: Sequence[float],
    ) -> PyramidStatistics:
        """Statistics of showers (N, L, A, R) GeV with incident energies (N,) GeV; showers without a hit are
        ignored; a layer, radius or angle never hit is fine (its count keeps a pseudo-count). CalomlError when no
        shower has a hit or a value is not finite."""
        cells = np.asarray(cells_gev, dtype=np.float32)
        energy = np.asarray(incident_energy_gev, dtype=np.float64).reshape(-1)
        if cells.ndim != 4 or len(cells) != len(energy):
            raise CalomlError(f"statistics need showers (N, L, A, R) and N energies, got {cells.shape}, {energy.shape}")
        if not (np.all(np.isfinite(cells)) and np.all(np.isfinite(energy)) and np.all(energy > 0)):
            raise CalomlError("statistics: non-finite cells or non-positive incident energies in the sample")
        hits = cells >= hit_threshold_gev
        n_hits = hits.reshape(len(cells), -1).sum(axis=1)
        keep = n_hits > 0
        if not keep.any():
            raise CalomlError(f"no shower of the statistics sample has a cell above {hit_threshold_gev:g} GeV")
        cells, hits, energy, n_hits = cells[keep], hits[keep], energy[keep], n_hits[keep]
        n_layers, n_alpha, n_radius = cells.shape[1:]
        hit_lr = hits.any(axis=2)
        hit_l = hit_lr.any(axis=2)
        deposit = np.where(hits, cells, np.float32(0)).reshape(len(cells), -1).sum(axis=1, dtype=np.float64)
        excess = cells[hits].astype(np.float64) - hit_threshold_gev * (1.0 - _EXCESS_OFFSET)
        budget = np.repeat(deposit - n_hits * hit_threshold_gev, n_hits.astype(np.int64))
        # cells in np.where(hits) order are grouped per shower, matching np.repeat's order
        log_weight = np.log(excess) - np.log(np.maximum(budget, 1e-12))

        def stats(values: np.ndarray) -> tuple[float, float]:
            return float(np.mean(values)), max(float(np.std(values)), _STD_FLOOR)

        hits_mean, hits_std = stats(np.log(n_hits))
        response_mean, response_std = stats(np.log(deposit / energy))
        weight_mean, weight_std = stats(log_weight)
        low, high = (float(v) for v in incident_energy_range_gev)
        return cls(
            (int(n_layers), int(n_alpha), int(n_radius)),
            (low, high),
            float(hit_threshold_gev),
            CountCDF.from_counts(hit_l.sum(axis=1), 1, n_layers),
            CountCDF.from_counts(hit_lr.sum(axis=2)[hit_l], 1, n_radius),
            CountCDF.from_counts(hits.sum(axis=2)[hit_lr], 1, n_alpha),
            hits_mean,
            hits_std,
            response_mean,
            response_std,
            weight_mean,
            weight_std,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = (
                value.to_dict() if isinstance(value, CountCDF) else (list(value) if isinstance(value, tuple) else value)
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PyramidStatistics:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for name in ("layer_counts", "radius_counts", "angle_counts"):
            values[name] = CountCDF.from_dict(values[name])
        values["grid_shape"] = tuple(int(n) for n in values["grid_shape"])
        values["incident_energy_range_gev"] = tuple(float(v) for v in values["incident_energy_range_gev"])
        return cls(**values)


def check_pyramid_energies(
    incident_energy_gev: Any, trained_range_gev: Sequence[float], what: str = "incident energy"
) -> None:
    """Raise a one-line :class:`CalomlError` unless every value (GeV) is finite and inside the trained range
    (ends widened by a relative 1e-6 for float32 rounding)."""
    energy = np.atleast_1d(np.asarray(incident_energy_gev, dtype=np.float64)).reshape(-1)
    low, high = incident_energy_bounds(trained_range_gev)
    bad = np.flatnonzero(~(np.isfinite(energy) & (energy >= low) & (energy <= high)))
    if bad.size:
        raise CalomlError(
            f"{what} {energy[bad[0]]:g} GeV at index {bad[0]} is outside the range the Pyramid model was trained on,"
            f" [{trained_range_gev[0]:g}, {trained_range_gev[1]:g}] GeV ({bad.size} value(s))"
        )


def _segment_sum(values: tf.Tensor, shower: tf.Tensor, n_showers: tf.Tensor) -> tf.Tensor:
    return tf.math.unsorted_segment_sum(values, tf.cast(shower, tf.int32), n_showers)


@keras.saving.register_keras_serializable(package="caloml")
class CalorimeterPyramid(CalomlModel, keras.Model):
    """The Pyramid's four stages in one Keras model, trained with ``fit`` on batches
    ``{"showers": (B, L, A, R) GeV, "incident_energy": (B,) GeV}``; :meth:`sample` generates showers."""

    def __init__(
        self,
        statistics: PyramidStatistics | Mapping[str, Any],
        *,
        n_flow_layers: int = 6,
        n_bins: int = 8,
        spline_bound: float = 5.0,
        hidden_units: int = 128,
        conditioner_blocks: int = 2,
        embedding_units: int = 8,
        summary_units: int = 32,
        n_energy_layers: int = 3,
        train_stages: Sequence[str] = STAGES,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(statistics, PyramidStatistics):
            statistics = PyramidStatistics.from_dict(statistics)
        unknown = [s for s in train_stages if s not in STAGES]
        if unknown or not train_stages:
            raise ValueError(f"train_stages must be a non-empty subset of {STAGES}, got {list(train_stages)}")
        seed = int(seed) if seed is not None else random.SystemRandom().randrange(2**31 - 2**20)
        self.statistics = statistics
        self.n_flow_layers = int(n_flow_layers)
        self.n_bins = int(n_bins)
        self.spline_bound = float(spline_bound)
        self.hidden_units = int(hidden_units)
        self.conditioner_blocks = int(conditioner_blocks)
        self.embedding_units = int(embedding_units)
        self.summary_units = int(summary_units)
        self.n_energy_layers = int(n_energy_layers)
        self.train_stages = tuple(s for s in STAGES if s in train_stages)
        self.seed: int = seed
        n_layers, n_alpha, n_radius = statistics.grid_shape
        eu, su = self.embedding_units, self.summary_units
        flow: dict[str, Any] = {
            "flow": "rqs",
            "n_layers": self.n_flow_layers,
            "n_bins": self.n_bins,
            "spline_bound": self.spline_bound,
            "hidden_units": self.hidden_units,
            "n_blocks": self.conditioner_blocks,
        }
        self.layer_flow = ConditionalFlow(n_layers + 1, 1, seed=seed + 1, name="layer_flow", **flow)
        self.radius_embedding = PositionEmbedding([n_layers], eu, seed=seed + 2, name="radius_embedding")
        self.radius_summary = SetSummary(eu, su, seed=seed + 3, name="radius_summary")
        self.radius_flow = ConditionalFlow(n_radius + 1, 2 + eu + su, seed=seed + 4, name="radius_flow", **flow)
        self.angle_embedding = PositionEmbedding([n_layers, n_radius], eu, seed=seed + 5, name="angle_embedding")
        self.angle_summary = SetSummary(2 * eu, su, seed=seed + 6, name="angle_summary")
        self.angle_flow = ConditionalFlow(n_alpha + 1, 2 + 2 * eu + su, seed=seed + 7, name="angle_flow", **flow)
        spline: dict[str, Any] = {
            "n_layers": self.n_energy_layers,
            "n_bins": self.n_bins,
            "spline_bound": self.spline_bound,
            "hidden_units": self.hidden_units,
            "n_blocks": self.conditioner_blocks,
        }
        self.deposit_flow = ConditionalSpline1D(2, seed=seed + 8, name="deposit_flow", **spline)
        self.cell_embedding = PositionEmbedding([n_layers, n_alpha, n_radius], eu, seed=seed + 9, name="cell_embedding")
        self.cell_summary = SetSummary(3 * eu, su, seed=seed + 10, name="cell_summary")
        self.cell_flow = ConditionalSpline1D(4 + 3 * eu + su, seed=seed + 11, name="cell_flow", **spline)
        # training draws are stateless, seeded by (seed, draw number); the counter is saved with the model
        self.add_draw_counter(seed + 40_000)
        self.track_metrics(("loss", *STAGES))
        self.built = True

    # ------------------------------------------------------------------ conditions

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(layers, angular cells, radial cells)."""
        return self.statistics.grid_shape

    def _energy_condition(self, incident_energy_gev: Any) -> tf.Tensor:
        """log E_inc mapped linearly onto [-1, 1] over the trained range: (B,) GeV -> (B,)."""
        low, high = self.statistics.incident_energy_range_gev
        log_e = tf.math.log(tf.reshape(tf.cast(incident_energy_gev, tf.float32), [-1]))
        return 2.0 * (log_e - float(np.log(low))) / float(max(np.log(high / low), 1e-6)) - 1.0

    def _hits_condition(self, n_hits: tf.Tensor) -> tf.Tensor:
        stats = self.statistics
        log_n = tf.math.log(tf.maximum(tf.cast(n_hits, tf.float32), 1.0))
        return (log_n - stats.log_hits_mean) / stats.log_hits_std

    def check_incident_energy(self, incident_energy_gev: Any, what: str = "incident energy") -> None:
        """CalomlError unless every incident energy (GeV) is finite and inside the trained range."""
        check_pyramid_energies(incident_energy_gev, self.statistics.incident_energy_range_gev, what)

    def _checked_energy(self, incident_energy_gev: Any) -> tf.Tensor:
        energy = tf.reshape(tf.cast(incident_energy_gev, tf.float32), [-1])
        if tf.executing_eagerly():
            self.check_incident_energy(energy.numpy())
            return energy
        low, high = incident_energy_bounds(self.statistics.incident_energy_range_gev)
        trained = self.statistics.incident_energy_range_gev
        inside = tf.reduce_all((energy >= low) & (energy <= high))  # False for NaN
        message = (
            f"CalorimeterPyramid: incident energy outside the trained range [{trained[0]:g}, {trained[1]:g}]"
            " GeV (or not finite); energies:"
        )
        with tf.control_dependencies([tf.debugging.Assert(inside, [message, energy], summarize=8)]):
            return tf.identity(energy)

    # the contexts of the stages, shared by the likelihood and the sampler
    def _radius_context(self, e: tf.Tensor, hit_layers: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        summary = self.radius_summary(hit_layers, self.radius_embedding.table())
        shower = index[:, 0]
        return tf.concat(
            [tf.gather(e, shower)[:, None], self.radius_embedding.lookup(index[:, 1:]), tf.gather(summary, shower)],
            axis=-1,
        )

    def _angle_context(self, e: tf.Tensor, hit_lr: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        n_layers, _, n_radius = self.grid_shape
        flat = tf.reshape(hit_lr, [-1, n_layers * n_radius])
        summary = self.angle_summary(flat, self.angle_embedding.table())
        shower = index[:, 0]
        return tf.concat(
            [tf.gather(e, shower)[:, None], self.angle_embedding.lookup(index[:, 1:]), tf.gather(summary, shower)],
            axis=-1,
        )

    def _cell_context(
        self, e: tf.Tensor, hits: tf.Tensor, index: tf.Tensor, hits_condition: tf.Tensor, response: tf.Tensor
    ) -> tf.Tensor:
        n_cells = int(np.prod(self.grid_shape))
        summary = self.cell_summary(tf.reshape(hits, [-1, n_cells]), self.cell_embedding.table())
        shower = index[:, 0]
        return tf.concat(
            [
                tf.gather(e, shower)[:, None],
                self.cell_embedding.lookup(index[:, 1:]),
                tf.gather(summary, shower),
                tf.gather(hits_condition, shower)[:, None],
                tf.gather(response, shower)[:, None],
            ],
            axis=-1,
        )

    # ------------------------------------------------------------------ likelihood

    def negative_log_likelihood(self, batch: Mapping[str, Any], seed: Any) -> dict[str, tf.Tensor]:
        """Per-shower negative log-likelihoods (B,) of every stage (0 for stages not in ``train_stages``) and
        their sum ``loss``, with the dequantization noise drawn from the stateless ``seed`` (2,).

        ``batch``: ``showers`` (B, L, A, R) GeV, ``incident_energy`` (B,) GeV, optionally the fixed uniform noise of
        :data:`NOISE_KEYS` (used instead of the seed's draws).
        """
        stats = self.statistics
        cells = tf.cast(batch["showers"], tf.float32)
        e = self._energy_condition(batch["incident_energy"])
        n_showers = tf.shape(cells)[0]
        seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7))
        hits = cells >= stats.hit_threshold_gev
        hit_lr = tf.reduce_any(hits, axis=2)  # (B, L, R)
        hit_l = tf.reduce_any(hit_lr, axis=2)  # (B, L)
        zero = tf.zeros([n_showers], tf.float32)
        terms = dict.fromkeys(STAGES, zero)

        def count(mask: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1)

        def fed(key: str, index: tf.Tensor | None = None, transpose: list[int] | None = None) -> tf.Tensor | None:
            """The batch's fixed uniforms of ``key`` (at the hit elements ``index``), or None: drawn."""
            if key not in batch:
                return None
            values = tf.cast(batch[key], tf.float32)
            values = values if transpose is None else tf.transpose(values, transpose)
            return values if index is None else tf.gather_nd(values, index)

        if "layers" in self.train_stages:
            layer_count = stats.layer_counts.dequantize(count(hit_l), seeds[1], fed("noise_layer_count"))
            x = tf.concat([gumbel_dequantize(hit_l, seeds[0], fed("noise_layers")), layer_count[:, None]], -1)
            terms["layers"] = -self.layer_flow.log_prob(x, e[:, None])
        if "radii" in self.train_stages:
            index = tf.where(hit_l)
            target = tf.gather_nd(hit_lr, index)
            radius_count = stats.radius_counts.dequantize(count(target), seeds[3], fed("noise_radius_count", index))
            x = tf.concat([gumbel_dequantize(target, seeds[2], fed("noise_radii", index)), radius_count[:, None]], -1)
            log_p = self.radius_flow.log_prob(x, self._radius_context(e, hit_l, index))
            terms["radii"] = -_segment_sum(log_p, index[:, 0], n_showers)
        if "angles" in self.train_stages:
            index = tf.where(hit_lr)
            target = tf.gather_nd(tf.transpose(hits, [0, 1, 3, 2]), index)
            angle_count = stats.angle_counts.dequantize(count(target), seeds[5], fed("noise_angle_count", index))
            angles = gumbel_dequantize(target, seeds[4], fed("noise_angles", index, [0, 1, 3, 2]))
            x = tf.concat([angles, angle_count[:, None]], -1)
            log_p = self.angle_flow.log_prob(x, self._angle_context(e, hit_lr, index))
            terms["angles"] = -_segment_sum(log_p, index[:, 0], n_showers)
        if "energy" in self.train_stages:
            threshold = stats.hit_threshold_gev
            flat = tf.reshape(tf.where(hits, cells, 0.0), [n_showers, -1])
            n_hits = count(tf.reshape(hits, [n_showers, -1]))
            deposit = tf.reduce_sum(flat, axis=-1)
            incident = tf.reshape(tf.cast(batch["incident_energy"], tf.float32), [-1])
            response = (
                tf.math.log(tf.maximum(deposit, 1e-12) / incident) - stats.log_response_mean
            ) / stats.log_response_std
            hits_condition = self._hits_condition(n_hits)
            log_p = self.deposit_flow.log_prob(response, tf.stack([e, hits_condition], axis=-1))
            index = tf.where(hits)
            shower = index[:, 0]
            excess = tf.gather_nd(cells, index) - threshold * (1.0 - _EXCESS_OFFSET)
            budget = tf.gather(deposit - tf.cast(n_hits, tf.float32) * threshold, shower)
            weight = (
                tf.math.log(excess) - tf.math.log(tf.maximum(budget, 1e-12)) - stats.log_weight_mean
            ) / stats.log_weight_std
            context = self._cell_context(e, hits, index, hits_condition, response)
            log_p += _segment_sum(self.cell_flow.log_prob(weight, context), shower, n_showers)
            terms["energy"] = -log_p
        terms["loss"] = tf.add_n([terms[s] for s in STAGES])
        return terms

    # ------------------------------------------------------------------ generation

    def sample_layers(self, incident_energy_gev: Any, seed: Any) -> tf.Tensor:
        """Stage 1: hit layers (B, L) bool for incident energies (B,) GeV, stateless seed (2,)."""
        e = self._energy_condition(self._checked_energy(incident_energy_gev))
        x, _ = self.layer_flow.sample(e[:, None], seed)
        k = self.statistics.layer_counts.quantize(x[:, -1])
        return top_k_mask(x[:, :-1], k)

    def sample_radii(self, incident_energy_gev: Any, hit_layers: Any, seed: Any) -> tf.Tensor:
        """Stage 2: hit (layer, radius) cells (B, L, R) bool of hit layers (B, L)."""
        e = self._energy_condition(self._checked_energy(incident_energy_gev))
        hit_layers = tf.cast(hit_layers, tf.bool)
        index = tf.where(hit_layers)
        x, _ = self.radius_flow.sample(self._radius_context(e, hit_layers, index), seed)
        mask = top_k_mask(x[:, :-1], self.statistics.radius_counts.quantize(x[:, -1]))
        n_layers, _, n_radius = self.grid_shape
        shape = tf.stack([tf.shape(hit_layers, out_type=tf.int64)[0], n_layers, n_radius])
        return tf.scatter_nd(index, tf.cast(mask, tf.int32), shape) > 0

    def sample_angles(self, incident_energy_gev: Any, hit_lr: Any, seed: Any) -> tf.Tensor:
        """Stage 3: the hit pattern (B, L, A, R) bool of hit (layer, radius) cells (B, L, R)."""
        return self.sample_angles_and_counts(incident_energy_gev, hit_lr, seed)[0]

    def sample_angles_and_counts(self, incident_energy_gev: Any, hit_lr: Any, seed: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Stage 3 (see :meth:`sample_angles`) and the hits it asked for per shower (B,) int32: the sum of its
        sampled counts k over the hit (layer, radius) cells."""
        e = self._energy_condition(self._checked_energy(incident_energy_gev))
        hit_lr = tf.cast(hit_lr, tf.bool)
        index = tf.where(hit_lr)
        x, _ = self.angle_flow.sample(self._angle_context(e, hit_lr, index), seed)
        counts = self.statistics.angle_counts.quantize(x[:, -1])
        mask = top_k_mask(x[:, :-1], counts)
        n_layers, n_alpha, n_radius = self.grid_shape
        n_showers = tf.shape(hit_lr, out_type=tf.int64)[0]
        shape = tf.stack([n_showers, n_layers, n_radius, n_alpha])
        hits = tf.transpose(tf.scatter_nd(index, tf.cast(mask, tf.int32), shape) > 0, [0, 1, 3, 2])
        return hits, _segment_sum(counts, index[:, 0], tf.cast(n_showers, tf.int32))

    def sample_energies(self, incident_energy_gev: Any, hits: Any, seed: Any) -> tf.Tensor:
        """Stage 4: cell energies (B, L, A, R) GeV of a hit pattern (B, L, A, R): every hit cell at least the
        threshold, the cells of a shower summing to its sampled deposit, the others 0."""
        stats = self.statistics
        energy = self._checked_energy(incident_energy_gev)
        e = self._energy_condition(energy)
        hits = tf.cast(hits, tf.bool)
        n_showers = tf.shape(hits)[0]
        deposit_seed, cell_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2))
        n_hits = tf.reduce_sum(tf.cast(tf.reshape(hits, [n_showers, -1]), tf.int32), axis=-1)
        hits_condition = self._hits_condition(n_hits)
        response = self.deposit_flow.sample(tf.stack([e, hits_condition], axis=-1), deposit_seed)
        log_response = tf.clip_by_value(
            response * stats.log_response_std + stats.log_response_mean, -_MAX_ABS_LOG, _MAX_ABS_LOG
        )
        floor = tf.cast(n_hits, tf.float32) * stats.hit_threshold_gev
        deposit = tf.maximum(energy * tf.exp(log_response), floor * (1.0 + 1e-6))
        index = tf.where(hits)
        shower = index[:, 0]
        weight = self.cell_flow.sample(self._cell_context(e, hits, index, hits_condition, response), cell_seed)
        log_weight = weight * stats.log_weight_std + stats.log_weight_mean
        log_weight -= tf.gather(tf.math.unsorted_segment_max(log_weight, tf.cast(shower, tf.int32), n_showers), shower)
        weight = tf.exp(tf.maximum(log_weight, -_MAX_ABS_LOG))
        share = weight / tf.gather(_segment_sum(weight, shower, n_showers), shower)
        values = stats.hit_threshold_gev + share * tf.gather(deposit - floor, shower)
        return tf.scatter_nd(index, values, tf.shape(hits, out_type=tf.int64))

    def sample(self, incident_energy_gev: Any, seed: Any) -> dict[str, tf.Tensor]:
        """Complete showers for incident energies (B,) GeV with a stateless seed (2,): ``showers`` (B, L, A, R)
        float32 GeV, ``n_hits`` (B,) int32 (non-empty cells) and ``requested_hits`` (B,) int32 (the sum of the
        stage-3 counts; equal to ``n_hits``: a difference would be a double hit)."""
        energy = self._checked_energy(incident_energy_gev)
        seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4))
        hit_l = self.sample_layers(energy, seeds[0])
        hit_lr = self.sample_radii(energy, hit_l, seeds[1])
        hits, requested = self.sample_angles_and_counts(energy, hit_lr, seeds[2])
        showers = self.sample_energies(energy, hits, seeds[3])
        n_showers = tf.shape(hits)[0]
        n_hits = tf.reduce_sum(tf.cast(tf.reshape(showers > 0, [n_showers, -1]), tf.int32), axis=-1)
        return {"showers": showers, "n_hits": n_hits, "requested_hits": requested}

    # ------------------------------------------------------------------ training

    def batch_contract(self) -> BatchContract:
        """``showers`` (B, layers, angles, radii) GeV and ``incident_energy`` (B,) GeV."""
        keys = (BatchKey("showers", (None, None, None), "GeV"), BatchKey("incident_energy", (), "GeV"))
        return BatchContract(type(self).__name__, keys)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One gradient step on the trained stages' summed negative log-likelihood (mean over the global batch)."""
        batch = self.batch_contract().batch(data)
        seed = self.next_seed(per_replica=True)
        with tf.GradientTape() as tape:
            terms = self.negative_log_likelihood(batch, seed)
            loss = tf.nn.compute_average_loss(terms["loss"])
        pairs = [
            (g, v)
            for g, v in zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables, strict=True)
            if g is not None
        ]
        self.optimizer.apply_gradients(pairs)
        self.update_metrics(terms)
        return self.metric_results()

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """The metrics of a batch, without a gradient step."""
        batch = self.batch_contract().batch(data)
        self.update_metrics(self.negative_log_likelihood(batch, self.next_seed(per_replica=True)))
        return self.metric_results()

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        return {
            **attribute_config(self, "name trainable"),
            "statistics": self.statistics.to_dict(),
            **attribute_config(
                self,
                "n_flow_layers n_bins spline_bound hidden_units conditioner_blocks embedding_units summary_units",
                "n_energy_layers train_stages seed",
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CalorimeterPyramid:
        return cls(**config)
