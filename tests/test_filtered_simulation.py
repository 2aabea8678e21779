"""Filtered simulation: the pre-selection on the spots keeps exactly the events the HCAL/ECAL cut keeps."""

from __future__ import annotations

import numpy as np
import pytest

from caloml.data.transforms import MaxHcalEcalRatio
from caloml.errors import CalomlError
from caloml.sim.engine import simulate_batch
from caloml.sim.filtered import simulate_filtered_batch
from caloml.sim.layouts import LAYOUTS
from caloml.sim.particles import sample_primaries


def _primaries(seed: int, n: int, energy: tuple[float, float]):
    return sample_primaries(
        np.random.default_rng(seed), n, energy_range_gev=energy, theta_range_rad=(1.2, 1.9), log_uniform_energy=False
    )


@pytest.mark.parametrize(("layout", "max_ratio"), [("lcd-rec", 0.1), ("lcd-rec", 1.0), ("lcd-gen", 0.5)])
def test_same_passing_events_and_identical_keys_with_and_without_the_preselection(layout, max_ratio) -> None:
    primaries = _primaries(4, 48, (10.0, 30.0))
    reference = simulate_batch(np.random.default_rng(11), LAYOUTS[layout], "chpi", primaries)
    passing = np.flatnonzero(MaxHcalEcalRatio(max_ratio).keep(reference))
    results = {}
    for preselect in (False, True):
        events, indices = simulate_filtered_batch(
            np.random.default_rng(11), LAYOUTS[layout], "chpi", primaries, max_ratio, preselect=preselect
        )
        np.testing.assert_array_equal(indices, passing)
        assert set(events) == set(reference)
        for key, value in events.items():
            np.testing.assert_array_equal(value, reference[key][passing], err_msg=key)
        results[preselect] = events
    if max_ratio >= 0.5:
        assert passing.size > 0  # the comparison covered events that pass
        assert passing.size < 48  # and events that fail
    for key in results[True]:
        np.testing.assert_array_equal(results[True][key], results[False][key], err_msg=key)


def test_the_preselection_is_necessary_and_drops_most_pions() -> None:
    """Every event passing the exact cut passes the pre-selection; most events are dropped before binning."""
    from caloml.sim import readout
    from caloml.sim.engine import lcd_windows, simulate_spots
    from caloml.sim.filtered import PRESELECTION_MARGIN

    layout = LAYOUTS["lcd-rec"]
    primaries = _primaries(5, 64, (10.0, 100.0))
    rng = np.random.default_rng(3)
    spots, _ = simulate_spots(rng, layout, "chpi", primaries)
    windows, _ = lcd_windows(rng, spots, layout.build_detector(), primaries)
    sums = readout.window_sums(spots, layout.build_detector(), windows, 64)
    reference = simulate_batch(np.random.default_rng(3), layout, "chpi", primaries)
    np.testing.assert_allclose(sums[:, 0], reference["ECAL_E"], rtol=1e-6)
    np.testing.assert_allclose(sums[:, 1], reference["HCAL_E"], rtol=1e-6, atol=1e-12)
    for max_ratio in (0.1, 1.0, 3.0):
        candidate = sums[:, 1] < max_ratio * sums[:, 0] * PRESELECTION_MARGIN
        exact = np.asarray(MaxHcalEcalRatio(max_ratio).keep(reference))
        assert np.all(candidate[exact])
    assert np.mean(sums[:, 1] < 0.1 * sums[:, 0] * PRESELECTION_MARGIN) < 0.2


def test_needs_an_lcd_layout() -> None:
    with pytest.raises(CalomlError, match="LCD layout"):
        simulate_filtered_batch(
            np.random.default_rng(0), LAYOUTS["calochallenge-2"], "chpi", _primaries(0, 2, (10.0, 20.0)), 0.1
        )


def test_whole_requests_filtered_like_simulate_events_then_the_cut() -> None:
    from caloml.sim.run import SimulationRequest, simulate_events, simulate_filtered_events

    request = SimulationRequest("lcd-rec", "chpi", 40, 9, (10.0, 20.0), chunk_events=16)
    everything = simulate_events(request)
    passing = np.flatnonzero(MaxHcalEcalRatio(1.0).keep(everything))
    events, indices = simulate_filtered_events(request, 1.0)
    np.testing.assert_array_equal(indices, passing)
    assert 0 < passing.size < 40
    for key, value in events.items():
        np.testing.assert_array_equal(value, everything[key][passing], err_msg=key)
