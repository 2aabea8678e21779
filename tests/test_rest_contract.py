"""The serving contract of every export: lean SavedModels (each deployed variable stored once, nothing else), default
signatures of per-example inputs that work in both of TF Serving's JSON formats, a MeV signature for the
CaloChallenge generators, and ``saved_model_cli run`` on every signature.

TF Serving's server cannot be installed here: ``serving_requests`` converts the JSON to tensors exactly as it does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from random_gan import random_theta_gan
from serving_requests import columnar_request, columns_of_outputs, columns_of_rows, row_request, serve
from test_pyramid_model import THRESHOLD_GEV, synthetic_showers, tiny_model

from caloml.export.serving import export_info_path

SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"


def stored_values(version_dir: Path) -> int:
    """Values in the SavedModel's checkpoint, without the object graph and the save counter."""
    reader = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    return sum(
        int(np.prod(shape))
        for key, shape in shapes.items()
        if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH") and "save_counter" not in key
    )


def deployed_values(model: Any) -> int:
    """Values of a model's weights without its training draw counter (``random_draws``)."""
    counter = getattr(model, "random_draws", None)
    return sum(int(np.prod(w.shape)) for w in model.weights if w is not counter)


# -- the models: (export function, deployed parameter count) --------------------------------------------------------
def _gan(base: Path) -> tuple[Path, int]:
    from caloml.export.gan import export_gan

    gan = random_theta_gan(seed=2)
    return export_gan(gan, base), 1_365_047  # the generator alone


def _triforce(arch: str) -> Callable[[Path], tuple[Path, int]]:
    def export(base: Path) -> tuple[Path, int]:
        from caloml.export.triforce import export_triforce
        from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet

        network = {
            "dnn": lambda: TriforceDNN(2, 16, seed=1, initial_energy_coefficients=(48.0, 30.0, 2.0)),
            "cnn": lambda: TriforceCNN(2, (3, 3, 3), 2, (2, 2, 6), 1, 8, seed=3),
            "googlenet": lambda: TriforceGoogLeNet(16, 0.03, seed=1),
        }[arch]()
        return export_triforce(network, "e-vs-pi", base), int(network.count_params())

    return export


def _pointflow(base: Path) -> tuple[Path, int]:
    from test_pointflow_generate_export import _tiny_model

    from caloml.export.pointflow import export_pointflow

    model = _tiny_model((45, 16, 9))
    return export_pointflow(model, base, n_points=64), deployed_values(model)


def _pyramid(base: Path) -> tuple[Path, int]:
    from caloml.export.pyramid import export_pyramid
    from caloml.models.pyramid import PyramidStatistics

    statistics = PyramidStatistics.from_showers(*synthetic_showers(64, seed=1), THRESHOLD_GEV, (1.0, 1000.0))
    model = tiny_model(statistics)
    return export_pyramid(model, base), deployed_values(model)


def _crystal(kind: str) -> Callable[[Path], tuple[Path, int]]:
    def export(base: Path) -> tuple[Path, int]:
        from caloml.export.crystal import export_crystal
        from caloml.models.crystal_vae import CrystalVAE
        from caloml.models.crystal_wgan import CrystalWGAN

        tiny = {"latent_dim": 3, "hidden_units": 16, "hidden_layers": 1, "energy_range_gev": (0.5, 5.0)}
        model = {"wgan": CrystalWGAN, "vae": CrystalVAE}[kind](seed=1, **tiny)
        deployed = int(model.decoder.count_params())  # the WGAN's generator or the VAE's decoder
        if kind == "vae":
            deployed += int(np.prod(model.log_sigma.shape))  # and its learned per-cell width (the noise scale)
        return export_crystal(model, base), deployed

    return export


