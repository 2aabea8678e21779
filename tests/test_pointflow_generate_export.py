"""``python -m caloml.generate pointflow`` and ``python -m caloml.export pointflow`` with a tiny (untrained) model.

The model is a small :class:`PointFlowVAE` of the CaloChallenge dataset-2 grid saved as a run directory; its
showers are random but obey everything the commands promise: the layout, the units (MeV in the file, GeV in
memory), the seeds, the trained incident-energy range, and the SavedModel signatures reloaded without caloml.
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
import yaml

from caloml.data.calochallenge import CaloChallengeWriter
from caloml.errors import CalomlError, OutputExistsError
from caloml.generate.__main__ import main as generate_main

TRAINED_RANGE_GEV = (1.0, 100.0)


def _normalization(grid_shape: tuple[int, int, int]):
    from caloml.models.pointflow import PointCloudNormalization

    return PointCloudNormalization(
        grid_shape=grid_shape,
        point_mean=(grid_shape[0] / 3, grid_shape[1] / 2, grid_shape[2] / 3, -6.0),
        point_std=(grid_shape[0] / 5, grid_shape[1] / 4, grid_shape[2] / 4, 2.5),
        log_n_hits_mean=4.5,
        log_n_hits_std=0.5,
        log_total_energy_mean=2.5,
        log_total_energy_std=1.0,
        incident_energy_range_gev=TRAINED_RANGE_GEV,
        log_incident_mean=2.3,
        log_incident_std=1.3,
    )


def _tiny_model(grid_shape: tuple[int, int, int]):
    from caloml.models.pointflow import PointFlowVAE

    model = PointFlowVAE(
        _normalization(grid_shape),
        latent_dim=4,
        n_latent_layers=1,
        n_point_layers=1,
        hidden_units=16,
        conditioner_blocks=1,
        encoder_units=[16, 16],
        seed=11,
    )
    model.compile()
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory with a tiny calochallenge-2 model and the config of its (default) data."""
    import keras

    run = tmp_path_factory.mktemp("pointflow") / "run"
    run.mkdir()
    keras.saving.save_model(_tiny_model((45, 16, 9)), run / "model.keras")
    config = {"data": {"geometry": "calochallenge-2", "records": [], "particle": "electron"}, "runtime": {"seed": 4}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture(scope="module")
def model(run_dir):
    import keras

    return keras.saving.load_model(run_dir / "model.keras", compile=False)


GENERATE = ["pointflow", "--n-points", "300", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def generated(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated") / "showers.h5"
    status = generate_main([*GENERATE, "--model", str(run_dir), "-n", "6", "--energy-range", "2", "50", "--seed", "5",
                            "--out", str(out)])  # fmt: skip
    assert status == 0
    return out


def test_generate_writes_the_calochallenge_layout_in_mev(generated, model):
    from caloml.models.pointflow_sampler import PointFlowShowerSampler, generate_showers

    with h5py.File(generated) as file:
        assert sorted(file) == ["incident_energies", "showers"]
        incident, showers = file["incident_energies"][:], file["showers"][:]
        config = json.loads(file.attrs["caloml_config"])
    assert incident.shape == (6, 1)
    assert showers.shape == (6, 6480)
    assert incident.dtype == showers.dtype == np.float32
    assert np.all((incident >= 2000.0) & (incident <= 50000.0))  # MeV
    assert config["seed"] == 5
    assert config["n_points"] == 300
    assert config["training_seed"] == 4
    assert config["geometry"] == "calochallenge-2"
    expected = generate_showers(model, incident[:, 0] / 1000.0, n_points=300, batch_size=4, seed=5)  # GeV
    np.testing.assert_allclose(showers, expected.reshape(6, -1) * 1000.0, rtol=1e-5, atol=1e-6)
    assert np.all(showers >= 0)
    # every shower has exactly its achieved number of hits (distinct non-empty cells)
    achieved = PointFlowShowerSampler(model, 300).generate(incident[:, 0] / 1000.0, batch_size=4, seed=5).n_hits
    assert np.all(achieved >= 1)
    np.testing.assert_array_equal((showers > 0).sum(axis=1), achieved)


def test_generate_refuses_to_overwrite_and_rejects_energies_outside_the_trained_range(generated, run_dir, tmp_path):
    before = generated.stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="--overwrite"):
        generate_main([*GENERATE, "--model", str(run_dir), "-n", "2", "--out", str(generated)])
    assert generated.stat().st_mtime_ns == before
    out = tmp_path / "outside.h5"
    for low, high in (("0.5", "50"), ("2", "150")):
        with pytest.raises(CalomlError, match=r"outside the range the PointFlow model was trained on, \[1, 100\] GeV"):
            generate_main([*GENERATE, "--model", str(run_dir), "-n", "2", "--energy-range", low, high, "--out",
                           str(out)])  # fmt: skip
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_energies_like_reuses_the_reference_energies(run_dir, tmp_path):
    reference = tmp_path / "reference.h5"
    energies = np.array([1.5, 3.0, 7.0, 20.0, 99.0], np.float32)  # GeV
    with CaloChallengeWriter(reference) as writer:
        writer.append({"incident_energies": energies[:, None], "showers": np.zeros((5, 6480), np.float32)})
    out = tmp_path / "like.h5"
    generate_main([*GENERATE, "--model", str(run_dir), "-n", "10", "--energies-like", str(reference), "--seed", "2",
                   "--out", str(out)])  # fmt: skip
    with h5py.File(out) as file:
        written = file["incident_energies"][:, 0] / 1000.0
    np.testing.assert_allclose(np.sort(written), np.sort(np.repeat(energies, 2)), rtol=1e-6)
    assert not np.array_equal(written[:5], energies)  # a seeded order, not the file's

    with CaloChallengeWriter(tmp_path / "wide.h5") as writer:
        writer.append({"incident_energies": np.array([[500.0]], np.float32), "showers": np.zeros((1, 6480))})
    with pytest.raises(CalomlError, match=r"wide\.h5: its incident energies 500 GeV at index 0 is outside the range"):
        generate_main([*GENERATE, "--model", str(run_dir), "-n", "1", "--energies-like", str(tmp_path / "wide.h5"),
                       "--out", str(tmp_path / "wide-out.h5")])  # fmt: skip


# -- export --------------------------------------------------------------------------------------------------------
RELOAD = """
import sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
sample = loaded.signatures["sample"](incident_energy=tf.constant(inputs["energy"]), seed=tf.constant(inputs["seed"]))
log_prob = loaded.signatures["log_prob"](points=tf.constant(inputs["points"]), mask=tf.constant(inputs["mask"]),
    n_hits=tf.constant(inputs["n_hits"]), total_energy=tf.constant(inputs["total_energy"]))
try:
    loaded.signatures["sample"](incident_energy=tf.constant([150.0]), seed=tf.constant(inputs["seed"]))
    refused = ""
except tf.errors.InvalidArgumentError as error:
    refused = error.message
assert not any(name == "caloml" or name.startswith("caloml.") for name in sys.modules)
np.savez(sys.argv[3], showers=sample["showers"].numpy(), n_hits=sample["n_hits"].numpy(),
         log_prob=log_prob["log_prob"].numpy(), refused=np.array(refused))
"""


def test_export_round_trip_without_caloml(model, tmp_path):
    from caloml.export.pointflow import export_pointflow, hit_log_prob, sample_showers

    path = export_pointflow(model, tmp_path / "saved_models", n_points=300, provenance={"source": "test"})
    assert path == tmp_path / "saved_models" / "pointflow-calochallenge-2" / "1"
    info = json.loads((path / "assets.extra" / "export.json").read_text())
    assert info["n_points"] == 300
    assert info["incident_energy_range_gev"] == list(TRAINED_RANGE_GEV)
    assert set(info["signatures"]) == {"showers_from_seeds", "showers_from_seeds_mev", "sample", "log_prob"}
    with pytest.raises(OutputExistsError):
        export_pointflow(model, tmp_path / "saved_models", version=1)

    rng = np.random.default_rng(3)
    mask = np.arange(20)[None, :] < np.array([20, 7])[:, None]
    points = np.stack([rng.uniform(0, 45, (2, 20)), rng.uniform(0, 16, (2, 20)), rng.uniform(0, 9, (2, 20)),
                       rng.normal(-6, 2, (2, 20))], axis=-1).astype(np.float32)  # fmt: skip
    inputs = {
        "energy": np.array([2.0, 30.0, 99.0], np.float32),
        "seed": np.array([7, 8], np.int32),
        "points": points,
        "mask": mask,
        "n_hits": np.array([20, 7], np.int32),
        "total_energy": np.array([12.0, 3.0], np.float32),
    }
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    expected = sample_showers(model, inputs["energy"], inputs["seed"], 300)
    np.testing.assert_array_equal(served["n_hits"], expected["n_hits"].numpy())
    np.testing.assert_allclose(served["showers"], expected["showers"].numpy(), rtol=1e-4, atol=1e-6)
    assert served["showers"].shape == (3, 45, 16, 9)
    np.testing.assert_array_equal((served["showers"] > 0).sum(axis=(1, 2, 3)), served["n_hits"])
    log_prob = hit_log_prob(model, points, mask, inputs["n_hits"], inputs["total_energy"]).numpy()
    np.testing.assert_allclose(served["log_prob"], log_prob, rtol=1e-4, atol=1e-4)
    assert np.all(served["log_prob"][~mask] == 0)
    assert np.all(np.isfinite(served["log_prob"]))
    assert "outside the range the model was trained on" in str(served["refused"])


def test_generate_writes_the_lcd_layout_for_an_lcd_model(tmp_path):
    import keras

    from caloml.data.lcd import LCDReader

    model_file = tmp_path / "lcd.keras"
    keras.saving.save_model(_tiny_model((51, 51, 25)), model_file)
    out = tmp_path / "lcd.h5"
    generate_main([*GENERATE, "--model", str(model_file), "-n", "3", "--energy-range", "10", "10", "--out", str(out)])
    with h5py.File(out) as file:
        stored = file["ECAL"][:]
        assert sorted(file) == ["ECAL", "ECAL_E", "energy"]  # no run configuration: the particle is unknown
    with LCDReader(out) as reader:
        events = reader.read(slice(None))
    assert events["ECAL"].shape == (3, 51, 51, 25)
    np.testing.assert_allclose(events["energy"], 10.0)
    np.testing.assert_allclose(stored, events["ECAL"] * 50.0, rtol=1e-6)  # stored as 50 x GeV
    np.testing.assert_allclose(events["ECAL_E"], events["ECAL"].sum(axis=(1, 2, 3)), rtol=1e-5)
