"""The ``crystal-5x5`` geometry: physics targets, the file layout and its round trip, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from caloml.data.crystal import CrystalWriter
from caloml.data.hdf5 import open_reader
from caloml.errors import CalomlError, DataError
from caloml.sim.cli import request_from_args
from caloml.sim.crystal import CSI_5X5, deposit_showers, simulate_crystal_batch
from caloml.sim.crystal_validation import CRYSTAL_TARGETS, crystal_figures, measure_crystal
from caloml.sim.particles import Primaries
from caloml.sim.run import SimulationRequest, simulate_events, simulate_file
from caloml.sim.validation_targets import TARGETS, Target


def _primaries(energy_gev: float, n: int) -> Primaries:
    return Primaries(np.full(n, energy_gev), np.full(n, np.pi / 2), np.zeros(n))


def test_the_geometry_passes_its_physics_targets():
    figures = crystal_figures(measure_crystal(n=800, seed=5))
    for row in CRYSTAL_TARGETS:
        target = Target(*row)
        assert target.accepts(figures[target.measured_key]), (target.name, figures[target.measured_key])
    assert {t.measured_key for t in TARGETS} >= {row[1] for row in CRYSTAL_TARGETS}  # in the validation report


def test_deposits_conserve_energy_and_leak_more_at_higher_energy():
    rng = np.random.default_rng(3)
    n = 400
    contained = []
    for energy in (0.5, 5.0):
        deposit = deposit_showers(rng, np.full(n, energy), np.zeros((n, 2)), np.zeros(n))
        assert deposit.shape == (n, 5, 5)
        assert (deposit >= 0).all()
        assert (deposit.sum(axis=(1, 2)) <= energy * (1 + 1e-9)).all()  # never more than the primary
        contained.append(deposit.sum(axis=(1, 2)).mean() / energy)
    assert 0.95 < contained[1] < contained[0] < 1.0  # rear leakage grows with the energy


def test_readout_threshold_noise_and_impact_point():
    rng = np.random.default_rng(4)
    events = simulate_crystal_batch(rng, "crystal-5x5", "electron", _primaries(1.0, 500))
    showers = events["showers"]
    assert showers.dtype == np.float32
    assert showers.shape == (500, 5, 5)
    hits = showers[showers > 0]
    assert hits.min() >= CSI_5X5.threshold_gev  # nothing below 1.5 MeV survives
    assert (np.abs(events["impact"]) <= 30.0).all()  # on the central crystal's face (mm)
    assert (showers.reshape(500, -1).argmax(axis=1) == 12).mean() > 0.95  # the central crystal is the hottest
    assert set(events["pdgID"]) == {11}


def test_photons_start_later_than_electrons():
    rng = np.random.default_rng(5)
    electron = simulate_crystal_batch(rng, "crystal-5x5", "electron", _primaries(2.0, 600))["showers"]
    photon = simulate_crystal_batch(rng, "crystal-5x5", "photon", _primaries(2.0, 600))["showers"]
    # a later start means more rear leakage: the photons' E25 is lower on average
    assert photon.sum(axis=(1, 2)).mean() < electron.sum(axis=(1, 2)).mean()


def test_file_round_trip_on_an_energy_grid(tmp_path):
    request = SimulationRequest("crystal-5x5", "electron", 300, 7, energy_points_gev=(0.5, 1.0, 5.0))
    path = tmp_path / "crystal.h5"
    config = simulate_file(request, path, workers=1, progress=False)
    with open_reader(path) as reader:
        assert reader.layout == "crystal"
        assert reader.geometry_name == "crystal-5x5"
        assert reader.event_shapes == {"showers": (5, 5), "energy": (), "impact": (2,), "pdgID": ()}
        data = reader.read(slice(0, reader.n_events))
        assert reader.attrs["caloml_config"]["energy_points_gev"] == [0.5, 1.0, 5.0]
    assert config["seed"] == 7
    assert set(np.unique(data["energy"])) == {0.5, 1.0, 5.0}
    again = simulate_events(request, workers=1)
    np.testing.assert_array_equal(again["showers"], data["showers"])  # seeded: the same file again
    e25 = data["showers"].sum(axis=(1, 2))
    assert 0.9 < float(np.median(e25 / data["energy"])) < 1.0  # GeV in memory


def test_the_writer_and_reader_refuse_bad_arrays(tmp_path):
    with pytest.raises(DataError, match="expected"), CrystalWriter(tmp_path / "a.h5") as writer:
        writer.append({"showers": np.zeros((2, 5, 4)), "energy": np.ones(2)})
    with pytest.raises(DataError, match=r"negative|energ"), CrystalWriter(tmp_path / "b.h5") as writer:
        writer.append({"showers": -np.ones((2, 5, 5)), "energy": np.ones(2)})


def test_bad_requests_are_one_line_errors():
    with pytest.raises(CalomlError, match="electrons and photons"):
        SimulationRequest("crystal-5x5", "chpi", 10, 1).resolve()
    with pytest.raises(CalomlError, match="perpendicular"):
        SimulationRequest("crystal-5x5", "electron", 10, 1, theta_range_rad=(1.2, 1.3)).resolve()
    with pytest.raises(CalomlError, match="energy points"):
        SimulationRequest("crystal-5x5", "electron", 10, 1, energy_points_gev=(0.1, 1.0)).resolve()


def test_the_command_line_takes_an_energy_grid():
    import argparse

    from caloml.sim.cli import add_request_arguments

    parser = argparse.ArgumentParser()
    add_request_arguments(parser)
    args = parser.parse_args(["--geometry", "crystal-5x5", "-n", "5", "--energies", "1", "0.5"])
    request = request_from_args(args)
    assert request.energy_points_gev == (0.5, 1.0)
    assert request.energy_range_gev == (0.5, 1.0)
