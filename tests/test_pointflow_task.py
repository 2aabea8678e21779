"""``python -m caloml.train pointflow``: the point-cloud pipeline, bad data, normalization, and a tiny training run.

The data tests use small CaloChallenge-layout files; the in-process task test simulates a few dozen default showers
and builds the model without training it; the end-to-end command-line run (train, resume) is marked slow: tracing
the flows' gradient takes tens of seconds on a 2-core CPU.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from command_line import run_command_line

from caloml.data.calochallenge import CaloChallengeWriter
from caloml.errors import CalomlError, DataError, OutputExistsError
from caloml.geometry import LCD_HIT_THRESHOLD_GEV, POINT_CLOUD_GRIDS
from caloml.tasks.pointflow.config import (
    ARCHITECTURE_KEYS,
    NORMALIZATION_FILE,
    PRESETS,
    PointFlowConfig,
    check_config,
    energy_range,
    hit_threshold,
    read_init_source,
)
from caloml.tasks.pointflow.data import (
    PointCloudInputs,
    check_records,
    choose_max_points,
    collect_showers,
    point_cloud_dataset,
    resolve_records,
    scan_records,
    trim_points,
)
from caloml.tasks.pointflow.task import TASK
from caloml.training.config import resolve_config

GEOMETRY = POINT_CLOUD_GRIDS["calochallenge-2"]
THRESHOLD = GEOMETRY.hit_threshold_gev


def _records(tmp: Path, events: dict, name: str = "records") -> Path:
    from caloml.data.tfrecord import convert_to_tfrecords

    path = tmp / f"{name}.h5"
    with CaloChallengeWriter(path) as writer:
        writer.append(events)
    out = tmp / "tf_records" / name
    convert_to_tfrecords([path], out, shard_events=len(events["showers"]))
    return out


def _replace_shard(records: Path, events: dict) -> Path:
    """Write ``events`` (GeV, unchecked: NaN allowed) over the single shard of ``records``."""
    from caloml.data.tfrecord import encode_events, shard_paths

    (shard,) = shard_paths(records)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(shard), options) as writer:
        for record in encode_events(events, ["showers"], ["incident_energies"]):
            writer.write(record)
    return shard


def _events(make_calochallenge, n: int = 12, seed: int = 3) -> dict:
    events = make_calochallenge(n, seed=seed)
    showers = events["showers"]
    showers[0] = 0.0  # no cell at all
    showers[1] = 0.0
    showers[1, 3, 2, 1] = 0.5 * THRESHOLD  # only a cell below the readout threshold
    showers[2, 0, 0, 0] = 1e-9  # one sub-threshold cell in a normal shower
    return events


def test_point_cloud_inputs_threshold_cells_and_energies(make_calochallenge, tmp_path):
    events = _events(make_calochallenge)
    inputs = PointCloudInputs("showers", "incident_energies", 1024, THRESHOLD, seed=5)
    numpy_batch = inputs.numpy(events)
    dense_batch = inputs.tf({k: tf.constant(v) for k, v in events.items()})
    records = _records(tmp_path, events)
    options = {"hit_threshold_gev": THRESHOLD, "seed": 5, "shuffle": False, "drop_empty": False}
    (sparse_batch,) = point_cloud_dataset(records, GEOMETRY, global_batch_size=64, max_points=1024, **options)
    showers = events["showers"]
    above = np.where(showers >= THRESHOLD, showers, 0.0)
    n_hits = (above > 0).reshape(len(showers), -1).sum(axis=1)
    total = above.reshape(len(showers), -1).sum(axis=1)
    assert n_hits[1] == 0
    assert showers[1].sum() > 0
    for batch in (numpy_batch, dense_batch):
        np.testing.assert_array_equal(np.asarray(batch["n_hits"]), n_hits)
        np.testing.assert_allclose(np.asarray(batch["total_energy"]), total, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(batch["incident_energy"]), events["incident_energies"][:, 0])
    # the sparse pipeline drops the shower without any cell before batching
    kept = showers.reshape(len(showers), -1).sum(axis=1) > 0
    np.testing.assert_array_equal(sparse_batch["n_hits"].numpy(), n_hits[kept])
    np.testing.assert_allclose(sparse_batch["total_energy"].numpy(), total[kept], rtol=1e-5)
    # every point lies in its cell and carries that cell's log energy (GeV)
    points, mask = sparse_batch["points"].numpy(), sparse_batch["mask"].numpy()
    for row, index in enumerate(np.flatnonzero(kept)):
        cells = np.floor(points[row][mask[row]][:, :3]).astype(int)
        energies = above[index][tuple(cells.T)]
        assert np.all(energies > 0)
        np.testing.assert_allclose(points[row][mask[row]][:, 3], np.log(energies), rtol=1e-5, atol=1e-5)
        assert len(np.unique(cells, axis=0)) == n_hits[index]


def test_training_batches_hold_only_showers_with_hits(make_calochallenge, tmp_path):
    events = _events(make_calochallenge)
    records = _records(tmp_path, events)
    scan = scan_records(records, GEOMETRY)
    assert (scan.n_events, scan.n_empty) == (12, 1)
    options = {"hit_threshold_gev": THRESHOLD, "seed": 1, "repeat": True, "drop_remainder": True}
    dataset = point_cloud_dataset(records, GEOMETRY, global_batch_size=4, max_points=64, **options)
    for batch in dataset.take(6):
        assert batch["points"].shape == (4, 64, 4)
        assert np.all(batch["n_hits"].numpy() >= 1)
        assert np.all(batch["mask"].numpy().sum(axis=1) == np.minimum(batch["n_hits"].numpy(), 64))
    sample = collect_showers(
        records, GEOMETRY, n_showers=100, max_points=64, hit_threshold_gev=THRESHOLD, seed=1, shuffle=True
    )
    assert sample.n_showers == 10  # 12 - the empty one - the one below the threshold
    assert sample.n_below_threshold == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cell": np.nan}, "NaN, infinite or negative cells"),
        ({"cell": -1e4}, "NaN, infinite or negative cells"),
        ({"energy": np.nan}, "must be finite and positive"),
        ({"energy": 0.0}, "must be finite and positive"),
    ],
)
def test_bad_values_stop_the_scan_naming_the_shard(make_calochallenge, tmp_path, change, message):
    events = make_calochallenge(6, seed=4)
    records = _records(tmp_path, events)
    if "cell" in change:
        events["showers"][4, 1, 1, 1] = change["cell"]
    else:
        events["incident_energies"][4, 0] = change["energy"]
    shard = _replace_shard(records, events)
    with pytest.raises(DataError) as error:
        scan_records(records, GEOMETRY)
    text = str(error.value)
    assert str(shard) in text
    assert "shower 4" in text
    assert message in text
    assert "\n" not in text


def test_negative_cells_with_a_positive_sum_stop_the_statistics_pass(make_calochallenge, tmp_path):
    events = make_calochallenge(6, seed=4)
    records = _records(tmp_path, events)
    events["showers"][2, 1, 1, 1] = -1e-6
    _replace_shard(records, events)
    scan_records(records, GEOMETRY)  # the sum stays positive
    with pytest.raises(DataError, match="negative or NaN cells"):
        collect_showers(records, GEOMETRY, n_showers=6, max_points=64, hit_threshold_gev=THRESHOLD, seed=1,
                           shuffle=False)  # fmt: skip


def test_records_of_another_geometry_are_refused(records_dir):
    with pytest.raises(DataError, match="not calochallenge-2 data"):
        check_records(records_dir, GEOMETRY)
    check_records(records_dir, POINT_CLOUD_GRIDS["lcd-gen"])


def test_hdf5_files_are_converted_once_into_the_records_cache(calochallenge_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    records = resolve_records([str(calochallenge_file)], "training", progress=False, create=True)
    assert records.parent == Path("tf_records")
    assert records.name.startswith(calochallenge_file.stem)
    assert check_records(records, GEOMETRY)["n_events"] == 30
    assert resolve_records([str(calochallenge_file)], "training", progress=False, create=True) == records
    assert "reusing the converted training data" in capsys.readouterr().out
    assert resolve_records([str(records)], "training", progress=False, create=True) == records
    with pytest.raises(CalomlError, match="no such data file"):
        resolve_records([str(tmp_path / "missing.h5")], "validation", progress=False, create=True)


def test_max_points_and_trimming():
    assert choose_max_points(np.array([10, 50]), 4096) == 64
    assert choose_max_points(np.array([100, 3000]), 4096) == 3328
    assert choose_max_points(np.array([5000]), 4096) == 4096
    arrays = {"points": np.ones((2, 5, 4), np.float32), "mask": np.ones((2, 5), bool)}
    assert trim_points(arrays, 3)["points"].shape == (2, 3, 4)
    padded = trim_points(arrays, 8)
    assert padded["mask"].shape == (2, 8)
    assert not padded["mask"][:, 5:].any()


def test_configuration_presets_and_checks():
    paper = resolve_config(PointFlowConfig, preset=PRESETS["paper"])
    assert (paper.model.latent_dim, paper.model.n_point_layers, paper.model.n_bins) == (128, 10, 8)
    assert (paper.model.spline_bound, paper.trainer.global_batch_size, paper.trainer.learning_rate) == (5.0, 256, 1e-3)
    config = resolve_config(PointFlowConfig, flags={"data.geometry": "lcd-gen"})
    assert energy_range(config) == (2.0, 500.0)
    assert hit_threshold(config) == LCD_HIT_THRESHOLD_GEV
    with pytest.raises(CalomlError, match="--validation-data"):
        check_config(replace(config, data=replace(config.data, records=["x"])), resuming=False)
    with pytest.raises(CalomlError, match="unknown geometry"):
        check_config(replace(config, data=replace(config.data, geometry="calochallenge-3")), resuming=False)
    with pytest.raises(CalomlError, match="energy_range_gev"):
        check_config(replace(config, data=replace(config.data, energy_range_gev=(5.0, 1.0))), resuming=False)
    for name, value in (("latent_dim", 0), ("spline_bound", float("nan")), ("encoder_units", [])):
        with pytest.raises(CalomlError, match=f"model.{name} must be"):
            check_config(replace(config, model=replace(config.model, **{name: value})), resuming=False)


def test_hdf5_cache_directory_without_metadata_is_refused(calochallenge_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = resolve_records([str(calochallenge_file)], "training", progress=False, create=True)
    (records / "metadata.json").unlink()  # an interrupted conversion
    with pytest.raises(OutputExistsError, match=r"without metadata\.json"):
        resolve_records([str(calochallenge_file)], "training", progress=False, create=True)


def test_init_from_refuses_another_seed_or_architecture_and_keeps_the_source_normalization(tmp_path, monkeypatch):
    """--init-from: weights of another seed would land on other coupling splits / MAF orders (refused); the
    source's normalization (the units its weights expect) and coupling rule are kept; its draw counter restarts."""
    import keras

    from caloml.models.pointflow import PointFlowVAE

    monkeypatch.chdir(tmp_path)
    flags = {
        "data.energy_range_gev": [1.0, 20.0],
        "data.train_events": 16,
        "data.validation_events": 8,
        "data.max_points": 128,
        "runtime.progress": False,
        "runtime.seed": 7,
    }
    config = resolve_config(PointFlowConfig, preset=PRESETS["quick"], flags=flags)
    m = config.model
    norm = dict(
        grid_shape=[45, 16, 9], point_mean=[20.0, 8.0, 4.0, -4.0], point_std=[9.0, 4.0, 2.0, 2.0],
        log_n_hits_mean=5.0, log_n_hits_std=0.5, log_total_energy_mean=1.0, log_total_energy_std=1.0,
        incident_energy_range_gev=[1.0, 50.0], log_incident_mean=2.0, log_incident_std=1.0,
    )  # fmt: skip
    architecture = {k: getattr(m, k) for k in ARCHITECTURE_KEYS}
    source = PointFlowVAE(norm, seed=7, coupling_rule="legacy", **architecture)
    source.random_draws.assign(5)
    source.save(tmp_path / "source.keras")
    read = read_init_source(str(tmp_path / "source.keras"))
    assert (read.seed, read.coupling_rule, read.normalization["point_std"]) == (7, "legacy", norm["point_std"])
    init = {"trainer.init_from": str(tmp_path / "source.keras")}
    with pytest.raises(CalomlError, match="trained with seed 7, this run has 8"):
        check_config(resolve_config(PointFlowConfig, preset=PRESETS["quick"], flags=flags | init | {
            "runtime.seed": 8}), resuming=False)  # fmt: skip
    with pytest.raises(CalomlError, match=r"another architecture, model\.latent_dim"):
        check_config(resolve_config(PointFlowConfig, preset=PRESETS["quick"], flags=flags | init | {
            "model.latent_dim": m.latent_dim + 1}), resuming=False)  # fmt: skip
    with pytest.raises(CalomlError, match="no PointFlow run there"):
        read_init_source(str(tmp_path / "nowhere"))
    config = resolve_config(
        PointFlowConfig,
        preset=PRESETS["quick"],
        flags=flags | init | {"runtime.run_dir": str(tmp_path / "run")},
    )
    data = TASK.prepare_data(config, chief=True)
    assert data.normalization.point_std == tuple(norm["point_std"])
    assert data.normalization.incident_energy_range_gev == (1.0, 20.0)  # this run's trained range
    written = json.loads((tmp_path / "run" / NORMALIZATION_FILE).read_text())
    assert written["coupling_rule"] == "legacy"
    assert 0.0 <= written["truncated_fraction"] <= 1.0
    model = TASK.build_model(config, data)
    assert model.coupling_rule == "legacy"
    loaded = keras.saving.load_model(tmp_path / "source.keras", compile=False)
    TASK.check_init_source(config, loaded)
    assert int(loaded.random_draws.numpy()) == 0
    model.set_weights(loaded.get_weights())  # what the trainer does next: the same splits, the same flows
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    context = np.zeros((3, model.z_dim), np.float32)
    np.testing.assert_allclose(model.point_flow.log_prob(x, context), loaded.point_flow.log_prob(x, context))


