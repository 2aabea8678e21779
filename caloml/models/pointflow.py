"""CaloPointFlow ("CaloPointFlow: Generating Calorimeter Showers as Point Clouds", arXiv:2211.15380): the VAE.

A shower is a set of hits x_i = (c_1, c_2, c_3, log E_i): continuous (dequantized) cell coordinates along the three
grid axes and the log of the hit energy in GeV (see :class:`caloml.data.transforms.ToPointCloud`).
:class:`PointFlowVAE` joins three networks in one Keras model trained with ``fit``:

* the encoder q(z | X) (:class:`~caloml.models.pointflow_encoder.PointEncoder`) gives ``latent_dim`` Gaussian latent
  variables; z adds two deterministic dimensions, the normalized log n_hits and log total energy
  (``latent_dim + 2`` in all);
* the latent flow f (:class:`~caloml.models.flows.ConditionalFlow`): the density of z given the normalized log
  incident energy; at generation it produces z, and with it n_hits and the total energy;
* the point flow g: the density of each normalized point given z, the same flow for every point.

Loss: the negative ELBO of the paper's equation (1), per shower,

    L_recon   = -sum_{real hits i} log p_g(x_i | z)                       (data units)
    L_prior   = -log p_f(z | E_in)
    L_entropy = -(d/2)(1 + ln 2 pi) - sum_{i <= d} ln sigma_i             (d = latent_dim, the stochastic dims)

with z = mu + sigma * eps. ``loss_weighting="per_dimension"`` optimizes ``L_recon / 4 + L_prior / (latent_dim + 2)
+ L_entropy / latent_dim`` instead of the plain sum. The per-shower objective is divided by the *global* batch size
(:func:`tf.nn.compute_average_loss`). Metrics: ``loss``, ``reconstruction``, ``prior``, ``entropy`` per shower.

Normalization statistics and the incident-energy range check: :mod:`caloml.models.pointflow_normalization`; from
points to showers of distinct cells: :mod:`caloml.models.pointflow_sampler`. The design choices (n_hits
dequantization, densities in data units, padding, incident energies outside the trained range, truncated clouds)
are described in ``docs/pointflow.md``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.models.base import CalomlModel, attribute_config
from caloml.models.batch_contract import BatchContract, BatchKey
from caloml.models.flows import FLOW_KINDS, ConditionalFlow
from caloml.models.pointflow_encoder import PointEncoder
from caloml.models.pointflow_normalization import (
    POINT_DIM,
    PointCloudNormalization,
    check_incident_energy_range,
    incident_energy_bounds,
    incident_energy_bounds_float32,
)

# PointCloudNormalization, PointEncoder and the incident-energy functions live in their own modules; they stay
# importable from here, where the model's users have always found them.
__all__ = [
    "LOSS_WEIGHTINGS",
    "METRIC_NAMES",
    "NOISE_KEYS",
    "POINT_DIM",
    "PointCloudNormalization",
    "PointEncoder",
    "PointFlowVAE",
    "check_incident_energy_range",
    "incident_energy_bounds",
    "incident_energy_bounds_float32",
]

#: The metrics of ``fit`` / ``evaluate``.
METRIC_NAMES = ("loss", "reconstruction", "prior", "entropy")
#: Values of ``PointFlowVAE(loss_weighting=...)``.
LOSS_WEIGHTINGS = ("sum", "per_dimension")
#: Optional batch keys that replace the random draws of :meth:`PointFlowVAE.elbo_terms` (tests, reproducibility
#: studies), one row per shower so that ``tf.distribute`` splits them with the showers; a missing key is drawn:
#: ``noise_latent`` (B, latent_dim) standard-normal eps of z = mu + sigma eps; ``noise_n_hits`` (B,) in [0, 1), the
#: dequantization of n_hits (n - 0.5 + u).
NOISE_KEYS = ("noise_latent", "noise_n_hits")

#: Smallest total energy (GeV) whose log is taken (an empty shower gives a finite, very low value).
_MIN_TOTAL_ENERGY_GEV = 1e-12
#: The log of a sampled total energy is clipped to +-this (float32 exp overflows near 88).
_MAX_ABS_LOG_ENERGY = 80.0
_LOG_2PI = math.log(2.0 * math.pi)


def _vector(values: Any) -> tf.Tensor:
    return tf.reshape(tf.cast(values, tf.float32), (-1,))


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
        GeV, ``total_energy`` (B,) GeV, optionally the fixed noise of :data:`NOISE_KEYS`. ``seed`` (2,): the
        stateless seed of eps and of the n_hits dequantization (of those the batch does not give). ``loss`` is the
        optimized objective (weighted by ``loss_weighting``).
        """
        mask = tf.cast(batch["mask"], tf.bool)
        points = tf.where(mask[..., None], self.normalize_points(batch["points"]), 0.0)
        mean, log_var = self.encoder(points, mask)
        batch_size = tf.shape(mean)[0]
        seed = tf.cast(seed, tf.int64)
        if "noise_latent" in batch:
            eps = tf.reshape(tf.cast(batch["noise_latent"], tf.float32), (-1, self.latent_dim))
        else:
            eps = tf.random.stateless_normal(
                tf.stack([batch_size, self.latent_dim]), seed=tf.random.experimental.stateless_fold_in(seed, 0)
            )
        if "noise_n_hits" in batch:
            noise = _vector(batch["noise_n_hits"])
        else:
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
        denormalized last dimension). Energies outside the trained range (or not finite) raise: a :class:`CalomlError`
        in eager calls, a failing ``tf.debugging.Assert`` inside a ``tf.function``; they are never clipped.
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

    def batch_contract(self) -> BatchContract:
        """The point clouds of :class:`caloml.data.transforms.ToPointCloud` (see :meth:`elbo_terms`)."""
        keys = (
            BatchKey("points", (None, POINT_DIM), "cell coordinates and log GeV"),
            BatchKey("mask", (None,), "bool"),
            BatchKey("n_hits", (), "count"),
            BatchKey("incident_energy", (), "GeV"),
            BatchKey("total_energy", (), "GeV"),
        )
        return BatchContract(type(self).__name__, keys)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One gradient step on a batch dict (see :meth:`elbo_terms`); returns the running means of the metrics."""
        batch = self.batch_contract().batch(data)
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
        batch = self.batch_contract().batch(data)
        self.update_metrics(self.elbo_terms(batch, self.next_seed(per_replica=True)))
        return self.metric_results()

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict[str, Any]:
        return {
            **attribute_config(self, "name trainable"),
            "normalization": self.normalization.to_dict(),
            **attribute_config(
                self,
                "latent_dim flow n_latent_layers n_point_layers n_bins spline_bound hidden_units conditioner_blocks",
                "encoder_units loss_weighting seed coupling_rule",
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PointFlowVAE:
        """A config saved before ``coupling_rule`` existed loads with the ``"legacy"`` splits it was trained with."""
        return cls(**{"coupling_rule": "legacy", **config})
