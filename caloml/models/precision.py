"""Float precision of caloml's models: whether this machine computes in bfloat16, the Keras dtype policy to use, and
a model rebuilt in a given precision with the same (float32) weights.

``mixed_bfloat16`` (Keras' policy: bfloat16 arithmetic, float32 variables) is worth it on CPUs with bfloat16 units
(``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``) and on GPUs; elsewhere TensorFlow emulates bfloat16 slowly,
so :func:`resolve_policy` falls back to float32 and says so in one line. caloml's models keep their variables,
batch normalization, losses, the power transform's inverse and every sum over cells in float32 under this policy;
the 3DGAN's Conv3D layers are guarded against a wrong TensorFlow kernel (:mod:`caloml.models.bf16_conv3d_guard`).
See ``docs/3dgan.md`` (Precision).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from caloml.errors import CalomlError

__all__ = [
    "BF16_CPU_FLAGS",
    "PRECISIONS",
    "bf16_support",
    "cpu_flags",
    "dtype_policy",
    "model_in_precision",
    "policy_of_precision",
    "resolve_policy",
]

LOGGER = logging.getLogger(__name__)

#: CPU flags (``/proc/cpuinfo``) of the x86 instructions that compute in bfloat16.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: Precision names accepted by the command lines -> Keras dtype policy.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The ``flags`` of the first CPU in ``cpuinfo`` (empty when the file is unreadable, e.g. not Linux)."""
    try:
        with open(cpuinfo) as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support(flags: set[str] | None = None, gpus: int | None = None) -> tuple[bool, str]:
    """Whether this machine computes in bfloat16 (a GPU, or a CPU with bfloat16 flags), and the reason in words.

    ``flags``: the CPU flags (default: :func:`cpu_flags`); ``gpus``: number of GPUs (default: those TensorFlow
    sees; pass 0 to ask about the CPU only).
    """
    gpus = len(tf.config.list_physical_devices("GPU")) if gpus is None else int(gpus)
    if gpus:
        return True, f"{gpus} GPU(s)"
    flags = cpu_flags() if flags is None else flags
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if found:
        return True, f"CPU flags {', '.join(found)}"
    if not flags:
        return False, "no CPU flags readable (/proc/cpuinfo)"
    return False, f"the CPU has none of the bfloat16 flags {', '.join(BF16_CPU_FLAGS)}"


def policy_of_precision(precision: str) -> str:
    """The Keras dtype policy of a precision name (``float32``, ``bfloat16``) or of a policy name itself."""
    if precision in PRECISIONS:
        return PRECISIONS[precision]
    if precision in PRECISIONS.values() or precision in ("", "mixed_float16", "float16", "bfloat16"):
        return precision or "float32"
    raise CalomlError(f"unknown precision {precision!r}; choose from {sorted(PRECISIONS)} (or a Keras dtype policy)")


def resolve_policy(requested: str, flags: set[str] | None = None, gpus: int | None = None) -> str:
    """The dtype policy to use for ``requested`` (a precision or policy name; empty: float32) on this machine.

    A bfloat16 policy on a machine without bfloat16 units (see :func:`bf16_support`) becomes ``float32``, with one
    warning line (logger ``caloml.models.precision``) that says why.
    """
    policy = policy_of_precision(requested)
    if "bfloat16" in policy:
        supported, reason = bf16_support(flags, gpus)
        if not supported:
            LOGGER.warning("caloml: %s requested but %s: computing in float32", policy, reason)
            return "float32"
    return policy


@contextlib.contextmanager
def dtype_policy(policy: str, *, for_this_machine: bool = True) -> Iterator[str]:
    """Set Keras' global dtype policy to ``policy`` (resolved with :func:`resolve_policy` when ``for_this_machine``)
    inside the block and restore the previous one after it, also on error; yields the policy in force."""
    previous = keras.config.dtype_policy()
    resolved = resolve_policy(policy) if for_this_machine else policy_of_precision(policy)
    keras.config.set_dtype_policy(resolved)
    try:
        yield resolved
    finally:
        keras.config.set_dtype_policy(previous)


def model_in_precision(model: Any, precision: str, *, for_this_machine: bool = True) -> Any:
    """``model`` rebuilt from its config under the dtype policy of ``precision`` (resolved for this machine unless
    ``for_this_machine`` is false: an export is built for the machine that serves it), with its weights copied (the
    variables stay float32; the layout is unchanged). Returns ``model`` itself when the policy is the one it was
    built under."""
    with dtype_policy(precision, for_this_machine=for_this_machine) as policy:
        if model.dtype_policy.name == policy:
            return model
        copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy
