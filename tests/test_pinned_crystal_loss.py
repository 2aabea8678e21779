"""The crystal generators' training losses against a hand computation of the published formulas (NumPy, literals).

- VAE (the first stage of the VAE + WGAN poster, J. Jabbar, DPG 2021; KL annealing after Bowman et al.,
  arXiv:1511.06349): per shower the negative ELBO of a Gaussian decoder with learned per-cell width sigma,

      L = sum_cells [ (u - u_hat)^2 / (2 sigma^2) + ln sigma ] + beta * 0.5 sum_latent (mu^2 + s^2 - 1 - ln s^2),

  z = mu + s * eps, beta = beta_max * min(1, step / anneal_steps) rising linearly from 0.
- WGAN-GP (Gulrajani et al., arXiv:1704.00028, as used by Erdmann, Glombitza and Quast, arXiv:1807.01954):

      critic    = mean D(fake) - mean D(real) + 10 * mean (|grad D(x_hat)| - 1)^2 + 1e-3 * mean D(real)^2
      x_hat     = m * real + (1 - m) * fake,  m ~ U(0, 1) per shower
      generator = -mean D(fake) + 1 * mean (K(a(fake)) - c)^2,  constrainer = mean (K(a(real)) - c)^2

  (drift term 1e-3 after Karras et al., arXiv:1710.10196; a = log10(E_cell / GeV + 1e-4), the absolute energies).
- VAE + WGAN: the generator loss adds 0.01 times the VAE's negative ELBO on the real showers.

The networks' own outputs (encoder moments, decoder showers, critic scores and input gradients, constrainer
predictions) come from the model; the optimizers have learning rate 0, so every update sees the untouched networks.
The shower representation u, the condition c, the noise (the model's stateless draws (seed + 2000, draw number),
drawn again here) and every loss term are computed here.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.models.crystal_vae import CrystalVAE
from caloml.models.crystal_vaewgan import CrystalVAEWGAN
from caloml.models.crystal_wgan import CrystalWGAN

# the published numbers, as literals (the code's defaults are what is being checked)
GRADIENT_PENALTY_WEIGHT = 10.0  # arXiv:1704.00028
DRIFT_WEIGHT = 1e-3  # arXiv:1710.10196
CONSTRAINT_WEIGHT = 1.0  # the constrainer's weight in the generator loss
RECONSTRUCTION_WEIGHT = 0.01  # the VAE loss kept in the VAE + WGAN generator
INITIAL_CELL_SIGMA = 0.1
ENERGY_RANGE_GEV = (0.5, 5.0)
TINY = {"latent_dim": 3, "hidden_units": 16, "hidden_layers": 1, "energy_range_gev": ENERGY_RANGE_GEV, "seed": 21}
BATCH = 6


def _showers() -> tuple[np.ndarray, np.ndarray]:
    """(B, 5, 5) GeV showers of primaries (B,) GeV: 96% of the energy spread over a peaked, partly empty array."""
    rng = np.random.default_rng(3)
    energy = rng.uniform(0.6, 4.5, BATCH)
    profile = np.exp(-0.9 * np.hypot(*np.meshgrid(np.arange(5) - 2.0, np.arange(5) - 2.0)))
    fractions = profile[None] * rng.uniform(0.5, 1.5, (BATCH, 5, 5))
    fractions[:, 0, :2] = 0.0  # empty crystals
    fractions *= 0.96 / fractions.sum(axis=(1, 2), keepdims=True)
    return (fractions * energy[:, None, None]).astype(np.float32), energy.astype(np.float32)


def _features(showers: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """u = (log10(E_cell / E + 1e-4) + 2) / 2, (B, 25)."""
    fraction = np.maximum(showers.reshape(len(showers), -1).astype(np.float64), 0.0) / energy[:, None]
    return (np.log10(fraction + 1e-4) + 2.0) / 2.0


def _condition(energy: np.ndarray) -> np.ndarray:
    """c = 2 (ln E - ln 0.5) / (ln 5 - ln 0.5) - 1, (B, 1)."""
    low, high = math.log(ENERGY_RANGE_GEV[0]), math.log(ENERGY_RANGE_GEV[1])
    return (2.0 * (np.log(energy.astype(np.float64)) - low) / (high - low) - 1.0)[:, None]


def _absolute(features: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """log10(E_cell / GeV + 1e-4) of showers u (B, 25) of primaries (B,) GeV."""
    cells = np.maximum(10.0 ** (2.0 * features - 2.0) - 1e-4, 0.0) * energy[:, None]
    return np.log10(cells + 1e-4)


def _draw(model: keras.Model, number: int, shape: tuple[int, ...], uniform: bool = False) -> np.ndarray:
    """The model's ``number``-th stateless draw (0-based), seeded (model seed + 2000, number + 1) folded with the
    replica id 0 (the seed holds the draw counter as read after its increment)."""
    seed = tf.random.experimental.stateless_fold_in(tf.constant([TINY["seed"] + 2000, number + 1], tf.int64), 0)
    sample = tf.random.stateless_uniform(shape, seed=seed) if uniform else tf.random.stateless_normal(shape, seed=seed)
    return sample.numpy().astype(np.float64)


def _f32(array: np.ndarray) -> tf.Tensor:
    return tf.constant(array, tf.float32)


def _elbo(model: keras.Model, u: np.ndarray, c: np.ndarray, eps: np.ndarray, beta: float) -> dict[str, float]:
    moments = model.encoder([_f32(u), _f32(c)]).numpy().astype(np.float64)
    mean, log_var = moments[:, :3], moments[:, 3:]
    assert np.all(np.abs(log_var) < 5.0)  # inside the model's clipping range: the plain formula applies
    z = mean + np.exp(0.5 * log_var) * eps
    decoded = model.decode(_f32(z), _f32(c)).numpy().astype(np.float64)
    sigma = np.exp(model.log_sigma.numpy().astype(np.float64))
    reconstruction = np.sum((u - decoded) ** 2 / (2.0 * sigma**2) + np.log(sigma), axis=1)
    kl = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=1)
    return {
        "loss": float(np.mean(reconstruction + beta * kl)),
        "reconstruction": float(np.mean(reconstruction)),
        "kl": float(np.mean(kl)),
        "beta": beta,
    }


def _batch() -> dict[str, tf.Tensor]:
    showers, energy = _showers()
    return {"showers": tf.constant(showers), "energy": tf.constant(energy)}


@pytest.mark.parametrize(("steps_done", "beta"), [(3, 0.75), (0, 0.0), (9, 1.0)])
def test_vae_step_reports_the_annealed_negative_elbo(steps_done: int, beta: float) -> None:
    model = CrystalVAE(kl_anneal_steps=4, **TINY)  # beta_max: the default (1)
    model.compile(keras.optimizers.SGD(learning_rate=0.0))
    np.testing.assert_allclose(np.exp(model.log_sigma.numpy()), INITIAL_CELL_SIGMA, rtol=1e-6)
    model.vae_steps.assign(steps_done)
    # an untrained VAE's reconstruction term (sigma 0.1) is ~300 times its KL: unit widths and latent means moved
    # by 1.5 make both terms weigh in
    model.log_sigma.assign(tf.zeros_like(model.log_sigma))
    bias = model.encoder.get_layer("encoder_out").bias
    bias.assign(bias + tf.concat([tf.fill([3], 1.5), tf.zeros([3])], axis=0))
    showers, energy = _showers()
    u, c = _features(showers, energy), _condition(energy)
    expected = _elbo(model, u, c, _draw(model, 0, (BATCH, 3)), beta)
    logs = {key: float(value) for key, value in model.train_step(_batch()).items()}
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=2e-5, atol=1e-7, err_msg=key)
    assert int(model.vae_steps.numpy()) == steps_done + 1  # the annealing advances one step per update
    if beta:  # both terms weigh in: a wrong beta or a wrong sigma shows
        assert 0.05 < beta * expected["kl"] / abs(expected["loss"]) < 20.0, expected


def _critic_terms(model: CrystalWGAN, real: np.ndarray, fake: np.ndarray, c: np.ndarray, mix: np.ndarray) -> dict:
    x_hat = _f32(mix * real + (1.0 - mix) * fake)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        score = model.critic([x_hat, _f32(c)])
    gradient = tape.gradient(score, x_hat).numpy().astype(np.float64)
    penalty = float(np.mean((np.linalg.norm(gradient, axis=1) - 1.0) ** 2))
    d_real = model.critic([_f32(real), _f32(c)]).numpy().astype(np.float64)
    d_fake = model.critic([_f32(fake), _f32(c)]).numpy().astype(np.float64)
    wasserstein = float(np.mean(d_real) - np.mean(d_fake))
    return {
        "critic_loss": -wasserstein + GRADIENT_PENALTY_WEIGHT * penalty + DRIFT_WEIGHT * float(np.mean(d_real**2)),
        "wasserstein": wasserstein,
        "gradient_penalty": penalty,
    }


def _wgan_expected(model: CrystalWGAN, vae_beta: float | None = None) -> dict[str, float]:
    """The losses of one train_step with critic_steps = 1: draws 0 (fake), 1 (mix), 2 (generator noise) and, for
    the VAE + WGAN, 3 (the VAE's reparameterization)."""
    showers, energy = _showers()
    u, c = _features(showers, energy), _condition(energy)
    fake = model.decode(_f32(_draw(model, 0, (BATCH, 3))), _f32(c)).numpy().astype(np.float64)
    expected = _critic_terms(model, u, fake, c, _draw(model, 1, (BATCH, 1), uniform=True))
    predicted = model.constrainer(_f32(_absolute(u, energy))).numpy().astype(np.float64)
    expected["constrainer_loss"] = float(np.mean((predicted - c) ** 2))
    generated = model.decode(_f32(_draw(model, 2, (BATCH, 3))), _f32(c)).numpy().astype(np.float64)
    constraint = float(np.mean((model.constrainer(_f32(_absolute(generated, energy))).numpy() - c) ** 2))
    score = model.critic([_f32(generated), _f32(c)]).numpy().astype(np.float64)
    expected["constraint"] = constraint
    expected["generator_loss"] = -float(np.mean(score)) + CONSTRAINT_WEIGHT * constraint
    if vae_beta is not None:
        elbo = _elbo(model, u, c, _draw(model, 3, (BATCH, 3)), vae_beta)
        expected["generator_loss"] += RECONSTRUCTION_WEIGHT * elbo["loss"]
        expected["reconstruction"], expected["kl"] = elbo["reconstruction"], elbo["kl"]
    return expected


def _compile_frozen(model: CrystalWGAN) -> None:
    model.compile(*(keras.optimizers.SGD(learning_rate=0.0) for _ in range(3)))


def _assert_logs(model: CrystalWGAN, expected: dict[str, float]) -> dict[str, float]:
    logs = {key: float(value) for key, value in model.train_step(_batch()).items()}
    assert set(logs) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    return logs


def test_wgan_step_reports_the_gradient_penalty_losses() -> None:
    model = CrystalWGAN(critic_steps=1, critic_features=False, **TINY)
    _compile_frozen(model)
    expected = _wgan_expected(model)
    _assert_logs(model, expected)
    # the penalty weighs in the critic loss (a wrong weight shows), and the constraint in the generator loss
    assert GRADIENT_PENALTY_WEIGHT * expected["gradient_penalty"] > 0.01 * abs(expected["critic_loss"])
    assert CONSTRAINT_WEIGHT * expected["constraint"] > 0.01 * abs(expected["generator_loss"])


def test_vaewgan_generator_keeps_the_weighted_negative_elbo() -> None:
    model = CrystalVAEWGAN(critic_steps=1, critic_features=False, kl_anneal_steps=4, **TINY)
    _compile_frozen(model)
    model.vae_steps.assign(2)  # beta = 0.5, as copied from a VAE half-way through its annealing
    expected = _wgan_expected(model, vae_beta=0.5)
    _assert_logs(model, expected)
    elbo = expected["reconstruction"] + 0.5 * expected["kl"]
    assert RECONSTRUCTION_WEIGHT * abs(elbo) > 0.01 * abs(expected["generator_loss"])  # the weight shows
    assert int(model.vae_steps.numpy()) == 2  # the adversarial stage does not advance the annealing


def test_the_published_numbers_are_the_models_defaults() -> None:
    wgan = CrystalWGAN(**TINY)
    assert (wgan.gradient_penalty_weight, wgan.critic_steps, wgan.constraint_weight) == (10.0, 5, 1.0)
    wgan.compile()
    adam = wgan.critic_optimizer  # Adam(1e-4, beta_1 = 0.5, beta_2 = 0.9), arXiv:1704.00028
    np.testing.assert_allclose(
        [float(adam.learning_rate.numpy()), adam.beta_1, adam.beta_2], [1e-4, 0.5, 0.9], rtol=1e-6
    )
    assert CrystalVAEWGAN(**TINY).reconstruction_weight == 0.01
    assert CrystalVAE(**TINY).beta_max == 1.0
