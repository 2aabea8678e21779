"""ONNX export: ``model.onnx`` beside the SavedModel with the TensorFlow contract's input names, ranges and units in
its metadata, the same outputs under ONNX Runtime as under TensorFlow, and errors (never a silent success) for what
does not convert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
import yaml
from random_gan import random_theta_gan

from caloml.errors import CalomlError
from caloml.export.__main__ import main
from caloml.export.onnx_export import OnnxGraph, convert_graph, write_onnx
from caloml.export.serving import export_info_path


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _metadata(path: Path) -> dict[str, str]:
    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}


@pytest.mark.slow  # converting the full-size generator takes about 10 s
def test_gan_onnx_matches_the_keras_generator(tmp_path: Path) -> None:
    from caloml.export.gan import export_gan

    gan = random_theta_gan(seed=3)
    path = export_gan(gan, tmp_path, formats=("saved_model", "onnx"))
    session = _session(path / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["energy_gev", "theta_rad", "noise"]
    assert [o.name for o in session.get_outputs()] == ["showers_gev"]
    metadata = _metadata(path / "model.onnx")
    assert json.loads(metadata["accepted_ranges"])["energy_gev"][0] < 10.0 < 200.0
    assert "GeV" in json.loads(metadata["units"])["showers_gev"]
    info = json.loads(export_info_path(path).read_text())
    assert info["onnx"]["file"] == "model.onnx"
    assert max(info["onnx"]["max_relative_difference_to_tensorflow"].values()) <= 1e-4
    energy, theta = np.float32([15.0, 180.0]), np.float32([1.25, 1.85])
    noise = np.random.default_rng(5).standard_normal((2, 254), dtype=np.float32)
    (showers,) = session.run(None, {"energy_gev": energy, "theta_rad": theta, "noise": noise})
    expected = np.asarray(gan({"energy_gev": energy, "theta_rad": theta, "noise": noise}))
    np.testing.assert_allclose(showers.sum(axis=(1, 2, 3)), expected.sum(axis=(1, 2, 3)), rtol=1e-4)
    np.testing.assert_allclose(showers, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _triforce_network(arch: str) -> keras.Model:
    from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

    return {
        "dnn": lambda: TriforceDNN(2, 16, seed=1, initial_energy_coefficients=(48.0, 30.0, 2.0)),
        "cnn": lambda: TriforceCNN(2, (3, 3, 3), 2, (2, 2, 6), 1, 8, seed=3),
        "googlenet": lambda: TriforceGoogLeNet(16, 0.03, seed=1),
    }[arch]()


@pytest.mark.parametrize(
    "arch",
    ["dnn", pytest.param("cnn", marks=pytest.mark.slow), pytest.param("googlenet", marks=pytest.mark.slow)],
)
def test_triforce_onnx_keeps_the_input_names(arch: str, tmp_path: Path) -> None:
    from caloml.export.triforce import INPUTS, export_triforce

    network = _triforce_network(arch)
    path = export_triforce(network, "gamma-vs-pi0", tmp_path, formats=("saved_model", "onnx"))
    session = _session(path / "model.onnx")
    assert [i.name for i in session.get_inputs()] == list(INPUTS)  # ECAL, HCAL, ECAL_E, ... exactly, not lowercased
    assert sorted(o.name for o in session.get_outputs()) == ["class_probability", "energy"]
    assert json.loads(_metadata(path / "model.onnx")["classes"]) == ["photon", "pi0"]
    rng = np.random.default_rng(2)
    inputs = {k: rng.exponential(0.05 if len(s) == 3 else 20.0, (4, *s)).astype(np.float32) for k, s in INPUTS.items()}
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, inputs), strict=True))
    expected = network({k: inputs[k] for k in network.input_keys}, training=False)
    for key in names:
        np.testing.assert_allclose(outputs[key], keras.ops.convert_to_numpy(expected[key]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["class_probability"].sum(axis=1), 1.0, rtol=1e-5)


def test_onnx_added_to_an_existing_version_from_the_command_line(tmp_path: Path) -> None:
    from caloml.models.crystal_wgan import CrystalWGAN

    model = CrystalWGAN(seed=1, latent_dim=3, hidden_units=16, hidden_layers=1, energy_range_gev=(0.5, 5.0))
    run = tmp_path / "run"
    run.mkdir()
    keras.saving.save_model(model, run / "model.keras")
    (run / "config.yaml").write_text(yaml.safe_dump({"runtime": {"seed": 3}}))
    base = tmp_path / "saved"
    with pytest.raises(CalomlError, match="no version"):  # ONNX alone needs a SavedModel version to sit in
        main(["wgan", "--model", str(run), "--saved-models", str(base), "--format", "onnx"])
    assert main(["wgan", "--model", str(run), "--saved-models", str(base)]) == 0
    version = base / "wgan-crystal-5x5" / "1"
    assert not (version / "model.onnx").exists()
    assert main(["wgan", "--model", str(run), "--saved-models", str(base), "--format", "onnx"]) == 0
    assert sorted(p.name for p in version.parent.iterdir()) == ["1"]  # no new version: ONNX beside the SavedModel
    session = _session(version / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["energy_gev", "noise"]
    info = json.loads(export_info_path(version).read_text())
    assert info["onnx"]["inputs"] == ["energy_gev", "noise"]
    assert info["seed"] == 3
    energy = np.float32([0.7, 4.5])
    noise = np.random.default_rng(1).standard_normal((2, 3), dtype=np.float32)
    (showers,) = session.run(None, {"energy_gev": energy, "noise": noise})
    served = tf.saved_model.load(str(version)).signatures["showers_from_noise"]
    expected = served(energy_gev=tf.constant(energy), noise=tf.constant(noise))["showers_gev"].numpy()
    assert showers.shape == (2, 5, 5)
    np.testing.assert_allclose(showers, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(CalomlError, match="never replaced"):
        main(["wgan", "--model", str(run), "--saved-models", str(base), "--format", "onnx"])


def test_unsupported_operations_are_an_error_not_a_success() -> None:
    @tf.function(input_signature=[tf.TensorSpec((None,), tf.float32, name="energy_gev")])
    def seeded(energy_gev: tf.Tensor) -> dict[str, tf.Tensor]:  # stateless random numbers have no ONNX form
        noise = tf.random.stateless_normal(tf.shape(energy_gev), seed=tf.constant([1, 2], tf.int64))
        return {"value": energy_gev * noise}

    with pytest.raises(CalomlError, match=r"outside the ONNX standard|ONNX conversion failed"):
        convert_graph(OnnxGraph(seeded, {"energy_gev": np.float32([1.0])}))


def test_a_disagreeing_conversion_is_refused(tmp_path: Path) -> None:
    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")])
    def doubled(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 2.0 * x}

    class Elsewhere:  # what TensorFlow computes differs from the graph that was converted
        input_signature = doubled.input_signature

        def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
            return {"y": 2.001 * inputs["x"]}

    graph = OnnxGraph(doubled, {"x": np.ones((2, 3), np.float32)}, {"units": "none"})
    info = write_onnx(graph, tmp_path)
    assert info["max_relative_difference_to_tensorflow"]["y"] < 1e-6
    assert _metadata(tmp_path / "model.onnx")["units"] == "none"
    from caloml.export.onnx_export import verify_onnx

    proto = convert_graph(graph)
    with pytest.raises(CalomlError, match="differ on y"):
        verify_onnx(proto, OnnxGraph(Elsewhere(), graph.example_inputs))


def test_samplers_without_onnx_form_are_refused_before_any_work(tmp_path: Path) -> None:
    from test_pointflow_generate_export import _tiny_model

    from caloml.export.pointflow import export_pointflow

    with pytest.raises(CalomlError, match="pointflow: this model has no ONNX form"):
        export_pointflow(_tiny_model((45, 16, 9)), tmp_path, formats=("saved_model", "onnx"))
    assert not any(tmp_path.rglob("saved_model.pb"))


def test_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "caloml.export", "gan", "--model", str(tmp_path), "--format", "tflite"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "formats are comma-separated among saved_model, onnx" in result.stderr
