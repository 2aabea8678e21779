"""``python -m caloml.train {bdt,linreg,xgb}``: the baselines end to end on small simulated files.

The module simulates (once, a few seconds) 150 electrons and charged pions of 10-60 GeV in the lcd-rec layout;
the pion file keeps the showers that pass the e-vs-pi cut HCAL/ECAL < 0.1 (few of the simulator's pions do) and
20 that fail it, so that the filter has work to do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from caloml.data.hdf5 import provenance_attrs
from caloml.data.lcd import LCDWriter
from caloml.data.reconstruction_tasks import get_task
from caloml.errors import CalomlError
from caloml.models.baselines import BDTClassifier, LinearEnergyRegression, XGBoostEnergyRegression, load_baseline
from caloml.sim.run import SimulationRequest, iter_chunks
from caloml.tasks.baselines import load_split
from caloml.train import main

ENERGY_RANGE_GEV = (10.0, 60.0)


def _write(path: Path, chunks: list[dict[str, np.ndarray]]) -> Path:
    with LCDWriter(path, attrs=provenance_attrs({"test": path.name})) as writer:
        for chunk in chunks:
            writer.append(chunk)
    return path


@pytest.fixture(scope="module")
def reco_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("baseline-sim")
    electrons = list(iter_chunks(SimulationRequest("lcd-rec", "electron", 150, 21, ENERGY_RANGE_GEV), workers=1))
    pions, failing = [], 0
    for chunk in iter_chunks(SimulationRequest("lcd-rec", "chpi", 1800, 22, ENERGY_RANGE_GEV), workers=1):
        passing = chunk["HCAL_E"] < 0.1 * chunk["ECAL_E"]
        keep = passing | (~passing & (np.cumsum(~passing) + failing <= 20))
        failing += int(np.sum(keep & ~passing))
        pions.append({key: value[keep] for key, value in chunk.items()})
    return {"electron": _write(root / "electron.h5", electrons), "chpi": _write(root / "chpi.h5", pions)}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``python -m caloml.train ARGV`` in-process; returns its JSON summary (the last thing it prints)."""
    assert main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    return dict(json.loads(out[out.index("{\n") :]))


def split_of(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "test_events.json").read_text()))


# -- bdt ---------------------------------------------------------------------------------------------------------------
#: A small search, one XGBoost thread (the tests share the cores).
BDT_SMALL = ["--set", "trainer.search_points=2", "--set", "model.n_estimators=[60]", "--set", "runtime.threads=1"]