EXPORTS: dict[str, Callable[[Path], tuple[Path, int]]] = {
    "gan3d": _gan,
    "triforce-dnn": _triforce("dnn"),
    "triforce-cnn": _triforce("cnn"),
    "triforce-googlenet": _triforce("googlenet"),
    "pointflow": _pointflow,
    "pyramid": _pyramid,
    "wgan": _crystal("wgan"),
    "vae": _crystal("vae"),
}
# exporting these takes tens of seconds (pointflow, pyramid: their samplers traced per signature); the default run
# covers the same code with the others
SLOW = {"triforce-googlenet", "triforce-cnn", "vae", "pointflow", "pyramid"}


def _params(names: list[str]) -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in names]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    return {}


def _exported(exports: dict[str, tuple[Path, int]], name: str, tmp_path_factory: pytest.TempPathFactory):
    if name not in exports:
        exports[name] = EXPORTS[name](tmp_path_factory.mktemp(name))
    return exports[name]


@pytest.mark.parametrize("name", _params(list(EXPORTS)))
def test_exports_are_lean(name: str, exports, tmp_path_factory) -> None:
    path, deployed = _exported(exports, name, tmp_path_factory)
    assert stored_values(path) == deployed
    assert export_info_path(path).is_file()  # the extra files where TF Serving expects them
    assert sorted(p.name for p in path.iterdir()) == ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb",
                                                       "variables"] or sorted(p.name for p in path.iterdir()) == [
        "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]  # fmt: skip
    if name == "gan3d":
        assert deployed == 1_365_047


# -- requests per model: (signature, per-example inputs) ------------------------------------------------------------
def _requests(name: str) -> dict[str, dict[str, np.ndarray]]:
    seeds = np.array([7, 8, 7], np.int64)
    if name == "gan3d":
        conditions = {"energy_gev": np.float32([20.0, 150.0, 20.0]), "theta_rad": np.float32([1.3, 1.6, 1.3])}
        return {"showers_from_seeds": {**conditions, "seed": seeds}}
    if name.startswith("triforce"):
        rng = np.random.default_rng(1)
        from caloml.export.triforce import INPUTS

        cells = {k: rng.exponential(0.05, (2, *INPUTS[k])).astype(np.float32) for k in ("ECAL", "HCAL")}
        sums = {"ECAL_E": np.float32([60.0, 20.0]), "HCAL_E": np.float32([3.0, 1.0])}
        angles = {"recoEta": np.float32([0.1, -0.2]), "recoPhi": np.float32([0.5, -2.0])}
        return {"reconstruct": {**cells, **sums, **angles}}
    if name in ("pointflow", "pyramid"):
        gev = np.float32([2.0, 50.0, 2.0])
        return {
            "showers_from_seeds": {"energy_gev": gev, "seed": seeds},
            "showers_from_seeds_mev": {"energy_mev": gev * np.float32(1000.0), "seed": seeds},
        }
    return {"showers_from_seeds": {"energy_gev": np.float32([1.0, 4.0, 1.0]), "seed": seeds}}


@pytest.mark.parametrize("name", _params(list(EXPORTS)))
def test_both_json_formats_give_the_same_answer(name: str, exports, tmp_path_factory) -> None:
    path, _ = _exported(exports, name, tmp_path_factory)
    loaded = tf.saved_model.load(str(path))
    info = json.loads(export_info_path(path).read_text())
    answers: dict[str, dict[str, np.ndarray]] = {}
    for signature, inputs in _requests(name).items():
        for which in (signature, "serving_default") if signature == info["serving_default"] else (signature,):
            rows = serve(loaded, row_request(which, inputs))["predictions"]
            names = sorted(loaded.signatures[which].structured_outputs)
            columns = columns_of_outputs(serve(loaded, columnar_request(which, inputs))["outputs"], names)
            assert len(rows) == len(next(iter(inputs.values())))
            by_row = columns_of_rows(rows, names)
            assert set(by_row) == set(columns)
            for key in columns:
                np.testing.assert_allclose(by_row[key], columns[key], rtol=1e-6)
            answers[which] = columns
    if "seed" in next(iter(_requests(name).values())):  # a shower depends on its own inputs only
        for outputs in answers.values():
            for key, value in outputs.items():
                np.testing.assert_allclose(value[0], value[2], rtol=1e-6, err_msg=key)
                assert not np.allclose(value[0], value[1]) or key == "n_hits"
    if name in ("pointflow", "pyramid"):  # the MeV signature: the same showers in MeV
        gev, mev = answers["showers_from_seeds"], answers["showers_from_seeds_mev"]
        np.testing.assert_allclose(mev["showers_mev"], 1000.0 * gev["showers_gev"], rtol=1e-5)
        np.testing.assert_array_equal(mev["n_hits"], gev["n_hits"])
        np.testing.assert_array_equal(gev["n_hits"], np.count_nonzero(gev["showers_gev"].reshape(3, -1), axis=1))
    if name == "gan3d":  # as GAN3D.generate(seed=s) of a one-shower batch
        gan = random_theta_gan(seed=2)
        expected = gan.generate([150.0], [1.6], seed=8).numpy()[0]
        np.testing.assert_allclose(answers["serving_default"]["showers_gev"][1], expected, rtol=1e-4, atol=1e-6)


def test_row_format_rejects_mismatched_inputs(exports, tmp_path_factory) -> None:
    path, _ = _exported(exports, "wgan", tmp_path_factory)
    loaded = tf.saved_model.load(str(path))
    text = json.dumps({"signature_name": "showers_from_seeds", "instances": [{"energy_gev": 1.0}]})
    with pytest.raises(AssertionError, match="instance keys"):
        serve(loaded, text)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the range"):
        serve(loaded, row_request("showers_from_seeds", {"energy_gev": [9.0], "seed": [1]}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in length"):
        serve(loaded, columnar_request("showers_from_seeds", {"energy_gev": [1.0, 2.0], "seed": [1]}))


# -- saved_model_cli on every signature ------------------------------------------------------------------------------
def _cli_cases() -> list[Any]:
    cases = []
    for name in EXPORTS:
        for signature in _requests(name):
            fast = name == "wgan"
            cases.append(
                pytest.param(name, signature, marks=() if fast else pytest.mark.slow, id=f"{name}-{signature}")
            )
    cases.append(pytest.param("gan3d", "showers_from_noise", marks=pytest.mark.slow, id="gan3d-showers_from_noise"))
    cases.append(pytest.param("wgan", "showers_from_noise", marks=pytest.mark.slow, id="wgan-showers_from_noise"))
    return cases


@pytest.mark.parametrize(("name", "signature"), _cli_cases())
def test_saved_model_cli_runs_each_signature(name: str, signature: str, exports, tmp_path_factory, tmp_path) -> None:
    path, _ = _exported(exports, name, tmp_path_factory)
    if signature == "showers_from_noise":
        info = json.loads(export_info_path(path).read_text())
        energy = {"gan3d": {"energy_gev": np.float32([50.0]), "theta_rad": np.float32([1.5])}}.get(
            name, {"energy_gev": np.float32([2.0])}
        )
        inputs = {**energy, "noise": np.zeros((1, info["noise_size"]), np.float32)}
    else:
        inputs = _requests(name)[signature]
    np.savez(tmp_path / "inputs.npz", **inputs)
    spec = ";".join(f"{key}={tmp_path / 'inputs.npz'}[{key}]" for key in inputs)
    command = [str(SAVED_MODEL_CLI), "run", "--dir", str(path), "--tag_set", "serve", "--signature_def", signature,
               "--inputs", spec, "--outdir", str(tmp_path / "out")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    written = {p.stem: np.load(p) for p in (tmp_path / "out").glob("*.npy")}
    loaded = tf.saved_model.load(str(path))
    expected = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    assert set(written) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(written[key], value.numpy(), rtol=1e-5, atol=1e-7)
