"""The simulator's behaviour and invariants: seeds, workers, the file layouts' keys, kinematics, GFlash units, files.

Physics targets (physics.md section 6) are in ``test_sim_physics.py``; everything here is small and fast.
"""

from __future__ import annotations

import json
import math
from functools import cache

import h5py
import numpy as np
import pytest
from layout_spec import EXPERT_KEYS
from scipy import integrate, optimize, stats

from caloml.data.calochallenge import CaloChallengeReader
from caloml.data.lcd import LCDReader
from caloml.errors import CalomlError
from caloml.sim import gflash
from caloml.sim.layouts import LAYOUTS
from caloml.sim.particles import PI0_MASS_GEV, decay_pi0, photon_conversions
from caloml.sim.run import SimulationRequest, simulate_events, simulate_file

DEGREE = math.pi / 180.0
PARTICLE_PDG = {"electron": 11, "photon": 22, "pi0": 111, "chpi": 211}
LCD_SCALAR_KEYS = (
    "energy",
    "theta",
    "mtheta",
    "phi",
    "eta",
    "recoTheta",
    "recoPhi",
    "recoEta",
    "pdgID",
    "ECAL_E",
    "HCAL_E",
    "openingAngle",
    "conversion",
)
ECAL_SHAPE = (51, 51, 25)
HCAL_SHAPE = (11, 11, 60)
CC2_SHAPE = (45, 16, 9)


@cache
def _lcd(particle: str, geometry: str = "lcd-gen", n: int = 12, seed: int = 11) -> dict[str, np.ndarray]:
    """A small cached sample over the geometry's default energy and angle ranges (do not modify the arrays)."""
    return simulate_events(SimulationRequest(geometry, particle, n, seed))


@cache
def _calochallenge() -> dict[str, np.ndarray]:
    return simulate_events(SimulationRequest("calochallenge-2", "electron", 300, 5))


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# -- seeds and workers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("particle", ["electron", "photon", "pi0", "chpi"])
def test_same_seed_same_events_other_seed_other_events(particle: str) -> None:
    request = SimulationRequest("lcd-gen", particle, 4, 123, (10.0, 40.0))
    first, again = simulate_events(request), simulate_events(request)
    _assert_same(first, again)
    other = simulate_events(SimulationRequest("lcd-gen", particle, 4, 124, (10.0, 40.0)))
    assert not np.array_equal(first["ECAL"], other["ECAL"])
    assert not np.array_equal(first["energy"], other["energy"])


def test_one_and_two_workers_give_identical_events() -> None:
    # 3 chunks of 2 events, so that both workers simulate and the chunks must come back in order.
    request = SimulationRequest("lcd-gen", "electron", 6, 7, (5.0, 20.0), chunk_events=2)
    _assert_same(simulate_events(request, workers=1), simulate_events(request, workers=2))


# -- the LCD keys -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("geometry", "extra_keys"), [("lcd-gen", ()), ("lcd-rec", EXPERT_KEYS)], ids=["lcd-gen", "lcd-rec"]
)
def test_lcd_keys_shapes_and_dtypes(geometry: str, extra_keys: tuple[str, ...]) -> None:
    n = 12
    events = _lcd("chpi", geometry)
    assert set(events) == {"ECAL", "HCAL", *LCD_SCALAR_KEYS, *extra_keys}
    assert events["ECAL"].shape == (n, *ECAL_SHAPE)
    assert events["HCAL"].shape == (n, *HCAL_SHAPE)
    for key, value in events.items():
        if key in ("ECAL", "HCAL"):
            assert value.dtype == np.float32, key
        else:
            assert value.shape == (n,), key
            expected = np.int32 if key in ("pdgID", "conversion") else np.float32
            assert value.dtype == expected, key
            assert np.all(np.isfinite(value)), key


