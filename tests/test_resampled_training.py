"""Training on resampled data (``--resample {atlas,cms}``, seed 004 section 5.4): the Triforce network task and the
baselines see the resampled ECAL (and features recomputed from it), on the same split as without resampling.

The module simulates (once, about a second) 100 photons and 100 neutral pions of 10-100 GeV in the lcd-rec layout
and converts them to TFRecords, so that both pipelines (NumPy for HDF5, TensorFlow for TFRecords) are checked.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from caloml.data.lcd import LCDReader
from caloml.data.lcd_features import expert_features
from caloml.data.reconstruction import Source
from caloml.data.reconstruction_tasks import get_task
from caloml.data.resampling import resample_ecal, resample_events
from caloml.errors import CalomlError
from caloml.sim.run import SimulationRequest, simulate_file
from caloml.tasks.baselines import load_split, resampled_features
from caloml.tasks.triforce import (
    PRESETS,
    TriforceConfig,
    TriforceTask,
    locate_and_split,
    read_split,
    split_dataset,
)
from caloml.train import main as train_main
from caloml.training.config import resolve_config

TASK = get_task("gamma-vs-pi0")
FRACTIONS = (0.6, 0.2, 0.2)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from caloml.data.tfrecord import convert_to_tfrecords

    root = tmp_path_factory.mktemp("resampled-training")
    out = {}
    for seed, particle in enumerate(("photon", "pi0"), start=51):
        path = root / f"{particle}.h5"
        request = SimulationRequest("lcd-rec", particle, 100, seed, energy_range_gev=(10.0, 100.0))
        simulate_file(request.resolve(), path, workers=1, progress=False)
        out[particle] = path
    out["pi0-records"] = root / "pi0-records"
    convert_to_tfrecords([out["pi0"]], out["pi0-records"], shard_events=40)
    return out


def _raw(path: Path) -> dict[str, np.ndarray]:
    with LCDReader(path) as reader:
        return reader.read(slice(None))


def _expected_cropped(raw: dict[str, np.ndarray], energies: np.ndarray, detector: str) -> np.ndarray:
    """The raw events of these true energies (unique in the files), resampled on the 51 x 51 window, then cropped."""
    return resample_ecal(_rows_of(raw, energies)["ECAL"].astype(np.float32), detector)[:, 13:38, 13:38, :]


def _rows_of(raw: dict[str, np.ndarray], energies: np.ndarray) -> dict[str, np.ndarray]:
    rows = [int(np.flatnonzero(np.isclose(raw["energy"], e, rtol=0, atol=1e-4))[0]) for e in energies]
    return {key: value[rows] for key, value in raw.items()}


def _config(files: dict[str, Path], run_dir: Path, resample: str) -> TriforceConfig:
    config = resolve_config(
        TriforceConfig,
        preset=PRESETS["quick"],
        flags={
            "data.files": [str(files["photon"]), str(files["pi0"])],
            "data.resample": resample,
            "runtime.run_dir": str(run_dir),
            "runtime.progress": False,
        },
    )
    return replace(config, trainer=replace(config.trainer, epochs=1, global_batch_size=16, steps_per_epoch=4))


def test_triforce_trains_on_resampled_batches_with_the_same_split(files: dict[str, Path], tmp_path: Path) -> None:
    from caloml.training.trainer import train

    seen: list[dict[str, Any]] = []

    class Spy(TriforceTask):
        def make_dataset(self, config: Any, data: Any, input_context: Any) -> Any:
            dataset = super().make_dataset(config, data, input_context)
            seen.append({k: v.numpy() for k, v in next(iter(dataset)).items()})
            return dataset

    run_dir = tmp_path / "cms"
    result = train(Spy(), _config(files, run_dir, "cms"))
    assert result.history
    assert all(np.isfinite(row["loss"]) for row in result.history)
    # the batches the network trains on hold the raw events resampled on the full window, then cropped
    batch = seen[0]
    raw = {p: _raw(files[p]) for p in ("photon", "pi0")}
    for label, particle in enumerate(("photon", "pi0")):
        mine = batch["class_label"] == label
        assert mine.any()
        expected = _expected_cropped(raw[particle], batch["energy"][mine], "cms")
        np.testing.assert_allclose(batch["ECAL"][mine], expected, rtol=1e-4, atol=1e-7)
        stored = _rows_of(raw[particle], batch["energy"][mine])
        assert not np.allclose(batch["ECAL"][mine], stored["ECAL"][:, 13:38, 13:38, :], atol=1e-5)  # resampled
        # ECAL_E is the stored window sum (the resampling conserves it), the HCAL is as stored
        np.testing.assert_allclose(batch["ECAL_E"][mine], stored["ECAL_E"], rtol=1e-6)
        np.testing.assert_allclose(batch["HCAL"][mine], stored["HCAL"], rtol=1e-6, atol=1e-30)  # denormals: 0

    # the split (test_events.json) is that of the CLIC granularity, with the setting recorded
    record = read_split(run_dir)
    assert record["resample"] == "cms"
    clic = locate_and_split([files["photon"], files["pi0"]], TASK, fractions=FRACTIONS, seed=1)
    for source, mask in zip(record["sources"], clic.masks["test"], strict=True):
        np.testing.assert_array_equal(source["test_indices"], np.flatnonzero(mask))
    assert json.loads((run_dir / "data_summary.json").read_text())["resample"] == "cms"
    assert "resample: cms" in (run_dir / "config.yaml").read_text()
    assert TriforceTask().default_run_dir(_config(files, tmp_path, "cms")) == Path("runs/triforce-dnn-gamma-vs-pi0-cms")
    assert TriforceTask().default_run_dir(_config(files, tmp_path, "none")) == Path("runs/triforce-dnn-gamma-vs-pi0")


def test_tfrecord_pipeline_resamples_before_the_crop(files: dict[str, Path]) -> None:
    inputs = locate_and_split(
        [files["photon"], files["pi0-records"]], TASK, fractions=FRACTIONS, seed=1, resample="atlas"
    )
    clic = locate_and_split([files["photon"], files["pi0"]], TASK, fractions=FRACTIONS, seed=1)
    for a, b in zip(inputs.masks["test"], clic.masks["test"], strict=True):
        np.testing.assert_array_equal(a, b)
    batches = list(split_dataset(inputs, "validation", batch_size=64))
    ecal = np.concatenate([b["ECAL"].numpy() for b in batches])
    energy = np.concatenate([b["energy"].numpy() for b in batches])
    labels = np.concatenate([b["class_label"].numpy() for b in batches])
    pions = labels == 1  # the TFRecord source: TensorFlow's resampling
    expected = _expected_cropped(_raw(files["pi0"]), energy[pions], "atlas")
    np.testing.assert_allclose(ecal[pions], expected, rtol=1e-4, atol=1e-7)


def test_bdt_fits_on_features_recomputed_from_the_resampled_ecal(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from caloml.models.baselines import load_baseline

    paths = [str(files["photon"]), str(files["pi0"])]
    run_dir = tmp_path / "bdt-atlas"
    small = ["--set", "trainer.search_points=1", "--set", "model.n_estimators=[30]", "--set", "runtime.threads=1"]
    argv = ["bdt", "--task", "gamma-vs-pi0", "--data", *paths, "--resample", "atlas", "--run-dir", str(run_dir)]
    assert train_main([*argv, *small, "--no-progress"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n") :])
    assert summary["resample"] == "atlas"

    # the features: recomputed from the resampled cells (R9 changes), on the same events as without resampling
    keys = ["R9", "ECALmomentX2", "ECAL_E", "HCAL_E"]
    plain = load_split(paths, keys, task=TASK, fractions=FRACTIONS, seed=1)
    atlas = load_split(paths, keys, task=TASK, fractions=FRACTIONS, seed=1, resample="atlas")
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(plain.splits[name]["event_index"], atlas.splits[name]["event_index"])
        np.testing.assert_array_equal(plain.splits[name]["source_index"], atlas.splits[name]["source_index"])
    test_p, test_a = plain.splits["test"], atlas.splits["test"]
    assert np.any(np.abs(test_a["R9"] - test_p["R9"]) > 1e-3)
    np.testing.assert_allclose(test_a["ECAL_E"], test_p["ECAL_E"], rtol=1e-4)  # energy conserved
    np.testing.assert_allclose(test_a["HCAL_E"], test_p["HCAL_E"], rtol=1e-5)  # the HCAL is not resampled
    raw = _raw(files["photon"])
    rows = test_a["event_index"][test_a["source_index"] == 0][:5]
    direct = expert_features(resample_ecal(raw["ECAL"][rows].astype(np.float32), "atlas"), raw["HCAL"][rows])
    np.testing.assert_allclose(test_a["R9"][: len(rows)], direct["R9"], rtol=1e-6)
    # the TFRecord reader gives the same recomputed features as the HDF5 one
    rows = atlas.sources[1]["test_indices"]
    from_records = resampled_features(Source.open(files["pi0-records"]), np.asarray(rows), "atlas", ["R9"])
    np.testing.assert_allclose(from_records["R9"], test_a["R9"][test_a["source_index"] == 1], rtol=1e-5)

    # the model was fitted on them: its recorded test predictions are those on the recomputed features
    model = load_baseline(run_dir)
    full = load_split(paths, model.feature_names, task=TASK, fractions=FRACTIONS, seed=1, resample="atlas")
    saved = np.load(run_dir / "test_predictions.npz")
    np.testing.assert_allclose(model.predict_proba(full.splits["test"])[:, 1], saved["prediction"], rtol=1e-6)
    # and the summary's test AUC is the one of those predictions against the recorded truth
    from sklearn.metrics import roc_auc_score

    assert set(np.unique(saved["truth"])) == {0, 1}
    assert summary["test_metrics"]["auc"] == pytest.approx(roc_auc_score(saved["truth"], saved["prediction"]), 1e-12)
    assert summary["test_metrics"]["events_per_class"] == [int(np.sum(saved["truth"] == c)) for c in (0, 1)]
    record = json.loads((run_dir / "test_events.json").read_text())
    assert record["resample"] == "atlas"
    assert [s["test_indices"] for s in record["sources"]] == [s["test_indices"] for s in plain.sources]


def test_unknown_detector_is_a_one_line_error(tmp_path: Path) -> None:
    for argv in (
        ["triforce", "--set", "data.resample=lhcb", "--run-dir", str(tmp_path / "t")],
        ["bdt", "--set", "data.resample=lhcb", "--run-dir", str(tmp_path / "b")],
    ):
        with pytest.raises(CalomlError) as error:
            train_main([*argv, "--no-progress"])
        assert str(error.value) == (
            "configuration 'data.resample' must be one of none, atlas, cms (the detector granularity to emulate), "
            "got 'lhcb'"
        )
    assert not (tmp_path / "t").exists()
    assert not (tmp_path / "b").exists()
    with pytest.raises(CalomlError, match="'resample' must be one of none, atlas, cms"):
        resample_events({"ECAL": np.zeros((1, 51, 51, 25), np.float32)}, "lhcb")
