"""Exporting a (randomly initialised) 3DGAN as a SavedModel: TF Serving layout, signatures that run with TensorFlow
alone and match the Keras model, deterministic seeds, errors for out-of-range conditions, versions never replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from random_gan import ENERGY_RANGE_GEV, THETA_RANGE_RAD, random_theta_gan

from caloml.errors import CalomlError, OutputExistsError
from caloml.export import export_gan
from caloml.export.__main__ import main
from caloml.export.gan import accepted_range
from caloml.export.serving import next_version
from caloml.models.gan3d import GAN3D

# Runs in a fresh, isolated interpreter (-I, cwd and PYTHONPATH away from the repository) with TensorFlow only: loads
# the SavedModel and calls its signatures. ``import tensorflow`` imports Keras 3 when it is installed, so Keras and
# caloml are made unimportable first: the SavedModel must work without them.
RELOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    for blocked in ("keras", "tf_keras", "caloml"):
        sys.modules[blocked] = None  # import raises ImportError
    import numpy as np
    import tensorflow as tf

    path, inputs_file, out_file = sys.argv[1:4]
    inputs = np.load(inputs_file)
    loaded = tf.saved_model.load(path)
    signatures = loaded.signatures
    energy, theta = tf.constant(inputs["energy"]), tf.constant(inputs["theta"])
    noise = tf.constant(inputs["noise"])
    from_noise = signatures["showers_from_noise"](energy_gev=energy, theta_rad=theta, noise=noise)["showers_gev"]
    old_from_noise = signatures["generate_from_noise"](energy_gev=energy, theta_rad=theta, noise=noise)["showers"]
    per_example = [tf.constant(s, tf.int64) for s in ([4, 4, 4], [4, 4, 4], [5, 5, 5])]
    seeded = [signatures["showers_from_seeds"](energy_gev=energy, theta_rad=theta, seed=s)["showers_gev"]
              for s in per_example]
    default = signatures["serving_default"](energy_gev=energy, theta_rad=theta, seed=per_example[0])["showers_gev"]
    old = signatures["generate"](energy_gev=energy, theta_rad=theta, seed=tf.constant(4, tf.int64))["showers"]
    errors = {}
    for name, (e, t, s) in {"energy": ([500.0], [1.5], [1]), "nan": ([float("nan")], [1.5], [1]),
                            "theta": ([100.0], [2.5], [1]), "length": ([100.0, 50.0], [1.5], [1, 2]),
                            "seeds": ([100.0], [1.5], [1, 2])}.items():
        try:
            signatures["showers_from_seeds"](energy_gev=tf.constant(e), theta_rad=tf.constant(t),
                                             seed=tf.constant(s, tf.int64))
            errors[name] = None
        except tf.errors.InvalidArgumentError as error:
            errors[name] = error.message
    seeded = np.stack([s.numpy() for s in seeded])
    np.savez(out_file, from_noise=from_noise.numpy(), old_from_noise=old_from_noise.numpy(), seeded=seeded,
             default=default.numpy(), old=old.numpy())
    loaded_modules = [name for name, module in sys.modules.items() if module is not None]
    print(json.dumps({"caloml_imported": any(m == "caloml" or m.startswith("caloml.") for m in loaded_modules),
                      "keras_imported": any(m.split(".")[0] in ("keras", "tf_keras") for m in loaded_modules),
                      "signatures": sorted(signatures), "errors": errors, "path": sys.path,
                      "outputs": {k: str(v) for k, v in signatures["showers_from_seeds"].structured_outputs.items()}}))
    """
)


@pytest.fixture(scope="module")
def gan() -> GAN3D:
    return random_theta_gan(seed=2)


