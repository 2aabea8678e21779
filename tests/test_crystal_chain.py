"""The crystal chain from a clean directory: ``--preset quick`` of wgan, vae and vaewgan, then generate, export
(reloaded without caloml), ``evaluate gen`` and ``evaluate latent``, and the one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caloml.data.hdf5 import open_reader
from caloml.errors import CalomlError


def _run(cwd: Path, module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("caloml: error:"), result.stderr[-3000:]
    assert result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert message in result.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The three quick runs, vaewgan from the vae, on the default data simulated into the clean directory."""
    cwd = tmp_path_factory.mktemp("crystal")
    for model, extra in (("vae", ["--export"]), ("wgan", []), ("vaewgan", ["--init-from", "runs/vae"])):
        result = _run(
            cwd, "caloml.train", model, "--preset", "quick", "--run-dir", f"runs/{model}", "--no-progress", *extra
        )
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(result.stdout[result.stdout.rfind("\n{\n") + 1 :])
        assert summary["selected_epoch"] in (1, 2)
        assert Path(cwd / summary["model"]).is_file()
    return cwd


def test_quick_presets_train_on_the_simulated_default_data(runs):
    exported = json.loads(
        (runs / "saved_models" / "vae-crystal-5x5" / "1" / "assets.extra" / "export.json").read_text()
    )
    assert exported["source"] == "runs/vae"  # --export after training, through caloml.train.EXPORTERS
    assert exported["model"] == "vae"
    data = list((runs / "data").glob("crystal-5x5-electron-1200ev-seed1.h5"))
    assert len(data) == 1
    for model in ("wgan", "vae", "vaewgan"):
        history = json.loads((runs / "runs" / model / "history.json").read_text())
        assert [row["epoch"] for row in history] == [1, 2]
        assert all(np.isfinite(row["val_mean_separation_power"]) for row in history)
    assert "initialized the weights from runs/vae" in _run(runs, "caloml.train", "vaewgan", "--preset", "quick",
        "--init-from", "runs/vae", "--run-dir", "runs/vaewgan-again", "--no-progress").stdout  # fmt: skip


