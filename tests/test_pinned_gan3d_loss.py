"""The 3DGAN's training losses against a hand computation of the paper's formula (NumPy, weights as literals).

"Fast simulation of a high granularity calorimeter by generative adversarial networks" (arXiv:2109.07388),
Algorithm 1: every discriminator output is scored as

    L = 3 * BCE(real/fake label) + 0.1 * MAPE(energy output vs Ep / 100) + 25 * MAE(angle output vs input angle)
        + 0.1 * MAPE(summed-energy output vs the real shower's total deposit)

with MAPE in percent. The discriminator is trained on the real batch (label 1) and on a generated batch (label 0),
each label flipped for the flagged examples; both generator updates are trained towards the label "real" (1).

The optimizers have learning rate 0 and the discriminator no dropout, so the networks every update sees are the
untouched networks: their outputs are computed here once, and only the loss composition is the model's to get right.
The weights, the power 0.85 and the energy scale 100 GeV are written here as the paper's numbers, never read from
the code.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.models import GAN3D
from caloml.sim.run import SimulationRequest, simulate_events

# The paper's numbers (literals on purpose: the code's DEFAULT_LOSS_WEIGHTS is what is being checked).
WEIGHT_BCE = 3.0
WEIGHT_ENERGY_MAPE = 0.1
WEIGHT_ANGLE_MAE = 25.0
WEIGHT_SUM_MAPE = 0.1
ENERGY_TARGET_SCALE_GEV = 100.0  # the discriminator's energy target is Ep / 100
POWER = 0.85  # the networks see cells ** 0.85
BATCH = 2
NOISE_SIZE = 254  # latent 256 minus the two conditions
EPSILON = 1e-7  # Keras' probability clipping of the cross-entropy


def _bce(label: np.ndarray, probability: np.ndarray) -> np.ndarray:
    p = np.clip(probability, EPSILON, 1.0 - EPSILON)
    return -(label * np.log(p) + (1.0 - label) * np.log(1.0 - p))


def _mape_percent(target: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    return 100.0 * np.abs(target - prediction) / np.abs(target)


def _paper_loss(
    outputs: dict[str, np.ndarray], label: np.ndarray, ep_gev: np.ndarray, angle: np.ndarray, real_sum_gev: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-example terms (B,) of the paper's loss for one discriminator evaluation (float64)."""
    terms = {
        "bce": _bce(label, outputs["real"]),
        "energy_mape": _mape_percent(ep_gev / ENERGY_TARGET_SCALE_GEV, outputs["energy"]),
        "angle_mae": np.abs(angle - outputs["angle"]),
        "sum_mape": _mape_percent(real_sum_gev, outputs["sum"]),
    }
    terms["loss"] = (
        WEIGHT_BCE * terms["bce"]
        + WEIGHT_ENERGY_MAPE * terms["energy_mape"]
        + WEIGHT_ANGLE_MAE * terms["angle_mae"]
        + WEIGHT_SUM_MAPE * terms["sum_mape"]
    )
    return terms


def _outputs(model: GAN3D, images: tf.Tensor) -> dict[str, np.ndarray]:
    out = model.discriminator(images, training=True)
    return {key: np.asarray(out[key], np.float64).reshape(-1) for key in ("real", "energy", "angle", "sum")}


@pytest.fixture(scope="module")
def step() -> dict:
    """One train_step of an untrained GAN (lr 0, no dropout) on two simulated electrons, fixed noise and flips,
    with the discriminator's outputs on every batch the step shows it."""
    events = simulate_events(SimulationRequest("lcd-gen", "electron", n_events=BATCH, seed=11).resolve())
    cells = events["ECAL"].astype(np.float32)  # (B, 51, 51, 25) GeV
    ep_gev = events["energy"].astype(np.float64)
    # The angle condition (and target) differs from the angle the discriminator measures in the real images by
    # 0.2 rad, so that the angle term weighs in the real batch's loss too.
    angle = events["mtheta"].astype(np.float64) + 0.2
    rng = np.random.default_rng(4)
    noise = {key: rng.standard_normal((BATCH, NOISE_SIZE)).astype(np.float32) for key in ("d", "g1", "g2")}
    flip_real = np.array([True, False])  # the first real example is labelled fake
    flip_fake = np.array([False, True])  # the second generated example is labelled real

    model = GAN3D(seed=5, dropout=0.0)  # paper's defaults otherwise: the loss weights are not passed
    model.compile(keras.optimizers.SGD(learning_rate=0.0), keras.optimizers.SGD(learning_rate=0.0))

    # Inputs of the networks, by hand: power-space real images, conditions Ep / 100 and the angle.
    real_images = tf.constant((np.maximum(cells, 0.0) ** POWER)[..., None], tf.float32)
    conditions = [
        tf.constant((ep_gev / ENERGY_TARGET_SCALE_GEV)[:, None], tf.float32),
        tf.constant(angle[:, None], tf.float32),
    ]
    # The untrained generator's showers carry thousands of times the real deposit, and their summed-energy MAPE
    # would drown every other term: its (ReLU) output layer is scaled so that they carry about the real deposit.
    output_layer = [layer for layer in model.generator.layers if isinstance(layer, keras.layers.Conv3D)][-1]
    generated = model.generator([*conditions, tf.constant(noise["d"])], training=True)
    deposit_ratio = float(np.sum(generated.numpy() ** (1.0 / POWER)) / np.sum(cells))
    for variable in output_layer.weights:
        variable.assign(variable * deposit_ratio ** (-POWER) * 0.7)
    shown = {"real": _outputs(model, real_images)}
    for key in ("d", "g1", "g2"):
        generated = model.generator([*conditions, tf.constant(noise[key])], training=True)
        shown[key] = _outputs(model, generated)

    batch = {
        "ECAL": tf.constant(cells),
        "energy": tf.constant(ep_gev, tf.float32),
        "mtheta": tf.constant(angle, tf.float32),
        "noise_d": noise["d"],
        "noise_g1": noise["g1"],
        "noise_g2": noise["g2"],
        "flip_real": flip_real,
        "flip_fake": flip_fake,
    }
    logs = {key: float(value) for key, value in model.train_step(batch).items()}
    real_sum = cells.astype(np.float64).sum(axis=(1, 2, 3))
    target = (ep_gev, angle, real_sum)
    expected = {
        "real": _paper_loss(shown["real"], np.where(flip_real, 0.0, 1.0), *target),
        "fake": _paper_loss(shown["d"], np.where(flip_fake, 1.0, 0.0), *target),
        "g1": _paper_loss(shown["g1"], np.ones(BATCH), *target),  # generator steps: towards "real"
        "g2": _paper_loss(shown["g2"], np.ones(BATCH), *target),
    }
    labels = {"real": np.where(flip_real, 0.0, 1.0), "fake": np.where(flip_fake, 1.0, 0.0)}
    return {"logs": logs, "expected": expected, "shown": shown, "labels": labels, "model": model}