def test_prepare_data_writes_the_normalization_the_model_carries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve_config(
        PointFlowConfig,
        preset=PRESETS["quick"],
        flags={
            "data.energy_range_gev": [1.0, 20.0],
            "data.train_events": 24,
            "data.validation_events": 8,
            "data.max_points": 128,
            "runtime.run_dir": str(tmp_path / "run"),
            "runtime.progress": False,
        },
    )
    data = TASK.prepare_data(config, chief=True)
    written = json.loads((tmp_path / "run" / NORMALIZATION_FILE).read_text())
    assert written["normalization"]["incident_energy_range_gev"] == [1.0, 20.0]
    assert written["normalization"]["grid_shape"] == [45, 16, 9]
    assert written["max_points"] == data.max_points <= 128
    assert data.n_train_events == 24
    assert data.validation["points"].shape == (8, data.max_points, 4)
    model = TASK.build_model(config, data)
    assert model.normalization.to_dict() == written["normalization"]
    value = TASK.selection_metric(config, data).compute(model)
    assert np.isfinite(value)
    assert value == TASK.selection_metric(config, data).compute(model)  # seeded: epochs compare


# -- the command line, end to end --------------------------------------------------------------------------------
TINY = [
    "--preset", "quick", "--energy-range", "1", "20", "--events", "32", "--max-points", "128", "--batch-size", "8",
    "--steps-per-epoch", "4", "--no-progress", "--set", "data.validation_events=16",
    "--set", "data.normalization_showers=32", "--set", "trainer.learning_rate=0.005",
]  # fmt: skip


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_command_line("caloml.train", "pointflow", *TINY, *args, cwd=cwd, timeout=900)


