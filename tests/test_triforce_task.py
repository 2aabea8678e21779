"""The Triforce training task: filters, labels and split, the input pipeline, training with the shared trainer
(the loss goes down, resume, export hook), one-line configuration errors, and the GAN-train / GAN-test classifier.

The simulated lcd-rec files are small (a hundred showers per particle) and shared by the module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from caloml.data.lcd import LCDWriter
from caloml.data.reconstruction_tasks import get_task
from caloml.errors import CalomlError
from caloml.evaluate.gan_train_test import train_classifier
from caloml.export.triforce import export_trained
from caloml.sim.run import SimulationRequest, simulate_file
from caloml.tasks.triforce import (
    PRESETS,
    TASK,
    TriforceConfig,
    check_config,
    locate_and_split,
    read_split,
    source_events,
    split_dataset,
)
from caloml.train import main as train_main
from caloml.training.config import resolve_config


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("triforce-task")
    files = {}
    for seed, (geometry, particle, n) in enumerate(
        [("lcd-rec", "photon", 120), ("lcd-rec", "pi0", 120), ("lcd-gen", "electron", 160), ("lcd-gen", "chpi", 160)],
        start=31,
    ):
        path = root / f"{geometry}-{particle}.h5"
        request = SimulationRequest(geometry, particle, n, seed, energy_range_gev=(10.0, 100.0))
        simulate_file(request.resolve(), path, workers=1, progress=False)
        files[particle] = path
    return files


def _mixed_file(path: Path, make_lcd: Callable[..., dict], pdg_ids: np.ndarray) -> dict:
    """A synthetic LCD file whose events carry ``pdg_ids`` and reconstructed angles."""
    events = make_lcd(len(pdg_ids), seed=3)
    events["pdgID"] = pdg_ids.astype(np.int32)
    events["recoEta"] = events["eta"]
    events["recoPhi"] = events["phi"]
    with LCDWriter(path) as writer:
        writer.append(events)
    return events


def _all_events(inputs: object, splits: tuple[str, ...] = ("train", "validation", "test")) -> dict[str, np.ndarray]:
    columns: dict[str, list[np.ndarray]] = {}
    for split in splits:
        for batch in split_dataset(inputs, split, batch_size=16):  # type: ignore[arg-type]
            for key, value in batch.items():
                columns.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(value) for key, value in columns.items()}


def test_filters_and_labels_reach_the_dataset(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    pdg = np.array([22, 111] * 20)
    events = _mixed_file(tmp_path / "mixed.h5", make_lcd, pdg)
    inputs = locate_and_split([tmp_path / "mixed.h5"], get_task("gamma-vs-pi0"), fractions=(0.5, 0.25, 0.25), seed=4)
    seen = _all_events(inputs)
    energy_to_event = {float(e): i for i, e in enumerate(events["energy"])}  # the fixture's energies are unique
    kept = [energy_to_event[float(e)] for e in seen["energy"]]
    # every event is in exactly one split, unless it is a pi0 with an opening angle of 0.01 rad or more
    failing = (pdg == 111) & (events["openingAngle"] >= 0.01)
    assert failing.any()
    assert (events["openingAngle"][pdg == 22] >= 0.01).any()
    assert sorted(kept) == sorted(np.flatnonzero(~failing).tolist())
    # labels: 22 -> 0, 111 -> 1, shapes and units of the batches
    np.testing.assert_array_equal(seen["class_label"], np.where(pdg[kept] == 22, 0, 1))
    assert seen["ECAL"].shape[1:] == (25, 25, 25)
    assert seen["HCAL"].shape[1:] == (11, 11, 60)
    np.testing.assert_allclose(seen["ECAL_E"], events["ECAL_E"][kept], rtol=1e-5)  # the full-window sums, GeV
    np.testing.assert_allclose(seen["recoPhi"], events["phi"][kept])
    # e vs pi: a charged pion with HCAL/ECAL >= 0.1 is dropped, electrons never are
    pdg = np.array([11, 211] * 20)
    events = _mixed_file(tmp_path / "epi.h5", make_lcd, pdg)
    inputs = locate_and_split([tmp_path / "epi.h5"], get_task("e-vs-pi"), fractions=(0.5, 0.25, 0.25), seed=4)
    kept = [energy_to_event[float(e)] for e in _all_events(inputs)["energy"]]
    ratio_fails = (pdg == 211) & ~(events["HCAL_E"] < 0.1 * events["ECAL_E"])
    assert ratio_fails.any()
    assert sorted(kept) == sorted(np.flatnonzero(~ratio_fails).tolist())


def test_label_mapping_errors_are_one_line(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    _mixed_file(tmp_path / "only_photons.h5", make_lcd, np.full(40, 22))
    with pytest.raises(CalomlError, match=r"no train event of class pdgID 111 \(pi0\)"):
        locate_and_split([tmp_path / "only_photons.h5"], get_task("gamma-vs-pi0"), fractions=(0.6, 0.2, 0.2), seed=1)
    _mixed_file(tmp_path / "electrons.h5", make_lcd, np.array([11, 22] * 20))
    with pytest.raises(CalomlError, match="expects pdgID 22 or 111, found 11"):
        locate_and_split([tmp_path / "electrons.h5"], get_task("gamma-vs-pi0"), fractions=(0.6, 0.2, 0.2), seed=1)


def test_split_is_seeded_recorded_and_the_same_for_tfrecords(
    tmp_path: Path, make_lcd: Callable[..., dict], sim_files: dict[str, Path]
) -> None:
    from caloml.data.tfrecord import convert_to_tfrecords

    task = get_task("gamma-vs-pi0")
    paths = [sim_files["photon"], sim_files["pi0"]]
    first = locate_and_split(paths, task, fractions=(0.6, 0.2, 0.2), seed=3)
    again = locate_and_split(paths, task, fractions=(0.6, 0.2, 0.2), seed=3)
    other = locate_and_split(paths, task, fractions=(0.6, 0.2, 0.2), seed=4)
    for a, b, c in zip(first.masks["test"], again.masks["test"], other.masks["test"], strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    for train, validation, test in zip(*(first.masks[s] for s in ("train", "validation", "test")), strict=True):
        assert not (train & validation).any()
        assert not (train & test).any()
        assert not (validation & test).any()
    # the linear calibration of the skip head is fitted on the training split (photons: about 1 / 0.02 per GeV)
    assert 40 < first.energy_coefficients[0] < 60
    # the TFRecord conversion of a file has the same event indices as the file
    records = tmp_path / "records"
    convert_to_tfrecords([sim_files["pi0"]], records, shard_events=50)
    from_h5 = [b["energy"].numpy() for b in source_events(first.sources[1]).batch(500)]
    converted = locate_and_split([sim_files["photon"], records], task, fractions=(0.6, 0.2, 0.2), seed=3)
    from_records = [b["energy"].numpy() for b in source_events(converted.sources[1]).batch(500)]
    np.testing.assert_array_equal(from_h5[0], from_records[0])
    np.testing.assert_array_equal(converted.masks["test"][1], first.masks["test"][1])


def _config(sim_files: dict[str, Path], run_dir: Path, **trainer: object) -> TriforceConfig:
    config = resolve_config(
        TriforceConfig,
        preset=PRESETS["quick"],
        flags={
            "data.files": [str(sim_files["photon"]), str(sim_files["pi0"])],
            "runtime.run_dir": str(run_dir),
            "runtime.progress": False,
            "model.learning_rate": 2e-3,
        },
    )
    return replace(config, trainer=replace(config.trainer, **trainer))


def test_quick_training_lowers_the_loss_resumes_and_exports(
    tmp_path: Path, sim_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from caloml.training.trainer import train

    monkeypatch.chdir(tmp_path)  # saved_models/ of the export hook
    run_dir = tmp_path / "run"
    first = train(TASK, _config(sim_files, run_dir, epochs=1, global_batch_size=16, steps_per_epoch=5))
    assert first.resumed_from_epoch == 0
    assert first.selected_epoch == 1
    # an interrupted run (one epoch of three done) resumes from its checkpoint
    config = _config(sim_files, run_dir, epochs=3, global_batch_size=16, steps_per_epoch=5, export=True)
    result = train(TASK, config, exporter=export_trained)  # the --export convention: the exporter is passed in
    assert result.resumed_from_epoch == 1
    losses = [row["loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert losses[-1] < 0.8 * losses[0], losses
    assert (run_dir / "model.keras").is_file()
    # the split file names the test events of each source, as the evaluation reads them
    split = read_split(run_dir)
    assert [s["path"] for s in split["sources"]] == [str(sim_files["photon"]), str(sim_files["pi0"])]
    assert [c["particle"] for c in split["classes"]] == ["photon", "pi0"]
    assert [(s["particle"], s["label"], s["format"]) for s in split["sources"]] == [
        ("photon", 0, "hdf5"),
        ("pi0", 1, "hdf5"),
    ]
    assert all(s["n_test"] == len(s["test_indices"]) > 10 for s in split["sources"])
    summary = json.loads((run_dir / "data_summary.json").read_text())
    assert summary["energy_calibration"]["a"] > 0
    assert result.model is not None
    assert result.model.initial_energy_coefficients[0] == pytest.approx(summary["energy_calibration"]["a"])
    # the export hook wrote the serving model
    assert result.export_dir == Path("saved_models") / "triforce-dnn-gamma-vs-pi0" / "1"
    info = json.loads((tmp_path / result.export_dir / "assets.extra" / "export.json").read_text())
    assert info["class_names"] == ["photon", "pi0"]
    assert info["seed"] == 1


def test_configuration_errors_are_one_line(tmp_path: Path) -> None:
    config = TriforceConfig()
    with pytest.raises(CalomlError, match=r"model\.arch must be one of dnn, cnn, googlenet"):
        check_config(replace(config, model=replace(config.model, arch="rnn")))
    with pytest.raises(CalomlError, match=r"unknown reconstruction task 'e-vs-mu'"):
        check_config(replace(config, model=replace(config.model, task="e-vs-mu")))
    with pytest.raises(CalomlError, match=r"data\.split_fractions"):
        check_config(replace(config, data=replace(config.data, split_fractions=(0.8, 0.3, 0.1))))
    with pytest.raises(CalomlError, match=r"unknown configuration key 'model\.kernel'"):
        resolve_config(TriforceConfig, assignments=["model.kernel=3"])
    with pytest.raises(CalomlError) as error:
        train_main(["triforce", "--set", "model.dropout=1.5", "--run-dir", str(tmp_path / "r"), "--no-progress"])
    assert str(error.value) == "configuration 'model.dropout' must be in [0, 1), got 1.5"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("arch", ["dnn", "cnn", pytest.param("googlenet", marks=pytest.mark.slow)])
def test_each_arch_builds_with_the_paper_defaults(arch: str) -> None:
    from caloml.tasks.triforce import PAPER_DROPOUT, PAPER_LEARNING_RATE, build_network, learning_rate_of

    config = resolve_config(TriforceConfig, preset=PRESETS["quick"], flags={"model.arch": arch})
    model = build_network(config.model, energy_coefficients=(48.0, 40.0, 1.0), seed=5)
    assert type(model).__name__ == {"dnn": "TriforceDNN", "cnn": "TriforceCNN", "googlenet": "TriforceGoogLeNet"}[arch]
    assert learning_rate_of(replace(config.model, learning_rate=None)) == PAPER_LEARNING_RATE[arch]
    assert model.initial_energy_coefficients == (48.0, 40.0, 1.0)
    assert model.micro_batch_size is None  # the quick preset turns GoogLeNet's micro-batches off
    paper = build_network(replace(config.model, micro_batch_size=None), energy_coefficients=(1, 1, 0), seed=5)
    assert paper.micro_batch_size == (10 if arch == "googlenet" else None)
    if arch != "googlenet":
        assert model.dropout == PAPER_DROPOUT[arch]
    if arch == "cnn":
        assert model.ecal_kernel == (3, 3, 3)


def test_train_classifier_separates_electrons_from_pions(sim_files: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    halves = {p: np.split(rng.permutation(160), 2) for p in ("electron", "chpi")}
    samples = [
        (sim_files["electron"], np.sort(halves["electron"][0]), 1),
        (sim_files["chpi"], np.sort(halves["chpi"][0]), 0),
    ]
    predict = train_classifier(samples, seed=2)
    p_electron = predict(sim_files["electron"], halves["electron"][1])
    p_pion = predict(sim_files["chpi"], halves["chpi"][1])
    assert p_electron.shape == (80,)
    assert p_pion.shape == (80,)
    assert np.all((p_electron >= 0) & (p_electron <= 1))
    accuracy = (np.sum(p_electron > 0.5) + np.sum(p_pion <= 0.5)) / 160
    assert accuracy > 0.8
    # a generator's file (ECAL and energy only, no HCAL, no angles) is read the same way: ECAL-only inputs
    from caloml.data.lcd import LCDReader

    with LCDReader(sim_files["electron"], keys=["ECAL", "energy"]) as reader:
        showers = reader.read(slice(None))
    generated = tmp_path / "generated.h5"
    with LCDWriter(generated) as writer:
        writer.append(showers)
    np.testing.assert_allclose(predict(generated, halves["electron"][1]), p_electron, rtol=1e-5, atol=1e-7)
    # seeded: the same samples and seed give the same classifier
    small = [(path, indices[:20], label) for path, indices, label in samples]
    once, twice = (train_classifier(small, seed=3, epochs=1)(sim_files["chpi"], halves["chpi"][1]) for _ in range(2))
    np.testing.assert_allclose(once, twice, rtol=1e-5)


# ------------------------------------------------------------------------- rules shared with the baseline tasks
def test_networks_and_baselines_share_the_split_rules(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    from caloml.tasks.baselines import ClassificationData, load_split, test_events_record
    from caloml.tasks.triforce import split_record

    task = get_task("e-vs-pi")
    # source 0: electrons and charged pions that all fail HCAL/ECAL < 0.1; source 1: charged pions that pass
    events = make_lcd(60, seed=4)
    events.update(pdgID=np.where(np.arange(60) % 2, 211, 11).astype(np.int32), recoEta=events["eta"])
    events["recoPhi"] = events["phi"]
    events["HCAL_E"] = np.where(events["pdgID"] == 211, 2.0 * events["ECAL_E"] + 1.0, events["HCAL_E"])
    with LCDWriter(tmp_path / "failing.h5") as writer:
        writer.append(events)
    passing = make_lcd(60, seed=5)
    passing.update(pdgID=np.full(60, 211, np.int32), recoEta=passing["eta"], recoPhi=passing["phi"])
    passing["HCAL_E"] = np.zeros(60, np.float32)
    passing["ECAL_E"] = passing["ECAL_E"] + 1.0
    with LCDWriter(tmp_path / "passing.h5") as writer:
        writer.append(passing)
    paths = [tmp_path / "failing.h5", tmp_path / "passing.h5"]
    fractions = (0.5, 0.25, 0.25)
    network = split_record(locate_and_split(paths, task, fractions=fractions, seed=2))
    split = load_split(paths, ["ECAL_E", "HCAL_E", "energy"], task=task, fractions=fractions, seed=2)
    data = ClassificationData(split_fractions=fractions, split_seed=2)
    baseline = test_events_record(split, task, data, None)
    for ours, theirs in zip(network["sources"], baseline["sources"], strict=True):
        assert ours == theirs  # the same test events, and the class of the kept events
    # the single-class label describes the kept events: source 0 keeps its electrons only
    assert [(s["particle"], s["label"]) for s in network["sources"]] == [("electron", 0), ("chpi", 1)]
    # one fraction rule: every fraction > 0, the same one-line error in both tasks
    config = TriforceConfig()
    with pytest.raises(CalomlError, match=r"'data\.split_fractions' must be 3 fractions .* each > 0"):
        check_config(replace(config, data=replace(config.data, split_fractions=(0.8, 0.2, 0.0))))
    with pytest.raises(CalomlError, match=r"'data\.split_fractions' must be 3 fractions .* each > 0"):
        load_split(paths, ["ECAL_E"], task=task, fractions=(0.8, 0.2, 0.0), seed=2)
    # an empty split is a one-line error, not an IndexError
    inputs = locate_and_split(paths, task, fractions=fractions, seed=2)
    empty = replace(inputs, masks={**inputs.masks, "test": [np.zeros_like(m) for m in inputs.masks["test"]]})
    with pytest.raises(CalomlError, match="the test split holds no event"):
        split_dataset(empty, "test")


def test_default_data_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caloml.data.reconstruction_split import check_default_data_size

    monkeypatch.chdir(tmp_path)
    flags = {"model.task": "e-vs-pi", "runtime.progress": False, "runtime.run_dir": str(tmp_path / "run")}
    paper = resolve_config(TriforceConfig, preset=PRESETS["paper"], flags=flags)
    # 500,000 electrons + 10,000,000 charged pions: refused before anything is simulated
    with pytest.raises(CalomlError, match=r"simulate 10,500,000 showers .* --events N, .* --data"):
        TASK.prepare_data(paper, chief=True)
    with pytest.raises(CalomlError, match=r"simulate 10,500,000 showers"):
        train_main(["bdt", "--preset", "paper", "--run-dir", str(tmp_path / "bdt"), "--no-progress"])
    assert not Path("tf_records").exists()
    check_default_data_size(("photon", "pi0"), paper.data)  # gamma vs pi0: 1,000,000 showers, allowed
    raised = replace(paper.data, max_simulated_showers=11_000_000)
    check_default_data_size(("electron", "chpi"), raised)  # the user raised the bound


def test_resampling_refuses_a_cropped_ecal(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    from caloml.errors import DataError

    events = make_lcd(40, seed=6, ecal_shape=(25, 25, 25))
    events.update(pdgID=np.where(np.arange(40) % 2, 111, 22).astype(np.int32), recoEta=events["eta"])
    events["recoPhi"] = events["phi"]
    with LCDWriter(tmp_path / "cropped.h5") as writer:
        writer.append(events)
    task = get_task("gamma-vs-pi0")
    locate_and_split([tmp_path / "cropped.h5"], task, fractions=(0.5, 0.25, 0.25), seed=1)  # no resampling: fine
    with pytest.raises(DataError, match=r"cropped\.h5: ECAL window \(25, 25\): --resample atlas needs the full 51"):
        locate_and_split([tmp_path / "cropped.h5"], task, fractions=(0.5, 0.25, 0.25), seed=1, resample="atlas")


def test_gan_classifier_ecal_sum_is_that_of_the_crop(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    from caloml.evaluate.gan_train_test import ecal_only_inputs as _ecal_only_inputs

    events = make_lcd(12, seed=7)
    events["ECAL"][:, 0, 0, :] += 1.0  # energy outside the 25 x 25 crop
    events["ECAL_E"] = events["ECAL"].reshape(12, -1).sum(axis=1)
    with LCDWriter(tmp_path / "full.h5") as writer:
        writer.append(events)
    cropped = dict(events, ECAL=np.ascontiguousarray(events["ECAL"][:, 13:38, 13:38, :]))
    with LCDWriter(tmp_path / "cropped.h5") as writer:
        writer.append(cropped)
    indices = np.arange(12)
    full, small = _ecal_only_inputs(tmp_path / "full.h5", indices), _ecal_only_inputs(tmp_path / "cropped.h5", indices)
    np.testing.assert_array_equal(full["ECAL"], small["ECAL"])
    np.testing.assert_allclose(full["ECAL_E"], small["ECAL_E"], rtol=1e-6)
    np.testing.assert_allclose(full["ECAL_E"], cropped["ECAL"].reshape(12, -1).sum(axis=1), rtol=1e-5)
    assert (full["ECAL_E"] < events["ECAL_E"] - 20.0).all()  # not the full window's sum


def test_validation_energy_error_is_true_minus_predicted_over_true() -> None:
    import tensorflow as tf

    from caloml.tasks.triforce import validation_scores

    energy = np.array([10.0, 50.0, 100.0, 200.0], np.float32)
    dataset = tf.data.Dataset.from_tensor_slices({"class_label": np.array([0, 1, 1, 0]), "energy": energy}).batch(3)

    def outputs(batch: dict) -> tuple:
        return tf.cast(batch["class_label"], tf.int32), batch["energy"] * np.array(0.9, np.float32)

    scores = validation_scores(None, dataset, outputs)
    assert scores["accuracy"] == 1.0
    assert scores["energy_bias"] == pytest.approx(0.1, rel=1e-5)  # underestimated energy: positive bias
    assert scores["energy_resolution"] == pytest.approx(0.0, abs=1e-6)
