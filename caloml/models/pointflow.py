"""CaloPointFlow (seed 000, models.md section 3): a point-cloud VAE whose prior and decoder are normalizing flows.

A shower is a set of hits x_i = (c_1, c_2, c_3, log E_i): continuous (dequantized) cell coordinates along the three
grid axes and the log of the hit energy in GeV (see :class:`caloml.data.transforms.ToPointCloud`). Three networks:

* encoder q(z | X) (:class:`PointEncoder`): per-point MLP on the normalized points, masked mean and sum pooling, MLP
  to the mean and log-variance of ``latent_dim`` Gaussian latent variables. z is enriched with two deterministic
  dimensions, the normalized log n_hits and log total energy, so that z has ``latent_dim + 2`` dimensions.
* latent flow f (:class:`~caloml.models.flows.ConditionalFlow`): the density of z given the normalized log
  incident energy; at generation it produces z, and with it n_hits and the total energy.
* point flow g: the density of each normalized point given z, the same flow for every point.

Loss: the negative ELBO of the seed's equation (1), per shower,

    L_recon   = -sum_{real hits i} log p_g(x_i | z)                       (data units, see below)
    L_prior   = -log p_f(z | E_in)
    L_entropy = -(d/2)(1 + ln 2 pi) - sum_{i <= d} ln sigma_i             (d = latent_dim, the stochastic dims)

with z = mu + sigma * eps (reparameterization). ``loss_weighting="per_dimension"`` (the authors' later version)
optimizes ``L_recon / 4 + L_prior / (latent_dim + 2) + L_entropy / latent_dim`` instead of the plain sum: each
term divided by the dimension of the density it is (a point has 4 dimensions, z has latent_dim + 2 because the
prior models n_hits and the total energy too, the entropy covers the latent_dim stochastic dimensions only).
models.md divides the prior by latent_dim; the authors' z has no deterministic part, ours does, and
dividing by latent_dim + 2 keeps the prior a per-dimension log-likelihood like the other two terms. The
per-shower objective is summed and divided by the *global* batch size (:func:`tf.nn.compute_average_loss`), right
under ``tf.distribute``. Metrics: ``loss`` (the optimized objective per shower: the negative ELBO with the "sum"
weighting), ``reconstruction``, ``prior``, ``entropy`` (unweighted terms per shower).

Design choices (documented deviations and handling):

* n_hits is an integer: in training and evaluation its log is dequantized, log(n_hits - 0.5 + u) with u uniform
  in [0, 1), so that the latent flow learns a density rather than spikes; generation reads
  ``n_hits = clip(round(exp(log n)), 1, number of cells)``, the inverse of that dequantization.
* Densities in data units: ``point_log_prob``, the ``log_density`` of ``sample_points`` and the reconstruction term
  (so ``loss`` and the validation negative ELBO) include the Jacobian of the normalization, ``-sum(log point_std)``
  per point (per shower: the number of points present times ``sum(log point_std)``). It is constant in the
  weights, so the gradients and the training are those of the normalized-unit loss, while the reported values are
  the negative ELBO of the data (continuous cell coordinates, log GeV), comparable between runs whose
  normalizations differ. (n_hits and the total energy enter z in normalized units: the prior term is the density
  of z, whose own units are the same for every run of one latent size.)
* Padding: points where ``mask`` is False are replaced by zeros before any network sees them (garbage or NaN in
  padded positions changes nothing, gradients included); an all-padding row gives finite values (pooling over
  max(count, 1) points, log n_hits of max(n_hits, 1), log of max(total energy, 1e-12 GeV)). The data side drops
  zero-hit showers and NaN points (:meth:`PointCloudNormalization.from_data` refuses them).
* Incident energies outside ``incident_energy_range_gev`` (widened by a relative 1e-6) or not finite: eager
  calls raise :class:`~caloml.errors.CalomlError`; inside a ``tf.function`` (export signatures) a
  ``tf.debugging.Assert`` fails with a message naming the trained range (``tf.errors.InvalidArgumentError``).
  Energies are never clipped silently.
* Sampled points are not clipped to the grid: points outside it carry their true density; the cell sampler drops
  them.
* Truncated clouds (more hits than ``max_points`` of the data pipeline): the reconstruction sums over the points
  present (``mask``), while n_hits and the total energy in z describe the whole shower.
* The networks are built in ``__init__`` and the optimizer in ``compile``, so ``fit`` needs no symbolic build (under
  ``MirroredStrategy`` Keras 3 would average a bool batch for it and fail); compile inside ``strategy.scope()``.

Sizes: every flow layer's conditioner has ``hidden_units`` units (``conditioner_blocks`` residual blocks for the
splines, as many masked hidden layers for MADE); its last layer starts at zero, so a new model's flows are the
identity (p_g and p_f start as standard normals in normalized units).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models.base import CalomlModel
from caloml.models.flows import FLOW_KINDS, ConditionalFlow

__all__ = [
    "LOSS_WEIGHTINGS",
    "METRIC_NAMES",
    "POINT_DIM",
    "PointCloudNormalization",
    "PointEncoder",
    "PointFlowVAE",
    "check_incident_energy_range",
    "incident_energy_bounds",
    "incident_energy_bounds_float32",
]

#: Dimensions of a point: three continuous cell coordinates and log(E / GeV).
POINT_DIM = 4
#: The metrics of ``fit`` / ``evaluate``.
METRIC_NAMES = ("loss", "reconstruction", "prior", "entropy")
#: Values of ``PointFlowVAE(loss_weighting=...)``.
LOSS_WEIGHTINGS = ("sum", "per_dimension")

#: Smallest standard deviation of a normalization statistic (a constant feature would otherwise divide by zero).
_STD_FLOOR = 1e-2
#: Relative tolerance of the incident-energy range check: [low * (1 - t), high * (1 + t)] (float32 round-off).
_RANGE_TOLERANCE = 1e-6
#: Smallest total energy (GeV) whose log is taken (an empty shower gives a finite, very low value).
_MIN_TOTAL_ENERGY_GEV = 1e-12
#: Soft clamp of the encoder's log-variance: log_var = c * tanh(raw / c).
_LOG_VAR_CLAMP = 10.0
#: The log of a sampled total energy is clipped to +-this (float32 exp overflows near 88).
_MAX_ABS_LOG_ENERGY = 80.0
_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------- normalization


def _floats(values: Sequence[float], n: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise CalomlError(f"PointCloudNormalization: {name} needs {n} values, got {len(out)}")
    return out


@dataclass(frozen=True)
class PointCloudNormalization:
    """Normalization statistics of a point-cloud training set, stored in the model's config.

    Points are normalized per dimension, ``(x - point_mean) / point_std`` (cell coordinates and log(E / GeV));
    log n_hits, log(total energy / GeV) and log(incident energy / GeV) likewise with their means and standard
    deviations. ``incident_energy_range_gev`` is the (min, max) incident energy of the training data (GeV), the
    range the model may be asked to generate. Standard deviations are floored at 0.01.
    """

    grid_shape: tuple[int, int, int]
    point_mean: tuple[float, float, float, float]
    point_std: tuple[float, float, float, float]
    log_n_hits_mean: float
    log_n_hits_std: float
    log_total_energy_mean: float
    log_total_energy_std: float
    incident_energy_range_gev: tuple[float, float]
    log_incident_mean: float
    log_incident_std: float

    def __post_init__(self) -> None:
        grid = tuple(int(n) for n in self.grid_shape)
        if len(grid) != 3 or min(grid) < 1:
            raise CalomlError(f"PointCloudNormalization: grid_shape must be 3 positive ints, got {self.grid_shape}")
        object.__setattr__(self, "grid_shape", grid)
        object.__setattr__(self, "point_mean", _floats(self.point_mean, POINT_DIM, "point_mean"))
        object.__setattr__(self, "point_std", _floats(self.point_std, POINT_DIM, "point_std"))
        object.__setattr__(
            self, "incident_energy_range_gev", _floats(self.incident_energy_range_gev, 2, "incident_energy_range_gev")
        )
        for name in ("log_n_hits_mean", "log_n_hits_std", "log_total_energy_mean", "log_total_energy_std"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("log_incident_mean", "log_incident_std"):
            object.__setattr__(self, name, float(getattr(self, name)))
        scalars = [getattr(self, f.name) for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), float)]
        if not all(math.isfinite(v) for v in [*self.point_mean, *self.point_std, *scalars]):
            raise CalomlError("PointCloudNormalization: statistics must be finite")
        stds = [*self.point_std, self.log_n_hits_std, self.log_total_energy_std, self.log_incident_std]
        if min(stds) <= 0:
            raise CalomlError(f"PointCloudNormalization: standard deviations must be positive, got {stds}")
        low, high = self.incident_energy_range_gev
        if not 0 < low <= high:
            raise CalomlError(f"PointCloudNormalization: bad incident_energy_range_gev ({low}, {high})")

    @classmethod
    def from_data(
        cls,
        points: Any,
        mask: Any,
        n_hits: Any,
        total_energy_gev: Any,
        incident_energy_gev: Any,
        grid_shape: Sequence[int],
    ) -> PointCloudNormalization:
        """Statistics of a training set (NumPy arrays).

        ``points`` (N, P, 4) (continuous cell coordinates, log GeV), ``mask`` (N, P) bool, ``n_hits`` (N,),
        ``total_energy_gev`` (N,) GeV, ``incident_energy_gev`` (N,) GeV. Raises :class:`CalomlError` on
        inconsistent shapes, non-finite real points, zero-hit showers and non-positive or non-finite energies.
        """
        points = np.asarray(points, dtype=np.float64)
        mask = np.asarray(mask, dtype=bool)
        n_hits = np.asarray(n_hits).reshape(-1)
        total = np.asarray(total_energy_gev, dtype=np.float64).reshape(-1)
        incident = np.asarray(incident_energy_gev, dtype=np.float64).reshape(-1)
        n = len(points)
        if points.ndim != 3 or points.shape[-1] != POINT_DIM or mask.shape != points.shape[:2]:
            raise CalomlError(f"points {points.shape} must be (N, P, 4) and mask {mask.shape} (N, P)")
        if n == 0 or not len(n_hits) == len(total) == len(incident) == n:
            raise CalomlError(
                f"need the same number (> 0) of showers: points {n}, n_hits {len(n_hits)}, "
                f"total_energy {len(total)}, incident_energy {len(incident)}"
            )
        empty = np.flatnonzero((n_hits < 1) | ~mask.any(axis=1))
        if empty.size:
            raise CalomlError(f"shower {empty[0]} has no hits ({empty.size} zero-hit showers); drop them first")
        bad = np.flatnonzero(~np.isfinite(points).all(axis=2) & mask)
        if bad.size:
            raise CalomlError(f"non-finite point in shower {bad[0] // mask.shape[1]} (NaN or inf in the point cloud)")
        for name, values in (("total_energy_gev", total), ("incident_energy_gev", incident)):
            bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
            if bad.size:
                raise CalomlError(f"{name} must be finite and positive; got {values[bad[0]]} at shower {bad[0]}")
        real = points[mask]

        def stats(values: np.ndarray) -> tuple[float, float]:
            return float(np.mean(values)), max(float(np.std(values)), _STD_FLOOR)

        log_n = stats(np.log(n_hits.astype(np.float64)))
        log_total = stats(np.log(total))
        log_incident = stats(np.log(incident))
        point_std = np.maximum(real.std(axis=0), _STD_FLOOR)
        return cls(
            grid_shape=tuple(int(g) for g in grid_shape),  # type: ignore[arg-type]
            point_mean=tuple(float(v) for v in real.mean(axis=0)),  # type: ignore[arg-type]
            point_std=tuple(float(v) for v in point_std),  # type: ignore[arg-type]
            log_n_hits_mean=log_n[0],
            log_n_hits_std=log_n[1],
            log_total_energy_mean=log_total[0],
            log_total_energy_std=log_total[1],
            incident_energy_range_gev=(float(incident.min()), float(incident.max())),
            log_incident_mean=log_incident[0],
            log_incident_std=log_incident[1],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict (tuples as lists)."""
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointCloudNormalization:
        """Inverse of :meth:`to_dict`; raises :class:`CalomlError` on missing or unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = names - set(data), set(data) - names
        if missing or unknown:
            raise CalomlError(
                f"PointCloudNormalization: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            )
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, (list, tuple)) else value for key, value in data.items()
        }
        return cls(**values)

    @property
    def n_cells(self) -> int:
        """Number of cells of the grid (the largest possible n_hits)."""
        return int(np.prod(self.grid_shape))


# ---------------------------------------------------------------------------------------------- encoder


@keras.saving.register_keras_serializable(package="caloml")
class PointEncoder(keras.layers.Layer):
    """Permutation-invariant encoder (Deep Sets / Particle Flow Network): (points, mask) -> (mean, log_var).

    ``points`` (B, P, 4) normalized, ``mask`` (B, P) bool. Per-point MLP ``encoder_units`` (ReLU-like), pooled as
    the concatenation of the masked mean and the masked sum divided by ``sum_scale`` (a typical number of hits),
    then an MLP ``encoder_units`` and a linear layer to (B, latent_dim) means and (B, latent_dim) log-variances
    (soft-clamped to (-10, 10)). Padded points must already be zero (:class:`PointFlowVAE` does it); they are
    also excluded from the pooling.
    """

    def __init__(
        self,
        latent_dim: int,
        encoder_units: Sequence[int] = (128, 128),
        sum_scale: float = 1.0,
        activation: str = "silu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if latent_dim < 1 or not encoder_units or min(encoder_units) < 1 or not sum_scale > 0:
            raise ValueError(f"PointEncoder: bad latent_dim {latent_dim}, encoder_units {encoder_units}, sum_scale")
        self.latent_dim = int(latent_dim)
        self.encoder_units = [int(u) for u in encoder_units]
        self.sum_scale = float(sum_scale)
        self.activation_name = str(activation)
        self.seed = seed

        def dense(units: int, offset: int, activation: str | None) -> Any:
            initializer = keras.initializers.GlorotUniform(seed=None if seed is None else int(seed) + offset)
            return keras.layers.Dense(units, activation=activation, kernel_initializer=initializer)

        self.point_layers = [dense(u, i, activation) for i, u in enumerate(self.encoder_units)]
        self.shower_layers = [dense(u, 100 + i, activation) for i, u in enumerate(self.encoder_units)]
        self.output_layer = dense(2 * self.latent_dim, 200, None)

    def build(self, input_shape: Any = None) -> None:
        width = POINT_DIM
        for layer in self.point_layers:
            layer.build((None, None, width))
            width = layer.units
        width *= 2
        for layer in self.shower_layers:
            layer.build((None, width))
            width = layer.units
        self.output_layer.build((None, width))
        self.built = True

    def call(self, points: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        weights = tf.cast(mask, points.dtype)[..., None]  # (B, P, 1)
        h = points
        for layer in self.point_layers:
            h = layer(h)
        h = h * weights
        total = tf.reduce_sum(h, axis=1)
        count = tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        pooled = tf.concat([total / count, total / self.sum_scale], axis=-1)
        for layer in self.shower_layers:
            pooled = layer(pooled)
        out = self.output_layer(pooled)
        mean, raw_log_var = out[:, : self.latent_dim], out[:, self.latent_dim :]
        return mean, _LOG_VAR_CLAMP * tf.tanh(raw_log_var / _LOG_VAR_CLAMP)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            latent_dim=self.latent_dim,
            encoder_units=list(self.encoder_units),
            sum_scale=self.sum_scale,
            activation=self.activation_name,
            seed=self.seed,
        )
        return config


# ---------------------------------------------------------------------------------------------- the model


def _vector(values: Any) -> tf.Tensor:
    return tf.reshape(tf.cast(values, tf.float32), (-1,))


def incident_energy_bounds(trained_range_gev: Sequence[float]) -> tuple[float, float]:
    """The incident energies (GeV) a model accepts: its trained range widened by a relative ``_RANGE_TOLERANCE``
    (1e-6) of each end, ``[low * (1 - 1e-6), high * (1 + 1e-6)]``: float32 round-off, never extrapolation."""
    low, high = (float(v) for v in trained_range_gev)
    return low * (1.0 - _RANGE_TOLERANCE), high * (1.0 + _RANGE_TOLERANCE)


def incident_energy_bounds_float32(trained_range_gev: Sequence[float]) -> tuple[np.float32, np.float32]:
    """float32 bounds for graph-side checks (export signatures): :func:`incident_energy_bounds` rounded inwards,
    so that a float32 energy passes exactly when :func:`check_incident_energy_range` accepts it."""
    low, high = incident_energy_bounds(trained_range_gev)
    low32, high32 = np.float32(low), np.float32(high)
    if float(low32) < low:
        low32 = np.nextafter(low32, np.float32(np.inf))
    if float(high32) > high:
        high32 = np.nextafter(high32, np.float32(-np.inf))
    return low32, high32


def check_incident_energy_range(
    incident_energy_gev: Any, trained_range_gev: Sequence[float], what: str = "incident energy"
) -> None:
    """Raise a one-line :class:`CalomlError` unless every value (GeV) is finite and inside
    :func:`incident_energy_bounds` of the trained range: the one incident-energy check of the PointFlow code."""
    energy = np.atleast_1d(np.asarray(incident_energy_gev, dtype=np.float64)).reshape(-1)
    low, high = incident_energy_bounds(trained_range_gev)
    bad = np.flatnonzero(~(np.isfinite(energy) & (energy >= low) & (energy <= high)))
    if bad.size:
        trained_low, trained_high = (float(v) for v in trained_range_gev)
        raise CalomlError(
            f"{what} {energy[bad[0]]:g} GeV at index {bad[0]} is outside the range the PointFlow model was trained "
            f"on, [{trained_low:g}, {trained_high:g}] GeV ({bad.size} value(s))"
        )


@keras.saving.register_keras_serializable(package="caloml")
class PointFlowVAE(CalomlModel, keras.Model):
    """CaloPointFlow: encoder, latent flow and point flow in one Keras model, trained with ``fit``.

    Parameters
    ----------
    normalization:
        :class:`PointCloudNormalization` (or its dict) of the training data; saved in the config.
    latent_dim:
        Number of stochastic latent dimensions d; z has ``latent_dim + 2`` (normalized log n_hits, log E_sum).
    flow:
        ``"rqs"`` (spline coupling layers with ResNet conditioners) or ``"maf"`` (affine MADE layers) for both flows.
    n_latent_layers, n_point_layers:
        Flow layers of the latent flow and of the point flow.
    n_bins, spline_bound:
        Spline bins and spline domain [-spline_bound, spline_bound] (identity outside), in normalized units.
    hidden_units:
        Width of the conditioner networks; ``conditioner_blocks`` residual blocks (or MADE hidden layers) each.
    encoder_units:
        Widths of the encoder's per-point MLP and of its per-shower MLP.
    loss_weighting:
        ``"sum"`` (the negative ELBO) or ``"per_dimension"`` (see the module docstring).
    seed:
        Seed of the initializers, the flows' splits and of the training draws; None: random, recorded.
    coupling_rule:
        Rule of the coupling splits (:func:`caloml.models.flows.coupling_splits`): ``"alternating"`` (new models)
        or ``"legacy"`` (models saved before the key existed load with it).
    """

    def __init__(
        self,
        normalization: PointCloudNormalization | Mapping[str, Any],
        *,
        latent_dim: int = 32,
        flow: str = "rqs",
        n_latent_layers: int = 6,
        n_point_layers: int = 8,
        n_bins: int = 8,
        spline_bound: float = 5.0,
        hidden_units: int = 128,
        conditioner_blocks: int = 2,
        encoder_units: Sequence[int] = (128, 128),
        loss_weighting: str = "sum",
        seed: int | None = None,
        coupling_rule: str = "alternating",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(normalization, PointCloudNormalization):
            normalization = PointCloudNormalization.from_dict(normalization)
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        seed = int(seed) if seed is not None else random.SystemRandom().randrange(2**31 - 2**20)
        self.normalization = normalization
        self.latent_dim = int(latent_dim)
        self.flow = flow
        self.n_latent_layers = int(n_latent_layers)
        self.n_point_layers = int(n_point_layers)
        self.n_bins = int(n_bins)
        self.spline_bound = float(spline_bound)
        self.hidden_units = int(hidden_units)
        self.conditioner_blocks = int(conditioner_blocks)
        self.encoder_units = [int(u) for u in encoder_units]
        self.loss_weighting = loss_weighting
        self.seed: int = seed
        self.coupling_rule = coupling_rule

        self.encoder = PointEncoder(
            self.latent_dim,
            self.encoder_units,
            sum_scale=math.exp(normalization.log_n_hits_mean),
            seed=seed,
            name="encoder",
        )
        flow_options: dict[str, Any] = {
            "flow": flow,
            "n_bins": self.n_bins,
            "spline_bound": self.spline_bound,
            "hidden_units": self.hidden_units,
            "n_blocks": self.conditioner_blocks,
            "coupling_rule": coupling_rule,
        }
        self.latent_flow = ConditionalFlow(
            self.z_dim, 1, n_layers=self.n_latent_layers, seed=seed + 10_000, name="latent_flow", **flow_options
        )
        self.point_flow = ConditionalFlow(
            POINT_DIM, self.z_dim, n_layers=self.n_point_layers, seed=seed + 20_000, name="point_flow", **flow_options
        )
        self.encoder.build(None)
        # Training draws are stateless, seeded by (seed, draw number), see CalomlModel.
        self.add_draw_counter(seed + 30_000)
        self.track_metrics(METRIC_NAMES)
        norm = normalization
        self._point_mean = tf.constant(norm.point_mean, tf.float32)
        self._point_std = tf.constant(norm.point_std, tf.float32)
        self._log_point_jacobian = -float(np.sum(np.log(norm.point_std)))
        self.built = True

    # ------------------------------------------------------------------ properties

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """The calorimeter grid (3 ints) the model was trained on."""
        return self.normalization.grid_shape

    @property
    def z_dim(self) -> int:
        """Dimension of z: latent_dim + 2 (normalized log n_hits and log total energy last)."""
        return self.latent_dim + 2

    # ------------------------------------------------------------------ normalization helpers

    def normalize_points(self, points: Any) -> tf.Tensor:
        """Data-unit points (..., 4) -> normalized points."""
        return (tf.cast(points, tf.float32) - self._point_mean) / self._point_std

    def denormalize_points(self, points: Any) -> tf.Tensor:
        """Normalized points (..., 4) -> data units (continuous cell coordinates, log GeV)."""
        return tf.cast(points, tf.float32) * self._point_std + self._point_mean

    def _normalized_log_n_hits(self, n_hits: Any, noise: tf.Tensor | None = None) -> tf.Tensor:
        n = tf.maximum(_vector(n_hits), 1.0)
        if noise is not None:
            n = n - 0.5 + noise
        norm = self.normalization
        return (tf.math.log(n) - norm.log_n_hits_mean) / norm.log_n_hits_std

    def _normalized_log_total(self, total_energy_gev: Any) -> tf.Tensor:
        total = tf.maximum(_vector(total_energy_gev), _MIN_TOTAL_ENERGY_GEV)
        norm = self.normalization
        return (tf.math.log(total) - norm.log_total_energy_mean) / norm.log_total_energy_std

    def _incident_context(self, incident_energy_gev: Any) -> tf.Tensor:
        norm = self.normalization
        log_e = tf.math.log(_vector(incident_energy_gev))
        return ((log_e - norm.log_incident_mean) / norm.log_incident_std)[:, None]

    # ------------------------------------------------------------------ encoder and densities

    def _encode_stochastic(self, points: Any, mask: Any) -> tuple[tf.Tensor, tf.Tensor]:
        mask = tf.cast(mask, tf.bool)
        normalized = tf.where(mask[..., None], self.normalize_points(points), 0.0)
        return self.encoder(normalized, mask)

    def encode(self, points: Any, mask: Any, n_hits: Any, total_energy: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Mean and log-variance of q(z | X), each (B, latent_dim + 2).

        ``points`` (B, P, 4) data units, ``mask`` (B, P) bool, ``n_hits`` (B,), ``total_energy`` (B,) GeV. The last
        two dimensions are the normalized log n_hits and log total energy (deterministic: their log_var is 0 and
        is not used).
        """
        mean, log_var = self._encode_stochastic(points, mask)
        extra = tf.stack([self._normalized_log_n_hits(n_hits), self._normalized_log_total(total_energy)], axis=-1)
        return tf.concat([mean, extra], axis=-1), tf.concat([log_var, tf.zeros_like(extra)], axis=-1)

    def point_log_prob(self, points: Any, z: Any) -> tf.Tensor:
        """log density (B, P) of points (B, P, 4) in data units given z (B, latent_dim + 2)."""
        z = tf.cast(z, tf.float32)
        log_prob = self.point_flow.log_prob(self.normalize_points(points), z[:, None, :])
        return log_prob + self._log_point_jacobian

    def latent_log_prob(self, z: Any, incident_energy_gev: Any) -> tf.Tensor:
        """log p_f(z | E_in) (B,) of z (B, latent_dim + 2) given incident energies (B,) GeV."""
        return self.latent_flow.log_prob(tf.cast(z, tf.float32), self._incident_context(incident_energy_gev))

    def elbo_terms(self, batch: Mapping[str, Any], seed: Any) -> dict[str, tf.Tensor]:
        """Per-shower loss terms (B,) of a batch: ``reconstruction``, ``prior``, ``entropy`` and ``loss``.

        ``batch``: ``points`` (B, P, 4) data units, ``mask`` (B, P), ``n_hits`` (B,), ``incident_energy`` (B,)
        GeV, ``total_energy`` (B,) GeV. ``seed`` (2,): the stateless seed of eps and of the n_hits dequantization.
        ``loss`` is the optimized objective (weighted by ``loss_weighting``).
        """
        mask = tf.cast(batch["mask"], tf.bool)
        points = tf.where(mask[..., None], self.normalize_points(batch["points"]), 0.0)
        mean, log_var = self.encoder(points, mask)
        batch_size = tf.shape(mean)[0]
        seed = tf.cast(seed, tf.int64)
        eps = tf.random.stateless_normal(
            tf.stack([batch_size, self.latent_dim]), seed=tf.random.experimental.stateless_fold_in(seed, 0)
        )
        noise = tf.random.stateless_uniform(
            tf.stack([batch_size]), seed=tf.random.experimental.stateless_fold_in(seed, 1)
        )
        z_stochastic = mean + tf.exp(0.5 * log_var) * eps
        extra = tf.stack(
            [self._normalized_log_n_hits(batch["n_hits"], noise), self._normalized_log_total(batch["total_energy"])],
            axis=-1,
        )
        z = tf.concat([z_stochastic, extra], axis=-1)
        # data units: the normalization's Jacobian -sum(log point_std) per point (a constant: gradients unchanged)
        point_log_prob = self.point_flow.log_prob(points, z[:, None, :]) + self._log_point_jacobian
        reconstruction = -tf.reduce_sum(tf.where(mask, point_log_prob, 0.0), axis=1)
        prior = -self.latent_flow.log_prob(z, self._incident_context(batch["incident_energy"]))
        d = float(self.latent_dim)
        entropy = -0.5 * d * (1.0 + _LOG_2PI) - 0.5 * tf.reduce_sum(log_var, axis=-1)
        if self.loss_weighting == "per_dimension":
            loss = reconstruction / POINT_DIM + prior / self.z_dim + entropy / d
        else:
            loss = reconstruction + prior + entropy
        return {"loss": loss, "reconstruction": reconstruction, "prior": prior, "entropy": entropy}

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, tf.Tensor]:
        """``encode`` of a batch dict (``points``, ``mask``, ``n_hits``, ``total_energy``): {"mean", "log_var"}."""
        mean, log_var = self.encode(inputs["points"], inputs["mask"], inputs["n_hits"], inputs["total_energy"])
        return {"mean": mean, "log_var": log_var}

    # ------------------------------------------------------------------ generation

    def check_incident_energy(self, incident_energy_gev: Any, what: str = "incident energy") -> None:
        """Raise :class:`CalomlError` unless every incident energy (GeV) is finite and inside the trained range
        (see :func:`check_incident_energy_range`; ``what`` names the values in the message)."""
        check_incident_energy_range(incident_energy_gev, self.normalization.incident_energy_range_gev, what)

    def _incident_bounds(self) -> tuple[float, float]:
        return incident_energy_bounds(self.normalization.incident_energy_range_gev)

    def _assert_incident_energy(self, energy: tf.Tensor) -> list[Any]:
        if tf.executing_eagerly():
            self.check_incident_energy(energy.numpy())
            return []
        low, high = self._incident_bounds()
        trained_low, trained_high = self.normalization.incident_energy_range_gev
        inside = tf.reduce_all(tf.logical_and(energy >= low, energy <= high))  # False for NaN
        message = (
            f"PointFlowVAE: incident energy outside the trained range [{trained_low:g}, {trained_high:g}] GeV "
            "(or not finite); energies:"
        )
        return [tf.debugging.Assert(inside, [message, energy], summarize=8)]

    def sample_latent(self, incident_energy_gev: Any, seed: Any) -> dict[str, tf.Tensor]:
        """Draw z from the latent flow for incident energies (B,) GeV, with a stateless seed (2,).

        Returns ``z`` (B, latent_dim + 2) float32, ``n_hits`` (B,) int32 in [1, number of cells] (rounded
        exp of the denormalized second-to-last dimension) and ``total_energy`` (B,) float32 GeV > 0 (exp of the
        denormalized last dimension). Energies outside the trained range raise (see the module docstring).
        """
        energy = _vector(incident_energy_gev)
        with tf.control_dependencies(self._assert_incident_energy(energy)):
            context = self._incident_context(energy)
        z, _ = self.latent_flow.sample(context, seed)
        norm = self.normalization
        log_n = z[:, -2] * norm.log_n_hits_std + norm.log_n_hits_mean
        log_n = tf.clip_by_value(log_n, 0.0, math.log(norm.n_cells))
        n_hits = tf.clip_by_value(tf.cast(tf.round(tf.exp(log_n)), tf.int32), 1, norm.n_cells)
        log_total = z[:, -1] * norm.log_total_energy_std + norm.log_total_energy_mean
        total = tf.exp(tf.clip_by_value(log_total, -_MAX_ABS_LOG_ENERGY, _MAX_ABS_LOG_ENERGY))
        return {"z": z, "n_hits": n_hits, "total_energy": total}

    def sample_points(self, z: Any, n_points: Any, seed: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Draw ``n_points`` points per shower from the point flow given z (B, latent_dim + 2).

        Returns ``points`` (B, n_points, 4) in data units (continuous cell coordinates, log(E / GeV); not clipped to
        the grid) and ``log_density`` (B, n_points) float32, the log density of each point in data units.
        ``seed``: stateless seed (2,).
        """
        z = tf.cast(z, tf.float32)
        context = z[:, None, :]
        shape = tf.stack([tf.shape(z)[0], tf.cast(n_points, tf.int32)])
        normalized, log_prob = self.point_flow.sample(context, seed, sample_shape=shape)
        return self.denormalize_points(normalized), log_prob + self._log_point_jacobian

    # ------------------------------------------------------------------ training

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One gradient step on a batch dict (see :meth:`elbo_terms`); returns the running means of the metrics."""
        batch = data[0] if isinstance(data, (tuple, list)) else data
        seed = self.next_seed(per_replica=True)
        with tf.GradientTape() as tape:
            terms = self.elbo_terms(batch, seed)
            loss = tf.nn.compute_average_loss(terms["loss"])
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.update_metrics(terms)
        return self.metric_results()

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """The metrics of a batch (a one-sample estimate of the negative ELBO), without a gradient step."""
        batch = data[0] if isinstance(data, (tuple, list)) else data
        self.update_metrics(self.elbo_terms(batch, self.next_seed(per_replica=True)))
        return self.metric_results()

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "normalization": self.normalization.to_dict(),
            "latent_dim": self.latent_dim,
            "flow": self.flow,
            "n_latent_layers": self.n_latent_layers,
            "n_point_layers": self.n_point_layers,
            "n_bins": self.n_bins,
            "spline_bound": self.spline_bound,
            "hidden_units": self.hidden_units,
            "conditioner_blocks": self.conditioner_blocks,
            "encoder_units": list(self.encoder_units),
            "loss_weighting": self.loss_weighting,
            "seed": self.seed,
            "coupling_rule": self.coupling_rule,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PointFlowVAE:
        """A config saved before ``coupling_rule`` existed loads with the ``"legacy"`` splits it was trained with."""
        return cls(**{"coupling_rule": "legacy", **config})
