"""The generator validation suite, honest by construction.

* Null test: two simulator files with different seeds are consistent (AUC near 0.5, separation powers at their
  noise floor, nothing flagged).
* Sensitivity: deliberately distorted copies (energies scaled by 5%, showers one layer deeper, 10% of the hits
  dropped) are flagged by the observables that should see them, and by the classifier.
* The report opens, its images exist, the JSON has every documented key; CaloChallenge files work; bad input and
  existing outputs give one-line errors; GAN-train / GAN-test runs with a plugged-in classifier and says why not
  without one.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from command_line import run_command_line

from caloml.data.lcd import LCDReader, LCDWriter
from caloml.errors import CalomlError, OutputExistsError
from caloml.evaluate import JSON_KEYS, evaluate_generated
from caloml.evaluate.__main__ import main
from caloml.evaluate.comparison import Binning, compare_features, energy_edges
from caloml.evaluate.features import ShowerFeatures, extract_features, high_level_input
from caloml.evaluate.gan_train_test import TRAINER_MODULE, find_trainer, gan_train_test
from caloml.evaluate.inputs import open_pair
from caloml.evaluate.report import render_html
from caloml.evaluate.two_sample import classifier_two_sample_test
from caloml.sim.run import SimulationRequest, simulate_file

N_EVENTS = 1000  # per file: a test split of 250 showers per class, AUC statistical error 0.026
ENERGY_RANGE_GEV = (10.0, 100.0)


def _simulate(path: Path, particle: str, n: int, seed: int, geometry: str = "lcd-gen") -> Path:
    energy = ENERGY_RANGE_GEV if geometry.startswith("lcd") else None
    request = SimulationRequest(geometry, particle, n_events=n, seed=seed, energy_range_gev=energy)
    simulate_file(request.resolve(), path, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate_suite")


@pytest.fixture(scope="module")
def reference_file(folder: Path) -> Path:
    return _simulate(folder / "reference.h5", "electron", N_EVENTS, seed=1)


@pytest.fixture(scope="module")
def generated_file(folder: Path) -> Path:
    """A second simulator file, another seed: a perfect generator."""
    return _simulate(folder / "generated.h5", "electron", N_EVENTS, seed=2)


@pytest.fixture(scope="module")
def null_report(folder: Path, generated_file: Path, reference_file: Path) -> tuple[Path, dict]:
    out = folder / "null_report"
    return out, evaluate_generated(generated_file, reference_file, out, seed=5, progress=False)


def test_null_two_simulator_files_are_consistent(null_report: tuple[Path, dict]) -> None:
    _, record = null_report
    summary = record["summary"]
    for kind in ("low_level", "high_level"):
        result = record["classifier"][kind]
        assert result["runs"][0]["sizes_per_class"]["test"] == N_EVENTS // 4
        assert abs(result["auc"] - 0.5) < 3 * result["auc_stat_error"] < 0.08, kind  # a few hundredths
        assert abs(result["jsd_nats"]) < 0.02, kind
        assert not result["significant"]
    assert summary["n_flagged_columns"] == 0
    assert summary["consistent_with_reference"] is True
    scalars = [obs["columns"][0] for obs in record["observables"].values() if obs["components"] is None]
    powers = np.array([c["separation_power"] for c in scalars])
    floors = np.array([c["separation_power_noise_floor"] for c in scalars])
    assert np.median(powers / floors) < 1.5  # at the statistical floor of two samples of 1000
    assert powers.max() < 0.05
    assert record["correlations"]["max_abs_difference"] < 0.2
    sampling = record["observables"]["sampling_fraction"]["columns"][0]
    assert abs(sampling["relative_mean_error"]) < 0.01
    assert sampling["energy_bins"]["pull_chi2_per_bin"] < 2.0


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.tables = 0
        self.first_table_text = ""
        self._in_first_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")
        if tag == "table":
            self.tables += 1
            self._in_first_table = self.tables == 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_first_table = False

    def handle_data(self, data: str) -> None:
        if self._in_first_table:
            self.first_table_text += data


def test_report_opens_and_the_json_has_every_documented_key(null_report: tuple[Path, dict]) -> None:
    out, record = null_report
    stored = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert stored == record
    assert set(stored) == set(JSON_KEYS)
    assert stored["seed"] == 5
    assert stored["options"]["seed"] == 5
    assert stored["options"]["energy_bin_width_gev"] == 5.0  # the 3DGAN paper's bins for LCD files
    assert np.allclose(np.diff(stored["binning"]["angle_edges_rad"]), 0.1)
    assert stored["layout"] == "lcd"
    assert stored["gan_train_test"]["available"] is False
    assert set(stored["files"]) == {"generated", "reference", "background"}
    assert stored["files"]["reference"]["caloml_config"]["seed"] == 1  # the reference's provenance
    parser = _Images()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    assert "classifier AUC, low-level" in parser.first_table_text  # the summary table comes first
    assert sorted(parser.sources) == sorted(stored["plots"])
    assert len(stored["plots"]) >= 20
    for name in parser.sources:
        assert (out / name).stat().st_size > 2000, name
    assert sorted(p.name for p in out.glob("*.png")) == sorted(stored["plots"])
    assert not list(out.parent.glob(".null_report*"))  # no temporary directory left behind


def _distort(source: Path, target: Path, kind: str) -> Path:
    rng = np.random.default_rng(7)
    with LCDReader(source) as reader, LCDWriter(target) as writer:
        for chunk in reader.iter_chunks():
            cells = chunk["ECAL"]
            if kind == "energy scaled by 5%":
                cells = cells * np.float32(1.05)
            elif kind == "one layer deeper":
                deeper = np.zeros_like(cells)
                deeper[..., 1:] = cells[..., :-1]
                cells = deeper
            elif kind == "10% of the hits dropped":
                cells = np.where(rng.random(cells.shape) < 0.1, np.float32(0.0), cells)
            chunk["ECAL"] = cells
            writer.append(chunk)
    return target


@pytest.fixture(scope="module")
def reference_features(generated_file: Path, reference_file: Path) -> ShowerFeatures:
    with open_pair(generated_file, reference_file) as pair:
        return extract_features(pair.reference)


def _checks_scale(result: dict) -> None:
    sampling = result["sampling_fraction"]
    assert sampling["flagged"]
    assert np.nanmean(sampling["relative_error"]) == pytest.approx(0.05, abs=0.01)


def _checks_deeper(result: dict) -> None:
    for name in ("centre_z", "first_layer_fraction", "first_third_fraction", "last_third_fraction"):
        assert result[name]["flagged"], name
    assert result["centre_z"]["mean_difference"] == pytest.approx(1.0, abs=0.15)  # one layer
    assert not result["sampling_fraction"]["flagged"]  # the deposited energy is (nearly) unchanged


def _checks_dropped(result: dict) -> None:
    for name in ("hits", "occupancy", "sampling_fraction"):
        assert result[name]["flagged"], name
    assert np.nanmean(result["hits"]["relative_error"]) == pytest.approx(-0.10, abs=0.02)
    assert not result["centre_z"]["flagged"]


@pytest.mark.parametrize(
    ("kind", "checks"),
    [
        ("energy scaled by 5%", _checks_scale),
        ("one layer deeper", _checks_deeper),
        ("10% of the hits dropped", _checks_dropped),
    ],
)
def test_distortions_are_flagged_by_the_metrics_that_should_see_them(
    kind: str,
    checks: Callable[[dict], None],
    folder: Path,
    generated_file: Path,
    reference_file: Path,
    reference_features: ShowerFeatures,
) -> None:
    distorted = _distort(generated_file, folder / f"distorted_{kind.split()[0]}.h5", kind)
    with open_pair(distorted, reference_file) as pair:
        features = extract_features(pair.generated)
    binning = Binning(energy_edges(features.energy_gev, reference_features.energy_gev, width_gev=5.0))
    comparisons, flags = compare_features(features, reference_features, binning)
    result = {
        name: {
            "flagged": flags[name][0],
            "relative_error": columns[0].energy_bins.relative_error,
            "mean_difference": columns[0].mean_gen - columns[0].mean_ref,
        }
        for name, columns in comparisons.items()
    }
    checks(result)
    classifier = classifier_two_sample_test(
        high_level_input(features, use_theta=True), high_level_input(reference_features, use_theta=True), seed=3
    )
    assert classifier["auc"] > 0.7, kind
    assert classifier["auc"] - 0.5 > 3 * classifier["auc_stat_error"]


def test_calochallenge_files_are_evaluated_with_the_threshold(folder: Path) -> None:
    reference = _simulate(folder / "cc_reference.h5", "electron", 300, seed=3, geometry="calochallenge-2")
    generated = _simulate(folder / "cc_generated.h5", "electron", 300, seed=4, geometry="calochallenge-2")
    out = folder / "cc_report"
    record = evaluate_generated(generated, reference, out, seed=2, layer_panels=4, classifier=False, progress=False)
    assert record["layout"] == "calochallenge"
    assert record["geometry"] == "calochallenge-2"
    assert len(record["binning"]["energy_edges_gev"]) == 13  # 12 logarithmic bins
    assert record["binning"]["angle_edges_rad"] is None
    assert len(record["observables"]["energy_per_layer_gev"]["columns"]) == 45
    assert record["classifier"] == {"available": False, "reason": "switched off (--no-classifier)"}
    assert record["summary"]["auc_low_level"] is None
    assert "classifier_roc.png" not in record["plots"]
    assert record["summary"]["n_flagged_columns"] == 0  # two simulator files
    assert record["gan_train_test"] == {
        "available": False,
        "reason": "no reconstruction classifier for the calochallenge layout (Triforce works on LCD showers)",
    }
    assert (out / "layers_energy_per_layer_gev.png").stat().st_size > 2000
    assert set(record) == set(JSON_KEYS)


_cli = partial(run_command_line, "caloml.evaluate")


def test_command_line_errors_are_one_line(
    folder: Path, generated_file: Path, reference_file: Path, calochallenge_file: Path
) -> None:
    result = _cli("gen", "--generated", calochallenge_file, "--reference", reference_file, "--out", folder / "x")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("caloml: error: different layouts:")
    assert "Traceback" not in result.stderr
    small = _simulate(folder / "small.h5", "electron", 120, seed=9)
    result = _cli("gen", "--generated", small, "--reference", reference_file, "--out", folder / "y")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        "caloml: error: .+: 120 showers is too few for the classifier two-sample test, which"
        r" needs at least \d+ per file \(a 25% test split of \d+ per class\); use larger files or --no-classifier",
        lines[0],
    ), lines[0]
    assert not (folder / "x").exists()
    assert not (folder / "y").exists()
    occupied = folder / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        main(["gen", "--generated", str(generated_file), "--reference", str(reference_file), "--out", str(occupied)])
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    with pytest.raises(CalomlError, match="the background file is a calochallenge file"):
        evaluate_generated(generated_file, reference_file, folder / "z", background=str(calochallenge_file))
    with pytest.raises(CalomlError, match="repeats must be at least 1"):
        evaluate_generated(generated_file, reference_file, folder / "z", repeats=0)
    with pytest.raises(CalomlError, match="options are seed, repeats"):
        evaluate_generated(generated_file, reference_file, folder / "z", colour="red")


@functools.cache
def _ecal_hcal_features(path: Path) -> np.ndarray:
    """ECAL fraction and log HCAL/ECAL of every event of an LCD file, (N, 2), from the stored window sums."""
    with LCDReader(path, keys=["ECAL_E", "HCAL_E", "energy"]) as reader:
        events = reader.read(slice(None))
    ecal, hcal = events["ECAL_E"].astype(np.float64), events["HCAL_E"].astype(np.float64)
    return np.stack([ecal / events["energy"], np.log((hcal + 1e-3) / (ecal + 1e-3))], axis=1)


def _electron_pion_trainer(samples: list, *, seed: int) -> Callable[[Path, np.ndarray], np.ndarray]:
    """A stand-in for the Triforce classifier: logistic regression on the ECAL fraction and HCAL/ECAL."""
    from sklearn.linear_model import LogisticRegression

    def features(path: Path, indices: np.ndarray) -> np.ndarray:
        return _ecal_hcal_features(path)[indices]

    x = np.concatenate([features(path, indices) for path, indices, _ in samples])
    y = np.concatenate([np.full(len(indices), label) for _, indices, label in samples])
    model = LogisticRegression(random_state=seed).fit(x, y)
    return lambda path, indices: model.predict_proba(features(path, indices))[:, 1]


def test_gan_train_gan_test_with_a_plugged_in_classifier(
    folder: Path, generated_file: Path, reference_file: Path, null_report: tuple[Path, dict]
) -> None:
    background = _simulate(folder / "pions.h5", "chpi", 300, seed=8)
    same_files = functools.partial(
        gan_train_test,
        generated_file,
        reference_file,
        n_generated=N_EVENTS,
        n_reference=N_EVENTS,
        layout="lcd",
        seed=1,
        trainer=_electron_pion_trainer,
    )
    result = same_files(background, n_background=300, trainer_name="logistic regression (test)")
    assert result["available"] is True
    assert result["n_train"] == {"generated": 500, "reference": 500, "background": 150}
    assert result["baseline"] > 0.85  # electrons and charged pions are separable
    assert abs(result["gan_train"] - result["baseline"]) < 0.05  # a perfect generator
    assert abs(result["gan_test"] - result["baseline"]) < 0.05
    assert result["trained_on_generated"]["tested_on_reference"]["n_test"] == 500 + 150
    # the report draws the table
    record = dict(null_report[1], gan_train_test=result)
    page = render_html(record)
    assert "GAN-train" in page
    assert "logistic regression (test)" in page
    # the Triforce classifier is found; without a background file, the record says why it did not run
    function, found = find_trainer()
    assert callable(function)
    assert found == f"{TRAINER_MODULE}.train_classifier"
    assert "--background" in null_report[1]["gan_train_test"]["reason"]
    missing_background = same_files(None, n_background=0)
    assert missing_background["available"] is False
    assert "--background" in missing_background["reason"]


@pytest.mark.slow
def test_null_with_larger_files_is_within_a_few_hundredths(tmp_path: Path) -> None:
    reference = _simulate(tmp_path / "ref.h5", "electron", 5000, seed=21)
    generated = _simulate(tmp_path / "gen.h5", "electron", 5000, seed=22)
    record = evaluate_generated(generated, reference, tmp_path / "out", seed=1, repeats=2, progress=False)
    for kind in ("low_level", "high_level"):
        assert abs(record["classifier"][kind]["auc"] - 0.5) < 0.04, kind
    assert record["summary"]["n_flagged_columns"] == 0
