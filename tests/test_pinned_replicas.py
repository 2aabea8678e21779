"""Randomness and equivalence under ``tf.distribute``: two logical CPU replicas against one device.

Item 2: on two replicas each replica draws its own noise and label flips (the 3DGAN; the crystal models' noise),
derived from the run seed as (seed + 2000, draw counter) folded with the replica id, so that the whole draw is
reproducible from the seed; two models built with the same seed draw the same numbers, another seed others.

Item 3: one training step on two replicas equals the same step on one device, variable by variable (the relative
error of each variable's update, never one norm over all weights together) and on every reported loss. Triforce runs
with micro-batch accumulation (2 events per micro-batch, 4 per replica); plain SGD makes the update proportional to
the gradient, so that a per-replica instead of a global-batch average (a factor 2) shows. The Pyramid's energy
stage (no random draws) is compared the same way. The 3DGAN's full-size step is slow (``-m slow``); it takes its
noise and flips from the batch. The other stochastic steps (CaloPointFlow, the Pyramid's hit stages, the crystal
models) draw their noise per replica (item 2); fed the same noise through their batch keys, they are compared in
tests/test_pinned_replicas_generators.py.

Every check runs in a subprocess: the CPU must be split into two logical devices before TensorFlow initializes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from replica_equivalence import TINY_PYRAMID, split_cpu, variable_report
from worker_process import run_worker

GAN_SEED = 11
CRYSTAL_SEED = 21
DRAW_ROWS = 64
TRIFORCE_BATCH = 8
# float32 sums over 4 or 8 events in another order: a few 1e-7 relative; a wrong scaling is 50-100%
TRIFORCE_UPDATE_TOLERANCE = 1e-4
# 3DGAN: batch normalization of near-constant sparse activations amplifies float32 rounding (see
# tests/test_gan3d_mirrored.py): each variable's update to 3%; its forward losses to 1e-4
GAN_UPDATE_TOLERANCE = 0.03


def _run_worker(mode: str, out_dir: Path) -> dict:
    run_worker(__file__, mode, out_dir)
    return json.loads((out_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_worker("quick", tmp_path_factory.mktemp("replicas"))


def test_each_replica_draws_its_own_3dgan_noise_and_label_flips(quick: dict) -> None:
    draws = quick["gan_draws"]
    noise = [np.array(replica) for replica in draws["noise"]]
    flips = [np.array(replica) for replica in draws["flips"]]
    assert noise[0].shape == (DRAW_ROWS, 254)
    assert flips[0].shape == (DRAW_ROWS, 1)
    # different numbers on the two replicas (identical draws would give a correlation of 1 and the same flips)
    assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.05
    assert not np.array_equal(flips[0], flips[1])
    for replica in flips:  # probability 0.5: both outcomes on each replica
        assert 0.2 < replica.mean() < 0.8
    # the derivation from the seed: (seed + 2000, counter after the increment) folded with the replica id
    np.testing.assert_array_equal(noise, draws["noise_by_hand"])
    np.testing.assert_array_equal(flips, draws["flips_by_hand"])
    assert draws["random_draws"] == 2  # one counter for all replicas: one noise and one flip draw


def test_the_draws_are_reproducible_from_the_seed(quick: dict) -> None:
    draws = quick["gan_draws"]
    np.testing.assert_array_equal(draws["noise"], draws["same_seed_noise"])
    np.testing.assert_array_equal(draws["flips"], draws["same_seed_flips"])
    assert not np.array_equal(draws["noise"], draws["next_noise"])  # a later draw of the run: new numbers


def test_each_replica_draws_its_own_crystal_noise(quick: dict) -> None:
    noise = [np.array(replica) for replica in quick["crystal_noise"]]
    assert noise[0].shape == (DRAW_ROWS, 3)
    assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.15


def test_triforce_micro_batched_step_on_two_replicas_equals_one_device(quick: dict) -> None:
    report = quick["triforce"]
    assert report["replicas"] == 2
    assert len(report["variables"]) >= 6
    for name, stats in report["variables"].items():
        assert stats["update_over_weights"] > 1e-4, (name, stats)  # the step moved every variable
        assert stats["update_mismatch"] < TRIFORCE_UPDATE_TOLERANCE, (name, stats)
    single, mirrored = report["history_single"], report["history_mirrored"]
    assert set(single) == set(mirrored) >= {"loss", "cross_entropy", "energy_mse", "accuracy"}
    for key, value in single.items():
        np.testing.assert_allclose(mirrored[key], value, rtol=1e-5, err_msg=key)


def test_pyramid_energy_stage_step_on_two_replicas_equals_one_device(quick: dict) -> None:
    # the energy stage draws no random numbers: its step is the same function on one device and on two
    report = quick["pyramid"]
    moved = {name: stats for name, stats in report["variables"].items() if stats["update_over_weights"] > 1e-6}
    assert len(moved) >= 4, report["variables"]
    for name, stats in moved.items():
        assert stats["update_mismatch"] < TRIFORCE_UPDATE_TOLERANCE * 10, (name, stats)
    single, mirrored = report["history_single"], report["history_mirrored"]
    assert set(single) == set(mirrored) >= {"loss", "energy"}
    for key, value in single.items():
        np.testing.assert_allclose(mirrored[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_3dgan_step_on_two_replicas_equals_one_device_per_variable(tmp_path: Path) -> None:
    report = _run_worker("gan", tmp_path)
    for network in ("generator", "discriminator"):
        for name, stats in report[network].items():
            if stats["update_over_weights"] < 1e-7:  # batch-norm moving statistics of an unused branch, if any
                continue
            assert stats["update_mismatch"] < GAN_UPDATE_TOLERANCE, (network, name, stats)
    single, mirrored = report["history_single"], report["history_mirrored"]
    assert set(single) == set(mirrored)
    for key in ("d_loss_real", "d_bce", "d_energy_mape", "d_angle_mae", "d_sum_mape"):
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-3, err_msg=key)
    for key, value in single.items():  # the fake and generator losses go through the updated networks
        np.testing.assert_allclose(mirrored[key], value, rtol=2e-2, err_msg=key)
    # the whole step with drawn noise and flips is reproducible from the run seed on two replicas
    assert report["repeat_identical"] is True
    assert report["other_seed_identical"] is False


# ---------------------------------------------------------------------------------------------------- worker


def _per_replica(strategy, value) -> list:
    return [np.asarray(v).tolist() for v in strategy.experimental_local_results(value)]


def _gan_draws(strategy) -> dict:
    import tensorflow as tf

    from caloml.models import GAN3D

    with strategy.scope():
        gan = GAN3D(seed=GAN_SEED, label_flip_probability=0.5)

    @tf.function
    def step() -> tuple[tf.Tensor, tf.Tensor]:
        rows = tf.constant(DRAW_ROWS)
        return gan._noise({}, "noise_d", rows), gan._flips({}, "flip_real", rows)

    def draw() -> tuple[list, list, int]:
        noise, flips = strategy.run(step)
        return _per_replica(strategy, noise), _per_replica(strategy, flips), int(gan.random_draws.numpy())

    noise, flips, counter = draw()
    other_noise, _, _ = draw()  # the next draws of the same run
    gan.random_draws.assign(0)  # a run from the same seed (the counter is all the state there is)
    same_noise, same_flips, _ = draw()

    def by_hand(draw_number: int, replica: int) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(tf.constant([GAN_SEED + 2000, draw_number], tf.int64), replica)

    return {
        "noise": noise,
        "flips": flips,
        "random_draws": counter,
        "noise_by_hand": [tf.random.stateless_normal((DRAW_ROWS, 254), by_hand(1, r)).numpy().tolist() for r in (0, 1)],
        "flips_by_hand": [
            (tf.random.stateless_uniform((DRAW_ROWS, 1), by_hand(2, r)) < 0.5).numpy().tolist() for r in (0, 1)
        ],
        "same_seed_noise": same_noise,
        "same_seed_flips": same_flips,
        "next_noise": other_noise,
    }


def _crystal_noise(strategy) -> list:
    import tensorflow as tf

    from caloml.models.crystal_wgan import CrystalWGAN

    with strategy.scope():
        model = CrystalWGAN(latent_dim=3, hidden_units=8, hidden_layers=1, seed=CRYSTAL_SEED)
    noise = strategy.run(tf.function(lambda: model.normal(tf.constant(DRAW_ROWS), 3)))
    return _per_replica(strategy, noise)


def _triforce(strategy) -> dict:
    import keras
    import tensorflow as tf

    from caloml.data.reconstruction_tasks import INPUT_SHAPES
    from caloml.models.triforce_nets import TriforceDNN

    rng = np.random.default_rng(0)
    batch = {
        key: rng.exponential(0.01, (TRIFORCE_BATCH, *shape)).astype(np.float32) for key, shape in INPUT_SHAPES.items()
    }
    batch["recoEta"] = rng.uniform(-0.5, 0.5, TRIFORCE_BATCH).astype(np.float32)
    batch["recoPhi"] = rng.uniform(-np.pi, np.pi, TRIFORCE_BATCH).astype(np.float32)
    batch["class_label"] = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int32)
    batch["energy"] = rng.uniform(10.0, 300.0, TRIFORCE_BATCH).astype(np.float32)

    def train(current: tf.distribute.Strategy) -> dict:
        with current.scope():
            model = TriforceDNN(n_hidden_layers=2, hidden_units=16, dropout=0.0, micro_batch_size=2, seed=3)
            model.compile(keras.optimizers.SGD(1e-3))
        initial = {v.path: v.numpy().copy() for v in model.trainable_variables}
        history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False).history
        return {
            "initial": initial,
            "final": {v.path: v.numpy() for v in model.trainable_variables},
            "history": {key: float(values[-1]) for key, values in history.items()},
            "replicas": current.num_replicas_in_sync,
        }

    single = train(tf.distribute.get_strategy())
    mirrored = train(strategy)
    for name, value in single["initial"].items():
        assert np.array_equal(value, mirrored["initial"][name]), name
    return {
        "replicas": mirrored["replicas"],
        "variables": variable_report(single["initial"], single["final"], mirrored["final"]),
        "history_single": single["history"],
        "history_mirrored": mirrored["history"],
    }


def _pyramid(strategy) -> dict:
    import keras
    import tensorflow as tf

    from caloml.models.pyramid import CalorimeterPyramid, PyramidStatistics

    rng = np.random.default_rng(4)
    energy = np.exp(rng.uniform(0.0, np.log(100.0), 72)).astype(np.float32)
    hits = rng.random((72, 6, 4, 3)) < 0.3
    hits[:, 1, 0, 0] = True
    cells = np.where(hits, np.exp(rng.normal(-4.0, 1.5, hits.shape)) + 1e-3, 0.0).astype(np.float32)
    statistics = PyramidStatistics.from_showers(cells[8:], energy[8:], 1e-3, (1.0, 100.0))
    batch = {"showers": cells[:8], "incident_energy": energy[:8]}

    def train(current: tf.distribute.Strategy) -> dict:
        with current.scope():
            model = CalorimeterPyramid(
                statistics,
                **TINY_PYRAMID,
                train_stages=("energy",),
                seed=5,
            )
            model.compile(keras.optimizers.SGD(1e-2))
        initial = {v.path: v.numpy().copy() for v in model.trainable_variables}
        history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False).history
        return {
            "initial": initial,
            "final": {v.path: v.numpy() for v in model.trainable_variables},
            "history": {key: float(values[-1]) for key, values in history.items()},
        }

    single = train(tf.distribute.get_strategy())
    mirrored = train(strategy)
    return {
        "variables": variable_report(single["initial"], single["final"], mirrored["final"]),
        "history_single": single["history"],
        "history_mirrored": mirrored["history"],
    }


def _gan_equivalence(strategy) -> dict:
    import keras
    import tensorflow as tf

    from caloml.models import GAN3D
    from caloml.sim.run import SimulationRequest, simulate_events

    events = simulate_events(SimulationRequest("lcd-gen", "electron", n_events=4, seed=5).resolve())
    rng = np.random.default_rng(0)
    plain = {"ECAL": events["ECAL"], "energy": events["energy"], "mtheta": events["mtheta"]}
    batch = {
        **plain,
        **{key: rng.standard_normal((4, 254)).astype(np.float32) for key in ("noise_d", "noise_g1", "noise_g2")},
        "flip_real": np.array([0, 1, 0, 0], np.float32),
        "flip_fake": np.array([0, 0, 1, 0], np.float32),
    }

    def train(current: tf.distribute.Strategy, data: dict, seed: int = GAN_SEED, dropout: float = 0.0) -> dict:
        with current.scope():
            gan = GAN3D(seed=seed, dropout=dropout)
            gan.compile(keras.optimizers.SGD(1e-6), keras.optimizers.SGD(1e-6))
        nets = {"generator": gan.generator, "discriminator": gan.discriminator}
        initial = {n: {v.path: v.numpy().copy() for v in net.weights} for n, net in nets.items()}
        history = gan.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0, shuffle=False).history
        return {
            "initial": initial,
            "final": {n: {v.path: v.numpy() for v in net.weights} for n, net in nets.items()},
            "history": {key: float(values[-1]) for key, values in history.items()},
        }

    single = train(tf.distribute.get_strategy(), batch)
    mirrored = train(strategy, batch)
    report: dict = {"history_single": single["history"], "history_mirrored": mirrored["history"]}
    for name in ("generator", "discriminator"):
        report[name] = variable_report(single["initial"][name], single["final"][name], mirrored["final"][name])
    # drawn noise, flips and dropout masks: the same seed gives the same step, another seed another
    runs = [train(strategy, plain, seed, dropout=0.2) for seed in (GAN_SEED, GAN_SEED, GAN_SEED + 1)]

    def same(a: dict, b: dict) -> bool:
        return all(
            np.array_equal(a["final"]["generator"][k], b["final"]["generator"][k]) for k in a["final"]["generator"]
        )

    report["repeat_identical"] = same(runs[0], runs[1]) and runs[0]["history"] == runs[1]["history"]
    report["other_seed_identical"] = same(runs[0], runs[2])
    return report


def _worker(mode: str, out_dir: Path) -> None:
    split_cpu()
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if mode == "quick":
        report = {
            "gan_draws": _gan_draws(strategy),
            "crystal_noise": _crystal_noise(strategy),
            "triforce": _triforce(strategy),
            "pyramid": _pyramid(strategy),
        }
    else:
        report = _gan_equivalence(strategy)
    (out_dir / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
