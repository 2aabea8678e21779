"""The Monte-Carlo cell sampler of CaloPointFlow (arXiv:2211.15380): from flow points to showers of distinct cells.

The point flow draws every hit independently, so two hits can land in one cell. The paper's sampler turns a large
sample of points (about 10k per shower) with their densities into a shower of exactly ``n_hits`` distinct cells:

1. each point ``(x, y, z, log E)`` (continuous cell coordinates, ``floor`` gives the cell index; log of the energy
   in GeV) falls into a cell; points outside the grid, or with a non-finite coordinate, energy or density, are
   dropped;
2. the weight of an occupied cell is the **mean density** of the points that fell into it (the paper: "the average
   probability of all points in one cell is taken as the probability of hitting that cell");
3. ``n_hits`` distinct cells are drawn without replacement with probabilities proportional to those weights
   (successive draws among the cells left, each proportional to its weight): Gumbel-top-k, exact for this scheme -
   the cells with the ``n_hits`` largest ``log weight + Gumbel noise``;
4. each chosen cell gets one of the energies sampled in it, drawn with probabilities proportional to the points'
   densities (Gumbel-max within the cell);
5. the cell energies are rescaled so that the shower's sum equals the sampled total energy exactly.

Why the mean density and not count x mean density (the sum of the densities in the cell): with ``N`` points
drawn, a cell of probability ``P(c)`` receives about ``N P(c)`` of them, and their mean density estimates
``P(c)`` times a factor of the energy spread within the cell (per unit cell volume) whatever the number of points
that happened to land there - a one-point cell in the tail gets its proper weight, not one rounded to the count.
The sum of the densities would count ``P(c)`` twice (once in how many points landed, once in their density), i.e.
weight cells by about ``P(c)**2`` and thin the tails further. We follow the paper: mean density. Two properties of the
paper's scheme worth knowing when reading its results: only cells that received at least one point can be chosen,
and step 4 reweights energies already drawn from the flow by their density again, which favours the most probable
energy of a cell (the paper reports "significantly fewer low-energy hits after sampling").

Fewer occupied cells than ``n_hits``: all occupied cells are taken (the shower then has fewer hits than asked) and
the achieved count is returned by :func:`sample_cells_detailed`; raise the number of points per shower to avoid it.
A shower without any valid point is all zeros.

Memory: everything runs on the ``B * P`` points, the ``<= B * P`` occupied cells (``tf.unique`` of the flattened cell
ids ``event * n_cells + cell``) and the dense output ``B * n_cells``; nothing of size ``B * n_cells`` is made besides
the output (LCD 51x51x25 at batch 100 and 10k points: about 10 arrays of 1M entries plus a 26 MB output).

All functions are TensorFlow, batched and graph friendly (``tf.function`` / SavedModel signatures), with stateless
random draws from a ``(2,)`` int32 seed: the same inputs and seed give the same showers. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.pointflow_normalization import check_incident_energy_range

__all__ = [
    "STAGES",
    "CellSample",
    "GeneratedShowers",
    "PointFlowShowerSampler",
    "batch_seeds",
    "generate_showers",
    "sample_cells",
    "sample_cells_detailed",
    "trained_incident_range",
]

#: The stages of shower sampling timed by :meth:`PointFlowShowerSampler.generate`.
STAGES = ("latent", "points", "cells")


class CellSample(NamedTuple):
    """What :func:`sample_cells_detailed` returns (B showers on a grid of ``n_cells`` cells).

    Attributes:
        showers: (B, *grid_shape) float32 GeV, the cell energies rescaled to the shower's total energy.
        unscaled: (B, *grid_shape) float32 GeV, the chosen cells' sampled energies before the rescaling (``inf``
            where exp(log E) overflows float32; ``showers`` is rescaled in log space and stays finite).
        n_hits: (B,) int32, the number of cells hit: ``min(requested n_hits, occupied cells)``.
        n_occupied: (B,) int32, the number of distinct cells that received at least one valid point.
    """

    showers: Any
    unscaled: Any
    n_hits: Any
    n_occupied: Any


def sample_cells_detailed(
    points: Any,
    log_density: Any,
    n_hits: Any,
    total_energy_gev: Any,
    grid_shape: Sequence[int],
    seed: Any,
) -> CellSample:
    """The paper's Monte-Carlo cell sampler (see the module docstring), with the hit counts and unscaled energies.

    Args:
        points: (B, P, 4) float32: continuous cell coordinates along the three grid axes (``floor`` is the cell
            index) and log(E / GeV).
        log_density: (B, P) float32, the log density of each point (any constant offset, e.g. the units, cancels).
        n_hits: (B,) integer, the number of distinct cells to hit per shower.
        total_energy_gev: (B,) float32 GeV, the energy sum every shower is rescaled to.
        grid_shape: the 3 grid sizes (static Python ints).
        seed: (2,) int32 tensor or sequence, the stateless random seed.

    Small energies: a chosen cell whose rescaled share underflows float32 is floored to the smallest normal
    float32 (about 1.2e-38 GeV) so that it stays a hit (exactly n_hits non-empty cells). The sampler applies no
    readout threshold: rescaled cells below the data's hit threshold (CaloChallenge 15.15 keV, LCD 3e-4 GeV) are
    kept here, and vanish when an evaluation applies that threshold (as the CaloChallenge evaluation does), so that
    the number of hits above threshold can be below ``n_hits``.
    """
    shape = tuple(int(size) for size in grid_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise CalomlError(f"grid_shape must be 3 positive sizes, got {tuple(grid_shape)}")
    n_cells = math.prod(shape)
    points = tf.convert_to_tensor(points, tf.float32)
    log_density = tf.convert_to_tensor(log_density, tf.float32)
    n_hits = tf.cast(n_hits, tf.int32)
    total_energy_gev = tf.cast(total_energy_gev, tf.float32)
    seed = tf.cast(seed, tf.int32)
    batch, n_points = tf.shape(points)[0], tf.shape(points)[1]
    minus_inf = tf.constant(-np.inf, tf.float32)

    # 1. the cell of each point; invalid points get the id -1 (one segment of their own, never chosen)
    coordinates = tf.floor(points[..., :3])
    log_energy = points[..., 3]
    inside = tf.reduce_all((coordinates >= 0.0) & (coordinates < tf.constant(shape, tf.float32)), axis=-1)
    valid = inside & tf.math.is_finite(log_density) & tf.math.is_finite(log_energy)
    index = tf.cast(tf.where(valid[..., None], coordinates, 0.0), tf.int64)
    local = index[..., 0] * (shape[1] * shape[2]) + index[..., 1] * shape[2] + index[..., 2]
    event = tf.range(tf.cast(batch, tf.int64), dtype=tf.int64)[:, None]
    cell_id = tf.reshape(tf.where(valid, event * n_cells + local, -1), [-1])  # (B * P,)
    valid_flat = tf.reshape(valid, [-1])
    cell_ids, segment = tf.unique(cell_id, out_idx=tf.int32)
    n_segments = tf.shape(cell_ids)[0]
    position = tf.range(batch * n_points)  # flat point index

    # 2. log of the mean density of each occupied cell (log-sum-exp: no under- or overflow)
    density = tf.where(valid_flat, tf.reshape(log_density, [-1]), minus_inf)
    peak = tf.math.unsorted_segment_max(density, segment, n_segments)
    peak = tf.where(tf.math.is_finite(peak), peak, 0.0)
    summed = tf.math.unsorted_segment_sum(tf.exp(density - tf.gather(peak, segment)), segment, n_segments)
    count = tf.math.unsorted_segment_sum(tf.ones_like(density), segment, n_segments)
    log_weight = peak + tf.math.log(summed) - tf.math.log(count)  # -inf for the invalid points' segment

    # 3. Gumbel-top-k over the occupied cells of each shower, each cell represented by its first point
    cell_seed, energy_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    tiny = float(np.finfo(np.float32).tiny)
    uniform = tf.random.stateless_uniform([batch * n_points], cell_seed, minval=tiny, maxval=1.0)
    first = tf.math.unsorted_segment_min(position, segment, n_segments)
    representative = (position == tf.gather(first, segment)) & valid_flat
    key = tf.where(representative, tf.gather(log_weight, segment) - tf.math.log(-tf.math.log(uniform)), minus_inf)
    key = tf.reshape(key, [batch, n_points])
    order = tf.argsort(key, axis=1, direction="DESCENDING", stable=True)
    sorted_key = tf.gather(key, order, batch_dims=1)
    rank = tf.range(n_points)[None, :]
    take = (rank < n_hits[:, None]) & (sorted_key > minus_inf)
    scatter_at = tf.reshape(order + tf.range(batch)[:, None] * n_points, [-1, 1])
    chosen = tf.scatter_nd(scatter_at, tf.reshape(tf.cast(take, tf.int32), [-1]), [batch * n_points]) > 0

    # 4. one sampled energy per cell, drawn with probabilities proportional to the points' densities
    uniform = tf.random.stateless_uniform([batch * n_points], energy_seed, minval=tiny, maxval=1.0)
    energy_key = tf.where(valid_flat, density - tf.math.log(-tf.math.log(uniform)), minus_inf)
    best_key = tf.math.unsorted_segment_max(energy_key, segment, n_segments)
    is_best = valid_flat & (energy_key == tf.gather(best_key, segment))
    best = tf.math.unsorted_segment_min(tf.where(is_best, position, batch * n_points), segment, n_segments)
    best = tf.minimum(best, batch * n_points - 1)  # the invalid points' segment: never chosen
    cell_log_energy = tf.gather(tf.gather(tf.reshape(log_energy, [-1]), best), segment)  # per point, of its cell

    # 5. rescale to the total energy (in log space: no overflow of exp(log E) before the rescaling)
    chosen_log_energy = tf.reshape(tf.where(chosen, cell_log_energy, minus_inf), [batch, n_points])
    log_sum = tf.reduce_logsumexp(chosen_log_energy, axis=1, keepdims=True)
    log_sum = tf.where(tf.math.is_finite(log_sum), log_sum, 0.0)
    scaled = tf.exp(chosen_log_energy - log_sum) * total_energy_gev[:, None]
    # a chosen cell stays non-empty even if its share underflows float32 (log E far below the others)
    positive = tf.reshape(chosen, [batch, n_points]) & (total_energy_gev[:, None] > 0.0)
    scaled = tf.where(positive, tf.maximum(scaled, tiny), scaled)
    at = tf.boolean_mask(cell_id, chosen)[:, None]
    output_shape = tf.concat([[batch], tf.constant(shape, tf.int32)], axis=0)

    flat_size = tf.reshape(tf.cast(batch, tf.int64) * n_cells, [1])

    def dense(values: Any) -> Any:
        flat = tf.scatter_nd(at, tf.boolean_mask(tf.reshape(values, [-1]), chosen), flat_size)
        result = tf.reshape(flat, output_shape)
        result.set_shape([points.shape[0], *shape])
        return result

    hits = tf.reduce_sum(tf.cast(take, tf.int32), axis=1)
    occupied = tf.reduce_sum(tf.cast(tf.reshape(representative, [batch, n_points]), tf.int32), axis=1)
    return CellSample(dense(scaled), dense(tf.exp(chosen_log_energy)), hits, occupied)


def sample_cells(
    points: Any,
    log_density: Any,
    n_hits: Any,
    total_energy_gev: Any,
    grid_shape: Sequence[int],
    seed: Any,
) -> Any:
    """Dense showers (B, *grid_shape) float32 GeV from flow points: :func:`sample_cells_detailed`'s ``showers``.

    Every shower has exactly ``min(n_hits, occupied cells)`` distinct non-zero cells (the chosen energies are
    positive) whose sum is ``total_energy_gev``. Arguments as in :func:`sample_cells_detailed`.
    """
    return sample_cells_detailed(points, log_density, n_hits, total_energy_gev, grid_shape, seed).showers


def batch_seeds(seed: int, batch_index: int) -> np.ndarray:
    """The (3, 2) int32 stateless seeds (latent, points, cells) of batch ``batch_index`` of a run with ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(batch_index)]).generate_state(6, dtype=np.uint32)
    return (state % np.uint32(2**31 - 1)).astype(np.int32).reshape(3, 2)