def _mean(*terms: np.ndarray) -> float:
    return float(np.mean(np.concatenate(terms)))


def test_discriminator_step_matches_the_paper_loss(step: dict) -> None:
    logs, expected = step["logs"], step["expected"]
    real, fake = expected["real"], expected["fake"]
    np.testing.assert_allclose(logs["d_loss_real"], np.mean(real["loss"]), rtol=1e-4)
    np.testing.assert_allclose(logs["d_loss_fake"], np.mean(fake["loss"]), rtol=1e-4)
    np.testing.assert_allclose(logs["d_loss"], _mean(real["loss"], fake["loss"]), rtol=1e-4)
    for term in ("bce", "energy_mape", "angle_mae", "sum_mape"):
        np.testing.assert_allclose(logs[f"d_{term}"], _mean(real[term], fake[term]), rtol=1e-4, err_msg=term)


def test_both_generator_steps_match_the_paper_loss_towards_real_labels(step: dict) -> None:
    logs, expected = step["logs"], step["expected"]
    g1, g2 = expected["g1"], expected["g2"]
    np.testing.assert_allclose(logs["g_loss"], _mean(g1["loss"], g2["loss"]), rtol=1e-4)
    for term in ("bce", "energy_mape", "angle_mae", "sum_mape"):
        np.testing.assert_allclose(logs[f"g_{term}"], _mean(g1[term], g2[term]), rtol=1e-4, err_msg=term)
    # The label matters: scored against "fake" (0) the generator's cross-entropy would be another number.
    shown = step["shown"]
    towards_fake = _mean(*(_bce(np.zeros(BATCH), shown[key]["real"]) for key in ("g1", "g2")))
    assert not np.isclose(logs["g_bce"], towards_fake, rtol=1e-3)


def test_every_weighted_term_weighs_in_the_compared_losses(step: dict) -> None:
    # The comparisons above could not tell a wrong weight if one term drowned the others: each weighted term
    # carries at least 1% of the discriminator's and of the generator's loss here.
    expected = step["expected"]
    weights = {
        "bce": WEIGHT_BCE,
        "energy_mape": WEIGHT_ENERGY_MAPE,
        "angle_mae": WEIGHT_ANGLE_MAE,
        "sum_mape": WEIGHT_SUM_MAPE,
    }
    for steps in (("real", "fake"), ("g1", "g2")):
        total = _mean(*(expected[key]["loss"] for key in steps))
        for term, weight in weights.items():
            share = weight * _mean(*(expected[key][term] for key in steps)) / total
            assert share > 0.01, (steps, term, share)


def test_label_flips_change_the_discriminator_labels(step: dict) -> None:
    # Without the flips, the first real example would be scored against 1 and the second fake one against 0:
    # the reported cross-entropy is that of the flipped labels, not of the plain ones.
    logs, shown, labels = step["logs"], step["shown"], step["labels"]
    np.testing.assert_array_equal(labels["real"], [0.0, 1.0])
    np.testing.assert_array_equal(labels["fake"], [0.0, 1.0])
    flipped = _mean(_bce(labels["real"], shown["real"]["real"]), _bce(labels["fake"], shown["d"]["real"]))
    plain = _mean(_bce(np.ones(BATCH), shown["real"]["real"]), _bce(np.zeros(BATCH), shown["d"]["real"]))
    np.testing.assert_allclose(logs["d_bce"], flipped, rtol=1e-4)
    assert not np.isclose(logs["d_bce"], plain, rtol=1e-3)


def test_the_pinned_weights_are_the_models_defaults(step: dict) -> None:
    # The constructor's defaults are the paper's weights (the model above was built without loss_weights).
    assert step["model"].loss_weights == {"real": 3.0, "energy": 0.1, "angle": 25.0, "sum": 0.1}
