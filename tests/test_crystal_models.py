"""The crystal observables and the three crystal generators: transforms, training steps, saving, bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.evaluate.latent_space import gaussian_mutual_information, kl_per_dimension
from caloml.models.crystal_showers import decoded_features, features_to_showers, showers_to_features
from caloml.models.crystal_vae import CrystalVAE
from caloml.models.crystal_vaewgan import CrystalVAEWGAN
from caloml.models.crystal_wgan import CrystalWGAN
from caloml.observables.crystal import crystal_observables, ring_sums, separation_powers
from caloml.sim.crystal import simulate_crystal_batch
from caloml.sim.particles import Primaries

TINY = {"latent_dim": 3, "hidden_units": 16, "hidden_layers": 1, "energy_range_gev": (0.5, 5.0)}


@pytest.fixture(scope="module")
def showers():
    rng = np.random.default_rng(8)
    energy = rng.choice([0.5, 1.0, 5.0], 256)
    events = simulate_crystal_batch(rng, "crystal-5x5", "electron", Primaries(energy, energy * 0 + 1.57, energy * 0))
    return events["showers"], events["energy"]


def _dataset(showers, batch: int) -> tf.data.Dataset:
    cells, energy = showers
    data = {"showers": cells, "energy": energy}
    return tf.data.Dataset.from_tensor_slices(data).repeat().batch(batch, drop_remainder=True)


def test_ring_sums_and_observables_of_a_known_array():
    shower = np.zeros((1, 5, 5))
    shower[0, 2, 2] = 3.0  # E1
    shower[0, 1, 1] = 1.0  # in the 3 x 3
    shower[0, 0, 2] = 0.5  # in the 21, not the 9
    shower[0, 0, 0] = 0.25  # a corner: only in the 25
    sums = ring_sums(shower)
    assert (sums["e1"][0], sums["e9"][0], sums["e21"][0], sums["e25"][0]) == (3.0, 4.0, 4.5, 4.75)
    obs = crystal_observables(shower, np.array([5.0]))
    assert obs["e1_over_e9"][0] == 0.75
    assert obs["e9_over_e21"][0] == pytest.approx(4.0 / 4.5)
    assert obs["e25_over_e"][0] == pytest.approx(0.95)
    assert obs["n_hits"][0] == 4
    assert obs["max_cell_gev"][0] == 3.0
    assert np.isnan(crystal_observables(np.zeros((1, 5, 5)), np.ones(1))["e1_over_e9"][0])  # empty shower


def test_separation_power_is_zero_for_the_same_sample_and_large_for_shifted_ones(showers):
    obs = crystal_observables(*showers)
    assert all(v == 0.0 for v in separation_powers(obs, obs).values())
    shifted = {**obs, "e25_over_e": obs["e25_over_e"] * 0.8}
    assert separation_powers(shifted, obs)["e25_over_e"] > 0.9  # outliers count in the end bins


def test_the_cell_transform_round_trips_cells_above_threshold(showers):
    cells, energy = showers
    back = features_to_showers(showers_to_features(cells, energy), energy, 5, 1.5e-3).numpy()
    np.testing.assert_allclose(back, cells, rtol=2e-4, atol=1e-7)


def test_decoded_showers_sum_to_the_total_and_respect_the_threshold():
    outputs = tf.constant(np.random.default_rng(1).normal(size=(64, 26)), tf.float32)
    energy = tf.fill((64, 1), 2.0)
    cells = features_to_showers(decoded_features(outputs, energy, 1.5e-3), energy[:, 0], 5, 1.5e-3).numpy()
    total = 0.97 * np.exp(0.03 * outputs.numpy()[:, -1])
    assert np.all(cells.sum(axis=(1, 2)) <= 2.0 * total * (1 + 1e-5))
    assert np.all(cells.sum(axis=(1, 2)) >= 2.0 * total * 0.95)  # only sub-threshold cells are lost
    assert cells[cells > 0].min() >= 1.5e-3


@pytest.mark.parametrize("model_class", [CrystalWGAN, CrystalVAE])
def test_save_reload_generates_the_same_showers(model_class, tmp_path):
    model = model_class(seed=4, **TINY)
    model.compile()
    first = model.generate([0.5, 2.0, 5.0], seed=9)
    assert first.shape == (3, 5, 5)
    assert first.dtype == np.float32
    assert (first >= 0).all()
    np.testing.assert_array_equal(model.generate([0.5, 2.0, 5.0], seed=9), first)  # seeded
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert type(loaded) is model_class
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.generate([0.5, 2.0, 5.0], seed=9), first)


def test_energies_outside_the_trained_range_are_refused():
    model = CrystalWGAN(seed=1, **TINY)
    with pytest.raises(CalomlError, match=r"outside the trained range 0\.5-5 GeV"):
        model.generate([1.0, 6.0])
    with pytest.raises(CalomlError, match="outside"):
        model.generate([float("nan")])


def test_vae_training_lowers_its_loss_and_ramps_beta(showers):
    model = CrystalVAE(seed=2, kl_anneal_steps=40, **TINY)
    model.compile(keras.optimizers.Adam(3e-3))
    history = model.fit(_dataset(showers, 64), epochs=4, steps_per_epoch=20, verbose=0, shuffle=False).history
    assert history["reconstruction"][-1] < history["reconstruction"][0]
    assert history["beta"][0] < history["beta"][-1] == pytest.approx(1.0, rel=0.05)
    mean, log_var = model.encode(*showers)
    assert mean.shape == log_var.shape == (len(showers[1]), 3)


def test_wgan_steps_train_the_critic_towards_a_positive_wasserstein_estimate(showers):
    model = CrystalWGAN(seed=3, critic_steps=2, **TINY)
    model.compile()
    history = model.fit(_dataset(showers, 64), epochs=2, steps_per_epoch=10, verbose=0, shuffle=False).history
    assert history["wasserstein"][-1] > 0  # the critic separates real from (untrained) generated showers
    assert all(np.isfinite(v[-1]) for v in history.values())


def test_vaewgan_starts_from_the_vae_weights():
    vae = CrystalVAE(seed=5, **TINY)
    model = CrystalVAEWGAN(seed=6, **TINY)
    model.set_weights(vae.get_weights())  # what --init-from RUN_OF_VAE does
    for mine, theirs in zip(model.decoder.get_weights(), vae.decoder.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(model.encoder.get_weights()[0], vae.encoder.get_weights()[0])
    other = CrystalVAE(seed=5, **{**TINY, "hidden_units": 8})
    with pytest.raises(ValueError, match=r"hidden_units|shape|weights"):
        model.set_weights(other.get_weights())


def test_a_diverging_critic_stops_training_with_one_line(showers):
    model = CrystalWGAN(seed=3, critic_steps=2, **TINY)
    model.compile(critic_optimizer=keras.optimizers.SGD(1e30))
    with pytest.raises(CalomlError, match=r"non-finite .*last good epoch"):
        model.fit(_dataset(showers, 64), epochs=3, steps_per_epoch=10, verbose=0, shuffle=False)


def test_mutual_information_estimate_tracks_how_much_the_latents_encode():
    rng = np.random.default_rng(1)
    n, d = 1000, 2
    informative = gaussian_mutual_information(rng.normal(size=(n, d)) * 3, np.full((n, d), -4.0), rng)
    collapsed = gaussian_mutual_information(np.zeros((n, d)), np.zeros((n, d)), rng)
    assert abs(collapsed) < 0.05 < 2.0 < informative <= np.log(n) + 0.05
    kl = kl_per_dimension(np.stack([rng.normal(size=n) * 3, np.zeros(n)], 1), np.zeros((n, 2)))
    assert kl[0] > 3
    assert kl[1] == 0


def test_the_critic_reads_the_total_and_the_number_of_hits(showers):
    cells, energy = showers
    model = CrystalWGAN(seed=1, **TINY)
    inputs = model.critic_input(showers_to_features(cells, energy)).numpy()
    assert inputs.shape == (len(energy), 27)
    observables = crystal_observables(cells, energy)
    np.testing.assert_allclose(inputs[:, 25] * 0.02 + 0.97, observables["e25_over_e"], atol=1e-3)
    # a soft count: each empty crystal adds sigmoid(-5), each hit at 5 GeV loses up to 1 - sigmoid(5)
    np.testing.assert_allclose(inputs[:, 26] * 5 + 12, observables["n_hits"], atol=0.2)
    plain = CrystalWGAN(seed=1, critic_features=False, **TINY)
    assert plain.critic_input(showers_to_features(cells, energy)).shape == (len(energy), 25)
