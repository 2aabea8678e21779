"""The classifier two-sample test on samples with a known answer, its calibration, errors and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caloml.errors import CalomlError
from caloml.evaluate.two_sample import (
    MIN_EVENTS,
    auc_standard_error,
    check_classifier_sizes,
    classifier_two_sample_test,
    platt_calibration,
    split_indices,
)


def test_null_gives_auc_one_half_and_a_shift_is_found() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 12)), rng.normal(size=(700, 12))
    null = classifier_two_sample_test(a, b, seed=3, repeats=2)
    assert null["runs"][0]["sizes_per_class"] == {"train": 350, "validation": 175, "test": 175}  # balanced 50/25/25
    assert abs(null["auc"] - 0.5) < 3 * null["auc_stat_error"]
    assert abs(null["jsd_nats"]) < 0.03
    assert null["auc_std"] is not None
    assert [run["seed"] for run in null["runs"]] == [3, 4]

    shifted = rng.normal(size=(800, 12))
    shifted[:, :3] += 0.8  # a 0.8 sigma shift in three of twelve inputs
    found = classifier_two_sample_test(shifted, b, seed=3)
    assert found["auc"] > 0.8
    assert 0.05 < found["jsd_nats"] < math.log(2)
    assert found["auc_std"] is None  # one repeat: no spread
    again = classifier_two_sample_test(shifted, b, seed=3)
    assert again["auc"] == found["auc"]  # seeded: the same split, initialization and training


def test_platt_calibration_never_inverts_the_network() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400).astype(float)
    informative = platt_calibration(2.0 * labels - 1.0 + rng.normal(size=400), labels)
    probability = informative(np.array([-3.0, 0.0, 3.0]))
    assert np.all(np.diff(probability) > 0)
    inverted = platt_calibration(-(2.0 * labels - 1.0) + rng.normal(size=400), labels)
    np.testing.assert_allclose(inverted(np.array([-3.0, 3.0])), np.mean(labels))


def test_auc_error_and_splits() -> None:
    n = 250
    assert auc_standard_error(0.5, n, n) == pytest.approx(math.sqrt((2 * n + 1) / (12 * n * n)), rel=0.01)
    train, val, test = split_indices(1000, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (500, 250, 250)
    assert sorted(np.concatenate([train, val, test])) == list(range(1000))


def test_too_small_samples_are_refused() -> None:
    with pytest.raises(CalomlError, match=rf"gen.h5: 120 showers is too few .* at least {MIN_EVENTS} per file"):
        check_classifier_sizes(120, 5000, generated="gen.h5", reference="ref.h5")
    with pytest.raises(CalomlError, match="too few"):
        classifier_two_sample_test(np.zeros((100, 3)), np.zeros((1000, 3)))
    with pytest.raises(CalomlError, match="do not match"):
        classifier_two_sample_test(np.zeros((600, 3)), np.zeros((600, 4)))
