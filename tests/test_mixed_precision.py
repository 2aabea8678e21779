"""Mixed precision end to end: the policy choice (float32 where the machine has no bfloat16 units), the 3DGAN and
the Triforce networks in bfloat16 against float32 with the same weights, training under the policy, and the
generation command line's ``--precision``."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from random_gan import random_theta_gan

from caloml.errors import CalomlError
from caloml.generate.__main__ import main as generate_main
from caloml.models.gan3d import GAN3D
from caloml.models.precision import (
    bf16_support,
    dtype_policy,
    model_in_precision,
    policy_of_precision,
    resolve_policy,
)
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN


def test_bf16_is_asked_for_only_where_the_machine_has_bf16_units(caplog: pytest.LogCaptureFixture) -> None:
    assert bf16_support({"avx2", "amx_bf16"}, gpus=0) == (True, "CPU flags amx_bf16")
    assert bf16_support({"avx2"}, gpus=1)[0]
    assert resolve_policy("bfloat16", {"avx2", "avx512_bf16"}, gpus=0) == "mixed_bfloat16"
    assert resolve_policy("float32", {"avx2"}, gpus=0) == "float32"
    assert resolve_policy("", {"avx2"}, gpus=0) == "float32"
    with caplog.at_level(logging.WARNING, logger="caloml.models.precision"):
        assert resolve_policy("mixed_bfloat16", {"avx2", "fma"}, gpus=0) == "float32"
    assert len(caplog.records) == 1
    assert "computing in float32" in caplog.records[0].getMessage()
    with pytest.raises(CalomlError, match="unknown precision"):
        policy_of_precision("float8")
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), dtype_policy("float32"):
        raise RuntimeError("restored also on error")
    assert keras.config.dtype_policy().name == before


@pytest.fixture(scope="module")
def gan_pair() -> tuple[GAN3D, GAN3D]:
    gan = random_theta_gan(seed=5)
    return gan, model_in_precision(gan, "bfloat16")


def test_bf16_3dgan_showers_match_float32_from_the_same_noise(gan_pair: tuple[GAN3D, GAN3D]) -> None:
    gan, bf16 = gan_pair
    energy, theta = np.array([20.0, 150.0], np.float32), np.array([1.3, 1.8], np.float32)
    exact = np.asarray(gan.generate(energy, theta, seed=4))
    approximate = bf16.generate(energy, theta, seed=4)
    assert approximate.dtype == tf.float32  # showers in GeV, float32, under either policy
    if bf16.dtype_policy.name == "mixed_bfloat16":  # (float32 on a machine without bfloat16 units)
        assert bf16.generator.get_layer("conv_1").compute_dtype == "bfloat16"
        # the precision-sensitive tail (the image's thin positive fringe) computes in float32
        compute = {layer.name: layer.compute_dtype for layer in bf16.generator.layers}
        assert [compute[f"conv_{i}"] for i in range(1, 8)] == ["bfloat16"] * 4 + ["float32"] * 3
        assert compute["relu_4"] == "bfloat16"
        assert compute["batchnorm_4"] == "float32"
        assert {v.dtype for v in bf16.weights} == {"float32"} or {v.dtype for v in bf16.weights} == {
            "float32",
            "int64",
        }
    totals = np.asarray(approximate).sum(axis=(1, 2, 3)), exact.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(*totals, rtol=0.01)  # bfloat16 rounding, unbiased, summed over cells
    outputs = bf16.discriminator(np.asarray(approximate)[..., None] ** 0.85, training=False)
    assert {key: value.dtype for key, value in outputs.items()} == dict.fromkeys(outputs, tf.float32)
    np.testing.assert_allclose(np.asarray(outputs["sum"])[:, 0], totals[0], rtol=1e-4)  # the sum is float32


@pytest.mark.slow
def test_bf16_3dgan_train_step_updates_float32_weights(gan_pair: tuple[GAN3D, GAN3D]) -> None:
    _, bf16 = gan_pair
    rng = np.random.default_rng(0)
    batch = {
        "ECAL": rng.exponential(0.01, (2, 51, 51, 25)).astype(np.float32),
        "energy": np.array([50.0, 120.0], np.float32),
        "theta": np.array([1.4, 1.7], np.float32),
    }
    bf16.compile()
    before = np.asarray(bf16.generator.get_layer("conv_1").kernel)
    metrics = {key: float(value) for key, value in bf16.train_step(batch).items()}
    assert all(np.isfinite(value) for value in metrics.values())
    kernel = bf16.generator.get_layer("conv_1").kernel
    assert kernel.dtype == "float32"
    assert not np.array_equal(np.asarray(kernel), before)


def _triforce_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ecal = (rng.exponential(0.02, (n, 25, 25, 25)) * (rng.random((n, 25, 25, 25)) < 0.05)).astype(np.float32)
    hcal = (rng.exponential(0.02, (n, 11, 11, 60)) * (rng.random((n, 11, 11, 60)) < 0.02)).astype(np.float32)
    return {
        "ECAL": ecal,
        "HCAL": hcal,
        "ECAL_E": ecal.sum(axis=(1, 2, 3)),
        "HCAL_E": hcal.sum(axis=(1, 2, 3)),
        "recoEta": rng.uniform(-0.5, 0.5, n).astype(np.float32),
        "recoPhi": rng.uniform(-3, 3, n).astype(np.float32),
    }


@pytest.mark.parametrize(
    "network",
    [
        lambda: TriforceDNN(n_hidden_layers=2, hidden_units=32, seed=2),
        lambda: TriforceCNN(n_hidden_layers=1, hidden_units=16, seed=2),
    ],
    ids=["dnn", "cnn"],
)
def test_bf16_triforce_predictions_match_float32_and_training_lowers_the_loss(network) -> None:
    model = network()
    inputs = _triforce_batch(32, 1)
    labels = (inputs["ECAL_E"] > np.median(inputs["ECAL_E"])).astype(np.int32)
    energy = (60.0 * (inputs["ECAL_E"] + inputs["HCAL_E"]) + 5.0).astype(np.float32)
    # a trained-like state: the energy head's dense part is not zero, so bfloat16 enters the energy
    head = model.get_layer("energy")
    head.kernel.assign(np.random.default_rng(3).normal(0, 0.05, head.kernel.shape).astype(np.float32))
    bf16 = model_in_precision(model, "bfloat16")
    exact, approximate = model(inputs, training=False), bf16(inputs, training=False)
    assert approximate["energy"].dtype == approximate["class_probability"].dtype == tf.float32
    np.testing.assert_allclose(approximate["class_probability"], exact["class_probability"], atol=0.02)
    np.testing.assert_allclose(approximate["energy"], exact["energy"], rtol=0.02, atol=0.05)
    bf16.compile(optimizer=keras.optimizers.Adam(3e-3))
    batch = {**inputs, "class_label": labels, "energy": energy}
    first = float(bf16.test_step(batch)["loss"])
    for _ in range(15):
        bf16.train_step(batch)
    assert float(bf16.test_step(batch)["loss"]) < 0.7 * first
    assert {str(v.dtype) for v in bf16.trainable_variables} == {"float32"}


def test_generation_command_line_takes_a_precision(tmp_path: Path) -> None:
    gan = random_theta_gan(seed=3)
    keras.saving.save_model(gan, tmp_path / "model.keras")
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.h5"
        argv = ["gan", "--model", str(tmp_path / "model.keras"), "-n", "2", "--energy", "80", "--theta", "90deg"]
        assert generate_main([*argv, "--seed", "5", "--out", str(out), "--no-progress", "--precision", precision]) == 0
        with h5py.File(out, "r") as file:
            outputs[precision] = np.asarray(file["ECAL"]).sum(axis=(1, 2, 3))
            recorded = str(dict(file.attrs))
        assert resolve_policy(precision) in recorded
    np.testing.assert_allclose(outputs["bfloat16"], outputs["float32"], rtol=0.01)  # same noise, same showers
