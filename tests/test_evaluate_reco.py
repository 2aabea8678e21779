"""``python -m caloml.evaluate reco``: Triforce networks against the baselines on the same simulated test events.

Tiny simulated lcd-rec files (photons and neutral pions, gamma-vs-pi0); the baselines are fitted on separate
simulated files; the network is an untrained TriforceDNN whose energy head starts as the fitted linear regression
(so its energies must equal the linear regression's). The test files converted to TFRecord directories (4 shards
each) must give the same events and predictions as the HDF5 rows; and the quick Triforce, BDT and linear-regression
runs on the tasks' default data (TFRecords cached under ``tf_records/``) are evaluated from the network run's split.
``--precision bfloat16`` must reach the network (probabilities within 0.01 of float32, the BDT untouched) and the
precision in force, float32 where the machine has no bfloat16 units, must be recorded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloml.data.lcd import LCDReader
from caloml.data.reconstruction_tasks import get_task, load_events, split_indices
from caloml.errors import CalomlError, OutputExistsError
from caloml.evaluate.__main__ import main
from caloml.evaluate.reconstruction import JSON_KEYS, PRECISIONS, evaluate_reconstruction
from caloml.models.baselines import (
    BDTClassifier,
    LinearEnergyRegression,
    XGBoostEnergyRegression,
    load_baseline,
    regression_feature_names,
)
from caloml.models.precision import PRECISIONS as MODEL_PRECISIONS
from caloml.models.precision import resolve_policy
from caloml.models.triforce_nets import TriforceDNN
from caloml.observables.reconstruction_metrics import (
    binned_accuracy,
    binned_response,
    energy_edges,
    fit_resolution,
    resolution_function,
)
from caloml.sim.run import SimulationRequest, simulate_file

N_TEST = 60
N_TRAIN = 50
TASK = get_task("gamma-vs-pi0")
BIN_WIDTH = "100"  # GeV: 5 bins of about 12 events per particle


def _simulate(folder: Path, particle: str, n: int, seed: int) -> Path:
    path = folder / f"{particle}.h5"
    simulate_file(SimulationRequest("lcd-rec", particle, n, seed).resolve(), path, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("reco")
    test = {p: _simulate(root / "test", p, N_TEST, seed) for seed, p in enumerate(("photon", "pi0"), start=31)}
    train = {p: _simulate(root / "train", p, N_TRAIN, seed) for seed, p in enumerate(("photon", "pi0"), start=41)}
    events = load_events([train["photon"], train["pi0"]], TASK)
    fit, val = split_indices(len(events["energy"]), (0.7, 0.3), seed=0)

    def part(indices: np.ndarray) -> dict:
        return {key: value[indices] for key, value in events.items()}

    models = root / "models"
    linear = LinearEnergyRegression().fit(events)
    linear.save(models / "linreg")
    bdt = BDTClassifier(grid=[{"max_depth": 3, "learning_rate": 0.3}], max_rounds=40)
    bdt.fit(part(fit), events["class_label"][fit], part(val), events["class_label"][val]).save(models / "bdt")
    for particle, pdg in zip(TASK.particles, TASK.classes, strict=True):
        of_particle = np.flatnonzero(events["pdgID"] == pdg)
        half = of_particle.size * 2 // 3
        xgb = XGBoostEnergyRegression(regression_feature_names(particle), seed=1, max_rounds=40)
        xgb.fit(part(of_particle[:half]), part(of_particle[half:])).save(models / "xgb" / particle)

    assert linear.coefficients is not None
    network = TriforceDNN(1, 8, 0.0, initial_energy_coefficients=linear.coefficients, seed=3)
    (models / "dnn-run").mkdir()
    network.save(models / "dnn-run" / "model.keras")

    out = root / "report"
    argv = ["reco", "--test", str(test["photon"]), str(test["pi0"]), "--out", str(out), "--no-progress"]
    argv += ["--model", str(models / "dnn-run"), str(models / "bdt"), str(models / "linreg"), str(models / "xgb")]
    argv += ["--energy-bin-width", BIN_WIDTH, "--seed", "5"]
    assert main(argv) == 0
    return {"root": root, "test": test, "models": models, "out": out, "argv": argv, "bdt": bdt, "linear": linear}


@pytest.fixture(scope="module")
def record(setup: dict) -> dict:
    return json.loads((setup["out"] / "metrics.json").read_text())


@pytest.fixture(scope="module")
def predictions(setup: dict) -> dict[str, np.ndarray]:
    with np.load(setup["out"] / "predictions.npz") as data:
        return {key: data[key] for key in data.files}


def test_report_contents(setup: dict, record: dict) -> None:
    assert tuple(record) == JSON_KEYS
    assert record["command"] == "reco"
    assert record["seed"] == 5
    assert record["task"]["name"] == "gamma-vs-pi0"  # inferred from the files' particles
    names = [m["name"] for m in record["models"]]
    assert names == ["dnn-run", "bdt", "linreg", "xgb"]
    assert set(record["classification"]) == {"dnn-run", "bdt"}
    assert set(record["regression"]) == {"dnn-run", "linreg", "xgb"}
    assert set(record["regression"]["xgb"]) == {"photon", "pi0"}
    n = record["test"]["n_events"]
    assert n == sum(record["test"]["n_per_class"]) == sum(record["test"]["rows_after_filters"])
    assert record["test"]["n_per_class"][0] == N_TEST  # photons all pass; the pi0 opening-angle cut drops some
    assert 0 < record["test"]["n_per_class"][1] <= N_TEST
    for result in record["classification"].values():
        assert 0.0 <= result["auc"] <= 1.0
        assert 0.0 <= result["accuracy"] <= 1.0
        assert sum(result["accuracy_vs_energy"]["counts"]) == n
        assert sum(result["accuracy_vs_eta"]["counts"]) == n
        assert len(result["roc"]["fpr"]) == len(result["roc"]["tpr"])
    for row in record["comparison"]["rows"]:
        assert row["n_test_events"] == n
    for particle in ("photon", "pi0"):  # 100 GeV bins, each with >= 5 events of either particle
        assert record["comparison"]["bins"][particle] == {"low_bin_gev": [10.0, 110.0], "high_bin_gev": [410.0, 510.0]}
        assert record["regression_selection"][particle]["used"] == record["regression"]["linreg"][particle]["n_events"]
    assert record["comparison"]["linear_reference"] == "linreg"
    pairs = {(p["model"], p["baseline"]) for p in record["comparison"]["versus"]}
    assert pairs == {("dnn-run", "bdt"), ("dnn-run", "linreg"), ("dnn-run", "xgb")}
    for name in record["plots"]:
        assert (setup["out"] / name).stat().st_size > 1000
    assert set(record["plots"]) == {
        "roc.png",
        "accuracy_vs_energy.png",
        "accuracy_vs_eta.png",
        "bias_vs_energy.png",
        "resolution_vs_energy.png",
        "resolution_ratio_to_linear.png",
    }
    arguments = json.loads((setup["out"] / "arguments.json").read_text())
    assert arguments["seed"] == 5
    assert arguments["task"] == "gamma-vs-pi0"
    assert arguments["energy_bin_width_gev"] == 100.0
    table = (setup["out"] / "comparison.md").read_text()
    assert all(name in table for name in names)


def test_auc_and_scores_match_direct_computation(setup: dict, record: dict, predictions: dict) -> None:
    from sklearn.metrics import roc_auc_score

    labels = predictions["class_label"]
    for name in ("dnn-run", "bdt"):
        scores = predictions[f"score/{name}"]
        assert record["classification"][name]["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        accuracy = np.mean((scores >= 0.5) == (labels == 1))
        assert record["classification"][name]["accuracy"] == pytest.approx(accuracy)
    # the same events, in the order of the files, as the task's own loader gives them
    events = load_events([setup["test"]["photon"], setup["test"]["pi0"]], TASK)
    np.testing.assert_array_equal(events["class_label"], labels)
    np.testing.assert_allclose(events["energy"], predictions["energy"], rtol=1e-6)
    bdt = load_baseline(setup["models"] / "bdt")
    assert isinstance(bdt, BDTClassifier)
    np.testing.assert_allclose(bdt.predict_proba(events)[:, 1], predictions["score/bdt"], rtol=1e-6)


def test_binned_resolution_equals_numpy_on_one_bin(record: dict, predictions: dict) -> None:
    photons = predictions["pdgID"] == 22
    true, predicted = predictions["energy"][photons], predictions["energy/linreg"][photons]
    in_bin = (true >= 110.0) & (true < 210.0)
    relative = (true[in_bin] - predicted[in_bin]) / true[in_bin]
    binned = record["regression"]["linreg"]["photon"]["binned"]
    assert binned["edges"] == [10.0, 110.0, 210.0, 310.0, 410.0, 510.0]
    assert binned["counts"][1] == in_bin.sum() >= 5
    assert binned["resolution"][1] == pytest.approx(np.std(relative, ddof=1), rel=1e-9)
    assert binned["bias"][1] == pytest.approx(np.mean(relative), rel=1e-9)
    assert binned["mean_energy_gev"][1] == pytest.approx(np.mean(true[in_bin]), rel=1e-9)


def test_untrained_network_energy_is_the_linear_regression(setup: dict, record: dict, predictions: dict) -> None:
    """The energy head starts as a * ECAL_E + b * HCAL_E + c with the linear regression's coefficients."""
    np.testing.assert_allclose(predictions["energy/dnn-run"], predictions["energy/linreg"], rtol=2e-5)
    for particle in ("photon", "pi0"):
        ratio = np.array(record["regression"]["dnn-run"][particle]["linear_over_model"], dtype=float)
        finite = np.isfinite(ratio)
        assert finite.sum() >= 3
        np.testing.assert_allclose(ratio[finite], 1.0, rtol=1e-3)
        fit_net = record["regression"]["dnn-run"][particle]["fit"]
        fit_lin = record["regression"]["linreg"][particle]["fit"]
        assert fit_net["available"]
        assert fit_net["b"] == pytest.approx(fit_lin["b"], rel=1e-2, abs=1e-4)


