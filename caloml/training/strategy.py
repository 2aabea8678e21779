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


#: The roles a TF_CONFIG cluster may name.
CLUSTER_ROLES = ("chief", "worker", "ps", "evaluator")


def read_tf_config() -> dict[str, Any] | None:
    """The parsed and checked ``TF_CONFIG`` (None when unset); an inconsistent one is a CalomlError.

    See :func:`check_tf_config` for what is checked.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CalomlError(f"TF_CONFIG is not valid JSON ({error})") from None
    return check_tf_config(value)


def _invalid(reason: str) -> CalomlError:
    return CalomlError(f"TF_CONFIG is not valid: {reason}")


def _check_address(role: str, address: Any) -> None:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _invalid(f"cluster.{role} has {address!r}; every address must be HOST:PORT")


def check_tf_config(value: Any) -> dict[str, Any]:
    """``value`` (the parsed TF_CONFIG) once it is a consistent cluster specification; CalomlError otherwise.

    The cluster maps roles (chief, worker, ps, evaluator) to lists of distinct ``HOST:PORT`` addresses, with at
    most one chief and at least one chief or worker; the task names one of them: its ``type`` is a role of the
    cluster and its ``index`` a whole number from 0 to that role's count less one.
    """
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict) or "task" not in value:
        raise _invalid('it must be a JSON object {"cluster": {ROLE: [HOST:PORT, ...]}, "task": {...}}')
    cluster, task = value["cluster"], value["task"]
    for role, addresses in cluster.items():
        if role not in CLUSTER_ROLES:
            raise _invalid(f"unknown role {role!r} in the cluster; roles: {', '.join(CLUSTER_ROLES)}")
        if not isinstance(addresses, list) or not addresses:
            raise _invalid(f"cluster.{role} must be a non-empty list of HOST:PORT addresses")
        for address in addresses:
            _check_address(role, address)
    if not cluster.get("chief") and not cluster.get("worker"):
        raise _invalid("the cluster needs a chief or at least one worker")
    if len(cluster.get("chief") or []) > 1:
        raise _invalid(f"the cluster has {len(cluster['chief'])} chiefs; at most one is allowed")
    everyone = [address for addresses in cluster.values() for address in addresses]
    repeated = sorted({address for address in everyone if everyone.count(address) > 1})
    if repeated:
        raise _invalid(f"the address {repeated[0]} appears more than once in the cluster")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _invalid('task must be {"type": ROLE, "index": N}')
    task_type, task_index = task["type"], task["index"]
    if not isinstance(task_type, str) or task_type not in cluster:
        raise _invalid(f"task.type {task_type!r} is not a role of the cluster ({', '.join(cluster)})")
    count = len(cluster[task_type])
    if isinstance(task_index, bool) or not isinstance(task_index, int) or not 0 <= task_index < count:
        raise _invalid(
            f"task.index {task_index!r} does not name a {task_type} of the cluster: it has {count}, "
            f"so the index runs from 0 to {count - 1}"
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
