"""What the per-replica equivalence tests share: two logical CPU replicas, the per-variable comparison of one step
on two replicas against one device, and the tiny Calorimeter Pyramid they (and the pinned Pyramid loss) train."""

from __future__ import annotations

import numpy as np

#: A Calorimeter Pyramid small enough for a step in a second (pass with the statistics, stages, seed).
TINY_PYRAMID = {
    "n_flow_layers": 1,
    "n_bins": 4,
    "hidden_units": 8,
    "conditioner_blocks": 1,
    "embedding_units": 2,
    "summary_units": 3,
    "n_energy_layers": 1,
}


def split_cpu() -> None:
    """Split the CPU into two logical devices (a fresh process only: before TensorFlow's runtime starts)."""
    import tensorflow as tf  # imported here: the worker sets up devices before anything else touches TensorFlow

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def variable_report(initial: dict, single: dict, mirrored: dict) -> dict:
    """Per variable (path -> values before, after one step on one device, after it on two replicas): the update's
    size relative to the weights and the relative mismatch of the two updates."""
    out = {}
    for name, start in initial.items():
        update_single = single[name] - start
        update_mirrored = mirrored[name] - start
        scale = max(float(np.linalg.norm(update_single)), 1e-30)
        out[name] = {
            "update_over_weights": scale / max(float(np.linalg.norm(start)), 1e-30),
            "update_mismatch": float(np.linalg.norm(update_mirrored - update_single)) / scale,
        }
    return out