def _summary(stdout: str) -> dict:
    return json.loads(stdout[stdout.rfind("\n{\n") + 1 :])


@pytest.mark.slow
def test_quick_training_lowers_the_loss_and_resumes(tmp_path):
    """Two epochs under MirroredStrategy over two logical CPU devices, then one more without it (resumed)."""
    import keras

    from caloml.models.pointflow import PointFlowVAE

    first = _train(tmp_path, "--epochs", "2", "--run-dir", "run", "--strategy", "mirrored", "--cpu-replicas", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run"
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    selection = json.loads((run / "selection.json").read_text())
    assert selection["metric"] == "validation_negative_elbo"
    assert all(np.isfinite(e["value"]) for e in selection["epochs"])
    normalization = json.loads((run / NORMALIZATION_FILE).read_text())
    model = keras.saving.load_model(run / "model.keras", compile=False)
    assert isinstance(model, PointFlowVAE)
    assert model.normalization.to_dict() == normalization["normalization"]
    assert any((run / "logs").rglob("events.out.tfevents.*"))

    again = _train(tmp_path, "--epochs", "3", "--run-dir", "run")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming run after epoch 2" in again.stdout
    assert "resuming with the normalization" in again.stdout
    assert _summary(again.stdout)["resumed_from_epoch"] == 2
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]
    assert json.loads((run / NORMALIZATION_FILE).read_text()) == normalization

    refused = _train(tmp_path, "--data", str(tmp_path / "tf_records"), "--run-dir", "other")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "--validation-data" in refused.stderr
