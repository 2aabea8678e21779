"""The batch a model's ``fit`` takes: its keys, per-example shapes and units, checked with a one-line error.

Each caloml model describes its training batch as a :class:`BatchContract` (``model.batch_contract()``);
``CalomlModel.fit`` checks the input before Keras sees it (a ``tf.data.Dataset``'s element spec, or a dict of
arrays), and the model's ``train_step`` checks every batch it gets (custom loops too). A batch that is not a dict,
lacks a key or has a key of the wrong shape raises :class:`BatchContractError`, one line naming the problem, the
expected keys with their units, and what the batch holds::

    GAN3D.fit: the batch has no key 'mtheta'; expected a dict of ECAL (B, 51, 51, 25) GeV, energy (B,) GeV,
    mtheta (B,) rad; got ECAL (64, 51, 51, 25), energy (64,)

Extra keys are ignored. Shapes are the static ones (unknown sizes pass); a per-example shape with the same number of
values passes too (``energy`` (B, 1) for (B,), ``ECAL`` (B, 51, 51, 25, 1)), as the models reshape them.
See ``docs/python-api.md`` and each model's page ("fit contract").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caloml.errors import DataError

__all__ = ["BatchContract", "BatchContractError", "BatchKey", "shape_of"]


class BatchContractError(DataError, KeyError):
    """A training batch that does not match its model's :class:`BatchContract` (also a KeyError, as Keras' own).

    Raised while ``train_step`` is traced, AutoGraph re-creates the error with the traced frames in front of the
    message ("in user code: ... BatchContractError: <message>"); ``str`` keeps only the message, one line.
    """

    __init__ = Exception.__init__  # AutoGraph re-creates errors that take their message like Exception's

    def __str__(self) -> str:
        message = str(self.args[0]) if self.args else ""
        marker = f"{type(self).__name__}: "
        if message.lstrip().startswith("in user code:") and marker in message:
            message = message.rsplit(marker, 1)[1]
        return " ".join(message.split())


Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class BatchKey:
    """One batch key: its name, per-example shape (after the batch axis; None: any size) and unit."""

    name: str
    shape: Shape = ()
    unit: str = ""

    def describe(self) -> str:
        """``"ECAL (B, 51, 51, 25) GeV"``."""
        return f"{self.name} {_format(('B', *self.shape))}{' ' + self.unit if self.unit else ''}"

    def accepts(self, shape: Shape | None) -> bool:
        """Whether a batch of ``shape`` (batch axis first; None: unknown rank) fits this key."""
        if shape is None or len(shape) == 0:
            return shape is None
        got = tuple(shape[1:])
        if None not in self.shape:
            return None in got or math.prod(got) == math.prod(self.shape)  # type: ignore[arg-type]
        if len(got) == len(self.shape) + 1 and got[-1] == 1:
            got = got[:-1]
        if len(got) != len(self.shape):
            return False
        return all(e is None or g is None or e == g for g, e in zip(got, self.shape, strict=True))


def _format(shape: Sequence[Any]) -> str:
    items = ["None" if size is None else str(size) for size in shape]
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def shape_of(value: Any) -> Shape | None:
    """The static shape of an array, tensor or ``tf.TensorSpec`` (None when it has none, e.g. unknown rank)."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if size is None else int(size) for size in shape)
    except (TypeError, ValueError):  # a TensorShape of unknown rank
        return None


def _describe_value(value: Any) -> str:
    shape = shape_of(value)
    if shape is not None:
        dtype = getattr(value, "dtype", "")
        dtype_name = getattr(dtype, "name", str(dtype))
        return f"a {dtype_name} {type(value).__name__} of shape {_format(shape) if shape else '()'}"
    return f"a {type(value).__name__}"


def _describe_entry(key: str, value: Any) -> str:
    shape = shape_of(value)
    if shape is None:
        return str(key)
    return f"{key} {_format(shape) if shape else '()'}"


@dataclass(frozen=True)
class BatchContract:
    """The keys a model's training batch needs.

    ``model``: the model's class name (the errors start with ``"<model>.fit: "``); ``keys``: the needed keys;
    ``pairs``: the model also takes ``(inputs, targets)`` pairs of dicts, whose keys are merged (Triforce);
    otherwise a tuple's first element is the batch (Keras' ``(x,)`` form).
    """

    model: str
    keys: tuple[BatchKey, ...]
    pairs: bool = False

    def describe(self) -> str:
        """The expected keys with shapes and units, one line."""
        return ", ".join(key.describe() for key in self.keys)

    def _fail(self, problem: str, got: str) -> BatchContractError:
        return BatchContractError(f"{self.model}.fit: {problem}; expected a dict of {self.describe()}; got {got}")

    def batch(self, data: Any) -> Mapping[str, Any]:
        """The batch dict of ``data`` (a dict, or a tuple as Keras hands it), checked; BatchContractError if not.

        Works on arrays, tensors (static shapes, also while ``train_step`` is traced) and ``tf.TensorSpec``.
        """
        if isinstance(data, tuple | list):
            if not data:
                raise self._fail("the batch is empty", "an empty tuple")
            if self.pairs and all(isinstance(part, Mapping) for part in data):
                data = {key: value for part in data for key, value in part.items()}
            else:
                data = data[0]
        if not isinstance(data, Mapping):
            raise self._fail("batches must be dicts", _describe_value(data))
        got = ", ".join(_describe_entry(key, value) for key, value in data.items())
        for key in self.keys:
            if key.name not in data:
                raise self._fail(f"the batch has no key '{key.name}'", got or "an empty dict")
            shape = shape_of(data[key.name])
            if not key.accepts(shape):
                shown = "unknown" if shape is None else _format(shape) if shape else "()"
                raise self._fail(f"key '{key.name}' has shape {shown}, not {_format(('B', *key.shape))}", got)
        return data

    def check_fit_input(self, x: Any, y: Any = None) -> None:
        """Check the ``x`` (and ``y``) given to ``fit``: a ``tf.data.Dataset`` by its element spec, a dict of
        arrays by their shapes, a bare array or tensor is refused; other inputs (distributed datasets, generators)
        are left to ``train_step``'s check."""
        if hasattr(x, "element_spec") and not hasattr(x, "_input_workers"):  # a tf.data.Dataset, not distributed
            self.batch(x.element_spec)
        elif isinstance(x, Mapping):
            self.batch((x, y) if isinstance(y, Mapping) else x)
        elif shape_of(x) is not None:
            self.batch(x)
