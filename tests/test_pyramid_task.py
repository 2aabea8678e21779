"""The Calorimeter Pyramid's life cycle on the embedded simulator's data: ``--preset quick`` training, generation
into the CaloChallenge layout, the hit-pattern evaluation, the SavedModel reloaded without caloml, and bad input.

One quick-preset run (256 simulated dataset-2 electrons, a few CPU minutes, most of it tracing) serves every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from command_line import run_command_line

from caloml.errors import CalomlError
from caloml.evaluate.hit_patterns import compare_hit_patterns
from caloml.generate.__main__ import main as generate_main
from caloml.sim.run import SimulationRequest, simulate_file
from caloml.train import main as train_main
from caloml.training.config import resolve_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("pyramid")


@pytest.fixture(scope="module")
def run_dir(workdir):
    cwd = os.getcwd()
    os.chdir(workdir)  # the default data's cache goes to ./tf_records
    try:
        status = train_main(["pyramid", "--preset", "quick", "--run-dir", "run", "--no-progress", "--seed", "3"])
    finally:
        os.chdir(cwd)
    assert status == 0
    return workdir / "run"


@pytest.fixture(scope="module")
def model(run_dir):
    from caloml.generate.trained_model import load_trained_model
    from caloml.models.pyramid import CalorimeterPyramid

    return load_trained_model(run_dir, CalorimeterPyramid).model


def test_quick_preset_trains_selects_and_records_statistics(run_dir, model):
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history) == 2
    assert all(np.isfinite(h["val_validation_negative_log_likelihood"]) for h in history)
    statistics = json.loads((run_dir / "statistics.json").read_text())["statistics"]
    assert statistics == model.get_config()["statistics"]
    assert statistics["grid_shape"] == [45, 16, 9]
    assert model.train_stages == ("layers", "radii", "angles", "energy")


def test_generate_writes_mev_showers_without_double_hits(run_dir, workdir):
    out = workdir / "gen.h5"
    status = generate_main(
        [
            "pyramid",
            "--model",
            str(run_dir),
            "-n",
            "250",
            "--seed",
            "4",
            "--out",
            str(out),
            "--energy-range",
            "10",
            "100",
            "--batch-size",
            "125",
        ]
    )
    assert status == 0
    with h5py.File(out) as file:
        showers, energies = file["showers"][:], file["incident_energies"][:]
        assert file.attrs["caloml_hits_requested"] == file.attrs["caloml_hits_placed"] == np.count_nonzero(showers)
        assert json.loads(file.attrs["caloml_config"])["generator"] == "pyramid"
    assert showers.shape == (250, 6480)
    assert energies.shape == (250, 1)
    assert energies.min() >= 10_000
    assert energies.max() <= 100_000
    assert showers[showers > 0].min() >= 15.15e-3 * (1 - 1e-5)  # every hit at the 15.15 keV threshold, in MeV
    assert np.all(showers.sum(axis=1) > 0)
    with pytest.raises(CalomlError, match="outside the range"):
        generate_main(
            [
                "pyramid",
                "--model",
                str(run_dir),
                "-n",
                "5",
                "--out",
                str(workdir / "x.h5"),
                "--energy-range",
                "0.5",
                "10",
            ]
        )
    assert not (workdir / "x.h5").exists()


def test_hit_pattern_comparison_of_the_generated_file(run_dir, workdir):
    reference = workdir / "ref.h5"
    simulate_file(SimulationRequest("calochallenge-2", "electron", 200, 77, (10.0, 100.0)), reference, progress=False)
    generated = workdir / "gen-hp.h5"
    generate_main(
        [
            "pyramid",
            "--model",
            str(run_dir),
            "-n",
            "200",
            "--seed",
            "5",
            "--out",
            str(generated),
            "--energy-range",
            "10",
            "100",
        ]
    )
    record, sums = compare_hit_patterns(generated, reference)
    assert record["available"]
    assert sums is not None
    assert record["double_hit_rate"] == 0.0
    layer = sums[1].pearson("layer")
    assert layer.shape == (45, 45)
    assert sums[1].pearson("layer_radius").shape == (405, 405)
    defined = np.isfinite(np.diag(layer))
    np.testing.assert_allclose(np.diag(layer)[defined], 1.0)
    self_record, _ = compare_hit_patterns(reference, reference)
    assert self_record["pearson_layer"]["max_abs_difference"] == 0.0
    assert self_record["hits_per_layer"]["mean_relative_error"] == 0.0
    assert self_record["n_hits"]["separation_power"] == 0.0
    assert self_record["double_hit_rate"] is None  # the simulator's file records no requested hits


RELOAD = """
import sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
out = loaded.signatures["sample"](incident_energy=tf.constant(inputs["energy"]), seed=tf.constant(inputs["seed"]))
try:
    loaded.signatures["sample"](incident_energy=tf.constant([np.nan], tf.float32), seed=tf.constant(inputs["seed"]))
    refused = ""
