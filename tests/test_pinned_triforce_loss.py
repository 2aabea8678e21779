"""Triforce's training loss against a hand computation of the paper's formula (NumPy, the weight as a literal).

"Calorimetry with deep learning: particle simulation and reconstruction for collider physics" (arXiv:1912.06794),
section 5: the loss is the cross-entropy of the particle identification plus 200 times the mean squared error of
the energy regression. The energy error is taken in units of 100 GeV (the network's energy unit), so per event

    L = -log softmax(logits)[true class] + 200 * ((E_predicted - E_true) / 100 GeV) ** 2

and the reported loss is its mean over the batch, with or without micro-batch accumulation.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.data.reconstruction_tasks import INPUT_SHAPES
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet
from caloml.tasks.triforce.config import TriforceModelSection

ENERGY_LOSS_WEIGHT = 200.0  # the paper's weight of the energy MSE
ENERGY_UNIT_GEV = 100.0
BATCH = 4


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[label] per event, computed from the exponentials (float64)."""
    logits = np.asarray(logits, np.float64)
    probability = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return -np.log(probability[np.arange(len(labels)), labels])


def _paper_loss(logits: np.ndarray, energy_gev: np.ndarray, labels: np.ndarray, true_gev: np.ndarray) -> np.ndarray:
    error = (np.asarray(energy_gev, np.float64) - true_gev) / ENERGY_UNIT_GEV
    return _cross_entropy(logits, labels) + ENERGY_LOSS_WEIGHT * error**2


def _batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {
        key: (rng.exponential(0.01, (BATCH, *shape)) if shape else rng.uniform(10.0, 200.0, BATCH)).astype(np.float32)
        for key, shape in INPUT_SHAPES.items()
    }
    batch["recoEta"] = rng.uniform(-0.5, 0.5, BATCH).astype(np.float32)
    batch["recoPhi"] = rng.uniform(-np.pi, np.pi, BATCH).astype(np.float32)
    batch["class_label"] = np.array([0, 1, 1, 0], np.int32)
    batch["energy"] = rng.uniform(10.0, 500.0, BATCH).astype(np.float32)
    return batch


def _tiny(**kwargs: object) -> TriforceDNN:
    # the loss weight is not passed: the model's default must be the paper's
    return TriforceDNN(n_hidden_layers=1, hidden_units=8, dropout=0.0, seed=3, **kwargs)


def test_per_event_losses_match_the_paper_formula() -> None:
    model = _tiny()
    logits = np.array([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0], [0.0, 4.0]], np.float32)
    energy = np.array([100.0, 250.0, 40.0, 510.0], np.float32)
    true = np.array([110.0, 200.0, 40.0, 480.0], np.float32)
    labels = np.array([0, 1, 1, 0], np.int32)
    parts = model.per_event_losses({"class_logits": logits, "energy": energy}, tf.constant(labels), tf.constant(true))
    np.testing.assert_allclose(parts["cross_entropy"], _cross_entropy(logits, labels), rtol=1e-5)
    np.testing.assert_allclose(parts["energy_mse"], ((energy - true.astype(np.float64)) / 100.0) ** 2, rtol=1e-5)
    np.testing.assert_allclose(parts["loss"], _paper_loss(logits, energy, labels, true), rtol=1e-5)
    np.testing.assert_array_equal(parts["accuracy"], [1.0, 0.0, 1.0, 0.0])  # a tie (event 2) picks class 0


@pytest.mark.parametrize("micro_batch_size", [None, 3])
def test_reported_training_loss_matches_the_paper_formula(micro_batch_size: int | None) -> None:
    model = _tiny(micro_batch_size=micro_batch_size)
    model.compile(keras.optimizers.SGD(learning_rate=0.0))
    batch = _batch()
    inputs = {key: tf.constant(batch[key]) for key in INPUT_SHAPES}
    outputs = model(inputs, training=True)  # no dropout: the outputs train_step sees
    # true energies a few GeV from the predictions: both terms of the loss weigh in (errors of 0.03 to 0.08 in
    # units of 100 GeV, times 200, against cross-entropies of order 1)
    batch["energy"] = outputs["energy"].numpy() + np.array([5.0, -8.0, 3.0, -6.0], np.float32)
    expected = _paper_loss(
        outputs["class_logits"].numpy(),
        outputs["energy"].numpy(),
        batch["class_label"],
        batch["energy"].astype(np.float64),
    )
    logs = {key: float(value) for key, value in model.train_step({k: tf.constant(v) for k, v in batch.items()}).items()}
    np.testing.assert_allclose(logs["loss"], expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        logs["cross_entropy"], _cross_entropy(outputs["class_logits"].numpy(), batch["class_label"]).mean(), rtol=1e-5
    )
    # neither term drowns the other in this batch: a wrong weight on either shows in the loss
    assert 0.1 < ENERGY_LOSS_WEIGHT * logs["energy_mse"] / logs["cross_entropy"] < 10.0


def test_the_paper_weight_is_every_networks_default() -> None:
    for network in (TriforceDNN, TriforceCNN, TriforceGoogLeNet):
        assert inspect.signature(network).parameters["energy_loss_weight"].default == 200.0, network.__name__
    assert TriforceModelSection().energy_loss_weight == 200.0
