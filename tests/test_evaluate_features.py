"""Opening the evaluated files and their streamed features: units, shapes, thresholds, chunking, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from caloml.data.calochallenge import CaloChallengeWriter
from caloml.data.lcd import LCDReader, LCDWriter
from caloml.errors import CalomlError, DataError
from caloml.evaluate.features import HIT_THRESHOLD_GEV, extract_features, high_level_input, observable_specs
from caloml.evaluate.inputs import open_pair
from caloml.geometry import CALOCHALLENGE_2
from caloml.sim.run import SimulationRequest, simulate_file


def _simulated_pair(folder: Path, name: str, seeds: tuple[int, int], **request: Any) -> tuple[Path, Path]:
    """Two files simulated with the same request but the two ``seeds`` (one worker, no progress bar)."""
    paths = []
    for seed in seeds:
        path = folder / f"{name}_{seed}.h5"
        simulate_file(SimulationRequest(seed=seed, **request).resolve(), path, workers=1, progress=False)
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def lcd_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small simulated lcd-gen electron files (10-100 GeV), seeds 11 and 12."""
    folder = tmp_path_factory.mktemp("evaluate_features")
    return _simulated_pair(
        folder, "lcd", (11, 12), geometry="lcd-gen", particle="electron", n_events=120, energy_range_gev=(10.0, 100.0)
    )


