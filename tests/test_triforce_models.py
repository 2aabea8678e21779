"""The Triforce networks: shapes, the energy skip connection at initialization, saving, training, accumulation.

Small configurations (a few units, GoogLeNet at 1/16 of the paper's widths) on batches of a few synthetic events;
the full-size networks are only built (parameter counts), never trained, in the default suite.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.models.triforce import INPUT_KEYS, TriforceModel
from caloml.models.triforce_nets import INCEPTION_WIDTHS, Inception3D, TriforceCNN, TriforceDNN, TriforceGoogLeNet

SMALL = {
    "dnn": (TriforceDNN, {"n_hidden_layers": 1, "hidden_units": 16, "dropout": 0.0}),
    "cnn": (TriforceCNN, {"ecal_filters": 2, "ecal_kernel": (4, 4, 4), "n_hidden_layers": 1, "hidden_units": 16}),
    "googlenet": (TriforceGoogLeNet, {"width_multiplier": 1 / 16, "dense_units": 16}),
}


def make_batch(n: int, seed: int = 0, *, separable: bool = False) -> dict[str, np.ndarray]:
    """``n`` synthetic events in GeV with labels; ``separable``: class 1 showers are 10 x broader than class 0."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    energy = rng.uniform(10.0, 510.0, n).astype(np.float32)
    grid = np.arange(25) - 12.0
    r2 = grid[:, None] ** 2 + grid[None, :] ** 2
    ecal = np.zeros((n, 25, 25, 25), np.float32)
    for i in range(n):
        width = (0.8 if labels[i] == 0 else 8.0) if separable else rng.uniform(0.8, 8.0)
        transverse = np.exp(-r2 / (2 * width**2))
        longitudinal = np.exp(-0.5 * ((np.arange(25) - 8.0) / 4.0) ** 2)
        shower = transverse[:, :, None] * longitudinal[None, None, :]
        shower *= 0.02 * energy[i] / shower.sum() * rng.uniform(0.95, 1.05)
        ecal[i] = shower
    hcal = rng.exponential(1e-6, (n, 11, 11, 60)).astype(np.float32)
    return {
        "ECAL": ecal,
        "HCAL": hcal,
        "ECAL_E": ecal.reshape(n, -1).sum(axis=1),
        "HCAL_E": hcal.reshape(n, -1).sum(axis=1),
        "recoEta": rng.uniform(-0.5, 0.5, n).astype(np.float32),
        "recoPhi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
        "class_label": labels.astype(np.int32),
        "energy": energy,
        "pdgID": np.where(labels == 0, 22, 111).astype(np.int32),  # an extra key the models must ignore
    }


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    return make_batch(6)


