"""CaloPointFlow's ELBO terms against a hand computation of the paper's formula (NumPy, constants as literals).

"CaloPointFlow: Generating Calorimeter Showers as Point Clouds" (arXiv:2211.15380), equation (1) and appendix A,
per shower with d stochastic latent dimensions and z = mu + sigma * eps:

    L_recon   = -sum_{real hits i} log p_g(x_i | z)      (density of the data-unit point: the normalized point's
                                                           density times the Jacobian prod_k 1 / std_k)
    L_prior   = -log p_f(z | E_in)                       (conditioned on the normalized log incident energy)
    L_entropy = -(d / 2) (1 + ln 2 pi) - sum_{i <= d} ln sigma_i
    L         = L_recon + L_prior + L_entropy            (the authors' later weighting: L_recon / 4
                                                           + L_prior / (d + 2) + L_entropy / d)

z carries, after the d stochastic dimensions, the normalized log of the dequantized hit count (n - 0.5 + u) and
the normalized log of the total energy. The networks' own outputs (encoder mean and log-variance, the flows'
densities of normalized values) come from the model; everything the loss builds from them is computed here, and
the reported training metrics of one ``train_step`` are compared with it.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.models.pointflow import PointCloudNormalization, PointFlowVAE

LATENT_DIM = 3
POINT_DIM = 4  # (x, y, z cell coordinates, log E)
MAX_POINTS = 5
GRID = (6, 5, 4)
NORMALIZATION = PointCloudNormalization(
    grid_shape=GRID,
    point_mean=(3.0, 2.5, 2.0, -1.0),
    point_std=(1.5, 1.2, 0.9, 0.7),
    log_n_hits_mean=1.2,
    log_n_hits_std=0.4,
    log_total_energy_mean=0.5,
    log_total_energy_std=0.8,
    incident_energy_range_gev=(10.0, 100.0),
    log_incident_mean=3.5,
    log_incident_std=0.6,
)
TINY = {
    "latent_dim": LATENT_DIM,
    "n_latent_layers": 2,
    "n_point_layers": 2,
    "n_bins": 4,
    "hidden_units": 8,
    "conditioner_blocks": 1,
    "encoder_units": (8,),
}


def _batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    n_hits = np.array([2, 5, 3], np.int32)
    points = np.zeros((3, MAX_POINTS, 4), np.float32)
    mask = np.arange(MAX_POINTS)[None, :] < n_hits[:, None]
    points[..., :3] = rng.uniform(0.0, 4.0, (3, MAX_POINTS, 3))
    points[..., 3] = rng.normal(-1.0, 0.7, (3, MAX_POINTS))
    points[~mask] = 7.0  # padding: must not count
    total = np.array([np.exp(points[i, mask[i], 3]).sum() for i in range(3)], np.float32)
    return {
        "points": points,
        "mask": mask,
        "n_hits": n_hits,
        "incident_energy": np.array([15.0, 40.0, 90.0], np.float32),
        "total_energy": total,
    }


def _hand_terms(model: PointFlowVAE, batch: dict[str, np.ndarray], seed: tf.Tensor) -> dict[str, np.ndarray]:
    """The ELBO terms (B,) from the networks' outputs, the draws of ``seed`` and the paper's formula."""
    norm = NORMALIZATION
    mean_x, std_x = np.array(norm.point_mean), np.array(norm.point_std)
    mask = batch["mask"]
    normalized = np.where(mask[..., None], (batch["points"] - mean_x) / std_x, 0.0).astype(np.float32)
    mu, log_var = (np.asarray(t, np.float64) for t in model.encoder(tf.constant(normalized), tf.constant(mask)))
    size = len(mask)
    # The fixed noise of this seed: eps of the reparameterization, u of the hit-count dequantization.
    eps = tf.random.stateless_normal([size, LATENT_DIM], seed=tf.random.experimental.stateless_fold_in(seed, 0))
    u = tf.random.stateless_uniform([size], seed=tf.random.experimental.stateless_fold_in(seed, 1))
    z_stochastic = mu + np.exp(0.5 * log_var) * eps.numpy()
    log_n = (np.log(batch["n_hits"] - 0.5 + u.numpy()) - norm.log_n_hits_mean) / norm.log_n_hits_std
    log_total = (np.log(batch["total_energy"].astype(np.float64)) - norm.log_total_energy_mean) / (
        norm.log_total_energy_std
    )
    z = np.concatenate([z_stochastic, log_n[:, None], log_total[:, None]], axis=1).astype(np.float32)

    context = tf.constant(z[:, None, :])
    normalized_log_p = model.point_flow.log_prob(tf.constant(normalized), context).numpy().astype(np.float64)
    data_log_p = normalized_log_p - np.sum(np.log(std_x))  # density of the data-unit point
    reconstruction = -np.sum(np.where(mask, data_log_p, 0.0), axis=1)
    incident = (np.log(batch["incident_energy"].astype(np.float64)) - norm.log_incident_mean) / norm.log_incident_std
    prior = -model.latent_flow.log_prob(tf.constant(z), tf.constant(incident[:, None], tf.float32)).numpy()
    d = LATENT_DIM
    entropy = -(d / 2.0) * (1.0 + math.log(2.0 * math.pi)) - np.sum(0.5 * log_var, axis=1)
    return {"reconstruction": reconstruction, "prior": prior.astype(np.float64), "entropy": entropy}


def _randomize(model: PointFlowVAE) -> None:
    """Random weights everywhere: freshly built flows start at the identity and ignore their condition, which
    would hide a wrong z in the reconstruction term."""
    rng = np.random.default_rng(8)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))


@pytest.mark.parametrize("weighting", ["sum", "per_dimension"])
def test_reported_elbo_terms_match_the_paper_formula(weighting: str) -> None:
    model = PointFlowVAE(NORMALIZATION, loss_weighting=weighting, seed=17, **TINY)
    _randomize(model)
    model.compile(keras.optimizers.SGD(learning_rate=0.0))
    batch = _batch()
    seed = model.next_seed(per_replica=True)  # the seed train_step will draw with ...
    model.random_draws.assign(0)  # ... once the draw counter is back at its start
    expected = _hand_terms(model, batch, seed)
    logs = {key: float(v) for key, v in model.train_step({k: tf.constant(v) for k, v in batch.items()}).items()}
    for term in ("reconstruction", "prior", "entropy"):
        np.testing.assert_allclose(logs[term], expected[term].mean(), rtol=1e-4, atol=1e-4, err_msg=term)
    if weighting == "sum":
        loss = expected["reconstruction"] + expected["prior"] + expected["entropy"]
    else:
        loss = expected["reconstruction"] / 4 + expected["prior"] / (LATENT_DIM + 2) + expected["entropy"] / LATENT_DIM
    np.testing.assert_allclose(logs["loss"], loss.mean(), rtol=1e-4, atol=1e-4)


def test_the_entropy_term_is_minus_the_entropy_of_the_encoder_gaussian() -> None:
    # L_entropy = E_q[log q(z)] for q = N(mu, diag sigma^2): a Monte-Carlo check of the closed form on the
    # model's own encoder output.
    model = PointFlowVAE(NORMALIZATION, seed=17, **TINY)
    batch = _batch()
    terms = model.elbo_terms({k: tf.constant(v) for k, v in batch.items()}, tf.constant([3, 4], tf.int64))
    mask = batch["mask"]
    normalized = np.where(
        mask[..., None], (batch["points"] - np.array(NORMALIZATION.point_mean)) / np.array(NORMALIZATION.point_std), 0.0
    ).astype(np.float32)
    mu, log_var = (np.asarray(t, np.float64) for t in model.encoder(tf.constant(normalized), tf.constant(mask)))
    sigma = np.exp(0.5 * log_var)
    samples = np.random.default_rng(0).standard_normal((200_000, *mu.shape))
    log_q = -0.5 * samples**2 - np.log(sigma) - 0.5 * math.log(2.0 * math.pi)  # log N(mu + sigma eps; mu, sigma)
    np.testing.assert_allclose(terms["entropy"].numpy(), log_q.sum(axis=-1).mean(axis=0), atol=0.02)
