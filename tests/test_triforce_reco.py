"""Triforce data preparation (filters, labels, crop) and the baselines (linear, XGBoost, BDT) on simulated files.

The simulated lcd-rec files are small (a few hundred showers of each particle, a few seconds) and shared by the
module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caloml.data.reconstruction_tasks import class_labels, get_task, load_events, prepare_events, split_indices
from caloml.errors import CalomlError, OutputExistsError
from caloml.models.baselines import (
    BDTClassifier,
    LinearEnergyRegression,
    XGBoostEnergyRegression,
    feature_matrix,
    load_baseline,
    raw_energy_mask,
    regression_feature_names,
)
from caloml.sim.run import SimulationRequest, simulate_file

COUNTS = {"electron": 200, "chpi": 240, "photon": 60, "pi0": 80}


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("triforce-sim")
    files = {}
    for seed, (particle, n) in enumerate(COUNTS.items(), start=11):
        path = root / f"{particle}.h5"
        simulate_file(SimulationRequest("lcd-rec", particle, n, seed).resolve(), path, workers=1, progress=False)
        files[particle] = path
    return files


@pytest.fixture(scope="module")
def e_vs_pi(sim_files: dict[str, Path]) -> dict[str, np.ndarray]:
    return load_events([sim_files["electron"], sim_files["chpi"]], get_task("e-vs-pi"))


def subset(events: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[indices] for key, value in events.items()}


# -- data --------------------------------------------------------------------------------------------------------------
def test_e_vs_pi_filters_labels_and_crop(e_vs_pi: dict[str, np.ndarray]) -> None:
    events = e_vs_pi
    assert events["ECAL"].shape[1:] == (25, 25, 25)
    assert events["HCAL"].shape[1:] == (11, 11, 60)
    codes = np.abs(events["pdgID"])
    np.testing.assert_array_equal(events["class_label"], np.where(codes == 11, 0, 1))
    pions = codes == 211
    assert 0 < pions.sum() < COUNTS["chpi"]  # the HCAL/ECAL < 0.1 cut removes some, not all charged pions
    assert np.all(events["HCAL_E"][pions] < 0.1 * events["ECAL_E"][pions])
    assert (codes == 11).sum() == COUNTS["electron"]  # electrons are not cut
    # the crop keeps the centre of the window: most of an electron's deposit
    electrons = events["ECAL"][codes == 11]
    assert np.median(electrons.sum(axis=(1, 2, 3)) / events["ECAL_E"][codes == 11]) > 0.95


def test_gamma_vs_pi0_opening_angle_cut(sim_files: dict[str, Path]) -> None:
    task = get_task("gamma-vs-pi0")
    events = load_events([sim_files["photon"], sim_files["pi0"]], task)
    pi0 = np.abs(events["pdgID"]) == 111
    assert np.all(events["openingAngle"][pi0] < 0.01)
    assert 0 < pi0.sum() < COUNTS["pi0"]
    assert (~pi0).sum() == COUNTS["photon"]
    np.testing.assert_array_equal(events["class_label"], pi0.astype(np.int32))


def test_label_mapping_is_explicit_and_refuses_surprises() -> None:
    task = get_task("e-vs-pi")
    np.testing.assert_array_equal(class_labels([11, -211, 211, -11], task), [0, 1, 1, 0])
    with pytest.raises(CalomlError, match="found 22"):
        class_labels([11, 22, 211], task)
    with pytest.raises(CalomlError, match="no event of class pdgID 211"):
        class_labels([11, 11], task)
    with pytest.raises(CalomlError, match="unknown reconstruction task"):
        get_task("e-vs-mu")


def test_missing_inputs_are_one_line_errors(sim_files: dict[str, Path]) -> None:
    task = get_task("e-vs-pi")
    events = {"ECAL": np.zeros((2, 51, 51, 25), np.float32), "energy": np.ones(2, np.float32)}
    with pytest.raises(CalomlError, match="no 'HCAL' in the data") as info:
        prepare_events(events, task, source="x.h5")
    assert "\n" not in str(info.value)
    with pytest.raises(CalomlError, match="no input files"):
        load_events([], task)
    with pytest.raises(CalomlError, match="no event of class pdgID 211"):
        load_events([sim_files["electron"]], task)


def test_split_indices_are_disjoint_and_seeded() -> None:
    train, validation, test = split_indices(100, (0.6, 0.2, 0.2), seed=4)
    assert (len(train), len(validation), len(test)) == (60, 20, 20)
    assert len(np.union1d(np.union1d(train, validation), test)) == 100
    np.testing.assert_array_equal(split_indices(100, (0.6, 0.2, 0.2), seed=4)[0], train)


# -- baselines ---------------------------------------------------------------------------------------------------------
def test_linear_regression_recovers_coefficients_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    batch = {"ECAL_E": rng.uniform(0, 10, 50), "HCAL_E": rng.uniform(0, 3, 50)}
    batch["energy"] = 40.0 * batch["ECAL_E"] + 90.0 * batch["HCAL_E"] + 2.0
    model = LinearEnergyRegression().fit(batch)
    np.testing.assert_allclose(model.coefficients, (40.0, 90.0, 2.0), rtol=1e-8)
    saved = model.save(tmp_path / "linear")
    record = json.loads((saved / "baseline.json").read_text())
    assert record["kind"] == "linear_energy_regression"
    loaded = load_baseline(saved)
    assert isinstance(loaded, LinearEnergyRegression)
    np.testing.assert_allclose(loaded.predict(batch), batch["energy"], rtol=1e-8)
    with pytest.raises(OutputExistsError):
        model.save(saved)


def test_xgboost_beats_linear_regression_for_charged_pions(e_vs_pi: dict, sim_files: dict, tmp_path: Path) -> None:
    from caloml.data.lcd import LCDReader

    with LCDReader(sim_files["chpi"]) as reader:
        pions = reader.read(slice(None))  # the regression uses every charged pion, not the classification cut
    pions = subset(pions, np.flatnonzero(raw_energy_mask(pions)))
    train, validation, test = (subset(pions, i) for i in split_indices(len(pions["energy"]), (0.6, 0.2, 0.2)))
    linear = LinearEnergyRegression().fit(train)
    xgb = XGBoostEnergyRegression(regression_feature_names("chpi"), seed=1).fit(train, validation)
    assert xgb.settings["best_iteration"] < 1000  # stopped early, on the validation split

    def resolution(prediction: np.ndarray) -> float:
        return float(np.std((test["energy"] - prediction) / test["energy"]))

    assert resolution(xgb.predict(test)) < 0.9 * resolution(linear.predict(test))
    loaded = load_baseline(xgb.save(tmp_path / "xgb"))
    assert isinstance(loaded, XGBoostEnergyRegression)
    np.testing.assert_allclose(loaded.predict(test), xgb.predict(test), rtol=1e-6)
    assert loaded.feature_names == regression_feature_names("chpi")


def test_bdt_classifier_separates_electrons_from_pions(e_vs_pi: dict, tmp_path: Path) -> None:
    train, validation, test = (subset(e_vs_pi, i) for i in split_indices(len(e_vs_pi["energy"]), seed=2))
    bdt = BDTClassifier(seed=3).fit(train, train["class_label"], validation, validation["class_label"])
    assert {"max_depth", "learning_rate", "best_iteration", "validation_logloss"} <= set(bdt.settings)
    probability = bdt.predict_proba(test)
    assert probability.shape == (len(test["energy"]), 2)
    assert np.mean(probability.argmax(axis=1) == test["class_label"]) > 0.9
    loaded = load_baseline(bdt.save(tmp_path / "bdt"))
    np.testing.assert_allclose(loaded.predict_proba(test), probability, rtol=1e-6)  # type: ignore[union-attr]


def test_baseline_user_errors(tmp_path: Path) -> None:
    assert regression_feature_names("electron") == ("ECAL_E", "HCAL_E", "ECAL_meanZ")
    with pytest.raises(CalomlError, match="unknown particle"):
        regression_feature_names("muon")
    with pytest.raises(CalomlError, match="'ECAL_meanZ' needs key 'ECALmomentZ1'"):
        feature_matrix({"ECAL_E": np.ones(2), "HCAL_E": np.ones(2)}, regression_feature_names("photon"))
    with pytest.raises(CalomlError, match="no saved baseline"):
        load_baseline(tmp_path)
    with pytest.raises(CalomlError, match="not fitted"):
        LinearEnergyRegression().predict({"ECAL_E": np.ones(1), "HCAL_E": np.ones(1)})
