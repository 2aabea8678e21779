"""Writing an export's network as ONNX (``model.onnx`` beside the SavedModel), verified before it counts.

Geant4's fast-simulation examples and CMSSW run networks from C++ through ONNX Runtime. An exporter describes
what converts as an :class:`OnnxGraph`: a ``tf.function`` without TensorFlow-only parts (ONNX has no assertions and
no stateless random numbers, so range checks move to the caller and noise is an input), example inputs, and the
ranges and units the caller must check, which go into the file's ``metadata_props``. :func:`write_onnx` converts it
with tf2onnx, then refuses anything it cannot trust: an operation outside the ONNX standard (tf2onnx can leave one
and still say "Successfully converted"), input or output names that differ from the TensorFlow contract, a file
``onnx.checker`` rejects, or ONNX Runtime outputs that differ from TensorFlow's on the example inputs by more than
a relative :data:`RELATIVE_TOLERANCE` (outputs and per-example sums). Each is a :class:`~caloml.errors.CalomlError`.

See ``docs/serving.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caloml.atomic_files import atomic_file
from caloml.errors import CalomlError

__all__ = [
    "ONNX_FILE",
    "OPSET",
    "RELATIVE_TOLERANCE",
    "OnnxGraph",
    "convert_graph",
    "onnx_writer",
    "verify_onnx",
    "write_onnx",
]

#: The file name of the ONNX model in a version directory.
ONNX_FILE = "model.onnx"
#: The ONNX operator set written (ONNX Runtime 1.14 and later run it).
OPSET = 17
#: The largest accepted difference between ONNX Runtime and TensorFlow, relative to the largest TensorFlow value.
RELATIVE_TOLERANCE = 1e-4
#: Operator domains besides the ONNX standard that ONNX Runtime implements.
_RUNTIME_DOMAINS = {"ai.onnx.ml", "com.microsoft"}


@dataclass(frozen=True)
class OnnxGraph:
    """What an exporter converts to ONNX.

    Attributes:
        function: a ``tf.function`` with an ``input_signature`` whose ``TensorSpec`` names are the inputs, returning
            a dict of float outputs; TensorFlow-only operations (assertions, stateless random numbers) left out.
        example_inputs: name -> array, inputs on which ONNX Runtime must agree with TensorFlow.
        metadata: the file's ``metadata_props``: units, trained ranges and what the caller must check.
    """

    function: Any
    example_inputs: Mapping[str, np.ndarray]
    metadata: Mapping[str, Any] = field(default_factory=dict)


def convert_graph(graph: OnnxGraph) -> Any:
    """The ``onnx.ModelProto`` of ``graph`` (tf2onnx, :data:`OPSET`), with its metadata; CalomlError for an operation
    outside the ONNX standard or input names differing from the TensorFlow signature's."""
    # tf2onnx imports TensorFlow: imported here so that python -m caloml.export parses its arguments without it
    import onnx
    import tf2onnx

    specs = list(graph.function.input_signature)
    try:
        proto, _ = tf2onnx.convert.from_function(graph.function, input_signature=specs, opset=OPSET)
    except Exception as error:  # tf2onnx raises bare Exceptions and ValueErrors for what it cannot convert
        raise CalomlError(f"ONNX conversion failed: {str(error).strip().splitlines()[0][:300]}") from None
    unsupported = sorted(
        {
            f"{node.domain or 'ai.onnx'}:{node.op_type}"
            for node in proto.graph.node
            if not (node.domain in _RUNTIME_DOMAINS or onnx.defs.has(node.op_type, node.domain))
        }
    )
    if unsupported:
        raise CalomlError(f"ONNX conversion left operations outside the ONNX standard: {', '.join(unsupported)}")
    names = [item.name for item in proto.graph.input]
    expected = [spec.name for spec in specs]
    if names != expected and [n.lower() for n in names] == [e.lower() for e in expected]:
        _rename_inputs(proto, dict(zip(names, expected, strict=True)))  # TensorFlow lowercases argument names
        names = [item.name for item in proto.graph.input]
    if names != expected:
        raise CalomlError(f"ONNX inputs {names} differ from the TensorFlow signature's {expected}")
    for key, value in graph.metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), value if isinstance(value, str) else json.dumps(value)
    proto.producer_name = "caloml"
    return proto


