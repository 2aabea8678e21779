"""TF Serving's REST JSON, converted to and from tensors the way its server does (its server cannot be installed here).

Row format: ``{"signature_name": S, "instances": [{input: value, ...}, ...]}``; every instance holds every input,
and each input becomes the stack of its per-instance values (so every input has the batch dimension). The answer
is ``{"predictions": [...]}``: one object per instance (one value per instance for a single output), which needs
every output to share the batch dimension. Columnar format: ``{"signature_name": S, "inputs": {input: value}}``,
each value a whole tensor; the answer is ``{"outputs": {output: value}}`` (``{"outputs": value}`` for a single
output). JSON numbers take the signature's dtype.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import tensorflow as tf


def row_request(signature_name: str, inputs: dict[str, Any]) -> str:
    """The row-format request text for per-example ``inputs`` (name -> (B, ...) values)."""
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    n = {len(value) for value in arrays.values()}
    assert len(n) == 1, "row format needs one batch size"
    instances = [{name: value[i].tolist() for name, value in arrays.items()} for i in range(n.pop())]
    return json.dumps({"signature_name": signature_name, "instances": instances})


def columnar_request(signature_name: str, inputs: dict[str, Any]) -> str:
    """The columnar-format request text."""
    return json.dumps(
        {"signature_name": signature_name, "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}
    )


def _input_specs(signature: Any) -> dict[str, tf.TensorSpec]:
    return dict(signature.structured_input_signature[1])


def tensors_of_request(signature: Any, text: str) -> tuple[dict[str, tf.Tensor], bool]:
    """The signature's input tensors of a request text, and whether it was row format. AssertionError (TF Serving:
    HTTP 400) for a missing or unknown input, ragged instances or a shape the signature does not accept."""
    request = json.loads(text)
    specs = _input_specs(signature)
    row = "instances" in request
    if row:
        instances = request["instances"]
        if len(specs) == 1 and not isinstance(instances[0], dict):
            instances = [{next(iter(specs)): value} for value in instances]
        for instance in instances:
            assert set(instance) == set(specs), f"instance keys {sorted(instance)} != inputs {sorted(specs)}"
        columns = {name: [instance[name] for instance in instances] for name in specs}
    else:
        columns = request["inputs"]
        assert set(columns) == set(specs), f"inputs {sorted(columns)} != {sorted(specs)}"
    tensors = {}
    for name, spec in specs.items():
        value = np.asarray(columns[name], dtype=spec.dtype.as_numpy_dtype)
        assert value.dtype != object, f"{name}: ragged"
        assert spec.shape.is_compatible_with(value.shape), f"{name}: shape {value.shape} not {spec.shape}"
        tensors[name] = tf.constant(value, dtype=spec.dtype)
    return tensors, row


def response_of(outputs: dict[str, Any], row: bool) -> str:
    """The response text TF Serving writes for ``outputs``."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    if not row:
        if len(arrays) == 1:  # a single output loses its name
            return json.dumps({"outputs": next(iter(arrays.values())).tolist()})
        return json.dumps({"outputs": {name: value.tolist() for name, value in arrays.items()}})
    sizes = {value.shape[0] if value.ndim else None for value in arrays.values()}
    assert len(sizes) == 1, "row format needs every output to share the batch dimension"
    assert None not in sizes, "row format needs outputs with a batch dimension"
    n = sizes.pop()
    if len(arrays) == 1:
        (value,) = arrays.values()
        return json.dumps({"predictions": [value[i].tolist() for i in range(n)]})
    return json.dumps({"predictions": [{k: v[i].tolist() for k, v in arrays.items()} for i in range(n)]})


def serve(loaded: Any, text: str) -> dict[str, Any]:
    """Answer a request text with a loaded SavedModel as TF Serving would: the parsed JSON response."""
    name = json.loads(text).get("signature_name", "serving_default")
    signature = loaded.signatures[name]
    tensors, row = tensors_of_request(signature, text)
    return json.loads(response_of({k: v.numpy() for k, v in signature(**tensors).items()}, row))


def columns_of_outputs(outputs: Any, names: list[str]) -> dict[str, np.ndarray]:
    """The columnar answer's ``outputs`` as arrays per output (``names``: the signature's outputs)."""
    if len(names) == 1:
        return {names[0]: np.asarray(outputs)}
    assert sorted(outputs) == sorted(names)
    return {key: np.asarray(outputs[key]) for key in names}


def columns_of_rows(predictions: list[Any], names: list[str]) -> dict[str, np.ndarray]:
    """The row format's predictions as arrays per output (``names``: the outputs; one output has bare values)."""
    if len(names) == 1:
        return {names[0]: np.asarray(predictions)}
    assert sorted(predictions[0]) == sorted(names)
    return {key: np.asarray([p[key] for p in predictions]) for key in names}
