"""The bfloat16 Conv3D guard: guarded layers agree with float32 within bfloat16 rounding on every machine, and the
TensorFlow bug it works around is reproduced per TensorFlow version."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from caloml.models.bf16_conv3d_guard import GuardedConv3D, bf16_conv3d_is_right, guarded_form
from caloml.models.depth_folded_conv3d import DepthFoldedConv3D
from caloml.models.gan3d_generator import Generator3D
from caloml.models.precision import bf16_support

#: TensorFlow versions whose oneDNN bfloat16 Conv3D is wrong for a (6, 6, 8) kernel on 8 input channels, on x86
#: CPUs with bfloat16 units. When the reproduction below fails on a newer version (the bug fixed), drop the
#: permuted form of caloml.models.bf16_conv3d_guard for that version.
BUGGY_TENSORFLOW_VERSIONS = ("2.21",)


def _bf16_rounded(shape: tuple[int, ...], seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return np.asarray(tf.cast(tf.cast(values, tf.bfloat16), tf.float32))


def _relative_error(approximate: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(approximate - exact).sum() / np.abs(exact).sum())


def _layer_pair(layer_class: type, *args: object, input_shape: tuple[int, ...], **kwargs: object) -> tuple:
    """The same convolution built in float32 and under mixed_bfloat16, with the same weights."""
    float32 = layer_class(*args, dtype="float32", **kwargs)
    float32.build(input_shape)
    bf16 = layer_class(*args, dtype="mixed_bfloat16", **kwargs)
    bf16.build(input_shape)
    bf16.set_weights([_bf16_rounded(w.shape, 7 + i) for i, w in enumerate(float32.get_weights())])
    float32.set_weights(bf16.get_weights())
    return float32, bf16


@pytest.mark.parametrize(
    ("kernel", "channels", "spatial"),
    [((6, 6, 8), 8, (20, 20, 20)), ((4, 4, 6), 6, (16, 16, 14)), ((5, 6, 6), 8, (14, 14, 10))],
)
def test_a_guarded_bf16_conv3d_matches_float32_within_bf16_rounding(kernel, channels, spatial) -> None:
    # Fails on a machine with the TensorFlow bug (this one) if the guard is removed: the (6, 6, 8) kernel on 8
    # channels then gives 0.25x the right value. Holds on machines without the bug too.
    float32, bf16 = _layer_pair(GuardedConv3D, 8, kernel, input_shape=(None, *spatial, channels))
    inputs = _bf16_rounded((2, *spatial, channels), 1)
    exact = np.asarray(float32(inputs))
    approximate = np.asarray(tf.cast(bf16(inputs), tf.float32))
    assert bf16.compute_dtype == "bfloat16"
    assert bf16.kernel.dtype == "float32"
    assert _relative_error(approximate, exact) < 0.01


def test_the_generators_first_layer_is_right_in_bf16() -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        generator = Generator3D(latent_size=16, seed=3)
    finally:
        keras.config.set_dtype_policy(previous)
    conv = generator.get_layer("conv_1")
    kernel, bias = (np.asarray(w) for w in conv.get_weights())
    inputs = _bf16_rounded((1, 16, 16, 16, 8), 2)
    rounded_kernel = np.asarray(tf.cast(tf.cast(kernel, tf.bfloat16), tf.float32))
    exact = np.asarray(tf.nn.conv3d(inputs, rounded_kernel, [1] * 5, "VALID")) + bias
    approximate = np.asarray(tf.cast(conv(inputs), tf.float32))
    assert _relative_error(approximate, exact) < 0.01


def test_the_guard_picks_a_right_form_and_float32_weights_load_unchanged() -> None:
    form = guarded_form((6, 6, 8), 8, 8)
    assert form is None or bf16_conv3d_is_right((6, 6, 8), 8, 8, order=form)
    assert guarded_form((3, 3, 3), 6, 6) == (0, 1, 2)  # right shapes are computed directly
    plain = keras.layers.Conv3D(4, (2, 3, 4))
    plain.build((None, 8, 8, 8, 2))
    guarded = GuardedConv3D.from_config(plain.get_config())
    guarded.build((None, 8, 8, 8, 2))
    guarded.set_weights(plain.get_weights())  # same variables, same layout
    inputs = _bf16_rounded((1, 8, 8, 8, 2), 3)
    np.testing.assert_allclose(np.asarray(guarded(inputs)), np.asarray(plain(inputs)), rtol=1e-5, atol=1e-6)


def test_the_depth_folded_conv3d_equals_the_direct_one() -> None:
    float32, bf16 = _layer_pair(DepthFoldedConv3D, 3, (3, 3, 4), input_shape=(None, 9, 8, 12, 1), activation="relu")
    assert bf16._fold_depth == 12
    assert float32._fold_depth is None
    inputs = _bf16_rounded((2, 9, 8, 12, 1), 4) - 0.5  # both signs: the ReLU matters
    exact = np.asarray(float32(inputs))
    approximate = np.asarray(tf.cast(bf16(inputs), tf.float32))
    assert approximate.shape == exact.shape == (2, 7, 6, 9, 3)
    assert np.abs(approximate - exact).max() < 0.02 * np.abs(exact).max()


def test_tensorflow_bf16_conv3d_bug_reproduction() -> None:
    """The bare TensorFlow reproduction: conv3d of (1, 20, 20, 20, 8) with a (6, 6, 8, 8, 8) kernel, bfloat16
    against float32 on the same rounded inputs. Expected wrong (about 0.25x) exactly on the TensorFlow versions of
    BUGGY_TENSORFLOW_VERSIONS with oneDNN on a CPU with bfloat16 units; right everywhere else."""
    inputs = _bf16_rounded((1, 20, 20, 20, 8), 0)
    kernel = _bf16_rounded((6, 6, 8, 8, 8), 1)
    exact = np.asarray(tf.nn.conv3d(inputs, kernel, [1] * 5, "VALID"))
    bf16 = tf.nn.conv3d(tf.cast(inputs, tf.bfloat16), tf.cast(kernel, tf.bfloat16), [1] * 5, "VALID")
    ratio = float(np.asarray(tf.cast(bf16, tf.float32)).mean() / exact.mean())
    version = ".".join(tf.__version__.split(".")[:2])
    on_cpu_bf16 = bf16_support(gpus=0)[0] and not tf.config.list_physical_devices("GPU")
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    if version in BUGGY_TENSORFLOW_VERSIONS and on_cpu_bf16 and onednn:
        assert ratio == pytest.approx(0.25, abs=0.05), (
            f"TensorFlow {tf.__version__}: the bfloat16 Conv3D bug is gone (ratio {ratio:.3f}): drop the workaround"
        )
    else:
        assert ratio == pytest.approx(1.0, abs=0.01), (
            f"TensorFlow {tf.__version__}: bfloat16 Conv3D of a (6, 6, 8) kernel is wrong (ratio {ratio:.3f}): add"
            f" {version} to BUGGY_TENSORFLOW_VERSIONS (the guard handles it)"
        )
