"""``python -m caloml.train gan`` end to end on tiny sizes: default data, run directory, kill and resume, strategies.

The 3DGAN has a fixed full-size architecture (51 x 51 x 25 images), so these runs use a handful of steps of a few
events; each command runs in its own process, the way a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
import yaml
from command_line import run_command_line

import caloml.train as train_cli
from caloml.errors import CalomlError
from caloml.export.gan import export_trained

#: Sizes that keep one run to a few CPU-seconds per step.
TINY = [
    "--events",
    "24",
    "--energy-range",
    "100",
    "200",
    "--batch-size",
    "4",
    "--steps-per-epoch",
    "2",
    "--no-progress",
    "--set",
    "data.validation_events=8",
    "--set",
    "trainer.selection_window=2",
    "--set",
    "trainer.keep_checkpoints=3",
]


def _train(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return run_command_line("caloml.train", "gan", *args, cwd=cwd, timeout=timeout, env=env)


def _summary(stdout: str) -> dict:
    start = stdout.rfind("\n{\n")  # the summary is the last top-level JSON object
    return json.loads(stdout[start + 1 :] if start >= 0 else stdout)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, dict]:
    """Two epochs of the default data under MirroredStrategy over two logical CPU devices."""
    cwd = tmp_path_factory.mktemp("gan-run")
    result = _train(cwd, *TINY, "--epochs", "2", "--strategy", "mirrored", "--cpu-replicas", "2", "--run-dir", "run")
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, _summary(result.stdout)


def test_default_data_is_simulated_cached_and_the_run_directory_complete(trained_run):
    cwd, summary = trained_run
    run = cwd / "run"
    records = sorted(p.name for p in (cwd / "tf_records").iterdir())
    assert records == [
        "lcd-gen-electron-100-200GeV-24ev-seed2-train",
        "lcd-gen-electron-100-200GeV-8ev-seed3-validation",
    ]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["runtime"]["strategy"] == "mirrored"
    assert config["runtime"]["seed"] == 1
    assert config["model"]["condition_angle"] == "mtheta"
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["d_loss"] > 0 and h["g_loss"] > 0 for h in history)
    selection = json.loads((run / "selection.json").read_text())
    assert selection["metric"] == "sampling_fraction_error"
    assert selection["selected_epoch"] == summary["selected_epoch"] in (1, 2)
    assert all(e["value"] >= 0 for e in selection["epochs"])
    assert any((run / "logs").rglob("events.out.tfevents.*"))

    from caloml.models.gan3d import GAN3D

    gan = keras.saving.load_model(run / "model.keras")
    assert isinstance(gan, GAN3D)
    assert gan.particle == "electron"
    assert gan.energy_range_gev == (100.0, 200.0)


def test_a_second_identical_command_reuses_the_data_and_the_finished_run(trained_run):
    cwd, _ = trained_run
    again = _train(cwd, *TINY, "--epochs", "2", "--strategy", "mirrored", "--cpu-replicas", "2", "--run-dir", "run")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the cached train data" in again.stdout
    assert _summary(again.stdout)["resumed_from_epoch"] == 2
    changed = _train(cwd, *TINY, "--epochs", "2", "--run-dir", "run", "--set", "trainer.learning_rate=0.01")
    assert changed.returncode == 2
    assert changed.stderr.count("\n") == 1
    assert "different configuration (trainer.learning_rate)" in changed.stderr


def test_data_outside_the_configured_energy_range_is_refused(trained_run):
    cwd, _ = trained_run
    records = cwd / "tf_records"
    train_dir, validation_dir = sorted(records.iterdir())
    result = _train(cwd, *TINY, "--data", str(train_dir), "--validation-data", str(validation_dir),
                    "--energy-range", "2", "500", "--run-dir", "other")  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    number = r"[0-9.e+]+"
    assert re.fullmatch(
        f"caloml: error: .+: the training energies span {number}-{number} GeV but"
        f" data.energy_range_gev is 2-500 GeV \\(the range the model will accept\\); pass --energy-range"
        f" {number} {number}",
        lines[0],
    ), lines[0]


def test_killed_mid_epoch_the_run_resumes_from_its_last_checkpoint(tmp_path):
    args = [*TINY, "--epochs", "3", "--run-dir", "run"]
    first = tmp_path / "run" / "checkpoints" / "ckpt-1.index"
    with (tmp_path / "stdout.txt").open("w") as out, (tmp_path / "stderr.txt").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "caloml.train", "gan", *args], cwd=tmp_path, stdout=out, stderr=err
        )
        deadline = time.monotonic() + 500
        while not first.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)  # inside epoch 2
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert first.exists(), (tmp_path / "stderr.txt").read_text()[-3000:]
    assert not (tmp_path / "run" / "model.keras").exists()
    done_before = max(int(p.stem.split("-")[1]) for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.index"))
    assert done_before < 3

    resumed = _train(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {Path('run')} after epoch {done_before}" in resumed.stdout
    summary = _summary(resumed.stdout)
    assert summary["resumed_from_epoch"] == done_before
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert (tmp_path / "run" / "model.keras").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "somewhere"], "--data needs --validation-data too"),
        (["--data", "nowhere", "--validation-data", "nowhere"], "nowhere"),
        (["--set", "model.condition_angle=phi"], "model.condition_angle must be 'mtheta' or 'theta'"),
        (["--set", "trainer.epochs=two"], "'trainer.epochs': expected an integer"),
        (["--init-from", "missing.keras"], "missing.keras: file not found"),
        (["--energy-range", "100", "100"], "data.energy_range_gev must be an interval low < high"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    result = _train(tmp_path, *TINY, *args, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("caloml: error:")
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_local_workers_complete_a_multi_worker_run(tmp_path):
    from caloml.sim.run import SimulationRequest
    from caloml.tasks.default_data import cached_simulation

    def records(n: int, seed: int, role: str) -> Path:
        request = SimulationRequest("lcd-gen", "electron", n, seed, (100.0, 200.0))
        return cached_simulation(request, role, root=tmp_path / "records", progress=False)

    train, validation = records(24, 5, "train"), records(8, 6, "validation")
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "caloml.train", "gan", *TINY, "--epochs", "2", "--strategy", "multi_worker",
                    "--data", str(train), "--validation-data", str(validation), "--run-dir", str(tmp_path / "run"),
                ],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )  # fmt: skip
    outputs = [p.communicate(timeout=900) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    chief = _summary(outputs[0][0])
    assert chief["model"] is not None
    assert Path(chief["model"]).exists()
    assert _summary(outputs[1][0])["model"] is None  # only the chief writes the run directory
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2]


def test_every_exporter_is_registered_beside_its_task():
    assert set(train_cli.EXPORTERS) <= set(train_cli.TASKS)
    assert train_cli.load_exporter("gan") is export_trained
    with pytest.raises(CalomlError, match="unknown model to export"):
        train_cli.load_exporter("bdt")


def test_export_after_training_writes_a_serving_model_with_the_run_as_source(trained_run):
    cwd, first = trained_run
    args = [*TINY, "--epochs", "2", "--strategy", "mirrored", "--cpu-replicas", "2", "--run-dir", "run", "--export"]
    result = _train(cwd, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(result.stdout)
    assert summary["resumed_from_epoch"] == 2  # trainer.export may change on a finished run: no retraining
    assert summary["selected_epoch"] == first["selected_epoch"]
    export = cwd / summary["export"]
    assert export.relative_to(cwd).parts == ("saved_models", "gan3d-electron", "1")
    info = json.loads((export / "assets.extra" / "export.json").read_text())
    assert info["source"] == "run"
    assert info["seed"] == 1  # runtime.seed of the run
    assert info["particle"] == "electron"
    assert (export / "saved_model.pb").exists()
