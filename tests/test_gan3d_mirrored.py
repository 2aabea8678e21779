"""One 3DGAN training step under MirroredStrategy (two logical CPUs) equals the same step on one device.

The check runs in a subprocess, because the CPU must be split into two logical devices before TensorFlow
initializes (and the main pytest process must stay unaffected). Both runs go through ``GAN3D.fit`` on the same
global batch of 4 simulated electrons with the same noise (the ``noise_*`` override keys of the batch) and one
flipped label; dropout is 0 so that both runs compute the same function. Plain SGD makes the update proportional
to the gradient, so that a per-replica average of the losses (instead of the global-batch average) would double the
mirrored update; RMSprop would hide it. Synchronized batch normalization makes the batch statistics those of the
global batch.

Tolerance: this network's float32 gradients at initialization differ from a float64 computation by about 0.3-1%
(the batch normalizations of near-constant, sparse activations amplify rounding), so the updates of the two runs are
compared to 2% (measured: 0.4% for the generator, 0.05% for the discriminator; a wrong loss scaling gives 100%, and
batch normalization without synchronization 25% and 60%); the forward losses, which do not go through a gradient,
agree to 1e-4. About 70 s on two cores (subprocess start, two traced full-size steps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from worker_process import run_worker

GLOBAL_BATCH = 4
LEARNING_RATE = 1e-6


def test_mirrored_step_matches_single_device(tmp_path: Path) -> None:
    run_worker(__file__, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["replicas"] == 2
    for network in ("generator", "discriminator"):
        stats = report[network]
        # the step changed the weights substantially, and the two runs changed them the same way
        assert stats["update_over_weights"] > 1e-4, stats
        assert stats["update_mismatch"] < 0.02, stats
    single, mirrored = report["history_single"], report["history_mirrored"]
    assert set(single) == set(mirrored)
    # computed before any update: the forward pass and the global-batch mean of the metrics agree
    assert abs(mirrored["d_loss_real"] - single["d_loss_real"]) <= 1e-4 * abs(single["d_loss_real"])
    assert abs(mirrored["d_loss"] - single["d_loss"]) <= 1e-3 * abs(single["d_loss"])
    # one random draw (the label flips of the fake batch) advanced the same saved counter in both runs
    assert report["random_draws"] == [1, 1]


def _worker(out_dir: Path) -> None:
    """Train one step on one device, then on two mirrored logical CPUs; write report.json."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from caloml.models import GAN3D
    from caloml.sim.run import SimulationRequest, simulate_events

    events = simulate_events(SimulationRequest("lcd-gen", "electron", n_events=GLOBAL_BATCH, seed=5).resolve())
    rng = np.random.default_rng(0)
    batch = {
        "ECAL": events["ECAL"],
        "energy": events["energy"],
        "mtheta": events["mtheta"],
        "noise_d": rng.standard_normal((GLOBAL_BATCH, 254)).astype(np.float32),
        "noise_g1": rng.standard_normal((GLOBAL_BATCH, 254)).astype(np.float32),
        "noise_g2": rng.standard_normal((GLOBAL_BATCH, 254)).astype(np.float32),
        "flip_real": np.array([0, 1, 0, 0], np.float32),  # one flipped label in the second replica's half
    }

    def train(strategy: tf.distribute.Strategy) -> dict:
        with strategy.scope():
            # label_flip_probability 0: the fake-batch flips are drawn (exercising the draws) but all False
            gan = GAN3D(seed=11, dropout=0.0, label_flip_probability=0.0)
            gan.compile(keras.optimizers.SGD(LEARNING_RATE), keras.optimizers.SGD(LEARNING_RATE))
        initial = {name: [v.numpy().copy() for v in net.weights] for name, net in _networks(gan).items()}
        history = gan.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False).history
        final = {name: [v.numpy() for v in net.weights] for name, net in _networks(gan).items()}
        return {
            "initial": initial,
            "final": final,
            "history": {key: float(values[-1]) for key, values in history.items()},
            "random_draws": int(gan.random_draws.numpy()),
            "replicas": strategy.num_replicas_in_sync,
        }

    single = train(tf.distribute.get_strategy())
    mirrored = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    report: dict = {
        "replicas": mirrored["replicas"],
        "history_single": single["history"],
        "history_mirrored": mirrored["history"],
        "random_draws": [single["random_draws"], mirrored["random_draws"]],
    }
    for name in ("generator", "discriminator"):
        start = np.concatenate([w.ravel() for w in single["initial"][name]])
        assert np.array_equal(start, np.concatenate([w.ravel() for w in mirrored["initial"][name]]))
        update_single = np.concatenate([w.ravel() for w in single["final"][name]]) - start
        update_mirrored = np.concatenate([w.ravel() for w in mirrored["final"][name]]) - start
        report[name] = {
            "update_over_weights": float(np.linalg.norm(update_single) / np.linalg.norm(start)),
            "update_mismatch": float(np.linalg.norm(update_mirrored - update_single) / np.linalg.norm(update_single)),
        }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _networks(gan: object) -> dict:
    return {"generator": gan.generator, "discriminator": gan.discriminator}  # type: ignore[attr-defined]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
