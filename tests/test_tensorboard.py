"""TensorBoard logs of a tiny 3DGAN run, read back with TensorBoard's own event readers; and the run's log file.

One ``python -m caloml.train gan`` process (one epoch of two steps, its output captured as a log file): it prints
no TensorFlow lines, plain progress lines without escape codes and the validation summary on its own line; its
TensorBoard logs hold per-step and per-epoch scalars, the shower image, the observables' histograms and the
hyperparameters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from command_line import run_command_line
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from caloml.training.tensorboard import flat_hparams, histogram_proto, shower_grid, shower_observables

#: Read every event (0: no sampling).
SIZE_GUIDANCE = {"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    cwd = tmp_path_factory.mktemp("tensorboard-gan")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell
    result = run_command_line(
        "caloml.train", "gan",
        "--events", "24", "--energy-range", "100", "200", "--batch-size", "4", "--epochs", "1",
        "--steps-per-epoch", "2", "--run-dir", "run",
        "--set", "data.validation_events=8", "--set", "trainer.selection_window=1",
        "--set", "trainer.keep_checkpoints=1", "--set", "trainer.tensorboard_update_freq=1",
        cwd=cwd, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run" / "logs", result.stdout, result.stderr


def _events(path: Path) -> EventAccumulator:
    return EventAccumulator(str(path), size_guidance=SIZE_GUIDANCE).Reload()


def test_the_log_file_has_plain_progress_lines_and_no_tensorflow_lines(gan_run) -> None:
    _, stdout, stderr = gan_run
    assert stderr == ""  # no TensorFlow banner, cuInit or remapper lines
    assert "\x1b" not in stdout
    assert "\r" not in stdout
    lines = stdout.splitlines()
    assert any(re.fullmatch(r"simulate electron: 24 showers in .*showers/s", line) for line in lines), stdout
    epoch_end = [i for i, line in enumerate(lines) if re.match(r"epoch 1/1: 2 steps in .* d_loss=", line)]
    assert len(epoch_end) == 1, stdout
    summary = lines[epoch_end[0] + 1]  # the validation summary follows on its own line
    assert re.fullmatch(r"epoch 1: sampling_fraction_error = [0-9.e+-]+", summary), stdout


def test_scalars_images_histograms_and_hparams_are_readable(gan_run) -> None:
    logs, _, _ = gan_run
    train = _events(logs / "train")
    steps = [event.step for event in train.Scalars("batch_g_loss")]
    assert steps == [1, 2]  # every step (tensorboard_update_freq = 1)
    assert all(np.isfinite(event.value) for event in train.Scalars("batch_d_loss"))
    assert [event.step for event in train.Scalars("epoch_d_loss")] == [0]
    validation = _events(logs / "validation")
    (selection,) = validation.Scalars("epoch_sampling_fraction_error")
    assert selection.value >= 0
    (image,) = train.Images("showers")
    assert image.encoded_image_string.startswith(b"\x89PNG")
    # 4 showers of 51 x 51 x 25 cells: rows of 51 cells; projections 51 + 25 + 25 wide, generated | reference
    assert (image.height, image.width) == (3 * (4 * 52 - 1), 3 * (2 * 101 + 5))
    tags = train.Tags()["histograms"]
    for kind in ("generated", "reference"):
        for name in ("deposit_over_primary", "total_deposit_gev", "barycentre_depth_cells", "hit_cells"):
            assert f"{kind}/{name}" in tags
    (fraction,) = train.Histograms("reference/deposit_over_primary")
    assert fraction.histogram_value.num == 24  # the 24 training showers
    assert 0 < fraction.histogram_value.min <= fraction.histogram_value.max < 1  # a sampling calorimeter
    root = _events(logs)
    assert "_hparams_/session_start_info" in root.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = root.Tensors("_hparams_/session_start_info")[0]
    content = root.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["data.particle"].string_value == "electron"
    assert info.hparams["trainer.global_batch_size"].number_value == 4
    assert start.step == 0


def test_observables_and_image_of_known_showers() -> None:
    showers = np.zeros((2, 5, 5, 4))
    showers[0, 2, 2, 1] = 3.0  # one cell at depth 1
    showers[1, 2, 2, 3] = 1.0
    showers[1, 1, 2, 1] = 1.0  # barycentre at depth 2
    observables = shower_observables(showers, np.array([6.0, 4.0]))
    np.testing.assert_allclose(observables["deposit_over_primary"], [0.5, 0.5])
    np.testing.assert_allclose(observables["total_deposit_gev"], [3.0, 2.0])
    np.testing.assert_allclose(observables["barycentre_depth_cells"], [1.0, 2.0])
    np.testing.assert_allclose(observables["hit_cells"], [1, 2])
    grid = shower_grid(showers, showers[::-1])
    assert grid.dtype == np.uint8
    assert grid.ndim == 3
    assert grid.shape[2] == 3
    # rows: 2 showers of 5 cells, 1 separator; columns: 5 + 4 + 4 cells per shower, twice, 5 separators; zoom 3
    assert grid.shape[:2] == (3 * 11, 3 * (2 * 13 + 5))
    proto = histogram_proto(np.array([1.0, 2.0, 2.0, np.nan]))
    assert proto.num == 3
    assert sum(proto.bucket) == 3
    assert proto.bucket_limit[-1] == 2.0


def test_hparams_are_flat_plain_values() -> None:
    config = {"data": {"particle": "electron", "range": [1.0, 2.0], "records": ""}, "model": {"w": {"a": 1.0}}}
    assert flat_hparams(config) == {"data.particle": "electron", "data.range": "[1.0, 2.0]", "model.w": '{"a": 1.0}'}


# -- the point-cloud generators' pictures: the tasks' tensorboard_samples hooks -----------------------------------
#: The smallest models of each point-cloud task: one coupling layer of each flow.
TINY_MODELS = {
    "pointflow": {"n_latent_layers": 1, "n_point_layers": 1, "hidden_units": 16},
    "pyramid": {"n_flow_layers": 1, "n_energy_layers": 1, "hidden_units": 16},
}


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_point_cloud_generators_show_their_showers_depth_last(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    from caloml.data.pipeline import make_dataset
    from caloml.tasks.pointflow.task import TASK as POINTFLOW
    from caloml.tasks.pyramid.task import TASK as PYRAMID
    from caloml.training.config import resolve_config
    from caloml.training.tensorboard import write_samples

    task = {"pointflow": POINTFLOW, "pyramid": PYRAMID}[name]
    monkeypatch.chdir(tmp_path)  # the default data's cache goes to ./tf_records
    flags = {
        "data.energy_range_gev": [10.0, 50.0],
        "data.train_events": 12,
        "data.validation_events": 4,
        "runtime.run_dir": str(tmp_path / "run"),
        "runtime.progress": False,
        "runtime.seed": 5,
        **{f"model.{key}": value for key, value in TINY_MODELS[name].items()},
    }
    config = resolve_config(task.config_class, preset=task.presets["quick"], flags=flags)
    data = task.prepare_data(config, chief=True)
    model = task.build_model(config, data)  # untrained: the pictures need no training

    samples = task.tensorboard_samples(model, config, data, n_events=4)
    # CaloChallenge dataset 2 (45 layers, 16 angles, 9 radii) with the layers (depth) last
    assert samples.generated.shape == samples.reference.shape == (4, 16, 9, 45)
    records = make_dataset(data.train_records, global_batch_size=4, shuffle=False)
    first = next(iter(records))
    np.testing.assert_allclose(samples.reference, np.moveaxis(first["showers"].numpy(), 1, -1))
    np.testing.assert_allclose(samples.energy_gev, first["incident_energies"].numpy()[:, 0])
    assert np.all(np.isfinite(samples.generated))
    assert np.all(samples.generated >= 0)
    assert np.all(samples.generated.reshape(4, -1).sum(axis=1) > 0)  # every shower deposits energy
    again = task.tensorboard_samples(model, config, data, n_events=4)
    np.testing.assert_array_equal(again.generated, samples.generated)  # seeded: the epochs' pictures compare

    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    write_samples(writer, samples, step=0)
    writer.flush()
    events = _events(tmp_path / "logs")
    (image,) = events.Images("showers")
    # rows of 16 angles; projections 9 + 45 + 45 wide (angle-radius, angle-layer, radius-layer), generated | reference
    assert (image.height, image.width) == (3 * (4 * 17 - 1), 3 * (2 * 99 + 5))
    (fraction,) = events.Histograms("reference/deposit_over_primary")
    assert fraction.histogram_value.num == 4
    deposit_over_primary = samples.reference.reshape(4, -1).sum(axis=1) / samples.energy_gev
    assert fraction.histogram_value.sum == pytest.approx(deposit_over_primary.sum(), rel=1e-5)
    assert fraction.histogram_value.max == pytest.approx(deposit_over_primary.max(), rel=1e-5)
