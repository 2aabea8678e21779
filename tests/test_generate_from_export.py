"""``python -m caloml.generate MODEL --model saved_models/<name>/<v>``: someone who received only the export makes the
same file (layout, keys, values up to float rounding) as from the run directory, with the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import yaml
from random_gan import random_theta_gan

from caloml.errors import CalomlError
from caloml.export.__main__ import main as export_main
from caloml.generate.__main__ import main as generate_main


def _run_dir(tmp_path: Path, model: keras.Model, seed: int) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    keras.saving.save_model(model, run / "model.keras")
    (run / "config.yaml").write_text(yaml.safe_dump({"runtime": {"seed": seed}}))
    return run


def _assert_same_files(first: Path, second: Path, rtol: float) -> None:
    with h5py.File(first) as a, h5py.File(second) as b:
        assert sorted(a) == sorted(b)
        for key in a:
            assert a[key].shape == b[key].shape, key
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_allclose(a[key][()], b[key][()], rtol=rtol, atol=1e-6, err_msg=key)
        assert "caloml_config" in b.attrs


def test_gan_from_export_writes_the_run_directorys_file(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, random_theta_gan(seed=4), seed=21)
    assert export_main(["gan", "--model", str(run), "--saved-models", str(tmp_path / "saved")]) == 0
    export = tmp_path / "saved" / "gan3d-electron" / "1"
    fixed = ["gan", "-n", "3", "--seed", "5", "--batch-size", "2", "--no-progress"]
    common = [*fixed, "--energy-range", "20", "150"]
    assert generate_main([*common, "--model", str(run), "--out", str(tmp_path / "from_run.h5")]) == 0
    assert generate_main([*common, "--model", str(export), "--out", str(tmp_path / "from_export.h5")]) == 0
    _assert_same_files(tmp_path / "from_run.h5", tmp_path / "from_export.h5", rtol=1e-4)
    with h5py.File(tmp_path / "from_export.h5") as file:
        assert file["ECAL"].shape == (3, 51, 51, 25)
        assert str(export) in file.attrs["caloml_config"]
    # the export's trained ranges are enforced as the model's are
    with pytest.raises(CalomlError, match="outside the range"):
        generate_main([*fixed, "--energy", "900", "--model", str(export), "--out", str(tmp_path / "x.h5")])
    with pytest.raises(CalomlError, match="not photon"):
        generate_main([*common, "--particle", "photon", "--model", str(export), "--out", str(tmp_path / "y.h5")])
    # an export is no input to the export command: it needs the Keras model
    with pytest.raises(CalomlError, match="needs the run directory"):
        export_main(["gan", "--model", str(export), "--saved-models", str(tmp_path / "again")])


def test_crystal_from_export_writes_the_run_directorys_file(tmp_path: Path) -> None:
    from caloml.models.crystal_wgan import CrystalWGAN

    model = CrystalWGAN(seed=1, latent_dim=3, hidden_units=16, hidden_layers=1, energy_range_gev=(0.5, 5.0))
    run = _run_dir(tmp_path, model, seed=8)
    assert export_main(["wgan", "--model", str(run), "--saved-models", str(tmp_path / "saved")]) == 0
    export = tmp_path / "saved" / "wgan-crystal-5x5" / "1"
    common = ["wgan", "-n", "7", "--energy-range", "1", "4", "--seed", "3", "--batch-size", "4"]
    assert generate_main([*common, "--model", str(run), "--out", str(tmp_path / "from_run.h5")]) == 0
    assert generate_main([*common, "--model", str(export), "--out", str(tmp_path / "from_export.h5")]) == 0
    _assert_same_files(tmp_path / "from_run.h5", tmp_path / "from_export.h5", rtol=1e-5)
    with pytest.raises(CalomlError, match="expected a CrystalVAE"):  # a WGAN's export is not a VAE
        generate_main(["vae", *common[1:], "--model", str(export), "--out", str(tmp_path / "vae.h5")])


@pytest.mark.slow  # exporting the Pyramid traces its sampler for every signature: about a minute
def test_pyramid_from_export_writes_the_run_directorys_file(tmp_path: Path) -> None:
    from test_pyramid_model import THRESHOLD_GEV, synthetic_showers, tiny_model

    from caloml.models.pyramid import PyramidStatistics

    statistics = PyramidStatistics.from_showers(*synthetic_showers(64, seed=1), THRESHOLD_GEV, (1.0, 1000.0))
    run = _run_dir(tmp_path, tiny_model(statistics), seed=2)
    assert export_main(["pyramid", "--model", str(run), "--saved-models", str(tmp_path / "saved")]) == 0
    export = tmp_path / "saved" / "pyramid-calochallenge-2" / "1"
    common = ["pyramid", "-n", "5", "--seed", "9", "--batch-size", "3"]
    assert generate_main([*common, "--model", str(run), "--out", str(tmp_path / "from_run.h5")]) == 0
    assert generate_main([*common, "--model", str(export), "--out", str(tmp_path / "from_export.h5")]) == 0
    _assert_same_files(tmp_path / "from_run.h5", tmp_path / "from_export.h5", rtol=1e-5)
    with h5py.File(tmp_path / "from_run.h5") as a, h5py.File(tmp_path / "from_export.h5") as b:
        assert a.attrs["caloml_hits_placed"] == b.attrs["caloml_hits_placed"]


def test_pointflow_from_export_writes_the_run_directorys_layout(tmp_path: Path) -> None:
    from test_pointflow_generate_export import _tiny_model

    run = _run_dir(tmp_path, _tiny_model((45, 16, 9)), seed=6)
    saved = tmp_path / "saved"
    assert export_main(["pointflow", "--model", str(run), "--saved-models", str(saved), "--n-points", "100"]) == 0
    export = saved / "pointflow-calochallenge-2" / "1"
    common = ["pointflow", "-n", "5", "--seed", "3", "--energy-range", "2", "50", "--no-progress"]
    runs = {
        "run": [*common, "--model", str(run), "--n-points", "100", "--batch-size", "5"],
        "export": [*common, "--model", str(export), "--batch-size", "2"],
        "again": [*common, "--model", str(export), "--batch-size", "5"],  # other batches, same per-shower seeds
    }
    for name, args in runs.items():
        assert generate_main([*args, "--out", str(tmp_path / f"{name}.h5")]) == 0
    with (
        h5py.File(tmp_path / "run.h5") as a,
        h5py.File(tmp_path / "export.h5") as b,
        h5py.File(tmp_path / "again.h5") as c,
    ):
        assert sorted(a) == sorted(b) == ["incident_energies", "showers"]
        for key in a:
            assert a[key].shape == b[key].shape, key
            assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a["incident_energies"][()], b["incident_energies"][()])  # MeV, same draw
        np.testing.assert_array_equal(b["showers"][()], c["showers"][()])  # the same seed: the same file
        showers_mev, run_mev = b["showers"][()], a["showers"][()]
        config = json.loads(b.attrs["caloml_config"])
    assert showers_mev.shape == (5, 6480)
    assert np.all(np.isfinite(showers_mev))
    assert np.all(showers_mev >= 0)
    totals, run_totals = showers_mev.sum(axis=1), run_mev.sum(axis=1)
    assert np.all(totals > 0)
    # the same model draws the totals: the export's are of the run directory's magnitude (MeV, not GeV)
    assert 0.1 < np.median(totals) / np.median(run_totals) < 10
    assert config["n_points"] == 100
    assert config["model_path"] == str(export)
    with pytest.raises(CalomlError, match="outside"):
        generate_main(["pointflow", "-n", "2", "--energy-range", "2", "500", "--model", str(export),
                       "--out", str(tmp_path / "x.h5")])  # fmt: skip
