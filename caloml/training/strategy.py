"""One flag, one ``tf.distribute`` strategy.

``default`` is TensorFlow's default (no-op) strategy; ``one_device`` places everything on the first GPU, or the
CPU; ``mirrored`` replicates over all local GPUs (the CPU when there is none; ``cpu_replicas`` splits it into
logical devices so that the multi-replica path runs on a laptop); ``multi_worker`` is
``MultiWorkerMirroredStrategy`` over the cluster described by the ``TF_CONFIG`` environment variable.

See ``docs/training.md``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf

from caloml.errors import CalomlError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")


def make_strategy(name: str, *, cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The strategy called ``name`` (one of :data:`STRATEGIES`).

    ``cpu_replicas`` (``mirrored`` only, no GPU): split the CPU into that many logical devices; it must be set
    before TensorFlow initializes its devices, i.e. before any tensor is created in the process.
    """
    if name not in STRATEGIES:
        raise CalomlError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus or cpu_replicas <= 1:
            return tf.distribute.MirroredStrategy()
        devices = split_cpu(cpu_replicas)
        return tf.distribute.MirroredStrategy(devices=devices)
    cluster = read_tf_config()
    if cluster is None:
        raise CalomlError("strategy multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def split_cpu(n: int) -> list[str]:
    """Split the CPU into ``n`` logical devices (before the runtime starts); returns their names."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        logical = tf.config.list_logical_devices("CPU")
        if len(logical) != n:
            raise CalomlError(
                f"cannot split the CPU into {n} replicas: TensorFlow is already initialized with {len(logical)}"
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def read_tf_config() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` (None when unset); a malformed one is a CalomlError."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        value = json.loads(text)
        cluster, task = value["cluster"], value["task"]
        task_type, task_index = task["type"], task["index"]
        valid = (
            isinstance(cluster, dict)
            and any(cluster.get(role) for role in ("chief", "worker"))
            and isinstance(task_index, int)
            and task_index < len(cluster.get(task_type) or [])
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise CalomlError(
            "TF_CONFIG is not valid: expected JSON with cluster.chief and/or cluster.worker and a task.type/index "
            "naming one of them"
        )
    return dict(value)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's shared outputs (always, except non-chief multi-worker tasks)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def worker_tag(strategy: tf.distribute.Strategy) -> str:
    """``worker-K`` for a multi-worker task (used to keep non-chief files apart), ``chief`` otherwise."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and not is_chief(strategy):
        resolver = strategy.cluster_resolver
        return f"{resolver.task_type}-{resolver.task_id}"
    return "chief"