def test_bdt_end_to_end_separates_electrons_from_pions_and_reruns_by_the_conventions(
    reco_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "bdt"
    files = [str(reco_files["electron"]), str(reco_files["chpi"])]
    args = ["bdt", "--task", "e-vs-pi", "--data", *files, "--run-dir", str(run_dir), *BDT_SMALL]
    summary = run(capsys, *args, "--seed", "3")
    assert summary["test_metrics"]["auc"] > 0.9
    assert summary["test_metrics"]["events_per_class"][1] >= 5  # pions in the test split
    assert summary["reused"] is False

    # the search: 2 grid points, each early-stopped on the validation split, the chosen one of least log-loss
    search = json.loads((run_dir / "search.json").read_text())
    assert len(search["points"]) == 2
    best = min(search["points"], key=lambda p: p["validation_logloss"])
    chosen = search["chosen"]
    assert chosen["validation_logloss"] == best["validation_logloss"] == summary["chosen"]["validation_logloss"]
    assert chosen["best_iteration"] < 60

    # the saved model (XGBoost JSON, no pickle) reloads and predicts the same on the test events
    model = load_baseline(run_dir)
    assert isinstance(model, BDTClassifier)
    assert (run_dir / "model.json").is_file()
    assert not list(run_dir.glob("*.pkl"))
    split = load_split(files, model.feature_names, task=get_task("e-vs-pi"), fractions=(0.6, 0.2, 0.2), seed=1)
    test = split.splits["test"]
    saved = np.load(run_dir / "test_predictions.npz")
    np.testing.assert_array_equal(saved["event_index"], test["event_index"])
    np.testing.assert_allclose(model.predict_proba(test)[:, 1], saved["prediction"], rtol=1e-6)

    # the split: test events never train or validate, and they are the Triforce network task's test events
    record = split_of(run_dir)
    assert record["format"] == "caloml-triforce-split"
    assert record["task"] == "e-vs-pi"
    for k, source in enumerate(record["sources"]):
        seen = {
            name: set(split.splits[name]["event_index"][split.splits[name]["source_index"] == k].tolist())
            for name in ("train", "validation", "test")
        }
        assert source["test_indices"] == sorted(seen["test"])
        assert not seen["test"] & (seen["train"] | seen["validation"])
        assert not seen["train"] & seen["validation"]
    from caloml.tasks.triforce import locate_and_split

    network = locate_and_split(files, get_task("e-vs-pi"), fractions=(0.6, 0.2, 0.2), seed=1)
    for source, mask in zip(record["sources"], network.masks["test"], strict=True):
        assert source["test_indices"] == np.flatnonzero(mask).tolist()
    assert record["sources"][1]["particle"] == "chpi"
    assert record["sources"][1]["label"] == 1

    # rerun: the same configuration reuses the run, another is refused, --overwrite moves the old run aside
    stamp = (run_dir / "model.json").stat().st_mtime_ns
    again = run(capsys, *args, "--seed", "3")
    assert again["reused"] is True
    assert again["test_metrics"] == summary["test_metrics"]
    assert (run_dir / "model.json").stat().st_mtime_ns == stamp
    with pytest.raises(CalomlError, match="different configuration"):
        main([*args, "--seed", "4", "--no-progress"])
    replaced = run(capsys, *args, "--seed", "4", "--overwrite")
    assert replaced["reused"] is False
    assert replaced["seed"] == 4
    assert (tmp_path / "bdt.replaced-1" / "model.json").is_file()
    assert "seed: 4" in (run_dir / "config.yaml").read_text()


# -- regressions -------------------------------------------------------------------------------------------------------
def test_linreg_on_the_default_data_reloads_and_predicts_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("caloml.tasks.default_data.default_workers", lambda: 1)  # no process pool for 60 showers
    summary = run(capsys, "linreg", "--particle", "electron", "--events", "60", "--energy-range", "10", "60")
    run_dir = Path(summary["run_dir"])
    assert run_dir == Path("runs/linreg-electron")
    cached = sorted(p.name for p in Path("tf_records").iterdir())
    assert cached == ["lcd-rec-electron-10-60GeV-60ev-seed100-triforce"]  # the Triforce task's default data
    assert summary["events"] == {"train": 36, "validation": 12, "test": 12}
    metrics = summary["test_metrics"]
    assert abs(metrics["relative_bias"]) < 0.05
    assert 0 < metrics["relative_resolution"] < 0.2
    assert sum(b["n"] for b in metrics["bins"]) == 12
    model = load_baseline(run_dir)
    assert isinstance(model, LinearEnergyRegression)
    assert model.coefficients == pytest.approx(tuple(summary["coefficients"].values()))
    record = split_of(run_dir)
    assert record["particle"] == "electron"
    assert record["sources"][0]["format"] == "tfrecords"
    split = load_split(
        [record["sources"][0]["path"]], ["ECAL_E", "HCAL_E", "energy"], task=get_task("e-vs-pi"),
        fractions=(0.6, 0.2, 0.2), seed=1, particle="electron",
    )  # fmt: skip
    saved = np.load(run_dir / "test_predictions.npz")
    np.testing.assert_allclose(model.predict(split.splits["test"]), saved["prediction"], rtol=1e-6)
    np.testing.assert_array_equal(saved["event_index"], record["sources"][0]["test_indices"])


def test_linreg_recovers_known_coefficients(
    make_lcd: Callable[..., dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = make_lcd(n=40, seed=5)
    events["energy"] = (40.0 * events["ECAL_E"] + 12.0 * events["HCAL_E"] + 5.0).astype(np.float32)
    path = _write(tmp_path / "EleEscan_synthetic.h5", [events])
    summary = run(capsys, "linreg", "--data", str(path), "--run-dir", str(tmp_path / "run"))
    coefficients = summary["coefficients"]
    assert [coefficients["a"], coefficients["b"], coefficients["c_gev"]] == pytest.approx([40.0, 12.0, 5.0], rel=1e-3)
    assert summary["test_metrics"]["relative_resolution"] < 1e-4


def test_xgb_early_stops_on_the_validation_split_only(
    reco_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    passed: dict[str, np.ndarray] = {}
    original = XGBoostEnergyRegression.fit

    def spy(self: XGBoostEnergyRegression, train: dict, validation: dict) -> XGBoostEnergyRegression:
        passed.update(train=train["event_index"], validation=validation["event_index"])
        passed.update(validation_source=validation["source_index"], train_source=train["source_index"])
        return original(self, train, validation)

    monkeypatch.setattr(XGBoostEnergyRegression, "fit", spy)
    run_dir = tmp_path / "xgb"
    # the pion file comes along (as in a network run's file list) and its events are skipped: only electrons
    files = [str(reco_files["electron"]), str(reco_files["chpi"])]
    summary = run(capsys, "xgb", "--particle", "electron", "--data", *files, "--run-dir", str(run_dir), *BDT_SMALL[4:])
    stopping = summary["early_stopping"]
    assert stopping["rounds_trained"] == stopping["best_iteration"] + 11 < 1000  # stopped 10 rounds after the best
    assert summary["features"] == ["ECAL_E", "HCAL_E", "ECAL_meanZ"]

    record = split_of(run_dir)
    test = set(record["sources"][0]["test_indices"])
    assert record["sources"][1]["test_indices"] == []  # no electron in the pion file
    assert set(passed["validation_source"].tolist()) == {0}
    assert set(passed["train_source"].tolist()) == {0}
    assert not test & set(passed["validation"].tolist())
    assert not test & set(passed["train"].tolist())

    # the recorded best iteration is the minimum of the validation RMSE over the rounds
    model = load_baseline(run_dir)
    assert isinstance(model, XGBoostEnergyRegression)
    split = load_split(
        files, ["ECAL_E", "HCAL_E", "ECALmomentZ1", "energy"], task=get_task("e-vs-pi"), fractions=(0.6, 0.2, 0.2),
        seed=1, particle="electron",
    )  # fmt: skip
    validation = split.splits["validation"]
    np.testing.assert_array_equal(validation["event_index"], passed["validation"])
    from caloml.models.baselines import feature_matrix

    x = feature_matrix(validation, model.feature_names)
    rmse = [
        np.sqrt(np.mean((model.model.predict(x, iteration_range=(0, i + 1)) - validation["energy"]) ** 2))
        for i in range(stopping["rounds_trained"])
    ]
    assert int(np.argmin(rmse)) == stopping["best_iteration"]
    assert rmse[stopping["best_iteration"]] == pytest.approx(stopping["validation_rmse_gev"], rel=1e-4)
    saved = np.load(run_dir / "test_predictions.npz")
    np.testing.assert_allclose(model.predict(split.splits["test"]), saved["prediction"], rtol=1e-6)


# -- bad input ---------------------------------------------------------------------------------------------------------
def _one_line_error(argv: list[str], match: str) -> None:
    with pytest.raises(CalomlError, match=match) as error:
        main([*argv, "--no-progress"])
    assert "\n" not in str(error.value)


def test_bad_input_is_a_one_line_error(
    reco_files: dict[str, Path], make_lcd: Callable[..., dict], tmp_path: Path
) -> None:
    electron, pion = str(reco_files["electron"]), str(reco_files["chpi"])
    out = ["--run-dir", str(tmp_path / "run")]
    _one_line_error(["bdt", "--data", electron, *out], "no event of class pdgID 211")
    _one_line_error(["bdt", "--task", "gamma-vs-pi0", "--data", electron, pion, *out], "expects pdgID 22 or 111")
    _one_line_error(["xgb", "--particle", "photon", "--data", electron, *out], "no photon event \\(pdgID 22\\)")
    _one_line_error(["bdt", "--epochs", "3", "--data", electron, pion], "--epochs does not apply to bdt")
    _one_line_error(["xgb", "--strategy", "mirrored"], "--strategy does not apply to xgb")

    synthetic = make_lcd(n=20, seed=6)  # no expert features
    no_features = _write(tmp_path / "EleEscan_plain.h5", [synthetic])
    _one_line_error(["xgb", "--data", str(no_features), *out], "no 'ECALmomentZ1' in the data")
    no_hcal = _write(tmp_path / "EleEscan_nohcal.h5", [{k: v for k, v in synthetic.items() if "HCAL" not in k}])
    _one_line_error(["linreg", "--data", str(no_hcal), *out], "no 'HCAL_E'")

    with_nan = tmp_path / "EleEscan_nan.h5"
    with_nan.write_bytes(reco_files["electron"].read_bytes())
    with h5py.File(with_nan, "r+") as handle:
        handle["R9"][7] = np.nan
    _one_line_error(["bdt", "--data", str(with_nan), pion, *out], "R9")
    assert not (tmp_path / "run").exists()  # nothing written for a refused input


def test_print_config_shows_the_baseline_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xgb", "--preset", "quick", "--particle", "chpi", "--print-config"]) == 0
    text = capsys.readouterr().out
    for line in ("particle: chpi", "events_per_particle: 150", "max_depth: 3", "learning_rate: 0.3",
                 "max_rounds: 1000", "early_stopping_rounds: 10", "chpi_min_raw_fraction: 0.3"):  # fmt: skip
        assert line in text


def test_regression_metrics_use_the_evaluation_definitions() -> None:
    from caloml.observables.reconstruction_metrics import binned_response, energy_edges, regression_metrics

    rng = np.random.default_rng(3)
    true = rng.uniform(10.0, 510.0, 400)
    predicted = true * rng.normal(0.97, 0.05, 400)
    metrics = regression_metrics(true, predicted)
    relative = (true - predicted) / true  # the evaluation's sign: positive when underestimated
    assert metrics["relative_bias"] == pytest.approx(np.mean(relative))
    assert metrics["relative_bias"] > 0
    assert metrics["relative_resolution"] == pytest.approx(np.std(relative, ddof=1))
    reference = binned_response(true, predicted, energy_edges(25.0, 10.0, 510.0))
    assert [b["energy_gev"][0] for b in metrics["bins"]] == pytest.approx(reference["edges"][:-1].tolist())
    assert [b["resolution"] for b in metrics["bins"]] == pytest.approx(reference["resolution"].tolist())
    assert [b["bias"] for b in metrics["bins"]] == pytest.approx(reference["bias"].tolist())
    # energies outside 10-510 GeV get whole bins aligned with the evaluation's (here -15 to 10 GeV)
    low = regression_metrics(np.array([5.0, 6.0, 20.0]), np.array([5.0, 6.5, 19.0]))
    assert [b["energy_gev"] for b in low["bins"]] == [[-15.0, 10.0], [10.0, 35.0]]
    assert low["bins"][1]["n"] == 1
    assert low["bins"][1]["resolution"] is None


def test_an_undefined_metric_is_null_in_the_json_never_nan(
    make_lcd: Callable[..., dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = make_lcd(n=5, seed=6)  # 3 training, 1 validation and 1 test event: no resolution of one event
    events["energy"] = (40.0 * events["ECAL_E"] + 12.0 * events["HCAL_E"] + 5.0).astype(np.float32)
    path = _write(tmp_path / "EleEscan_tiny.h5", [events])
    summary = run(capsys, "linreg", "--data", str(path), "--run-dir", str(tmp_path / "run"))
    assert summary["events"]["test"] == 1

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in summary.json")

    stored = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=refuse)
    assert stored["test_metrics"]["n"] == 1
    assert stored["test_metrics"]["relative_resolution"] is None
    assert stored["validation_metrics"]["relative_resolution"] is None
    assert stored["test_metrics"]["relative_bias"] == pytest.approx(summary["test_metrics"]["relative_bias"])
