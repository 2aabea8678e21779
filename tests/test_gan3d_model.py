"""The 3DGAN networks and training model: architecture, physics outputs, generation, config, training, saving.

Full-size networks (the architecture is fixed by the 51 x 51 x 25 image) with batches of 1 to 2 simulated
electrons: a training step costs a few seconds on two CPU cores, so the training checks share one short ``fit``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.errors import CalomlError
from caloml.models import GAN3D, Discriminator3D, Generator3D
from caloml.models.gan3d import DEFAULT_LOSS_WEIGHTS
from caloml.observables.angle import MEASURED_ANGLE_EMPTY, measured_angle
from caloml.observables.grid import total_energy
from caloml.sim.run import SimulationRequest, simulate_events

POWER = 0.85
GENERATOR_PARAMETERS = 1_365_047  # published: about 1.37 M
DISCRIMINATOR_PARAMETERS = 87_402  # published: about 87 k
METRICS = {
    "d_loss",
    "d_loss_real",
    "d_loss_fake",
    "d_bce",
    "d_energy_mape",
    "d_angle_mae",
    "d_sum_mape",
    "g_loss",
    "g_bce",
    "g_energy_mape",
    "g_angle_mae",
    "g_sum_mape",
}


@pytest.fixture(scope="module")
def events() -> dict[str, np.ndarray]:
    """Six simulated electrons in the LCD generator layout (cells in GeV), every key of the layout."""
    return simulate_events(SimulationRequest("lcd-gen", "electron", n_events=6, seed=5).resolve())


@pytest.fixture(scope="module")
def gan() -> GAN3D:
    """An untrained GAN for read-only checks."""
    return GAN3D(seed=1)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 254)).astype(np.float32)


def test_generator_architecture_and_sparse_output() -> None:
    generator = Generator3D(seed=3)
    assert generator.count_params() == GENERATOR_PARAMETERS
    assert sum(int(np.prod(v.shape)) for v in generator.non_trainable_weights) == 64  # moving statistics
    assert [tuple(t.shape) for t in generator.inputs] == [(None, 1), (None, 1), (None, 254)]
    energy = np.array([[0.5], [2.0]], np.float32)  # 50 and 200 GeV
    angle = np.array([[1.2], [1.9]], np.float32)
    image = generator([energy, angle, _noise(2)], training=False).numpy()
    assert image.shape == (2, 51, 51, 25, 1)
    assert np.all(image >= 0)
    assert 0.0 < np.mean(image == 0) < 1.0  # the final ReLU gives exact zeros, and not only zeros


def test_discriminator_architecture_and_physics_outputs(events: dict[str, np.ndarray]) -> None:
    discriminator = Discriminator3D(seed=4)
    assert discriminator.count_params() == DISCRIMINATOR_PARAMETERS
    cells = np.concatenate([events["ECAL"][:3], np.zeros((1, 51, 51, 25), np.float32)])  # with an empty event
    image = (cells**POWER)[..., None]
    outputs = {key: value.numpy() for key, value in discriminator(image, training=False).items()}
    assert set(outputs) == {"real", "energy", "angle", "sum"}
    assert all(value.shape == (4, 1) for value in outputs.values())
    assert np.all((outputs["real"] > 0) & (outputs["real"] < 1))

    # the non-trainable outputs are the NumPy observables of the inverse-power image, in GeV and radians
    inverse = image[..., 0] ** np.float32(1 / POWER)
    np.testing.assert_allclose(outputs["sum"][:, 0], total_energy(inverse), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["angle"][:, 0], measured_angle(inverse), rtol=0, atol=1e-4)
    np.testing.assert_allclose(outputs["sum"][:3, 0], total_energy(cells[:3]), rtol=1e-4)
    assert outputs["angle"][3, 0] == MEASURED_ANGLE_EMPTY
    assert np.all(np.abs(outputs["angle"][:3, 0] - events["mtheta"][:3]) < 1e-4)  # the simulator's mtheta


def test_generate_units_noise_and_seeds(gan: GAN3D) -> None:
    energy = np.array([20.0, 300.0], np.float32)
    theta = np.array([1.3, 1.8], np.float32)
    showers = gan.generate(energy, theta, noise=_noise(2)).numpy()
    assert showers.shape == (2, 51, 51, 25)
    assert showers.dtype == np.float32
    # GeV showers: the inverse power of the generator's power-space image (Ep / 100 as the energy condition)
    image = gan.generator([energy[:, None] / 100.0, theta[:, None], _noise(2)], training=False).numpy()[..., 0]
    np.testing.assert_allclose(showers, image ** np.float32(1 / POWER), rtol=1e-5, atol=1e-30)
    assert np.array_equal(showers == 0, image == 0)  # exact zeros survive
    np.testing.assert_array_equal(gan({"energy_gev": energy, "theta_rad": theta, "noise": _noise(2)}), showers)

    same = gan.generate(energy, theta, seed=5).numpy()
    np.testing.assert_array_equal(same, gan.generate(energy, theta, seed=5).numpy())
    assert not np.array_equal(same, gan.generate(energy, theta, seed=6).numpy())
    draws = int(gan.random_draws.numpy())
    first = gan.generate(energy, theta).numpy()
    assert int(gan.random_draws.numpy()) == draws + 1  # unseeded draws advance the saved counter
    assert not np.array_equal(first, gan.generate(energy, theta).numpy())


def test_check_conditions(gan: GAN3D) -> None:
    gan.check_conditions([2.0, 250.0, 500.0], [1.047, 1.5, 2.094])
    gan.check_conditions(500.2, 2.0945)  # within the 0.1% tolerance
    gan.check_conditions([100.0, 200.0], 1.5)  # one angle for all energies
    bad = [
        ([np.nan], [1.5], "energy_gev is not finite"),
        ([100.0], [np.inf], "theta_rad is not finite"),
        ([100.0, 600.0], [1.5, 1.5], "energy_gev 600 at index 1 is outside"),
        ([1.0], [1.5], r"\[2, 500\] GeV"),
        ([100.0], [0.5], "theta_rad 0.5 at index 0"),
        ([100.0, 200.0], [1.5, 1.6, 1.7], "same length"),
    ]
    for energy, theta, message in bad:
        with pytest.raises(CalomlError, match=message) as info:
            gan.check_conditions(energy, theta)
        assert "\n" not in str(info.value)


def test_config_round_trip_and_validation() -> None:
    gan = GAN3D(seed=7, particle="photon", condition_angle="theta", loss_weights={"angle": 10.0}, dropout=0.1)
    config = gan.get_config()
    assert config["loss_weights"] == {**DEFAULT_LOSS_WEIGHTS, "angle": 10.0}
    assert config["discriminator"]["config"]["dropout"] == 0.1
    clone = GAN3D.from_config(config)
    assert clone.get_config() == config
    for mine, theirs in zip(gan.weights, clone.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())  # the seed fixes the initialization
    assert isinstance(GAN3D().get_config()["seed"], int)  # a drawn seed is recorded

    with pytest.raises(ValueError, match="condition_angle"):
        GAN3D(condition_angle="phi")
    with pytest.raises(ValueError, match="loss_weights"):
        GAN3D(loss_weights={"bins": 1.0})
    with pytest.raises(ValueError, match="latent_size"):
        GAN3D(generator=Generator3D(latent_size=64))
    with pytest.raises(TypeError, match="loss"):
        gan.compile(loss="mse")


def test_train_step_is_deterministic_given_the_seed(events: dict[str, np.ndarray]) -> None:
    batch = {key: tf.constant(events[key][:1]) for key in ("ECAL", "energy", "mtheta")}
    weights = []
    for _ in range(2):
        model = GAN3D(seed=21, label_flip_probability=0.5)  # noise, label flips and dropout all drawn
        model.compile()
        logs = model.train_step(batch)
        assert set(logs) == METRICS
        assert int(model.random_draws.numpy()) == 5  # noise of the fake batch, two flips, two generator noises
        weights.append([w.numpy() for w in model.weights])
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)


@pytest.fixture(scope="module")
def trained(events: dict[str, np.ndarray]) -> dict:
    """A GAN trained with ``fit`` for 3 steps on a tf.data dataset of dicts (batch 2, every layout key)."""
    model = GAN3D(seed=2)
    model.compile()
    batch_keys = [key for key in events if key != "HCAL"]
    subset = {key: events[key][:2] for key in batch_keys}  # a fixed batch, to measure learning on it
    noise = _noise(2, seed=9)

    def energy_error() -> float:
        # batch statistics (training=True): the moving averages are still near their initial values
        showers = model.generate(subset["energy"], subset["mtheta"], noise=noise, training=True).numpy()
        deposit = total_energy(subset["ECAL"])
        return float(np.mean(np.abs(total_energy(showers) - deposit) / deposit))

    before = energy_error()
    dataset = tf.data.Dataset.from_tensor_slices(subset).repeat().batch(2)
    history = model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False).history
    return {"model": model, "history": history, "before": before, "after": energy_error()}


def test_fit_on_a_dataset_of_dicts(trained: dict) -> None:
    history = trained["history"]
    assert set(history) == METRICS
    assert all(len(values) == 1 and np.isfinite(values[0]) for values in history.values())
    model = trained["model"]
    assert int(model.discriminator_optimizer.iterations.numpy()) == 2 * 3  # real and fake batch each step
    assert int(model.generator_optimizer.iterations.numpy()) == 2 * 3  # two generator updates each step


def test_training_lowers_the_generated_energy_error(trained: dict) -> None:
    # The sum loss (energy conservation) drives the untrained generator's deposit, thousands of times too large,
    # towards the real one: with the same noise and conditions, the relative error falls by a large factor.
    assert trained["before"] > 100.0
    assert trained["after"] < trained["before"] / 5


def test_keras_save_and_load(trained: dict, tmp_path: Path) -> None:
    model = trained["model"]
    path = tmp_path / "gan3d.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GAN3D)
    assert loaded.get_config() == model.get_config()
    energy, theta = np.array([50.0, 400.0], np.float32), np.array([1.4, 1.7], np.float32)
    np.testing.assert_array_equal(
        loaded.generate(energy, theta, noise=_noise(2)).numpy(), model.generate(energy, theta, noise=_noise(2)).numpy()
    )
    assert int(loaded.random_draws.numpy()) == int(model.random_draws.numpy())
    # the compile state comes back too: both optimizers with their step counts
    assert loaded.compiled
    for mine, theirs in (
        (model.discriminator_optimizer, loaded.discriminator_optimizer),
        (model.generator_optimizer, loaded.generator_optimizer),
    ):
        assert type(theirs) is type(mine)
        assert int(theirs.iterations.numpy()) == int(mine.iterations.numpy())
        for a, b in zip(mine.variables, theirs.variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