except tf.errors.InvalidArgumentError as error:
    refused = error.message
assert not any(name == "caloml" or name.startswith("caloml.") for name in sys.modules)
np.savez(sys.argv[3], showers=out["showers"].numpy(), n_hits=out["n_hits"].numpy(), refused=np.array(refused))
"""


def test_export_reloads_without_caloml(model, run_dir, workdir):
    import tensorflow as tf

    from caloml.export.pyramid import export_trained
    from caloml.tasks.pyramid.config import PyramidConfig

    config = resolve_config(PyramidConfig)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        path = export_trained(model, config, run_dir)
    finally:
        os.chdir(cwd)
    path = workdir / path
    assert path.parts[-2:] == ("pyramid-calochallenge-2", "1")
    info = json.loads((path / "assets.extra" / "export.json").read_text())
    assert info["units"]["showers"] == "MeV per cell"
    assert info["source"] == str(run_dir)
    inputs = {"energy": np.array([1.5, 40.0, 900.0], np.float32), "seed": np.array([3, 9], np.int32)}
    np.savez(workdir / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-c", RELOAD, str(path), str(workdir / "inputs.npz"), str(workdir / "out.npz")]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(workdir / "out.npz")
    expected = model.sample(inputs["energy"], tf.constant([3, 9], tf.int64))
    assert served["showers"].shape == (3, 45, 16, 9)
    np.testing.assert_allclose(served["showers"], 1000.0 * expected["showers"].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(served["n_hits"], np.count_nonzero(served["showers"].reshape(3, -1), axis=1))
    assert "outside the range the model was trained on" in str(served["refused"])


def test_bad_input_is_one_line(run_dir, workdir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cases = [
        (
            ["caloml.train", "pyramid", "--preset", "quick", "--set", "data.geometry=lcd-gen"],
            "clusters calochallenge-2",
        ),
        (["caloml.generate", "pyramid", "--model", str(workdir / "missing"), "-n", "3", "--out", "x.h5"], "no such"),
        (
            [
                "caloml.generate",
                "pyramid",
                "--model",
                str(run_dir),
                "-n",
                "3",
                "--out",
                str(workdir / "y.h5"),
                "--energy-range",
                "nan",
                "10",
            ],
            "finite",
        ),
    ]
    for argv, message in cases:
        result = run_command_line(*argv, cwd=workdir, timeout=600, env=env)
        assert result.returncode == 2, (argv, result.stderr[-2000:])
        lines = [line for line in result.stderr.splitlines() if line.startswith("caloml: error:")]
        assert len(lines) == 1, result.stderr[-2000:]
        assert message in lines[0], lines[0]
        assert "Traceback" not in result.stderr


def test_a_model_of_another_kind_is_refused(workdir):
    import keras

    from caloml.bench.pointflow import synthetic_normalization
    from caloml.models.pointflow import PointFlowVAE

    other = workdir / "other"
    other.mkdir()
    pointflow = PointFlowVAE(
        synthetic_normalization(),
        latent_dim=2,
        n_latent_layers=1,
        n_point_layers=1,
        hidden_units=8,
        conditioner_blocks=1,
        encoder_units=[8],
        seed=1,
    )
    keras.saving.save_model(pointflow, other / "model.keras")
    with pytest.raises(CalomlError, match="expected a CalorimeterPyramid"):
        generate_main(["pyramid", "--model", str(other), "-n", "3", "--out", str(workdir / "z.h5")])


def test_one_stage_at_a_time_from_the_run_before(run_dir, model, workdir):
    import keras

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        argv = ["pyramid", "--preset", "quick", "--run-dir", "run-energy", "--no-progress", "--seed", "3"]
        assert train_main([*argv, "--stage", "energy", "--init-from", str(run_dir), "--epochs", "1"]) == 0
        with pytest.raises(CalomlError, match="another architecture or seed"):
            train_main([*argv[:-1], "4", "--stage", "radii", "--init-from", "run-energy", "--run-dir", "run-x"])
    finally:
        os.chdir(cwd)
    staged = keras.saving.load_model(workdir / "run-energy" / "model.keras", compile=False)
    assert staged.train_stages == ("energy",)
    for name in ("layer_flow", "radius_flow", "angle_flow"):
        for old, new in zip(getattr(model, name).weights, getattr(staged, name).weights, strict=True):
            np.testing.assert_array_equal(old.numpy(), new.numpy())  # not trained in this run
    changed = [
        not np.array_equal(old.numpy(), new.numpy())
        for old, new in zip(model.cell_flow.weights, staged.cell_flow.weights, strict=True)
    ]
    assert any(changed)