class GeneratedShowers(NamedTuple):
    """Showers and their hit counts from :meth:`PointFlowShowerSampler.generate`.

    Attributes:
        showers: (N, *grid_shape) float32 GeV.
        n_hits_requested: (N,) int32, the number of hits drawn from the latent flow.
        n_hits: (N,) int32, the number of cells hit (smaller when fewer cells received a point).
        total_energy_gev: (N,) float32 GeV, the total energy drawn from the latent flow (each shower's sum).
    """

    showers: np.ndarray
    n_hits_requested: np.ndarray
    n_hits: np.ndarray
    total_energy_gev: np.ndarray


class PointFlowShowerSampler:
    """Showers from a point-cloud VAE: latent flow -> point flow -> :func:`sample_cells`, one batch at a time.

    ``model`` has ``sample_latent(incident_energy_gev (B,), seed (2,))`` -> dict with ``z``, ``n_hits`` (B,) and
    ``total_energy`` (B,) GeV; ``sample_points(z, n_points, seed (2,))`` -> (points (B, n_points, 4), log_density
    (B, n_points)); and ``grid_shape``. The three stages are compiled once (``tf.function``; traced again for a
    second batch size, then with a variable batch size) and kept: reuse a sampler across calls.
    """

    def __init__(self, model: Any, n_points: int = 10_000) -> None:
        if int(n_points) < 1:
            raise CalomlError(f"n_points must be a positive number of points per shower, got {n_points}")
        self.model = model
        self.n_points = int(n_points)
        self.grid_shape = tuple(int(size) for size in model.grid_shape)

        def latent(incident_energy_gev: Any, seed: Any) -> tuple[Any, Any, Any]:
            sample = model.sample_latent(incident_energy_gev, seed)
            return sample["z"], tf.cast(sample["n_hits"], tf.int32), tf.cast(sample["total_energy"], tf.float32)

        def points(z: Any, seed: Any) -> tuple[Any, Any]:
            return model.sample_points(z, self.n_points, seed)

        def cells(points: Any, log_density: Any, n_hits: Any, total_energy_gev: Any, seed: Any) -> tuple[Any, Any]:
            sample = sample_cells_detailed(points, log_density, n_hits, total_energy_gev, self.grid_shape, seed)
            return sample.showers, sample.n_hits

        self._latent: Callable[..., Any] = tf.function(latent, reduce_retracing=True)
        self._points: Callable[..., Any] = tf.function(points, reduce_retracing=True)
        self._cells: Callable[..., Any] = tf.function(cells, reduce_retracing=True)

    def sample_batch(
        self, incident_energy_gev: np.ndarray, seeds: np.ndarray, timings: MutableMapping[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(showers (B, *grid) GeV, requested n_hits (B,), achieved n_hits (B,), total energy (B,) GeV) for one
        batch of incident energies (B,) GeV, with the (3, 2) ``seeds`` of :func:`batch_seeds`; ``timings``
        accumulates the seconds of each stage when given (each stage's result is then waited for)."""
        energies = tf.constant(np.asarray(incident_energy_gev, np.float32))
        seeds = tf.constant(np.asarray(seeds, np.int32))
        state: dict[str, Any] = {}

        def run_latent() -> Any:
            state["z"], state["n_hits"], state["total"] = self._latent(energies, seeds[0])
            return state["z"]

        def run_points() -> Any:
            state["points"], state["log_density"] = self._points(state["z"], seeds[1])
            return state["log_density"]

        def run_cells() -> Any:
            state["showers"], state["hits"] = self._cells(
                state["points"], state["log_density"], state["n_hits"], state["total"], seeds[2]
            )
            return state["hits"]

        stages: list[tuple[str, Callable[[], Any]]] = [
            ("latent", run_latent),
            ("points", run_points),
            ("cells", run_cells),
        ]
        for name, stage in stages:
            if timings is None:
                stage()
                continue
            start = time.perf_counter()
            result = stage()
            np.asarray(result[..., :1])  # waits until the stage's result exists, on any device
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        showers, requested, achieved, total = (np.asarray(state[key]) for key in ("showers", "n_hits", "hits", "total"))
        return showers, requested, achieved, total

    def check_incident_energies(self, incident_energy_gev: np.ndarray) -> None:
        """CalomlError unless the energies (GeV) are a non-empty 1-d array, finite, positive and in the model's
        trained range: the model's own ``check_incident_energy`` when it has one, else
        ``normalization.incident_energy_range_gev`` when it has that."""
        energies = np.asarray(incident_energy_gev, np.float64)
        if energies.ndim != 1 or energies.size == 0:
            raise CalomlError(f"incident energies must be a non-empty 1-d array (GeV), got shape {energies.shape}")
        if not np.all(np.isfinite(energies)) or np.any(energies <= 0):
            raise CalomlError("incident energies must be finite and positive (GeV)")
        check = getattr(self.model, "check_incident_energy", None)
        if callable(check):
            check(energies)
            return
        trained = trained_incident_range(self.model)
        if trained is not None:
            check_incident_energy_range(energies, trained)

    def generate(
        self,
        incident_energy_gev: np.ndarray,
        *,
        batch_size: int = 100,
        seed: int,
        timings: MutableMapping[str, float] | None = None,
    ) -> GeneratedShowers:
        """Showers for each incident energy (N,) GeV, ``batch_size`` at a time.

        Batch ``k`` draws with :func:`batch_seeds` ``(seed, k)``; the last batch is padded to ``batch_size`` (one
        traced shape) and the padding dropped. The output depends on ``seed`` and on ``batch_size`` (the model
        draws one batch from one seed). ``timings``, when given, accumulates seconds per stage (:data:`STAGES`).
        Incident energies are checked first (:meth:`check_incident_energies`).
        """
        parts: tuple[list[np.ndarray], ...] = ([], [], [], [])
        for _, batch in self.iter_batches(incident_energy_gev, batch_size=batch_size, seed=seed, timings=timings):
            for part, values in zip(parts, batch, strict=True):
                part.append(values)
        showers, requested, achieved, total = (np.concatenate(part) for part in parts)
        return GeneratedShowers(showers, requested, achieved, total)

    def iter_batches(
        self,
        incident_energy_gev: np.ndarray,
        *,
        batch_size: int = 100,
        seed: int,
        timings: MutableMapping[str, float] | None = None,
    ) -> Iterator[tuple[np.ndarray, GeneratedShowers]]:
        """(incident energies (b,) GeV, their :class:`GeneratedShowers`) batch by batch: the batches
        :meth:`generate` concatenates (same seeds, same padding), for writing large outputs one batch at a time.
        The energies are checked before the first batch is drawn."""
        energies = np.asarray(incident_energy_gev, np.float32).reshape(-1)
        self.check_incident_energies(energies)
        if int(batch_size) < 1:
            raise CalomlError(f"batch_size must be positive, got {batch_size}")
        batch_size = min(int(batch_size), energies.size)
        for batch_index, start in enumerate(range(0, energies.size, batch_size)):
            chunk = energies[start : start + batch_size]
            padded = np.concatenate([chunk, np.full(batch_size - chunk.size, chunk[-1], np.float32)])
            showers, requested, achieved, total = (
                values[: chunk.size] for values in self.sample_batch(padded, batch_seeds(seed, batch_index), timings)
            )
            yield (
                chunk,
                GeneratedShowers(
                    showers.astype(np.float32, copy=False),
                    requested.astype(np.int32),
                    achieved.astype(np.int32),
                    total.astype(np.float32),
                ),
            )


def trained_incident_range(model: Any) -> tuple[float, float] | None:
    """A model's trained incident-energy range (GeV) from its ``normalization`` (object or dict); None if absent."""
    normalization = getattr(model, "normalization", None)
    if isinstance(normalization, dict):
        trained = normalization.get("incident_energy_range_gev")
    else:
        trained = getattr(normalization, "incident_energy_range_gev", None)
    return None if trained is None else (float(trained[0]), float(trained[1]))


def generate_showers(
    model: Any,
    incident_energy_gev: np.ndarray,
    *,
    n_points: int = 10_000,
    batch_size: int = 100,
    seed: int,
    timings: MutableMapping[str, float] | None = None,
) -> np.ndarray:
    """(N, *model.grid_shape) float32 GeV showers of a point-cloud VAE for incident energies (N,) GeV.

    ``n_points`` flow points per shower feed :func:`sample_cells`; see :meth:`PointFlowShowerSampler.generate`
    for the seeds, batching, ``timings`` and the incident-energy check. Reuse a :class:`PointFlowShowerSampler` to
    avoid tracing again on every call.
    """
    sampler = PointFlowShowerSampler(model, n_points)
    return sampler.generate(incident_energy_gev, batch_size=batch_size, seed=seed, timings=timings).showers
