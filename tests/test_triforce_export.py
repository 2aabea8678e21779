"""Triforce export: the SavedModel reloads in a process that imports only TensorFlow and gives the Keras outputs;
the command line exports a run directory with its provenance and never replaces a version."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from caloml.errors import CalomlError, OutputExistsError
from caloml.export.__main__ import main
from caloml.export.triforce import INPUTS, export_triforce
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

#: Runs in a fresh interpreter: loads the SavedModel with plain TensorFlow and calls both signature names.
RELOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    path, inputs_file, out_file = sys.argv[1:4]
    loaded = tf.saved_model.load(path)
    inputs = {k: tf.constant(v) for k, v in np.load(inputs_file).items()}
    default = loaded.signatures["serving_default"](**inputs)
    named = loaded.signatures["reconstruct"](**inputs)
    assert not any(name == "caloml" or name.startswith("caloml.") for name in sys.modules), "caloml was imported"
    np.savez(out_file, **{f"default_{k}": v.numpy() for k, v in default.items()},
             **{f"named_{k}": v.numpy() for k, v in named.items()})
    """
)


def _inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ecal = np.where(rng.random((n, *INPUTS["ECAL"])) < 0.05, rng.exponential(0.05, (n, *INPUTS["ECAL"])), 0.0)
    hcal = np.where(rng.random((n, *INPUTS["HCAL"])) < 0.02, rng.exponential(0.05, (n, *INPUTS["HCAL"])), 0.0)
    return {
        "ECAL": ecal.astype(np.float32),
        "HCAL": hcal.astype(np.float32),
        "ECAL_E": ecal.reshape(n, -1).sum(axis=1).astype(np.float32),
        "HCAL_E": hcal.reshape(n, -1).sum(axis=1).astype(np.float32),
        "recoEta": rng.uniform(-0.5, 0.5, n).astype(np.float32),
        "recoPhi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
    }


def _reload_outside_caloml(path: Path, inputs: dict[str, np.ndarray], tmp_path: Path) -> dict[str, np.ndarray]:
    inputs_file, out_file = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs_file, **inputs)
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(path), str(inputs_file), str(out_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=tmp_path,  # not the repository: caloml is not importable by accident from the working directory
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(np.load(out_file))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: TriforceDNN(2, 16, seed=1, initial_energy_coefficients=(48.0, 30.0, 2.0)), id="dnn"),
        # 9 inception blocks: tracing the export and loading it take a minute or more
        pytest.param(lambda: TriforceGoogLeNet(16, 0.03, seed=1), id="googlenet", marks=pytest.mark.slow),
    ],
)
def test_round_trip_without_caloml(model: object, tmp_path: Path) -> None:
    network = model()  # type: ignore[operator]
    path = export_triforce(network, "e-vs-pi", tmp_path / "saved_models", provenance={"seed": 7})
    arch = "dnn" if isinstance(network, TriforceDNN) else "googlenet"
    assert path == tmp_path / "saved_models" / f"triforce-{arch}-e-vs-pi" / "1"
    inputs = _inputs(5)
    expected = network({k: inputs[k] for k in network.input_keys}, training=False)
    outputs = _reload_outside_caloml(path, inputs, tmp_path)
    for prefix in ("default", "named"):
        probability, energy = outputs[f"{prefix}_class_probability"], outputs[f"{prefix}_energy"]
        assert probability.shape == (5, 2)
        assert energy.shape == (5,)
        np.testing.assert_allclose(probability, keras.ops.convert_to_numpy(expected["class_probability"]), rtol=1e-5)
        np.testing.assert_allclose(energy, keras.ops.convert_to_numpy(expected["energy"]), rtol=1e-5, atol=1e-4)
    info = json.loads((path / "assets.extra" / "export.json").read_text())
    assert info["classes"] == [
        {"label": 0, "pdgID": 11, "particle": "electron"},
        {"label": 1, "pdgID": 211, "particle": "chpi"},
    ]
    assert info["seed"] == 7
    assert info["serving_default"] == "reconstruct"
    assert info["version"] == 1


def test_command_line_exports_a_run_directory(tmp_path: Path) -> None:
    network = TriforceCNN(2, (3, 3, 3), 2, (2, 2, 6), 1, 8, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    network.save(run / "model.keras")
    config = {"model": {"arch": "cnn", "task": "gamma-vs-pi0"}, "runtime": {"seed": 11}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    base = tmp_path / "saved"
    assert main(["triforce", "--model", str(run), "--saved-models", str(base)]) == 0
    info = json.loads((base / "triforce-cnn-gamma-vs-pi0" / "1" / "assets.extra" / "export.json").read_text())
    assert info["class_names"] == ["photon", "pi0"]
    assert info["seed"] == 11
    assert info["training_config"] == config
    assert info["source"] == str(run)
    assert info["resample"] == "none"  # no data.resample: the CLIC granularity, the plain name
    with pytest.raises(OutputExistsError, match="version 1 exists"):
        main(["triforce", "--model", str(run), "--saved-models", str(base), "--version", "1"])
    with pytest.raises(CalomlError, match="trained for gamma-vs-pi0, not e-vs-pi"):
        main(["triforce", "--model", str(run), "--saved-models", str(base), "--task", "e-vs-pi"])
    bare = tmp_path / "bare.keras"  # a .keras file outside a run directory: no configuration names its task
    network.save(bare)
    with pytest.raises(CalomlError, match="pass --task"):
        main(["triforce", "--model", str(bare), "--saved-models", str(base)])
    assert main(["triforce", "--model", str(bare), "--saved-models", str(base), "--task", "e-vs-pi"]) == 0
    assert (base / "triforce-cnn-e-vs-pi" / "1" / "saved_model.pb").is_file()
    # trained on a resampled ECAL: its own name, the setting in the provenance
    config["data"] = {"resample": "cms"}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["triforce", "--model", str(run), "--saved-models", str(base)]) == 0
    info = json.loads((base / "triforce-cnn-gamma-vs-pi0-cms" / "1" / "assets.extra" / "export.json").read_text())
    assert info["resample"] == "cms"
    assert info["training_config"]["data"]["resample"] == "cms"
    assert sorted(p.name for p in base.iterdir()) == [
        "triforce-cnn-e-vs-pi",
        "triforce-cnn-gamma-vs-pi0",
        "triforce-cnn-gamma-vs-pi0-cms",
    ]
    with pytest.raises(CalomlError, match="contradicts the provenance's resample 'cms'"):
        export_triforce(network, "gamma-vs-pi0", base, provenance={"resample": "cms"}, resample="atlas")