def build(kind: str, **overrides: object) -> TriforceModel:
    cls, kwargs = SMALL[kind]
    return cls(**{**kwargs, "seed": 3, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(SMALL))
def test_outputs_shapes_units_and_probabilities(kind: str, batch: dict) -> None:
    model = build(kind, n_classes=3)
    out = model.predict_step(batch)
    assert set(out) == {"class_logits", "class_probability", "energy"}
    assert out["class_probability"].shape == (6, 3)
    assert out["energy"].shape == (6,)
    assert out["energy"].dtype == tf.float32
    np.testing.assert_allclose(out["class_probability"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    expected_keys = set(INPUT_KEYS) - ({"HCAL"} if kind == "googlenet" else set())
    assert set(model.select_inputs(batch)) == expected_keys


@pytest.mark.parametrize("kind", list(SMALL))
def test_initial_energy_is_the_documented_linear_function_of_the_sums(kind: str, batch: dict) -> None:
    coefficients = (48.0, 95.0, 3.0)
    model = build(kind, initial_energy_coefficients=coefficients)
    energy = model.predict_step(batch)["energy"].numpy()
    expected = 48.0 * batch["ECAL_E"] + 95.0 * batch["HCAL_E"] + 3.0
    np.testing.assert_allclose(energy, expected, rtol=1e-5)
    np.testing.assert_allclose(model.initial_energy(batch["ECAL_E"], batch["HCAL_E"]), expected, rtol=1e-6)
    # the cells and angles do not enter the initial energy, only the sums
    other = dict(batch, ECAL=batch["ECAL"][::-1].copy(), recoPhi=-batch["recoPhi"])
    np.testing.assert_allclose(model.predict_step(other)["energy"].numpy(), expected, rtol=1e-5)


def test_default_initial_energy_is_the_inverse_sampling_fraction(batch: dict) -> None:
    model = build("dnn")
    energy = model.predict_step(batch)["energy"].numpy()
    np.testing.assert_allclose(energy, 50.0 * (batch["ECAL_E"] + batch["HCAL_E"]), rtol=1e-5)
    # the synthetic showers deposit 2% of the primary energy: the initial estimate is within 6% of the truth
    np.testing.assert_allclose(energy, batch["energy"], rtol=0.06)


def test_published_sizes() -> None:
    dnn = TriforceDNN()
    first = dnn.get_layer("dense_1")
    assert first.kernel.shape == (25 * 25 * 25 + 11 * 11 * 60 + 4, 512)  # the paper's 22,889 inputs
    assert sum(1 for layer in dnn.layers if layer.name.startswith("dense_")) == 4
    cnn = TriforceCNN()
    assert cnn.get_layer("ecal_conv").kernel.shape == (6, 6, 6, 1, 6)
    assert cnn.get_layer("hcal_conv").kernel.shape == (2, 2, 6, 1, 3)
    # inception widths chain as in appendix E: each block's input width A is the previous output
    widths = [w for w in INCEPTION_WIDTHS if not isinstance(w, str)]
    outputs = [b + d + f + g for b, _, d, _, f, g in widths]  # type: ignore[misc]
    assert outputs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    block = Inception3D((64, 96, 128, 16, 32, 32))
    assert block(tf.zeros((1, 3, 3, 3, 192))).shape == (1, 3, 3, 3, 256)


@pytest.mark.parametrize("kind", list(SMALL))
def test_save_and_reload_round_trip(kind: str, batch: dict, tmp_path: Path) -> None:
    model = build(kind, energy_loss_weight=7.0, micro_batch_size=2)
    model.compile(keras.optimizers.Adam(1e-3))
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert loaded.energy_loss_weight == 7.0
    assert loaded.micro_batch_size == 2
    for key, value in model.predict_step(batch).items():
        np.testing.assert_allclose(loaded.predict_step(batch)[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)
    assert loaded.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def _fit_separable(
    model: keras.Model, *, learning_rate: float, n_events: int, seed: int, epochs: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Fit ``model`` with Adam on ``n_events`` separable events in batches of 16; its metrics before and after."""
    model.compile(keras.optimizers.Adam(learning_rate))
    dataset = tf.data.Dataset.from_tensor_slices(make_batch(n_events, seed=seed, separable=True)).batch(16)
    before = model.evaluate(dataset, verbose=0, return_dict=True)
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False)
    return before, model.evaluate(dataset, verbose=0, return_dict=True)


def test_training_lowers_the_loss_on_a_separable_problem() -> None:
    model = TriforceCNN(ecal_filters=2, ecal_kernel=(3, 3, 3), n_hidden_layers=1, hidden_units=16, dropout=0.0, seed=1)
    before, after = _fit_separable(model, learning_rate=3e-3, n_events=32, seed=1, epochs=15)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["cross_entropy"] < before["cross_entropy"]
    assert after["accuracy"] >= 0.9


def test_gradient_accumulation_equals_the_full_batch_gradient() -> None:
    model = build("dnn", hidden_units=8)  # no dropout, no batch normalization: the gradients must agree
    model.compile(keras.optimizers.SGD(0.01))
    data = {k: tf.constant(v) for k, v in make_batch(7, seed=2).items()}
    full = model.compute_gradients(data)
    accumulated = tf.function(lambda d: model.compute_gradients(d, micro_batch_size=3))(data)  # 3 + 3 + 1 events
    for a, b in zip(accumulated, full, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    # and one fit step with micro-batches updates the weights as one full-batch step
    twin = build("dnn", hidden_units=8, micro_batch_size=2)
    twin.set_weights(model.get_weights())
    twin.compile(keras.optimizers.SGD(0.01))
    dataset = tf.data.Dataset.from_tensors(data)
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    twin.fit(dataset, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(twin.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fit_accepts_input_target_pairs(batch: dict) -> None:
    model = build("dnn")
    model.compile()
    inputs = {k: batch[k] for k in INPUT_KEYS}
    targets = {"class_label": batch["class_label"], "energy": batch["energy"]}
    history = model.fit(tf.data.Dataset.from_tensors((inputs, targets)), epochs=1, verbose=0, shuffle=False)
    assert set(history.history) == {"loss", "cross_entropy", "energy_mse", "accuracy"}
    assert np.isfinite(history.history["loss"][0])


def test_user_errors(batch: dict) -> None:
    model = build("dnn")
    with pytest.raises(TypeError, match="own losses"):
        model.compile(loss="mse")
    with pytest.raises(KeyError, match="HCAL_E"):
        model.select_inputs({k: v for k, v in batch.items() if k != "HCAL_E"})
    model.compile()
    unlabeled = {k: v for k, v in batch.items() if k != "class_label"}
    with pytest.raises(KeyError, match="class_label"):
        model.fit(tf.data.Dataset.from_tensors(unlabeled), verbose=0, shuffle=False)
    with pytest.raises(ValueError, match="n_classes"):
        TriforceDNN(n_classes=1)
    with pytest.raises(ValueError, match="micro_batch_size"):
        TriforceDNN(micro_batch_size=0)
    with pytest.raises(ValueError, match="ecal_kernel"):
        TriforceCNN(ecal_kernel=(30, 3, 3))
    with pytest.raises(ValueError, match="dropout"):
        TriforceDNN(dropout=1.0)


@pytest.mark.slow
def test_googlenet_with_micro_batches_learns_a_separable_problem() -> None:
    model = build("googlenet", micro_batch_size=4)
    before, after = _fit_separable(model, learning_rate=1e-3, n_events=16, seed=5, epochs=8)
    assert after["loss"] < before["loss"]
    assert after["cross_entropy"] < before["cross_entropy"]