def _rename_inputs(proto: Any, renamed: Mapping[str, str]) -> None:
    """Rename graph inputs (and every use of them, in subgraphs too) from ``renamed``'s keys to its values."""

    def rename(graph: Any) -> None:
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name in renamed:
                    node.input[i] = renamed[name]
            for attribute in node.attribute:
                for subgraph in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                    rename(subgraph)
        for item in graph.output:
            if item.name in renamed:
                item.name = renamed[item.name]

    rename(proto.graph)
    for item in proto.graph.input:
        item.name = renamed.get(item.name, item.name)


def verify_onnx(proto: Any, graph: OnnxGraph) -> dict[str, float]:
    """Check ``proto`` (``onnx.checker``, full) and run it with ONNX Runtime on the example inputs against TensorFlow.

    Returns the largest relative difference per output and per output's per-example sums; CalomlError when the
    checker fails, an output is missing or differs by more than :data:`RELATIVE_TOLERANCE`.
    """
    import onnx
    import onnxruntime

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise CalomlError(f"the ONNX model fails onnx.checker: {str(error).splitlines()[0][:300]}") from None
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = {name: np.asarray(value) for name, value in graph.example_inputs.items()}
    expected = {key: np.asarray(value) for key, value in graph.function(**inputs).items()}
    names = [item.name for item in session.get_outputs()]
    if sorted(names) != sorted(expected):
        raise CalomlError(f"ONNX outputs {sorted(names)} differ from the TensorFlow signature's {sorted(expected)}")
    differences: dict[str, float] = {}
    for name, value in zip(names, session.run(names, inputs), strict=True):
        reference = expected[name].astype(np.float64)
        value = np.asarray(value, np.float64)
        pairs = {name: (value, reference)}
        if reference.ndim >= 2:
            axes = tuple(range(1, reference.ndim))
            pairs[f"{name} sums"] = (value.sum(axis=axes), reference.sum(axis=axes))
        for key, (got, want) in pairs.items():
            if got.shape != want.shape:
                raise CalomlError(f"ONNX output {key} has shape {got.shape}, TensorFlow's {want.shape}")
            scale = max(float(np.max(np.abs(want))) if want.size else 0.0, np.finfo(np.float32).tiny)
            difference = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
            differences[key] = difference
            if not difference <= RELATIVE_TOLERANCE:
                raise CalomlError(
                    f"ONNX Runtime and TensorFlow differ on {key} by {difference:.2e} (relative), more than"
                    f" {RELATIVE_TOLERANCE:g}"
                )
    return differences


def write_onnx(graph: OnnxGraph, directory: str | Path) -> dict[str, Any]:
    """Convert, verify and write ``graph`` as ``directory/model.onnx`` (atomically, only when verified).

    Returns what ``export.json`` records under ``onnx``: the file, opset, inputs, outputs, the measured differences
    and the metadata.
    """
    import onnxruntime
    import tf2onnx

    proto = convert_graph(graph)
    differences = verify_onnx(proto, graph)
    path = Path(directory) / ONNX_FILE
    payload = proto.SerializeToString()
    with atomic_file(path, "wb") as handle:
        handle.write(payload)
    return {
        "file": ONNX_FILE,
        "opset": OPSET,
        "inputs": [item.name for item in proto.graph.input],
        "outputs": [item.name for item in proto.graph.output],
        "max_relative_difference_to_tensorflow": differences,
        "metadata_props": {entry.key: entry.value for entry in proto.metadata_props},
        "tf2onnx_version": tf2onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }


def onnx_writer(graph_of: Callable[[], OnnxGraph]) -> Callable[[Path, Mapping[str, Any]], dict[str, Any]]:
    """The ``extra`` hook of :func:`caloml.export.serving.export_archive` that writes ``graph_of()`` as ONNX."""

    def write(directory: Path, info: Mapping[str, Any]) -> dict[str, Any]:
        del info
        return {"onnx": write_onnx(graph_of(), directory)}

    return write