@pytest.fixture(scope="module")
def exported(gan: GAN3D, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("saved_models")
    return export_gan(gan, base, provenance={"source": "test", "seed": 2})


def test_layout_and_export_info(gan: GAN3D, exported: Path) -> None:
    assert exported.name == "1"
    assert exported.parent.name == "gan3d-electron"
    assert (exported / "saved_model.pb").is_file()
    assert (exported / "variables").is_dir()
    assert not (exported / "export.json").exists()  # extra files go to assets.extra/, where TF Serving keeps them
    assert [p.name for p in exported.parent.iterdir()] == ["1"]  # no temporary directory left behind
    info = json.loads((exported / "assets.extra" / "export.json").read_text())
    assert info["particle"] == "electron"
    assert info["version"] == 1
    assert info["energy_range_gev"] == list(ENERGY_RANGE_GEV)
    assert info["theta_range_rad"] == list(THETA_RANGE_RAD)
    assert info["condition_angle"] == "theta"
    assert info["noise_size"] == 254
    assert info["model_config"]["latent_size"] == 256
    assert info["source"] == "test"
    assert info["seed"] == 2
    assert info["precision"] == "float32"
    assert info["serving_default"] == "showers_from_seeds"
    assert set(info["signatures"]) == {"showers_from_seeds", "showers_from_noise", "generate", "generate_from_noise"}
    assert "caloml_version" in info


def test_only_the_generator_is_stored(gan: GAN3D, exported: Path) -> None:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(exported / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    stored = sum(int(np.prod(shape)) for key, shape in shapes.items() if "OBJECT_GRAPH" not in key)
    assert stored == gan.generator.count_params() == 1_365_047  # no discriminator, no counters, each value once
    assert sum(f.stat().st_size for f in (exported / "variables").iterdir()) < 1.05 * 4 * 1_365_047


def test_reloaded_without_caloml_matches_keras(gan: GAN3D, exported: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    energy = np.array([10.0, 120.0, 200.0], np.float32)
    theta = np.array([1.2, 1.57, 1.9], np.float32)
    noise = rng.standard_normal((3, 254), dtype=np.float32)
    np.savez(tmp_path / "inputs.npz", energy=energy, theta=theta, noise=noise)
    elsewhere = tmp_path / "elsewhere"  # not the repository: nothing of caloml importable from the working directory
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", RELOAD_SCRIPT, str(exported), str(tmp_path / "inputs.npz"),
         str(tmp_path / "out.npz")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=elsewhere,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["caloml_imported"] is False
    assert report["keras_imported"] is False
    repository = str(Path(__file__).resolve().parents[1])
    assert not any(entry in ("", ".", repository) for entry in report["path"])
    assert report["signatures"] == [
        "generate",
        "generate_from_noise",
        "serving_default",
        "showers_from_noise",
        "showers_from_seeds",
    ]
    assert "(None, 51, 51, 25)" in report["outputs"]["showers_gev"]
    outputs = np.load(tmp_path / "out.npz")

    expected = np.asarray(gan({"energy_gev": energy, "theta_rad": theta, "noise": noise}))
    assert outputs["from_noise"].shape == (3, 51, 51, 25)
    np.testing.assert_allclose(outputs["from_noise"], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(outputs["old_from_noise"], outputs["from_noise"])
    first, again, other = outputs["seeded"]
    np.testing.assert_array_equal(first, again)  # deterministic per seed
    assert not np.allclose(first, other)
    np.testing.assert_array_equal(outputs["default"], first)  # serving_default is showers_from_seeds
    # each shower's noise is that of GAN3D.generate(seed=...) for a one-shower batch
    for i in range(3):
        one = np.asarray(gan.generate(energy[i : i + 1], theta[i : i + 1], seed=4))[0]
        np.testing.assert_allclose(first[i], one, rtol=1e-4, atol=1e-6)
    # the earlier signature: one seed for the batch, as GAN3D.generate(seed=...)
    np.testing.assert_allclose(outputs["old"], np.asarray(gan.generate(energy, theta, seed=4)), rtol=1e-4, atol=1e-6)

    errors = report["errors"]
    assert "energy_gev outside the range the model was trained on" in errors["energy"]
    assert "energy_gev must be finite" in errors["nan"]
    assert "theta_rad outside the range" in errors["theta"]
    assert "differ in length" in errors["length"]
    assert "seed and energy_gev differ in length" in errors["seeds"]


def test_accepted_range_agrees_with_check_conditions(gan: GAN3D) -> None:
    for which, trained in enumerate((gan.energy_range_gev, gan.theta_range_rad)):
        low, high = accepted_range(trained)
        assert low < trained[0]  # widened by the tolerance
        assert high > trained[1]
        for edge, outwards in ((low, -np.inf), (high, np.inf)):
            inside = np.array([100.0, 1.5], np.float32)
            inside[which] = edge
            outside = inside.copy()
            outside[which] = np.nextafter(edge, np.float32(outwards))
            gan.check_conditions(inside[0], inside[1])  # the last float32 the export accepts, the model accepts
            with pytest.raises(CalomlError):  # and the next one both reject
                gan.check_conditions(outside[0], outside[1])


def test_versions_never_replaced(gan: GAN3D, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    keras.saving.save_model(gan, run / "model.keras")
    (run / "config.yaml").write_text(yaml.safe_dump({"runtime": {"seed": 9}}))
    base = tmp_path / "saved_models"
    (base / "gan3d-electron" / "3").mkdir(parents=True)  # an existing version
    assert next_version(base / "gan3d-electron") == 4
    assert main(["gan", "--model", str(run), "--saved-models", str(base)]) == 0
    info = json.loads((base / "gan3d-electron" / "4" / "assets.extra" / "export.json").read_text())
    assert info["source"] == str(run)
    assert info["seed"] == 9
    with pytest.raises(OutputExistsError, match="never replaced"):
        main(["gan", "--model", str(run), "--saved-models", str(base), "--version", "3"])
    assert not any((base / "gan3d-electron" / "3").iterdir())
    with pytest.raises(CalomlError, match="a model of electron showers, not photon"):
        main(["gan", "--model", str(run), "--particle", "photon", "--saved-models", str(base)])
    assert sorted(p.name for p in (base / "gan3d-electron").iterdir()) == ["3", "4"]


def test_cli_wrong_model_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "caloml.export", "gan", "--model", str(tmp_path / "nothing.keras")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("caloml: error:")
    assert "nothing.keras" in lines[0]
    assert not (tmp_path / "saved_models").exists()


def test_bfloat16_export_records_its_precision_and_keeps_float32_weights(gan: GAN3D, tmp_path: Path) -> None:
    import tensorflow as tf

    path = export_gan(gan, tmp_path, precision="bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    info = json.loads((path / "assets.extra" / "export.json").read_text())
    assert info["precision"] == "bfloat16"
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    weights = [key for key in shapes if "OBJECT_GRAPH" not in key]
    assert sum(int(np.prod(shapes[key])) for key in weights) == 1_365_047
    assert {dtypes[key] for key in weights} == {tf.float32}
    with pytest.raises(CalomlError, match="precision must be one of"):
        export_gan(gan, tmp_path, precision="float16")


def test_bfloat16_export_agrees_with_float32_within_bfloat16_rounding(gan: GAN3D, tmp_path: Path) -> None:
    import tensorflow as tf

    float32 = tf.saved_model.load(str(export_gan(gan, tmp_path / "f32")))
    bfloat16 = tf.saved_model.load(str(export_gan(gan, tmp_path / "bf16", precision="bfloat16")))
    rng = np.random.default_rng(1)
    inputs = {
        "energy_gev": tf.constant(np.float32([20.0, 100.0, 180.0])),
        "theta_rad": tf.constant(np.float32([1.3, 1.55, 1.8])),
        "noise": tf.constant(rng.standard_normal((3, 254), dtype=np.float32)),
    }
    reference = float32.signatures["showers_from_noise"](**inputs)["showers_gev"].numpy()
    showers = bfloat16.signatures["showers_from_noise"](**inputs)["showers_gev"].numpy()
    assert showers.dtype == np.float32
    sums, reference_sums = showers.sum(axis=(1, 2, 3)), reference.sum(axis=(1, 2, 3))
    assert np.mean(np.abs(sums / reference_sums - 1.0)) < 0.02  # bfloat16 rounding: well under 1% when right
