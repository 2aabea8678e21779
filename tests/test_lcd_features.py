"""Triforce expert features of LCD events."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from layout_spec import EXPERT_KEYS

from caloml.data.lcd_features import EXPERT_FEATURE_KEYS, HIT_THRESHOLD_GEV, expert_features
from caloml.errors import DataError
from caloml.geometry import CLIC_ECAL, CLIC_HCAL
from caloml.observables import grid
from caloml.units import LCD_STORED_PER_GEV


def _random_events(rng: np.random.Generator, n: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    ecal = rng.exponential(0.01, size=(n, *CLIC_ECAL.shape))
    ecal[rng.random(ecal.shape) > 0.1] = 0.0
    hcal = rng.exponential(0.01, size=(n, *CLIC_HCAL.shape))
    hcal[rng.random(hcal.shape) > 0.2] = 0.0
    return ecal.astype(dtype), hcal.astype(dtype)


def test_keys_order_dtype_and_shape() -> None:
    expected = EXPERT_KEYS
    assert tuple(EXPERT_FEATURE_KEYS) == expected
    features = expert_features(*_random_events(np.random.default_rng(0), 3))
    assert tuple(features) == EXPERT_FEATURE_KEYS
    for value in features.values():
        assert value.shape == (3,)
        assert value.dtype == np.float32


def test_hand_made_event() -> None:
    assert math.isclose(HIT_THRESHOLD_GEV, 0.1 / LCD_STORED_PER_GEV)
    ecal = np.zeros((1, *CLIC_ECAL.shape))
    hcal = np.zeros((1, *CLIC_HCAL.shape))
    ecal[0, 10:13, 20:23, 0] = 0.1  # a 3 x 3 block in the first layer: 0.9 GeV
    ecal[0, 11, 21, 1] = 0.3  # second layer
    ecal[0, 40, 40, 24] = 0.001  # below the hit threshold (0.05 stored units), outside the block
    hcal[0, 5, 5, 0] = 0.6
    hcal[0, 5, 6, 3] = HIT_THRESHOLD_GEV  # at the threshold: not a hit
    features = expert_features(ecal, hcal)
    ecal_e, hcal_e = 1.201, 0.6 + HIT_THRESHOLD_GEV
    expected = {
        "ECAL_E": ecal_e,
        "HCAL_E": hcal_e,
        "ECAL_nHits": 10,
        "HCAL_nHits": 1,
        "HCAL_ECAL_ERatio": hcal_e / ecal_e,
        "HCAL_ECAL_nHitsRatio": 0.1,
        "ECAL_ratioFirstLayerToTotalE": 0.9 / ecal_e,
        "ECAL_ratioFirstLayerToSecondLayerE": 3.0,
        "HCAL_ratioFirstLayerToTotalE": 0.6 / hcal_e,
        "HCAL_ratioFirstLayerToSecondLayerE": 0.0,  # empty second layer
        "ECALmomentX1": (11 * 1.2 + 40 * 0.001) / ecal_e,
        "ECALmomentZ1": (0.3 + 24 * 0.001) / ecal_e,
        "HCALmomentX1": 5.0,
        "HCALmomentX2": 0.0,
        "R9": 1.2 / ecal_e,
    }
    for key, value in expected.items():
        assert features[key][0] == pytest.approx(value, rel=1e-6), key


def test_empty_and_hcal_only_events_give_zeros_not_nan() -> None:
    ecal = np.zeros((2, *CLIC_ECAL.shape), np.float32)
    hcal = np.zeros((2, *CLIC_HCAL.shape), np.float32)
    hcal[1, 3, 3, 10] = 1.0
    features = expert_features(ecal, hcal)
    for key, value in features.items():
        assert np.all(np.isfinite(value)), key
        if key.startswith(("ECAL", "R9", "HCAL_ECAL")):
            np.testing.assert_array_equal(value, 0.0, err_msg=key)
    assert features["HCAL_E"][1] == 1.0
    assert features["HCALmomentZ1"][1] == 10.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_the_grid_observables(dtype) -> None:
    ecal, hcal = _random_events(np.random.default_rng(1), 6, dtype)
    features = expert_features(ecal, hcal)
    np.testing.assert_allclose(features["ECAL_E"], grid.total_energy(ecal), rtol=1e-5)
    np.testing.assert_array_equal(features["HCAL_nHits"], grid.hits_above(hcal, HIT_THRESHOLD_GEV))
    np.testing.assert_allclose(features["R9"], grid.r9(ecal), rtol=1e-5)
    first_total, first_second = grid.first_layer_ratios(hcal)
    np.testing.assert_allclose(features["HCAL_ratioFirstLayerToTotalE"], first_total, rtol=1e-5)
    np.testing.assert_allclose(features["HCAL_ratioFirstLayerToSecondLayerE"], first_second, rtol=1e-5)
    for calo, cells in (("ECAL", ecal), ("HCAL", hcal)):
        for axis in "XYZ":
            values = grid.moments(cells, axis.lower())
            for order in range(1, 7):
                # odd central moments cancel: compare them on the scale of the width, M2^(k/2)
                scale = values[:, 1] ** (order / 2) if order > 1 else np.abs(values[:, 0])
                np.testing.assert_allclose(
                    features[f"{calo}moment{axis}{order}"], values[:, order - 1], rtol=0, atol=1e-5 * scale.max()
                )


def test_input_checks() -> None:
    ecal, hcal = _random_events(np.random.default_rng(2), 2)
    with pytest.raises(DataError, match="2 ECAL events but 1 HCAL"):
        expert_features(ecal, hcal[:1])
    with pytest.raises(DataError, match="HCAL"):
        expert_features(ecal, hcal[0])


@pytest.mark.slow  # a wall-clock check: opt-in, not on a loaded CI machine
def test_fast_enough_for_the_simulator() -> None:
    """A loose guard (the target is well under 50 ms per 256 events): catches a per-event Python loop."""
    ecal = np.zeros((256, *CLIC_ECAL.shape), np.float32)
    hcal = np.zeros((256, *CLIC_HCAL.shape), np.float32)
    ecal[:, 20:30, 20:30, :] = 0.01
    hcal[:, 4:7, 4:7, :] = 0.01
    expert_features(ecal[:8], hcal[:8])
    start = time.perf_counter()
    expert_features(ecal, hcal)
    assert time.perf_counter() - start < 1.0


def _reference_expert_features(ecal_gev: np.ndarray, hcal_gev: np.ndarray) -> dict[str, np.ndarray]:
    """The implementation before the single-pass scan, kept as a readable reference: the grid observables."""
    ecal = grid.project(ecal_gev, hit_threshold_gev=HIT_THRESHOLD_GEV)
    hcal = grid.project(hcal_gev, hit_threshold_gev=HIT_THRESHOLD_GEV)

    def ratio(numerator, denominator):
        out = np.zeros(np.shape(numerator))
        np.divide(numerator, denominator, out=out, where=denominator != 0)
        return out

    assert ecal.hits is not None
    assert hcal.hits is not None
    features = {
        "ECAL_E": ecal.total,
        "HCAL_E": hcal.total,
        "ECAL_nHits": ecal.hits.astype(np.float64),
        "HCAL_nHits": hcal.hits.astype(np.float64),
        "HCAL_ECAL_ERatio": ratio(hcal.total, ecal.total),
        "HCAL_ECAL_nHitsRatio": ratio(hcal.hits.astype(np.float64), ecal.hits.astype(np.float64)),
        "ECAL_ratioFirstLayerToTotalE": ratio(ecal.z[:, 0], ecal.total),
        "ECAL_ratioFirstLayerToSecondLayerE": ratio(ecal.z[:, 0], ecal.z[:, 1]),
        "HCAL_ratioFirstLayerToTotalE": ratio(hcal.z[:, 0], hcal.total),
        "HCAL_ratioFirstLayerToSecondLayerE": ratio(hcal.z[:, 0], hcal.z[:, 1]),
        "R9": grid.r9_from_projection(ecal.xy),
    }
    for prefix, projections in (("ECAL", ecal), ("HCAL", hcal)):
        for axis, profile in (("X", projections.x), ("Y", projections.y), ("Z", projections.z)):
            values = grid.profile_moments(profile, 6)
            for order in range(1, 7):
                features[f"{prefix}moment{axis}{order}"] = values[:, order - 1]
    return {key: np.asarray(features[key], dtype=np.float32) for key in EXPERT_FEATURE_KEYS}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_to_the_reference_implementation_on_random_showers(dtype) -> None:
    """Hit counts exactly; sums to float32 rounding (the order of the additions changed); the central moments of
    odd order, which cancel, on the scale of the width M2^(k/2)."""
    rng = np.random.default_rng(7)
    ecal, hcal = _random_events(rng, 9, dtype)
    ecal[3] = 0.0  # an empty ECAL
    hcal[4] = 0.0  # an empty HCAL
    ecal[5, :, :, 1] = 0.0  # an empty second layer
    ecal[6, 2:5, 7:9, 3] = 7.0  # a dense core
    fast = expert_features(ecal, hcal)
    slow = _reference_expert_features(ecal, hcal)
    for key in ("ECAL_nHits", "HCAL_nHits", "HCAL_ECAL_nHitsRatio"):
        np.testing.assert_array_equal(fast[key], slow[key], err_msg=key)
    for key in EXPERT_FEATURE_KEYS:
        if "moment" in key and key[-1] in "35":
            width = slow[key[:-1] + "2"].astype(np.float64) ** (int(key[-1]) / 2)
            np.testing.assert_allclose(fast[key], slow[key], rtol=0, atol=1e-5 * width.max() + 1e-12, err_msg=key)
        else:
            np.testing.assert_allclose(fast[key], slow[key], rtol=2e-6, atol=0, err_msg=key)
    assert np.all(fast["ECAL_E"][3] == 0.0)
    assert np.all(fast["HCAL_E"][4] == 0.0)
    assert fast["ECAL_ratioFirstLayerToSecondLayerE"][5] == 0.0