def test_generate_evaluate_and_latent_space(runs):
    reference = runs / "data" / "crystal-5x5-electron-1200ev-seed1.h5"
    result = _run(runs, "caloml.generate", "vaewgan", "--model", "runs/vaewgan", "--like", str(reference),
                  "--seed", "3", "--out", "gen.h5")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open_reader(runs / "gen.h5") as generated, open_reader(reference) as simulated:
        assert generated.layout == "crystal"
        assert generated.n_events == simulated.n_events == 1200
        np.testing.assert_array_equal(generated.read_key("energy"), simulated.read_key("energy"))
        cells = generated.read_key("showers")
        assert cells.shape == (1200, 5, 5)
        assert (cells[cells > 0] >= 1.5e-3).all()
    result = _run(runs, "caloml.evaluate", "gen", "--generated", "gen.h5", "--reference", str(reference), "--out",
                  "eval", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((runs / "eval" / "metrics.json").read_text())
    assert metrics["layout"] == "crystal"
    assert set(metrics["per_energy"]) == {"0.5", "1", "1.5", "2.5", "3", "4", "5"}
    row = metrics["per_energy"]["1"]
    expected = {"max_cell_gev", "e1_over_e9", "e9_over_e21", "e25_over_e", "n_hits", "cell_spectrum"}
    assert set(row["separation_power"]) == expected
    assert all(0.0 <= value <= 1.0 for value in row["separation_power"].values())
    assert row["classifier"]["available"] is False  # fewer than 500 showers per point: said so, not faked
    assert (runs / "eval" / "n_hits.png").is_file()
    assert "separation power" in result.stdout
    result = _run(runs, "caloml.evaluate", "latent", "--model", "runs/vae", "--reference", str(reference), "--out",
                  "latent", "--tsne-events", "300", "--mi-events", "300")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    latent = json.loads((runs / "latent" / "latent.json").read_text())
    assert len(latent["kl_per_dimension_nats"]) == 8
    assert latent["dimensions_by_kl"]
    assert 0.0 <= latent["mutual_information_nats"]["all"] <= latent["mutual_information_nats"]["bound_ln_n"] + 0.05
    assert {"latent_tsne.png", "interpolation.png", "latent_kl_per_dimension.png"} <= set(latent["plots"])


RELOAD = """
import sys
sys.modules["caloml"] = None  # reloading must not need caloml
import numpy as np, tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
out = served.signatures["generate"](energy_gev=tf.constant([0.5, 2.0, 5.0]), seed=tf.constant(7, tf.int64))
refused = ""
try:
    served.signatures["generate"](energy_gev=tf.constant([9.0]), seed=tf.constant(7, tf.int64))
except tf.errors.InvalidArgumentError as error:
    refused = error.message
np.savez(sys.argv[2], showers=out["showers"].numpy(), refused=refused)
"""


@pytest.mark.parametrize("model", ["wgan", "vaewgan"])
def test_export_reloads_without_caloml_and_matches_the_keras_model(runs, model):
    result = _run(runs, "caloml.export", model, "--model", f"runs/{model}", "--saved-models", "saved")
    assert result.returncode == 0, result.stderr[-3000:]
    path = runs / "saved" / f"{model}-crystal-5x5" / "1"
    info = json.loads((path / "assets.extra" / "export.json").read_text())
    assert info["energy_range_gev"] == [0.5, 5.0]
    assert info["model"] == model
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    reloaded = subprocess.run([sys.executable, "-c", RELOAD, str(path), str(runs / f"{model}.npz")], cwd=runs,
                              env=env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert reloaded.returncode == 0, reloaded.stderr[-3000:]
    served = np.load(runs / f"{model}.npz")
    import keras

    import caloml.generate.crystal as crystal

    crystal.model_class(model)
    keras_model = keras.saving.load_model(runs / "runs" / model / "model.keras", compile=False)
    np.testing.assert_allclose(served["showers"], keras_model.generate([0.5, 2.0, 5.0], seed=7), rtol=1e-5, atol=1e-7)
    assert "outside the range the model was trained on" in str(served["refused"])


def test_bad_input_is_one_line(runs):
    _one_line_error(_run(runs, "caloml.train", "vaewgan", "--preset", "quick", "--run-dir", "runs/x"), "--init-from")
    _one_line_error(
        _run(runs, "caloml.generate", "wgan", "--model", "runs/wgan", "-n", "3", "--energy", "7", "--out", "x.h5"),
        "outside the trained range 0.5-5 GeV",
    )
    _one_line_error(
        _run(runs, "caloml.generate", "vae", "--model", "runs/wgan", "-n", "3", "--energy", "1", "--out", "x.h5"),
        "a CrystalWGAN model, expected a CrystalVAE",
    )


def test_files_of_another_layout_are_refused(lcd_file, runs):
    lcd = lcd_file
    from caloml.tasks.crystal.data import load_crystal_file

    with pytest.raises(CalomlError, match="the crystal models need a crystal-5x5 file"):
        load_crystal_file(lcd)
    result = _run(runs, "caloml.train", "wgan", "--preset", "quick", "--data", str(lcd), "--run-dir", "runs/y")
    _one_line_error(result, "lcd file")
    result = _run(
        runs, "caloml.evaluate", "gen", "--generated", "gen-missing.h5", "--reference", str(lcd), "--out", "e"
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


def test_generation_speed_benchmark(runs):
    result = _run(runs, "caloml.bench", "crystal", "--model", "runs/wgan", "--batches", "1,100", "--repeats", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert lines["machine"]
    for batch in (1, 100):
        value, unit = lines[f"CrystalWGAN_batch{batch}_showers_per_s"].split()
        assert float(value) > 0
        assert unit == "showers/s"