@pytest.fixture(scope="module")
def cc2_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small simulated CaloChallenge dataset-2 files, seeds 21 and 22."""
    folder = tmp_path_factory.mktemp("evaluate_features_cc")
    return _simulated_pair(folder, "cc2", (21, 22), geometry="calochallenge-2", particle="electron", n_events=80)


def test_lcd_features_have_physical_values(lcd_pair: tuple[Path, Path]) -> None:
    with open_pair(*lcd_pair) as pair:
        features = extract_features(pair.generated, low_level_indices=np.arange(0, 120, 3), low_level_theta=True)
        with LCDReader(lcd_pair[0]) as reader:
            events = reader.read(slice(None))
    obs = features.observables
    assert set(obs) == set(observable_specs("lcd"))
    assert features.n_events == 120
    for name, spec in features.specs.items():
        expected = (
            (120,) if spec.components is None else (120, {"layer": 25, "x cell": 51, "y cell": 51}[spec.components])
        )
        assert obs[name].shape == expected, name
    cells = events["ECAL"].astype(np.float64)
    np.testing.assert_allclose(obs["deposited_energy_gev"], cells.sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(obs["longitudinal_profile_gev"].sum(axis=1), obs["deposited_energy_gev"], rtol=1e-5)
    np.testing.assert_array_equal(obs["hits"], (cells > HIT_THRESHOLD_GEV).sum(axis=(1, 2, 3)))
    assert 0.015 < np.median(obs["sampling_fraction"]) < 0.025  # the simulator's ECAL sampling fraction, about 0.02
    assert np.all(np.abs(obs["centre_x"] - 25.0) < 1.5)  # windows are centred on the shower (cell indices)
    assert np.all((obs["centre_z"] > 3) & (obs["centre_z"] < 15))  # layers
    np.testing.assert_allclose(
        obs["first_third_fraction"] + obs["second_third_fraction"] + obs["last_third_fraction"], 1.0, rtol=1e-9
    )
    assert np.corrcoef(obs["measured_angle_rad"], events["theta"])[0, 1] > 0.8  # the measured angle follows theta
    # low-level input: 3 x 3 pooled cells over the incident energy, the sum kept
    assert features.low_level is not None
    assert features.low_level.shape == (40, 17 * 17 * 25 + 2)  # pooled cells / E_inc, log10 E_inc, theta
    cells_over_energy = features.low_level[:, :-2]
    np.testing.assert_allclose(cells_over_energy.sum(axis=1), obs["sampling_fraction"][::3], rtol=1e-4)
    np.testing.assert_allclose(features.low_level[:, -2], np.log10(events["energy"][::3]), rtol=1e-6)
    np.testing.assert_allclose(features.low_level[:, -1], events["theta"][::3], rtol=1e-6)
    high = high_level_input(features, use_theta=True)
    assert high.shape == (120, 2 + 17 + 25 + 51 + 51)
    assert np.all(np.isfinite(high))


def test_features_do_not_depend_on_the_chunk_size(lcd_pair: tuple[Path, Path]) -> None:
    with open_pair(*lcd_pair, chunk_events=7) as small, open_pair(*lcd_pair, chunk_events=256) as large:
        a = extract_features(small.reference, low_level_indices=np.array([0, 6, 7, 100]))
        b = extract_features(large.reference, low_level_indices=np.array([0, 6, 7, 100]))
    for name in a.observables:
        np.testing.assert_allclose(a.observables[name], b.observables[name], rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(a.spectrum_counts, b.spectrum_counts)
    assert a.low_level is not None
    assert b.low_level is not None
    np.testing.assert_array_equal(a.low_level, b.low_level)


def test_calochallenge_features_apply_the_threshold(cc2_pair: tuple[Path, Path], tmp_path: Path) -> None:
    with open_pair(*cc2_pair) as pair:
        features = extract_features(pair.reference, low_level_indices=np.arange(80))
    obs = features.observables
    assert obs["energy_per_layer_gev"].shape == (80, 45)
    np.testing.assert_allclose(obs["energy_per_layer_gev"].sum(axis=1), obs["deposited_energy_gev"], rtol=1e-9)
    assert 0.8 < np.median(obs["etot_over_einc"]) < 1.05
    assert np.all((obs["sparsity"] >= 0) & (obs["sparsity"] <= 1))
    assert features.low_level is not None
    assert features.low_level.shape == (80, 45 * 16 * 9 + 1)  # voxels / E_inc, log10 E_inc

    # two showers that differ only by voxels below 15.15 keV have identical features
    n = 600
    rng = np.random.default_rng(3)
    showers = np.where(rng.random((n, 45, 16, 9)) < 0.05, rng.exponential(0.01, (n, 45, 16, 9)), 0.0)
    below = showers.copy()
    below[:, 10, 3, 2] = np.where(showers[:, 10, 3, 2] == 0, 0.5 * CALOCHALLENGE_2.threshold_gev, showers[:, 10, 3, 2])
    assert np.count_nonzero(below) > np.count_nonzero(showers)
    energies = np.geomspace(1.0, 1000.0, n).reshape(n, 1)
    paths = []
    for name, values in (("clean.h5", showers), ("below.h5", below)):
        path = tmp_path / name
        with CaloChallengeWriter(path) as writer:
            writer.append({"incident_energies": energies, "showers": values.astype(np.float32)})
        paths.append(path)
    with open_pair(*paths) as pair:
        clean = extract_features(pair.generated)
        noisy = extract_features(pair.reference)
    for name in clean.observables:
        np.testing.assert_allclose(clean.observables[name], noisy.observables[name], rtol=1e-6, err_msg=name)


def _write_lcd(path: Path, ecal: np.ndarray, energy: np.ndarray) -> Path:
    with LCDWriter(path) as writer:
        writer.append({"ECAL": ecal.astype(np.float32), "energy": energy.astype(np.float32)})
    return path


def test_bad_input_gives_one_line_errors(
    lcd_pair: tuple[Path, Path], cc2_pair: tuple[Path, Path], lcd_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(CalomlError, match=r"different layouts: .* is a CaloChallenge file .* an LCD file"):
        open_pair(cc2_pair[0], lcd_pair[0])
    with pytest.raises(CalomlError, match=r"incident energies differ: .* spans 2-500 GeV .* reference"):
        open_pair(lcd_file, lcd_pair[0])  # the conftest file spans 2-500 GeV, the simulated ones 10-100
    with pytest.raises(CalomlError, match="same file"):
        open_pair(lcd_pair[0], lcd_pair[0])
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as file:
        file.create_dataset("ECAL", shape=(0, 51, 51, 25), dtype="f4")
        file.create_dataset("energy", shape=(0,), dtype="f4")
    with pytest.raises(DataError, match=r"empty.h5: the generated file has no events"):
        open_pair(empty, lcd_pair[0])
    cropped = _write_lcd(tmp_path / "crop.h5", np.zeros((3, 25, 25, 25)), np.array([10.0, 50.0, 100.0]))
    with pytest.raises(CalomlError, match=r"different geometries"):
        open_pair(cropped, lcd_pair[0])
    # NaN in the cells is found while streaming, naming the file, the key and the event
    ecal = np.zeros((3, 51, 51, 25), dtype=np.float32)
    ecal[1, 3, 3, 3] = 1.0
    nan_file = _write_lcd(tmp_path / "nan.h5", ecal, np.array([10.0, 50.0, 100.0]))
    with h5py.File(nan_file, "r+") as file:
        data = file["ECAL"][...]
        data[1, 3, 3, 3] = np.nan
        del file["ECAL"]
        file.create_dataset("ECAL", data=data)
    with open_pair(nan_file, lcd_pair[0]) as pair, pytest.raises(DataError, match=r"nan.h5: key 'ECAL': event 1"):
        extract_features(pair.generated)
    nan_energy = tmp_path / "nan_energy.h5"
    with h5py.File(nan_energy, "w") as file:
        file.create_dataset("ECAL", data=ecal)
        file.create_dataset("energy", data=np.array([10.0, np.nan, 100.0], dtype=np.float32))
    with pytest.raises(DataError, match=r"nan_energy.h5: key 'energy': event 1 has NaN"):
        open_pair(nan_energy, lcd_pair[0])


def test_log_spaced_energies_are_compared_in_log_e(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    showers = np.zeros((400, 45, 16, 9), dtype=np.float32)
    showers[:, 5, 0, 0] = 1.0

    def write(name: str, low: float) -> Path:
        path = tmp_path / name
        energies = np.exp(rng.uniform(np.log(low), np.log(1000.0), 400)).reshape(400, 1)
        with CaloChallengeWriter(path) as writer:
            writer.append({"incident_energies": energies, "showers": showers})
        return path

    reference, same, narrower = write("ref.h5", 1.0), write("same.h5", 1.0), write("narrow.h5", 10.0)
    open_pair(same, reference).close()
    with pytest.raises(CalomlError, match="in log E"):  # 10 GeV-1 TeV is not 1 GeV-1 TeV, though 9 GeV apart
        open_pair(narrower, reference)


def test_the_angle_condition_falls_back_to_the_measured_angle(lcd_pair: tuple[Path, Path], tmp_path: Path) -> None:
    with open_pair(*lcd_pair) as pair:
        assert pair.angle_key == "theta"
        np.testing.assert_array_equal(pair.generated.theta_rad, pair.generated.angles["theta"])
    with LCDReader(lcd_pair[0]) as reader:
        events = reader.read(slice(None))
    only_measured = tmp_path / "mtheta_only.h5"
    with LCDWriter(only_measured) as writer:
        writer.append({key: events[key] for key in ("ECAL", "energy", "mtheta")})
    with open_pair(only_measured, lcd_pair[1]) as pair:
        assert pair.angle_key == "mtheta"
        assert pair.has_theta
        np.testing.assert_allclose(pair.generated.theta_rad, events["mtheta"])
        assert pair.generated.describe()["angle_key"] == "mtheta"
    without = tmp_path / "no_angle.h5"
    with LCDWriter(without) as writer:
        writer.append({key: events[key] for key in ("ECAL", "energy")})
    with open_pair(without, lcd_pair[1]) as pair:
        assert pair.angle_key is None
        assert pair.generated.theta_rad is None
        assert pair.reference.theta_rad is None


def test_a_measured_angle_model_is_binned_by_its_condition_and_sentinels_are_not_angles(
    lcd_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """``caloml.generate`` writes ``mtheta_condition`` (the requested measured angle) for an mtheta-conditioned
    model: that is the generated file's angle condition, not the angle measured on its showers."""
    with LCDReader(lcd_pair[0]) as reader:
        events = reader.read(slice(None))
    condition = np.linspace(1.3, 1.8, len(events["energy"])).astype(np.float32)
    measured = events["mtheta"].copy()
    measured[:3] = 100.0  # unmeasurable showers
    generated = tmp_path / "generated_mtheta.h5"
    with LCDWriter(generated) as writer:
        writer.append({"ECAL": events["ECAL"], "energy": events["energy"], "mtheta": measured,
                       "mtheta_condition": condition})  # fmt: skip
    with open_pair(generated, lcd_pair[1]) as pair:
        assert pair.angle_key == "mtheta"
        np.testing.assert_allclose(pair.generated.theta_rad, condition)
    sentinel = tmp_path / "sentinel.h5"
    with LCDWriter(sentinel) as writer:
        writer.append({"ECAL": events["ECAL"], "energy": events["energy"], "mtheta": measured})
    with open_pair(sentinel, lcd_pair[1]) as pair:
        assert pair.angle_key is None  # 100 rad is not an angle: no angle binning rather than 990 bins