def test_refuses_to_overwrite_the_report(setup: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from caloml.errors import run_cli

    before = (setup["out"] / "metrics.json").read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        main(setup["argv"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, setup["argv"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("caloml: error:")
    assert err.count("\n") == 1
    assert (setup["out"] / "metrics.json").read_bytes() == before


def test_run_directory_test_events(setup: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    photon_rows, pi0_rows = [0, 3, 4, 10, 11, 12, 20, 30, 40, 50], list(range(0, 60, 2))
    spec = {
        "files": [
            {"path": str(setup["test"]["photon"]), "particle": "photon", "test_indices": photon_rows},
            {"path": str(setup["test"]["pi0"]), "label": 1, "test_indices": pi0_rows},
        ],
        "seed": 3,
        "fractions": [0.6, 0.2, 0.2],
    }
    (run / "test_events.json").write_text(json.dumps(spec))
    out = tmp_path / "report"
    record = evaluate_reconstruction(
        [run],
        [setup["models"] / "linreg", setup["models"] / "bdt"],
        out,
        energy_bin_width_gev=100.0,
        progress=False,
        plots=False,
    )
    assert record["plots"] == []
    with LCDReader(setup["test"]["pi0"]) as reader:
        opening = reader.read_key("openingAngle")
    assert record["test"]["n_per_class"][0] == len(photon_rows)
    assert record["test"]["sources"][1]["rows"] == len(pi0_rows)
    assert record["test"]["n_per_class"][1] == np.sum(opening[pi0_rows] < 0.01)  # the task's filter, applied again
    with np.load(out / "predictions.npz") as data:
        assert data["energy"].size == record["test"]["n_events"]
        assert set(data["row"][data["file_index"] == 0].tolist()) == set(photon_rows)
        assert set(data["row"][data["file_index"] == 1].tolist()) <= set(pi0_rows)
    # a wrong particle for a file is an error, never a relabelling
    spec["files"][0]["particle"] = "pi0"
    (run / "test_events.json").write_text(json.dumps(spec))
    with pytest.raises(CalomlError, match=r"test_events\.json says class 111"):
        evaluate_reconstruction([run], [setup["models"] / "linreg"], tmp_path / "r2", progress=False, plots=False)
    # the Triforce runs' format
    triforce_spec = {
        "task": "gamma-vs-pi0",
        "sources": [
            {"path": str(setup["test"][p]), "format": "hdf5", "test_indices": rows}
            for p, rows in (("photon", photon_rows), ("pi0", pi0_rows))
        ],
    }
    (run / "test_events.json").write_text(json.dumps(triforce_spec))
    again = evaluate_reconstruction([run], [setup["models"] / "linreg"], tmp_path / "r1", progress=False, plots=False)
    assert again["test"]["n_per_class"] == record["test"]["n_per_class"]
    triforce_spec["sources"][0]["format"] = "parquet"
    (run / "test_events.json").write_text(json.dumps(triforce_spec))
    with pytest.raises(CalomlError, match="unknown source format 'parquet'"):
        evaluate_reconstruction([run], [setup["models"] / "linreg"], tmp_path / "r1b", progress=False, plots=False)
    (run / "test_events.json").write_text(json.dumps({"files": [{"path": "x.h5"}]}))
    with pytest.raises(CalomlError, match="test_indices"):
        evaluate_reconstruction([run], [setup["models"] / "linreg"], tmp_path / "r3", progress=False, plots=False)
    (run / "test_events.json").unlink()
    with pytest.raises(CalomlError, match=r"without test_events\.json"):
        evaluate_reconstruction([run], [setup["models"] / "linreg"], tmp_path / "r4", progress=False, plots=False)


def _write_variant(source: Path, target: Path, *, drop: str | None = None, nan_key: str | None = None) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        if drop is not None:
            del handle[drop]
        if nan_key is not None:
            data = handle[nan_key]
            first = np.array(data[0], dtype=data.dtype)
            first.flat[0] = np.nan
            data[0] = first
    return target


def test_bad_input_is_one_line_error(setup: dict, tmp_path: Path) -> None:
    import keras

    photon, pi0, models = setup["test"]["photon"], setup["test"]["pi0"], setup["models"]
    linear = models / "linreg"
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    (tmp_path / "empty").mkdir()
    cases = [
        ([photon, pi0], [tmp_path / "nowhere"], "no such model"),
        ([photon, pi0], [tmp_path / "plain.keras"], "not a Triforce network"),
        ([photon, pi0], [tmp_path / "empty"], "no model there"),
        ([_write_variant(photon, tmp_path / "nohcal.h5", drop="HCAL"), pi0], [linear], "'HCAL'"),
        ([_write_variant(photon, tmp_path / "nofeat.h5", drop="R9"), pi0], [models / "bdt"], "'R9'"),
        ([photon], [linear], "no test event of class pdgID 111"),
        ([_write_variant(photon, tmp_path / "nan.h5", nan_key="ECAL"), pi0], [linear], "not finite|NaN"),
        ([tmp_path / "missing.h5"], [linear], "no such test file"),
    ]
    for number, (test, model, message) in enumerate(cases):
        with pytest.raises(CalomlError, match=message) as error:
            evaluate_reconstruction(test, model, tmp_path / f"out{number}", progress=False, plots=False)
        assert "\n" not in str(error.value)
        assert not (tmp_path / f"out{number}").exists()


def test_resolution_fit_recovers_known_parameters() -> None:
    a, b, c = 0.16, 0.012, 0.4
    energy = 0.5 * (energy_edges()[1:] + energy_edges()[:-1])
    truth = resolution_function(energy, a, b, c)
    errors = 0.02 * truth
    noisy = truth + errors * np.random.default_rng(7).standard_normal(energy.size)
    fit = fit_resolution(energy, noisy, errors)
    assert fit["available"]
    assert fit["ndof"] == energy.size - 3
    for name, value in (("a", a), ("b", b), ("c", c)):
        assert abs(fit[name] - value) < 4 * fit[f"{name}_error"], (name, fit)
    exact = fit_resolution(energy, truth, errors)
    assert (exact["a"], exact["b"], exact["c"]) == pytest.approx((a, b, c), rel=1e-3)
    assert exact["chi2"] < 1e-6
    assert not fit_resolution(energy[:2], truth[:2], errors[:2])["available"]
    # the LCD ECAL curve has no noise term: c sits at its bound 0, where it has no error estimate
    no_noise = resolution_function(energy, 0.156, 0.01, 0.0)
    at_bound = fit_resolution(energy, no_noise, 0.02 * no_noise)
    assert at_bound["a"] == pytest.approx(0.156, rel=1e-3)
    assert at_bound["c"] < 1e-3
    assert at_bound["compatible_with_zero"] == ["c"]


def test_binned_helpers_on_known_values() -> None:
    edges = np.array([0.0, 10.0, 20.0])
    true = np.array([5.0, 5.0, 5.0, 15.0, 15.0, 20.0, 30.0])
    predicted = np.array([4.0, 5.0, 6.0, 15.0, 12.0, 20.0, 30.0])
    response = binned_response(true, predicted, edges, min_events=2)
    np.testing.assert_array_equal(response["counts"], [3, 3])  # 20 belongs to the last bin, 30 to none
    assert response["bias"][0] == pytest.approx(0.0)
    assert response["resolution"][0] == pytest.approx(np.std([0.2, 0.0, -0.2], ddof=1))
    accuracy = binned_accuracy(true, np.array([1, 1, 0, 1, 0, 1, 1], dtype=bool), edges)
    np.testing.assert_allclose(accuracy["accuracy"], [2 / 3, 2 / 3])
    assert energy_edges()[[0, 1, -1]].tolist() == [10.0, 35.0, 510.0]


def test_single_particle_regressions_are_merged(setup: dict, tmp_path: Path) -> None:
    """``linreg --particle photon`` and ``--particle pi0`` runs: one model, each event by its particle's fit."""
    test = load_events([setup["test"]["photon"], setup["test"]["pi0"]], TASK)
    fits = {}
    for particle, pdg in zip(TASK.particles, TASK.classes, strict=True):
        of_particle = test["pdgID"] == pdg
        fits[particle] = LinearEnergyRegression().fit({k: v[of_particle] for k, v in test.items()})
        run = tmp_path / f"linreg-{particle}"
        fits[particle].save(run)
        (run / "config.yaml").write_text(f"data:\n  particle: {particle}\n")
    record = evaluate_reconstruction(
        [setup["test"]["photon"], setup["test"]["pi0"]],
        [tmp_path / "linreg-photon", tmp_path / "linreg-pi0", setup["models"] / "linreg"],
        tmp_path / "report",
        progress=False,
        plots=False,
    )
    names = [m["name"] for m in record["models"]]
    assert names == ["linreg-photon+linreg-pi0", "linreg"]
    assert record["models"][0]["particles"] == ["photon", "pi0"]
    with np.load(tmp_path / "report" / "predictions.npz") as data:
        merged = data["energy/linreg-photon+linreg-pi0"]
        for particle, pdg in zip(TASK.particles, TASK.classes, strict=True):
            of_particle = data["pdgID"] == pdg
            expected = fits[particle].predict({k: v[of_particle] for k, v in test.items()})
            np.testing.assert_allclose(merged[of_particle], expected, rtol=1e-9)
    # the first linear regression given is the reference of the ratios
    assert record["comparison"]["linear_reference"] == "linreg-photon+linreg-pi0"


def _split_record(entries: list[dict], resample: str | None = None) -> dict:
    """A ``test_events.json`` in the format the Triforce and baseline runs write (``resample`` None: not recorded)."""
    return {
        "format": "caloml-triforce-split",
        "version": 1,
        "task": "gamma-vs-pi0",
        **({} if resample is None else {"resample": resample}),
        "sources": [{"n_events": N_TEST, "n_test": len(e["test_indices"]), **e} for e in entries],
    }


def _write_run(run: Path, entries: list[dict], resample: str | None = None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "test_events.json").write_text(json.dumps(_split_record(entries, resample)))
    return run


def _copy_with_record(source: Path, target: Path, name: str, text: str) -> Path:
    """A copy of a model directory whose run files record a resample setting (``name``: config.yaml, ...)."""
    shutil.copytree(source, target)
    (target / name).write_text(text)
    return target


def test_resampled_evaluation(setup: dict, tmp_path: Path) -> None:
    """A run recording resample cms: the evaluation takes it (no --resample) and the ECAL goes through
    caloml.data.resampling.resample_events (energy conserved, expert features redone); a model whose run directory
    records cms is accepted."""
    from caloml.data.resampling import resample_events

    with LCDReader(setup["test"]["photon"]) as reader:
        raw = reader.read(slice(0, 8))
    resampled = resample_events(raw, "cms")
    np.testing.assert_allclose(resampled["ECAL"].sum(axis=(1, 2, 3)), raw["ECAL"].sum(axis=(1, 2, 3)), rtol=1e-5)
    assert not np.allclose(resampled["ECAL"], raw["ECAL"])
    assert not np.allclose(resampled["R9"], raw["R9"])
    entries = [{"path": str(setup["test"][p]), "test_indices": list(range(N_TEST))} for p in ("photon", "pi0")]
    run = _write_run(tmp_path / "run-cms", entries, resample="cms")
    linear = _copy_with_record(
        setup["models"] / "linreg", tmp_path / "linreg", "config.yaml", "data:\n  resample: cms\n"
    )
    record = evaluate_reconstruction(
        [run], [linear, setup["models"] / "bdt"], tmp_path / "report", progress=False, plots=False
    )
    assert record["options"]["resample"] == "cms"
    assert (record["test"]["resample"], record["test"]["resample_from"]) == ("cms", "runs")
    assert record["models"][0]["recorded_resample"] == ["cms"]
    arguments = json.loads((tmp_path / "report" / "arguments.json").read_text())
    assert (arguments["resample"], arguments["resample_requested"]) == ("cms", None)
    with (
        np.load(tmp_path / "report" / "predictions.npz") as cms,
        np.load(setup["out"] / "predictions.npz") as clic,
    ):
        np.testing.assert_array_equal(cms["row"], clic["row"])
        np.testing.assert_allclose(cms["energy/linreg"], clic["energy/linreg"], rtol=1e-4)
        assert not np.allclose(cms["score/bdt"], clic["score/bdt"])
    # plain files record nothing: the default stays none
    clic_record = json.loads((setup["out"] / "metrics.json").read_text())
    assert (clic_record["test"]["resample"], clic_record["test"]["resample_from"]) == ("none", "default")


def test_resample_contradicting_the_runs_is_refused(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test run or a model run recording another ECAL granularity than the evaluation's: one-line errors naming
    both, before any event is read and without a report."""
    from caloml.errors import run_cli

    files, models = setup["test"], setup["models"]
    entries = [{"path": str(files[p]), "test_indices": [0, 1, 2]} for p in ("photon", "pi0")]
    cms_run = _write_run(tmp_path / "run-cms", entries, resample="cms")
    clic_run = _write_run(tmp_path / "run-none", entries, resample="none")
    cms_linear = _copy_with_record(
        models / "linreg", tmp_path / "linreg-cms", "config.yaml", "data:\n  resample: cms\n"
    )
    atlas_bdt = _copy_with_record(models / "bdt", tmp_path / "bdt-atlas", "summary.json", '{"resample": "atlas"}')
    atlas_dnn = _copy_with_record(
        models / "dnn-run", tmp_path / "dnn-atlas", "data_summary.json", '{"resample": "atlas"}'
    )
    cases = [
        # the --test runs disagree
        ([cms_run, clic_run], [models / "linreg"], {}, "different ECAL granularities.*resample cms.*resample none"),
        # --resample contradicts a run
        (
            [cms_run],
            [models / "linreg"],
            {"resample": "none"},
            r"--resample none contradicts \S*run-cms/test_events\.json, which records resample cms",
        ),
        # a model trained on CMS-like cells evaluated on CLIC cells (plain files: none), or with another setting
        ([files["photon"], files["pi0"]], [cms_linear], {}, "linreg-cms: trained on resample cms .*uses resample none"),
        ([cms_run], [models / "linreg", atlas_bdt], {}, "bdt-atlas: trained on resample atlas .*uses resample cms"),
        ([cms_run], [atlas_dnn], {}, "dnn-atlas: trained on resample atlas .*data_summary"),
        ([clic_run], [cms_linear], {"resample": "none"}, "linreg-cms: trained on resample cms"),
    ]
    for number, (test, model, options, message) in enumerate(cases):
        with pytest.raises(CalomlError, match=message) as error:
            evaluate_reconstruction(test, model, tmp_path / f"out{number}", progress=False, plots=False, **options)
        assert "\n" not in str(error.value)
        assert not (tmp_path / f"out{number}").exists()
    argv = ["reco", "--test", str(cms_run), "--model", str(models / "linreg"), "--resample", "atlas"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [*argv, "--out", str(tmp_path / "cli"), "--no-plots", "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("caloml: error: --resample atlas contradicts")
    assert err.count("\n") == 1


def _passing_pi0(setup: dict, rows: range | list[int]) -> int:
    """How many of these pi0 rows pass the gamma-vs-pi0 opening-angle cut (< 0.01 rad)."""
    with LCDReader(setup["test"]["pi0"]) as reader:
        opening = reader.read_key("openingAngle")
    return int(np.sum(opening[list(rows)] < 0.01))


def _entries(setup: dict, photon_rows: list[int], pi0_rows: list[int]) -> list[dict]:
    return [
        {"path": str(setup["test"][p]), "format": "hdf5", "test_indices": rows}
        for p, rows in (("photon", photon_rows), ("pi0", pi0_rows))
    ]


def test_model_run_with_another_split_is_refused(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model whose run's test_events.json does not hold every evaluated event of a source it recorded trained or
    validated on some of them: refused with the count, before any report; its own split is accepted."""
    from caloml.errors import run_cli

    files, models = setup["test"], setup["models"]
    own = list(range(30))
    bdt_run = shutil.copytree(models / "bdt", tmp_path / "bdt-run")
    _write_run(bdt_run, _entries(setup, own, own))
    dnn_run = shutil.copytree(models / "dnn-run", tmp_path / "dnn-split")
    _write_run(dnn_run, _entries(setup, own, own))
    shifted = _write_run(tmp_path / "other-split", _entries(setup, list(range(20, 50)), list(range(20, 50))))
    leaked = 20 + _passing_pi0(setup, range(30, 50))  # rows 30-49 of either file: every photon, the cut pi0
    everything = N_TEST - 30 + _passing_pi0(setup, range(30, N_TEST))
    cases = [
        ([shifted], [bdt_run], rf"bdt-run: {leaked} of the evaluated events are not in its run's test split"),
        ([files["photon"], files["pi0"]], [bdt_run], rf"bdt-run: {everything} of the evaluated events"),
        ([shifted], [models / "linreg", dnn_run], rf"dnn-split: {leaked} of the evaluated events"),
    ]
    for number, (test, model, message) in enumerate(cases):
        with pytest.raises(CalomlError, match=message) as error:
            evaluate_reconstruction(test, model, tmp_path / f"out{number}", progress=False, plots=False)
        assert "trained or validated on them" in str(error.value)
        assert "\n" not in str(error.value)
        assert not (tmp_path / f"out{number}").exists()
    # the run recorded another version of the data (another event count): its indices would name other events
    recount = shutil.copytree(models / "bdt", tmp_path / "bdt-recount")
    (recount / "test_events.json").write_text(
        json.dumps({**_split_record(_entries(setup, own, own)), "sources": [
            {"n_events": N_TEST + 1, **e} for e in _entries(setup, own, own)]})
    )  # fmt: skip
    with pytest.raises(CalomlError, match=rf"bdt-recount: .* with {N_TEST + 1} events, the test source holds {N_TEST}"):
        evaluate_reconstruction([bdt_run], [recount], tmp_path / "recount", progress=False, plots=False)
    # on its own split (or a part of it) the model is evaluated
    record = evaluate_reconstruction(
        [bdt_run, shifted], [bdt_run, dnn_run], tmp_path / "own", progress=False, plots=False
    )
    assert record["test"]["n_per_class"] == [10, _passing_pi0(setup, range(20, 30))]
    assert record["classification"]["bdt-run"]["n_events"] == record["test"]["n_events"]
    argv = ["reco", "--test", str(shifted), "--model", str(bdt_run), "--out", str(tmp_path / "cli"), "--no-plots"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [*argv, "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"caloml: error: {bdt_run}: {leaked} of the evaluated events")
    assert err.count("\n") == 1


def test_per_particle_regression_run_restricts_only_its_particle(setup: dict, tmp_path: Path) -> None:
    """An ``xgb --particle photon`` run records test indices for photons only ([] for the pi0 file): as --test it
    restricts only the photons, never removing the pi0 class; as --model it is checked on photons only."""
    files, models = setup["test"], setup["models"]
    network = _write_run(tmp_path / "net", _entries(setup, list(range(40)), list(range(40))))
    xgb = shutil.copytree(models / "xgb" / "photon", tmp_path / "xgb-photon")
    (xgb / "config.yaml").write_text("data:\n  particle: photon\n")
    entries = _entries(setup, list(range(20)), [])
    entries[0]["particle"] = "photon"
    (xgb / "test_events.json").write_text(json.dumps({**_split_record(entries), "particle": "photon"}))

    record = evaluate_reconstruction(
        [network, xgb], [models / "bdt", xgb], tmp_path / "both", progress=False, plots=False
    )
    pi0_kept = _passing_pi0(setup, range(40))
    assert record["test"]["n_per_class"] == [20, pi0_kept]  # the photons of both splits; every pi0 of the network's
    assert record["classification"]["bdt"]["n_events"] == 20 + pi0_kept
    assert set(record["regression"]["xgb-photon"]) == {"photon"}
    assert record["regression"]["xgb-photon"]["photon"]["n_events"] == 20
    with np.load(tmp_path / "both" / "predictions.npz") as data:
        assert set(data["row"][data["pdgID"] == 22].tolist()) == set(range(20))
        assert set(data["row"][data["pdgID"] == 111].tolist()) <= set(range(40))
    # alone, it bounds its photons and leaves the pi0 file whole (it never trained on pions)
    alone = evaluate_reconstruction([xgb], [xgb], tmp_path / "alone", progress=False, plots=False)
    assert alone["test"]["n_per_class"] == [20, _passing_pi0(setup, range(N_TEST))]
    # as a model on the network's split: photons 20-39 were in its training or validation split; the pions do not count
    with pytest.raises(CalomlError, match=r"xgb-photon: 20 of the evaluated events are not in its run's test split"):
        evaluate_reconstruction([network], [models / "bdt", xgb], tmp_path / "leak", progress=False, plots=False)
    assert not (tmp_path / "leak").exists()
    assert files  # the files themselves are untouched


# -- TFRecord sources -------------------------------------------------------------------------------------------------
#: 60 events in shards of 15 (shard_events=16 gives 4 equal shards): rows on both sides of every shard boundary.
TFRECORD_ROWS = {"photon": [0, 3, 14, 15, 16, 29, 30, 44, 45, 58, 59], "pi0": list(range(1, 60, 3))}


@pytest.fixture(scope="module")
def records(setup: dict) -> dict[str, Path]:
    """The test files converted to TFRecord directories of 4 shards each."""
    from caloml.data.tfrecord import convert_to_tfrecords

    out = {}
    for particle, path in setup["test"].items():
        metadata = convert_to_tfrecords([path], setup["root"] / "records" / particle, shard_events=16)
        assert [s["n_events"] for s in metadata["shards"]] == [15, 15, 15, 15]
        out[particle] = setup["root"] / "records" / particle
    return out


def test_tfrecord_split_reads_the_same_events_as_the_hdf5_rows(setup: dict, records: dict, tmp_path: Path) -> None:
    """Record k of a TFRecord directory (shards in metadata order) is row k of the file it was converted from:
    a run's TFRecord test events give the same truth, rows, filters and predictions of every model as the HDF5 rows,
    with and without the resampling hook."""
    from caloml.data.resampling import resample_events  # a plain import: a broken module fails, never skips

    assert callable(resample_events)
    models = [setup["models"] / name for name in ("dnn-run", "bdt", "linreg", "xgb")]
    for resample in ("none", "cms"):
        runs = {}
        for source_format, paths in (("hdf5", setup["test"]), ("tfrecords", records)):
            entries = [
                {"path": str(paths[p]), "format": source_format, "particle": p, "test_indices": TFRECORD_ROWS[p]}
                for p in ("photon", "pi0")
            ]
            runs[source_format] = _write_run(tmp_path / f"run-{source_format}-{resample}", entries)
        reports = {}
        for source_format, run in runs.items():
            out = tmp_path / f"report-{source_format}-{resample}"
            record = evaluate_reconstruction(
                [run], models, out, chunk_events=7, resample=resample, energy_bin_width_gev=100.0,
                progress=False, plots=False,
            )  # fmt: skip
            with np.load(out / "predictions.npz") as data:
                reports[source_format] = (record, {key: data[key] for key in data.files})
        (h5_record, h5), (tf_record, tf) = reports["hdf5"], reports["tfrecords"]
        assert [s["format"] for s in tf_record["test"]["sources"]] == ["tfrecords", "tfrecords"]
        assert [s["rows"] for s in tf_record["test"]["sources"]] == [11, 20]
        assert tf_record["test"]["rows_after_filters"] == h5_record["test"]["rows_after_filters"]
        assert tf_record["test"]["n_per_class"][0] == len(TFRECORD_ROWS["photon"])
        assert set(tf) == set(h5)
        for key in ("row", "file_index", "class_label", "pdgID"):
            np.testing.assert_array_equal(tf[key], h5[key])
        for key in set(h5) - {"row", "file_index", "class_label", "pdgID"}:
            np.testing.assert_allclose(tf[key], h5[key], rtol=1e-5, err_msg=f"{key} ({resample})")
        assert tf_record["classification"]["bdt"]["auc"] == pytest.approx(h5_record["classification"]["bdt"]["auc"])


def test_tfrecord_directory_given_directly_is_every_record(setup: dict, records: dict, tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["reco", "--test", str(records["photon"]), str(records["pi0"]), "--out", str(out), "--no-progress"]
    argv += ["--model", str(setup["models"] / "bdt"), str(setup["models"] / "linreg"), "--no-plots"]
    assert main(argv) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["task"]["name"] == "gamma-vs-pi0"  # inferred from the records' pdgID
    assert [s["all_rows"] for s in record["test"]["sources"]] == [True, True]
    assert [s["rows"] for s in record["test"]["sources"]] == [N_TEST, N_TEST]
    with np.load(out / "predictions.npz") as tf, np.load(setup["out"] / "predictions.npz") as h5:
        for key in ("row", "file_index", "class_label"):
            np.testing.assert_array_equal(tf[key], h5[key])
        for key in ("energy", "score/bdt", "energy/linreg"):
            np.testing.assert_allclose(tf[key], h5[key], rtol=1e-6)


def test_tfrecord_bad_input_is_one_line_error(setup: dict, records: dict, tmp_path: Path) -> None:
    from caloml.data.tfrecord import convert_to_tfrecords

    linear = setup["models"] / "linreg"
    no_hcal = tmp_path / "nohcal-records"
    convert_to_tfrecords([_write_variant(setup["test"]["photon"], tmp_path / "nohcal.h5", drop="HCAL")], no_hcal)
    broken = tmp_path / "broken-records"
    shutil.copytree(records["photon"], broken)
    (broken / "shard-00002-of-00004.tfrecord.gz").unlink()
    pi0 = {"path": str(records["pi0"]), "format": "tfrecords", "test_indices": [1, 2, 3]}

    def photon(**changes: object) -> dict:
        return {"path": str(records["photon"]), "format": "tfrecords", "test_indices": [0, 20, 40], **changes}

    cases = [
        ([photon(n_events=61), pi0], "holds 60 events, its test_events.json says 61"),
        ([photon(test_indices=[5, 60], n_events=None), pi0], "test index 60 out of range for 60 events"),
        ([photon(particle="pi0"), pi0], r"test_events\.json says class 111"),
        ([photon(path=str(no_hcal)), pi0], "no 'HCAL'"),
        ([photon(path=str(broken)), pi0], "missing shard"),
        ([photon(path=str(setup["test"]["photon"])), pi0], "no such TFRecord directory"),
    ]
    for number, (entries, message) in enumerate(cases):
        run = _write_run(tmp_path / f"run{number}", entries)
        with pytest.raises(CalomlError, match=message) as error:
            evaluate_reconstruction([run], [linear], tmp_path / f"out{number}", progress=False, plots=False)
        assert "\n" not in str(error.value)
        assert not (tmp_path / f"out{number}").exists()


@pytest.mark.slow  # trains three models on the default data (about 30 s); the fast tests above cover each step
def test_default_data_runs_are_evaluated_on_their_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quick Triforce DNN, BDT and photon linear regression on the tasks' default data (simulated into
    ``tf_records/`` of the working directory, shared by the three runs) evaluated from the network run's
    ``test_events.json``: every model sees exactly the run's test records, and the BDT's AUC is its own run's."""
    from caloml.tasks.triforce import read_split
    from caloml.train import main as train_main

    monkeypatch.chdir(tmp_path)
    quick = ["--preset", "quick", "--no-progress"]
    network = ["triforce", "--arch", "dnn", "--task", "gamma-vs-pi0", "--epochs", "1", "--run-dir", "runs/dnn"]
    assert train_main([*network, *quick]) == 0
    assert (
        train_main(["bdt", "--task", "gamma-vs-pi0", "--run-dir", "runs/bdt", "--set", "runtime.threads=1", *quick])
        == 0
    )
    assert train_main(["linreg", "--particle", "photon", "--run-dir", "runs/linreg", *quick]) == 0
    split = read_split(tmp_path / "runs" / "dnn")
    assert [s["format"] for s in split["sources"]] == ["tfrecords", "tfrecords"]
    assert all(Path(s["path"]).parent == tmp_path / "tf_records" for s in split["sources"])
    # the baselines split the same cached data into the same test events
    for run, sources in (("bdt", split["sources"]), ("linreg", split["sources"][:1])):
        theirs = read_split(tmp_path / "runs" / run)["sources"]
        assert [(s["path"], s["n_events"]) for s in theirs] == [(s["path"], s["n_events"]) for s in sources]
        for mine, other in zip(sources, theirs, strict=True):
            np.testing.assert_array_equal(other["test_indices"], mine["test_indices"])
    capsys.readouterr()

    argv = ["reco", "--test", "runs/dnn", "--model", "runs/dnn", "runs/bdt", "runs/linreg", "--out", "report"]
    assert main([*argv, "--energy-bin-width", "125", "--no-plots", "--no-progress"]) == 0
    record = json.loads((tmp_path / "report" / "metrics.json").read_text())
    n_test = [int(s["n_test"]) for s in split["sources"]]
    assert record["test"]["n_events"] == sum(n_test)
    assert record["test"]["n_per_class"] == n_test  # a photon source and a pi0 source; no event dropped again
    with np.load(tmp_path / "report" / "predictions.npz") as data:
        predictions = {key: data[key] for key in data.files}
    for k, source in enumerate(split["sources"]):
        np.testing.assert_array_equal(
            np.sort(predictions["row"][predictions["file_index"] == k]), source["test_indices"]
        )
    # every model predicted every one of these events
    assert set(record["classification"]) == {"dnn", "bdt"}
    for result in record["classification"].values():
        assert result["n_events"] == sum(n_test)
        assert 0.0 <= result["auc"] <= 1.0
    assert record["regression"]["dnn"]["photon"]["n_events"] == n_test[0]
    assert record["regression"]["dnn"]["pi0"]["n_events"] == n_test[1]
    assert set(record["regression"]["linreg"]) == {"photon"}  # fitted on photons, predicts photons only
    assert record["regression"]["linreg"]["photon"]["n_events"] == n_test[0]
    for particle in ("photon", "pi0"):
        assert np.isfinite(np.array(record["regression"]["dnn"][particle]["binned"]["resolution"], float)).any()
    # the BDT: the same events and scores as its own run's test predictions, hence its test AUC
    summary = json.loads((tmp_path / "runs" / "bdt" / "summary.json").read_text())
    assert record["classification"]["bdt"]["auc"] == pytest.approx(summary["test_metrics"]["auc"], abs=1e-12)
    with np.load(tmp_path / "runs" / "bdt" / "test_predictions.npz") as own:
        own_scores = {
            (int(s), int(e)): float(p)
            for s, e, p in zip(*(own[k] for k in ("source_index", "event_index", "prediction")), strict=True)
        }
    scores = {
        (int(s), int(e)): float(p)
        for s, e, p in zip(predictions["file_index"], predictions["row"], predictions["score/bdt"], strict=True)
    }
    assert scores.keys() == own_scores.keys()
    for key, value in scores.items():
        assert value == pytest.approx(own_scores[key], rel=1e-6)

    # a BDT fitted on the same cached data split with another seed trained on some of the network's test events
    other = ["bdt", "--task", "gamma-vs-pi0", "--run-dir", "runs/bdt-2", "--set", "data.split_seed=2"]
    assert train_main([*other, "--set", "runtime.threads=1", *quick]) == 0
    capsys.readouterr()
    with pytest.raises(CalomlError, match=r"runs/bdt-2: \d+ of the evaluated events are not in its run's test split"):
        main(["reco", "--test", "runs/dnn", "--model", "runs/dnn", "runs/bdt-2", "--out", "report-2", "--no-plots"])
    assert not (tmp_path / "report-2").exists()


def test_precision_reaches_the_networks_and_is_recorded(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--precision bfloat16`` rebuilds the Triforce network in bfloat16 (same weights): class probabilities
    within 0.01 and energies within 2% (or 2 GeV) of float32, not bit-identical where the machine computes in
    bfloat16; the BDT is unaffected; the precision in force is in metrics.json, comparison.md and the printed table."""
    assert tuple(MODEL_PRECISIONS) == PRECISIONS  # the command line's choices are the precisions of the models
    network = TriforceDNN(1, 8, 0.0, initial_energy_coefficients=setup["linear"].coefficients, seed=3)
    head = network.get_layer("energy")  # a trained-like state: bfloat16 enters the energy through the dense part
    head.kernel.assign(np.random.default_rng(3).normal(0, 0.05, head.kernel.shape).astype(np.float32))
    network.save(tmp_path / "net.keras")
    models = [str(tmp_path / "net.keras"), str(setup["models"] / "bdt")]
    tests = [str(setup["test"]["photon"]), str(setup["test"]["pi0"])]
    in_force = "bfloat16" if "bfloat16" in resolve_policy("bfloat16") else "float32"
    arrays, printed = {}, {}
    for precision in PRECISIONS:
        out = tmp_path / precision
        argv = ["reco", "--test", *tests, "--model", *models, "--out", str(out), "--no-progress", "--no-plots"]
        assert main([*argv, "--energy-bin-width", BIN_WIDTH, "--precision", precision]) == 0
        printed[precision] = capsys.readouterr().out
        record = json.loads((out / "metrics.json").read_text())
        expected = "float32" if precision == "float32" else in_force
        assert record["options"]["precision"] == expected
        assert json.loads((out / "arguments.json").read_text())["precision_requested"] == precision
        assert [m["precision"] for m in record["models"]] == [expected, None]  # the BDT: its own arithmetic
        assert f"computed in {expected}" in (out / "comparison.md").read_text()
        auc, error = record["classification"]["net"]["auc"], record["classification"]["net"]["auc_error"]
        assert 0.0 < error < 0.2
        assert f"{auc:.4g} +- {error:.2g}" in printed[precision]
        with np.load(out / "predictions.npz") as data:
            arrays[precision] = {key: data[key] for key in data.files}
    exact, approximate = arrays["float32"], arrays["bfloat16"]
    np.testing.assert_array_equal(approximate["score/bdt"], exact["score/bdt"])
    np.testing.assert_allclose(approximate["score/net"], exact["score/net"], atol=0.01)
    # GeV: bfloat16 keeps 8 bits of mantissa, so sums of a few hundred GeV round by about 1 GeV
    np.testing.assert_allclose(approximate["energy/net"], exact["energy/net"], rtol=0.02, atol=2.0)
    if in_force == "bfloat16":  # the option reached the network: bfloat16 rounding shows
        assert not np.array_equal(approximate["score/net"], exact["score/net"])
    assert "computed in float32" in printed["float32"]


def test_bfloat16_falls_back_to_float32_where_the_machine_has_no_bfloat16_units(
    setup: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without bfloat16 units the networks compute in float32, one warning says so, and the report records float32
    as the precision in force beside the request; an unknown precision is a one-line error."""
    with pytest.raises(CalomlError, match="unknown precision 'float16'"):
        evaluate_reconstruction(
            [setup["test"]["photon"]], [setup["models"] / "dnn-run"], tmp_path / "x", precision="float16"
        )
    assert not (tmp_path / "x").exists()
    monkeypatch.setattr("caloml.models.precision.bf16_support", lambda *args: (False, "no bfloat16 units (test)"))
    tests = [str(setup["test"]["photon"]), str(setup["test"]["pi0"])]
    out = tmp_path / "report"
    argv = ["reco", "--test", *tests, "--model", str(setup["models"] / "dnn-run"), "--out", str(out), "--no-plots"]
    with caplog.at_level("WARNING", logger="caloml.models.precision"):
        assert main([*argv, "--no-progress", "--precision", "bfloat16"]) == 0
    assert [r.getMessage() for r in caplog.records if "no bfloat16 units (test)" in r.getMessage()] == [
        "caloml: mixed_bfloat16 requested but no bfloat16 units (test): computing in float32"
    ]
    record = json.loads((out / "metrics.json").read_text())
    assert record["options"]["precision"] == "float32"
    assert record["models"][0]["precision"] == "float32"
    assert json.loads((out / "arguments.json").read_text())["precision_requested"] == "bfloat16"
    with np.load(out / "predictions.npz") as data, np.load(setup["out"] / "predictions.npz") as reference:
        np.testing.assert_array_equal(data["score/dnn-run"], reference["score/dnn-run"])  # float32: the same numbers