def test_lcd_rec_expert_features_agree_with_the_cells() -> None:
    events = _lcd("chpi", "lcd-rec")
    ecal, hcal = events["ECAL"].astype(np.float64), events["HCAL"].astype(np.float64)
    np.testing.assert_allclose(events["ECAL_E"], ecal.sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(events["HCAL_E"], hcal.sum(axis=(1, 2, 3)), rtol=1e-5, atol=1e-9)
    # Hits: cells above 0.1 stored units = 0.002 GeV.
    np.testing.assert_array_equal(events["ECAL_nHits"], (ecal > 0.1 / 50.0).sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(events["HCAL_nHits"], (hcal > 0.1 / 50.0).sum(axis=(1, 2, 3)))
    ratio = np.divide(events["HCAL_E"], events["ECAL_E"], out=np.zeros(len(ecal)), where=events["ECAL_E"] != 0)
    np.testing.assert_allclose(events["HCAL_ECAL_ERatio"], ratio, rtol=1e-5)


@pytest.mark.parametrize("particle", ["electron", "photon", "pi0", "chpi"])
def test_cells_finite_non_negative_and_sums(particle: str) -> None:
    events = _lcd(particle)
    for key in ("ECAL", "HCAL"):
        assert np.all(np.isfinite(events[key])), key
        assert events[key].min() >= 0.0, key
    assert np.all(events["ECAL"].sum(axis=(1, 2, 3)) > 0)  # every shower leaves energy in the ECAL
    np.testing.assert_allclose(events["ECAL_E"], events["ECAL"].sum(axis=(1, 2, 3), dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(
        events["HCAL_E"], events["HCAL"].sum(axis=(1, 2, 3), dtype=np.float64), rtol=1e-5, atol=1e-9
    )


@pytest.mark.parametrize("particle", ["electron", "photon", "pi0", "chpi"])
def test_truth_keys(particle: str) -> None:
    events = _lcd(particle)
    assert np.all(events["pdgID"] == PARTICLE_PDG[particle])
    # Default ranges of lcd-gen: 2-500 GeV, theta 60-120 degrees, phi in [-pi, pi).
    assert events["energy"].min() >= 2.0
    assert events["energy"].max() <= 500.0
    assert events["theta"].min() >= np.float32(60 * DEGREE)
    assert events["theta"].max() <= np.float32(120 * DEGREE)
    assert np.all(np.abs(events["phi"]) <= np.float32(math.pi))
    np.testing.assert_allclose(events["eta"], -np.log(np.tan(events["theta"] / 2.0)), atol=1e-5)
    conversion = events["conversion"]
    if particle == "pi0":
        minimum = 2.0 * np.arcsin(PI0_MASS_GEV / events["energy"].astype(np.float64))
        assert np.all(events["openingAngle"] >= minimum * (1.0 - 1e-5))
        assert np.all(events["openingAngle"] < math.pi)
        assert set(np.unique(conversion)) <= {0, 1, 2}  # one flag per photon
    else:
        assert np.all(events["openingAngle"] == -1.0)
        assert set(np.unique(conversion)) <= ({0, 1} if particle == "photon" else {0})


@pytest.mark.parametrize("particle", ["electron", "photon", "pi0", "chpi"])
def test_reconstructed_angles_follow_the_true_ones(particle: str) -> None:
    # The barycentre lies on the particle's line from the interaction point: recoTheta and recoPhi within 0.01 rad
    # (15 mm at the ECAL face; measured below 0.003 rad), recoEta from recoTheta.
    events = _lcd(particle)
    assert np.all(np.abs(events["recoTheta"] - events["theta"]) < 0.01)
    assert np.all(np.abs(np.angle(np.exp(1j * (events["recoPhi"] - events["phi"])))) < 0.01)
    np.testing.assert_allclose(events["recoEta"], -np.log(np.tan(events["recoTheta"] / 2.0)), atol=1e-5)


def test_energies_within_the_requested_range_and_spread_over_it() -> None:
    events = simulate_events(SimulationRequest("lcd-gen", "electron", 40, 3, (20.0, 30.0)))
    energy = events["energy"]
    assert energy.min() >= 20.0
    assert energy.max() <= 30.0
    assert stats.kstest((energy - 20.0) / 10.0, "uniform").pvalue > 1e-3  # uniform over the range


def test_fixed_energy_and_fixed_angle() -> None:
    theta = 70 * DEGREE
    events = simulate_events(SimulationRequest("lcd-gen", "photon", 5, 3, (25.0, 25.0), (theta, theta)))
    np.testing.assert_array_equal(events["energy"], np.float32(25.0))
    np.testing.assert_array_equal(events["theta"], np.float32(theta))


# -- kinematics -------------------------------------------------------------------------------------------------------


def test_pi0_decay_kinematics() -> None:
    rng = np.random.default_rng(0)
    energy = np.concatenate([np.full(20000, 10.0), np.geomspace(0.3, 1000.0, 20000)])
    decay = decay_pi0(rng, energy)
    e1, e2 = decay.energy_1_gev, decay.energy_2_gev
    velocity = np.sqrt(1.0 - (PI0_MASS_GEV / energy) ** 2)
    np.testing.assert_allclose(e1 + e2, energy, rtol=1e-12)
    low, high = energy * (1.0 - velocity) / 2.0, energy * (1.0 + velocity) / 2.0
    assert np.all(e1 >= low * (1 - 1e-12))
    assert np.all(e1 <= high * (1 + 1e-12))
    # Isotropic in the rest frame: E1 uniform over its range.
    assert stats.kstest((e1 - low) / (high - low), "uniform").pvalue > 1e-3
    np.testing.assert_allclose(np.cos(decay.opening_angle_rad), 1.0 - PI0_MASS_GEV**2 / (2.0 * e1 * e2), atol=1e-12)
    minimum = 2.0 * np.arcsin(PI0_MASS_GEV / energy)
    assert np.all(decay.opening_angle_rad >= minimum * (1.0 - 1e-6))
    # The minimum is reached for the symmetric decay: about 2.7 mrad at 100 GeV.
    symmetric = decay_pi0(rng, np.array([100.0]))
    assert symmetric.opening_angle_rad[0] >= 2.0 * math.asin(PI0_MASS_GEV / 100.0) * (1 - 1e-6)
    assert math.isclose(2.0 * math.asin(PI0_MASS_GEV / 100.0), 2.7e-3, rel_tol=0.01)


def test_photon_conversions() -> None:
    n = 200_000
    early, depth = photon_conversions(np.random.default_rng(1), n)
    share = early.mean()
    # Binomial: 5 standard deviations (0.0032 for 9% of 200k).
    assert abs(share - 0.09) < 5.0 * math.sqrt(0.09 * 0.91 / n)
    assert np.all(depth[early == 1] == 0.0)
    late = depth[early == 0]
    assert late.min() > 0.0
    # Exponential with mean 9/7 X0: the mean to 5 standard errors, and the whole distribution.
    assert abs(late.mean() - 9.0 / 7.0) < 5.0 * (9.0 / 7.0) / math.sqrt(late.size)
    assert stats.kstest(late, "expon", args=(0.0, 9.0 / 7.0)).pvalue > 1e-3


@pytest.mark.parametrize(
    ("particle", "theta_deg"),
    [
        ("photon", 90.0),
        ("pi0", 90.0),
        ("photon", 60.0),
        ("pi0", 60.0),
    ],
)
def test_photon_showers_start_at_the_conversion_depth_along_their_path(
    particle: str, theta_deg: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """photon_conversions draws the depth in X0 along the photon's path; em_showers takes the start along the axis."""
    from caloml.sim import engine
    from caloml.sim.particles import Primaries

    depths = np.array([0.5, 1.0, 2.0, 3.0])
    monkeypatch.setattr(
        engine, "photon_conversions", lambda rng, n: (np.zeros(n, np.int32), np.resize(depths, n).astype(float))
    )
    starts = []
    real_em_showers = engine.em_showers

    def spy(rng, detector, energy, axes, **kwargs):
        starts.append(axes.start_x0.copy())
        return real_em_showers(rng, detector, energy, axes, **kwargs)

    monkeypatch.setattr(engine, "em_showers", spy)
    n = 4
    primaries = Primaries(np.full(n, 20.0), np.full(n, theta_deg * DEGREE), np.zeros(n))
    engine.simulate_spots(np.random.default_rng(0), LAYOUTS["lcd-gen"], particle, primaries)
    (start,) = starts
    np.testing.assert_allclose(start, np.resize(depths, start.size))


# -- the window and the sign convention ------------------------------------------------------------------------------


def _barycentre_offset_cells(ecal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted x and y barycentre of each stored window, in cells relative to the centre of cell 25."""
    cells = ecal.astype(np.float64)
    total = cells.sum(axis=(1, 2, 3))
    index = np.arange(cells.shape[1]) + 0.5
    x = (cells.sum(axis=(2, 3)) * index).sum(axis=1) / total
    y = (cells.sum(axis=(1, 3)) * index).sum(axis=1) / total
    return x - 25.5, y - 25.5


@pytest.mark.parametrize("theta_deg", [60.0, 90.0, 120.0])
def test_window_centred_on_the_barycentre(theta_deg: float) -> None:
    # Electrons and photons over the full lcd-gen energy range. The window is centred on the barycentre of all ECAL
    # deposits, some of which (the soft halo) fall outside the window, so the stored barycentre may step just out of
    # the central cell: measured 93-97% inside (n = 256), never more than 1 cell off. 64 events per particle give a
    # binomial standard deviation of 0.03 on the 0.8 threshold per particle; pooled (n = 128), 0.02 on 0.9.
    theta = theta_deg * DEGREE
    inside = []
    for particle in ("electron", "photon"):
        events = simulate_events(SimulationRequest("lcd-gen", particle, 64, 17, None, (theta, theta)))
        dx, dy = _barycentre_offset_cells(events["ECAL"])
        central = (np.abs(dx) < 0.5) & (np.abs(dy) < 0.5)
        assert central.mean() >= 0.8, particle
        assert np.all(np.maximum(np.abs(dx), np.abs(dy)) < 1.5), particle  # always within the central 3 x 3
        inside.append(central)
    assert np.concatenate(inside).mean() >= 0.9


@pytest.mark.parametrize("theta_deg", [60.0, 90.0, 120.0])
def test_inclined_showers_move_along_y(theta_deg: float) -> None:
    """theta < 90 degrees: deeper layers sit at larger y, by (depth difference) x cot(theta) / 5.1 mm."""
    theta = theta_deg * DEGREE
    events = simulate_events(SimulationRequest("lcd-gen", "electron", 16, 9, (50.0, 50.0), (theta, theta)))
    cells = events["ECAL"].astype(np.float64)
    along_y = cells.sum(axis=1)  # (N, y, z)
    layer_y = (along_y * np.arange(51)[None, :, None]).sum(axis=1) / along_y.sum(axis=1)
    # Sensor depths from physics.md: 17 layers of 2.4 mm W + 0.5 mm Si, then 8 of 4.8 + 0.5 mm.
    pitch = np.array([2.9] * 17 + [5.3] * 8)
    depth = np.cumsum(pitch)
    first, last = 2, 20
    expected = (depth[last] - depth[first]) / math.tan(theta) / 5.1
    shift = np.median(layer_y[:, last] - layer_y[:, first])
    assert abs(shift - expected) < 0.5, (shift, expected)
    if theta_deg < 90:
        assert shift > 5.0
    elif theta_deg > 90:
        assert shift < -5.0
    # The x barycentre does not move with depth.
    along_x = cells.sum(axis=2)
    layer_x = (along_x * np.arange(51)[None, :, None]).sum(axis=1) / along_x.sum(axis=1)
    assert abs(np.median(layer_x[:, last] - layer_x[:, first])) < 0.5


# -- CaloChallenge dataset 2 ------------------------------------------------------------------------------------------


def test_calochallenge_2_layout_and_energies() -> None:
    events = _calochallenge()
    assert set(events) == {"incident_energies", "showers"}
    incident, showers = events["incident_energies"], events["showers"]
    assert incident.shape == (300, 1)
    assert showers.shape == (300, *CC2_SHAPE)
    assert incident.dtype == np.float32
    assert showers.dtype == np.float32
    assert np.all(np.isfinite(showers))
    assert showers.min() >= 0.0
    energy = incident[:, 0].astype(np.float64)
    assert energy.min() >= 1.0
    assert energy.max() <= 1000.0
    # Log-uniform in 1-1000 GeV (a uniform spectrum has its median at 500 GeV and fails this by far).
    assert stats.kstest(np.log(energy) / math.log(1000.0), "uniform").pvalue > 1e-3
    ratio = showers.sum(axis=(1, 2, 3), dtype=np.float64) / energy
    assert 0.9 <= np.median(ratio) <= 1.05


# -- invalid requests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        SimulationRequest("lcd-nope", "electron", 2, 0),
        SimulationRequest("lcd-gen", "muon", 2, 0),
        SimulationRequest("lcd-gen", "electron", 0, 0),
        SimulationRequest("lcd-gen", "electron", -3, 0),
        SimulationRequest("lcd-gen", "electron", 2, 0, (0.4, 10.0)),
        SimulationRequest("lcd-gen", "electron", 2, 0, (float("nan"), 10.0)),
        SimulationRequest("lcd-gen", "electron", 2, 0, (10.0, float("nan"))),
        SimulationRequest("lcd-gen", "electron", 2, 0, (20.0, 10.0)),
        SimulationRequest("lcd-gen", "electron", 2, 0, None, (40 * DEGREE, 90 * DEGREE)),
        SimulationRequest("lcd-rec", "electron", 2, 0, None, (90 * DEGREE, 140 * DEGREE)),
        SimulationRequest("calochallenge-2", "electron", 2, 0, None, (80 * DEGREE, 80 * DEGREE)),
        SimulationRequest("calochallenge-2", "electron", 2, 0, None, (60 * DEGREE, 120 * DEGREE)),
    ],
    ids=[
        "geometry",
        "particle",
        "n=0",
        "n<0",
        "energy<0.5",
        "energy-nan-low",
        "energy-nan-high",
        "energy-reversed",
        "theta-below-lcd",
        "theta-above-lcd",
        "calochallenge-inclined",
        "calochallenge-range",
    ],
)
def test_invalid_requests_raise_caloml_error(request_: SimulationRequest, tmp_path) -> None:
    with pytest.raises(CalomlError):
        simulate_events(request_)
    out = tmp_path / "x.h5"
    with pytest.raises(CalomlError):
        simulate_file(request_, out, workers=1, progress=False)
    assert not out.exists()


def test_valid_edges_are_accepted() -> None:
    # The boundary values themselves are valid: 0.5 GeV and perpendicular CaloChallenge showers.
    events = simulate_events(SimulationRequest("calochallenge-2", "electron", 2, 0, (0.5, 0.5), (math.pi / 2,) * 2))
    np.testing.assert_array_equal(events["incident_energies"], np.float32(0.5))


# -- GFlash units -----------------------------------------------------------------------------------------------------


def _clic_gflash_constants() -> tuple[float, float, float, float]:
    """Z, Ec (GeV), Fs and e_hat of the CLIC ECAL, checked against physics.md."""
    detector = LAYOUTS["lcd-gen"].build_detector()
    # Ec from X0 in g/cm2: 8.0 MeV for tungsten (3.9 MeV would be the mm slip).
    assert detector.critical_energy_gev == pytest.approx(0.008)
    assert detector.atomic_number == 74
    # e_hat = 1 / (1 + 0.007 (74 - 14)), about 0.70; Fs = X0_eff / pitch of a thin layer (2.4 mm W + 0.5 mm Si).
    assert detector.em_e_hat == pytest.approx(1.0 / (1.0 + 0.007 * 60.0))
    assert detector.em_fs == pytest.approx(1.0 / (2.4 / 3.5 + 0.5 / 93.7))
    return 74.0, 0.008, detector.em_fs, detector.em_e_hat


@pytest.mark.parametrize("energy_gev", [10.0, 100.0, 1000.0])
def test_gflash_longitudinal_parameter_draws(energy_gev: float) -> None:
    z, ec, fs, e_hat = _clic_gflash_constants()
    n = 200_000
    profiles = gflash.sample_longitudinal(
        np.random.default_rng(2), np.full(n, energy_gev), atomic_number=z, critical_energy_gev=ec, fs=fs, e_hat=e_hat
    )
    # physics.md section 2, with the sampling-calorimeter corrections (no division by Z in the alpha correction).
    ln_y = math.log(energy_gev / ec)
    mean_ln_t = math.log((ln_y - 0.812) - 0.55 / fs - 0.69 * (1.0 - e_hat))
    mean_ln_a = math.log(0.81 + (0.458 + 2.26 / z) * ln_y - 0.476 / fs)
    sigma_t = min(1.0 / (-2.5 + 1.25 * ln_y), 0.5)
    sigma_a = min(1.0 / (-0.82 + 0.79 * ln_y), 0.5)
    rho = 0.784 - 0.023 * ln_y
    ln_t, ln_a = np.log(profiles.depth_max), np.log(profiles.alpha)
    # The clips (T >= 1, alpha >= 1.1) are more than 6 sigma away at these energies; 5 standard errors on the means.
    assert abs(ln_t.mean() - mean_ln_t) < 5.0 * sigma_t / math.sqrt(n)
    assert abs(ln_a.mean() - mean_ln_a) < 5.0 * sigma_a / math.sqrt(n)
    assert ln_t.std() == pytest.approx(sigma_t, rel=0.01)
    assert ln_a.std() == pytest.approx(sigma_a, rel=0.01)
    # Standard error of a correlation coefficient: (1 - rho^2) / sqrt(n), about 0.002.
    assert abs(np.corrcoef(ln_t, ln_a)[0, 1] - rho) < 0.01
    # beta = (alpha - 1) / T, so that the Gamma profile peaks at T.
    np.testing.assert_allclose(profiles.beta, (profiles.alpha - 1.0) / profiles.depth_max)


@pytest.mark.parametrize("start_x0", [0.0, 3.0])
def test_gflash_layer_fractions_sum_to_the_contained_share(start_x0: float) -> None:
    detector = LAYOUTS["lcd-gen"].build_detector()
    ecal_bounds = detector.x0_bounds[:26]  # the 25 ECAL layers, 0 to 22.6 X0
    assert ecal_bounds[-1] == pytest.approx(17 * (2.4 / 3.5 + 0.5 / 93.7) + 8 * (4.8 / 3.5 + 0.5 / 93.7))
    alpha = np.array([2.5, 4.0, 6.5, 9.0])
    beta = np.array([0.5, 0.6, 0.45, 0.5])
    bounds = np.broadcast_to(ecal_bounds - start_x0, (alpha.size, ecal_bounds.size))
    shares = gflash.layer_fractions(bounds, alpha, beta)
    assert shares.shape == (4, 25)
    assert shares.min() >= 0.0
    contained = stats.gamma.cdf(ecal_bounds[-1] - start_x0, a=alpha, scale=1.0 / beta)
    np.testing.assert_allclose(shares.sum(axis=1), contained, rtol=1e-10)
    assert np.all(contained < 1.0)  # the deep showers leak out of the back
    # Nothing in front of the shower start; one layer against a direct integral of f(t).
    assert np.all(shares[:, ecal_bounds[1:] <= start_x0] == 0.0)
    k = 10
    a, b = alpha[1], beta[1]

    def density(t: float) -> float:
        return (b * t) ** (a - 1.0) * b * math.exp(-b * t) / math.gamma(a)

    integral, _ = integrate.quad(density, bounds[1, k], bounds[1, k + 1])
    assert shares[1, k] == pytest.approx(integral, rel=1e-8)


def test_gflash_lateral_radius_at_tau_one() -> None:
    z, _, fs, e_hat = _clic_gflash_constants()
    energy, tau = 100.0, 1.0
    n = 400_000
    radius = gflash.sample_lateral_radius(
        np.random.default_rng(3), np.full(n, tau), np.full(n, energy), atomic_number=z, fs=fs, e_hat=e_hat
    )
    # physics.md section 3, with the sampling corrections.
    ln_e = math.log(energy)
    r_core = 0.0251 + 0.00319 * ln_e + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z, 0.645, -2.59, 0.3585 + 0.0421 * ln_e
    r_tail = k1 * (math.exp(k3 * (tau - k2)) + math.exp(k4 * (tau - k2)))
    p1, p2, p3 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z, 1.313 - 0.0686 * ln_e
    p = p1 * math.exp((p2 - tau) / p3 - math.exp((p2 - tau) / p3))
    r_core += -0.0203 * (1.0 - e_hat) + 0.0397 * math.exp(-tau) / fs
    r_tail += -0.14 * (1.0 - e_hat) - 0.495 * math.exp(-tau) / fs
    p += (1.0 - e_hat) * (0.348 - 0.642 * math.exp(-((tau - 1.0) ** 2)) / fs)

    def cumulative(r: float) -> float:
        return p * r**2 / (r**2 + r_core**2) + (1.0 - p) * r**2 / (r**2 + r_tail**2)

    within_1 = cumulative(1.0)  # p / (1 + Rc^2) + (1 - p) / (1 + Rt^2), about 0.95
    assert 0.9 < within_1 < 0.99
    # Binomial standard error sqrt(0.05 * 0.95 / 4e5) = 3.4e-4: 5 of them.
    assert abs(np.mean(radius < 1.0) - within_1) < 5.0 * math.sqrt(within_1 * (1.0 - within_1) / n)
    assert abs(np.mean(radius < 2.0) - cumulative(2.0)) < 0.002
    median = optimize.brentq(lambda r: cumulative(r) - 0.5, 1e-6, 10.0)
    assert np.median(radius) == pytest.approx(median, rel=0.01)
    assert radius.min() >= 0.0


# -- files ------------------------------------------------------------------------------------------------------------


def test_lcd_file_round_trip(tmp_path) -> None:
    request = SimulationRequest("lcd-gen", "pi0", 5, 31, (10.0, 60.0), chunk_events=2)
    out = tmp_path / "x.h5"
    config = simulate_file(request, out, workers=1, progress=False)
    assert config["seed"] == 31
    assert config["out"] == str(out)
    events = simulate_events(request)
    with h5py.File(out, "r") as file:
        assert set(file) == set(events)
        for key in ("ECAL", "HCAL"):
            raw = file[key][...]
            assert raw.shape == events[key].shape
            np.testing.assert_array_equal(raw, events[key] * np.float32(50.0), err_msg=key)  # 50 x GeV, exactly
            assert file[key].chunks == (1, *events[key].shape[1:])  # one event per chunk
        for key in ("ECAL_E", "HCAL_E"):  # the window sums are stored like the cells
            np.testing.assert_array_equal(file[key][...], events[key] * np.float32(50.0), err_msg=key)
        for key, dataset in file.items():
            assert dataset.compression == "gzip", key
            assert dataset.chunks is not None, key
        for key in set(LCD_SCALAR_KEYS) - {"ECAL_E", "HCAL_E"}:
            np.testing.assert_array_equal(file[key][...], events[key], err_msg=key)
        stored_config = json.loads(file.attrs["caloml_config"])
        assert stored_config["seed"] == 31
        assert stored_config["geometry"] == "lcd-gen"
        assert stored_config["particle"] == "pi0"
    with LCDReader(out) as reader:
        assert len(reader) == 5
        back = reader.read(slice(None))
        assert reader.attrs["caloml_config"]["seed"] == 31
    for key in ("ECAL", "HCAL", "ECAL_E", "HCAL_E"):  # x 50 then / 50 in float32
        np.testing.assert_allclose(back[key], events[key], rtol=1e-6, err_msg=key)
    for key in set(LCD_SCALAR_KEYS) - {"ECAL_E", "HCAL_E"}:
        np.testing.assert_array_equal(back[key], events[key], err_msg=key)


def test_calochallenge_file_round_trip(tmp_path) -> None:
    request = SimulationRequest("calochallenge-2", "electron", 6, 32, (5.0, 50.0))
    out = tmp_path / "x.h5"
    simulate_file(request, out, workers=1, progress=False)
    events = simulate_events(request)
    n = 6
    with h5py.File(out, "r") as file:
        assert set(file) == {"incident_energies", "showers"}
        incident, showers = file["incident_energies"][...], file["showers"][...]
        assert incident.shape == (n, 1)
        assert showers.shape == (n, 45 * 16 * 9)  # flat
        # MeV; the radial bin fastest, then the angular bin, then the layer.
        np.testing.assert_array_equal(incident, events["incident_energies"] * np.float32(1000.0))
        mev = events["showers"] * np.float32(1000.0)
        np.testing.assert_array_equal(showers, mev.reshape(n, -1))
        layer, alpha, radial = 30, 5, 2
        assert showers[0, (layer * 16 + alpha) * 9 + radial] == mev[0, layer, alpha, radial]
        assert np.any(showers > 0)
        for key, dataset in file.items():
            assert dataset.compression == "gzip", key
            assert dataset.chunks is not None, key
        assert file["showers"].chunks[1] == 6480  # chunks hold whole events
        assert json.loads(file.attrs["caloml_config"])["seed"] == 32
    with CaloChallengeReader(out) as reader:
        back = reader.read(slice(None))
        assert reader.attrs["caloml_config"]["seed"] == 32
    assert back["showers"].shape == (n, *CC2_SHAPE)
    np.testing.assert_allclose(back["showers"], events["showers"], rtol=1e-6)
    np.testing.assert_allclose(back["incident_energies"], events["incident_energies"], rtol=1e-6)


def test_simulate_file_does_not_overwrite(tmp_path) -> None:
    out = tmp_path / "x.h5"
    simulate_file(SimulationRequest("lcd-gen", "electron", 2, 1, (10.0, 20.0)), out, workers=1, progress=False)
    before = out.read_bytes()
    other = SimulationRequest("lcd-gen", "electron", 3, 2, (10.0, 20.0))
    with pytest.raises(CalomlError, match="exists"):
        simulate_file(other, out, workers=1, progress=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]  # no temporary file left behind
    simulate_file(other, out, workers=1, progress=False, overwrite=True)
    with h5py.File(out, "r") as file:
        assert file["ECAL"].shape[0] == 3
        assert json.loads(file.attrs["caloml_config"])["seed"] == 2
