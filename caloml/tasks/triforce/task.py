"""The Triforce reconstruction training task: ``python -m caloml.train triforce`` on the shared trainer.

Binds :class:`~caloml.models.triforce_nets.TriforceDNN`, :class:`~caloml.models.triforce_nets.TriforceCNN` or
:class:`~caloml.models.triforce_nets.TriforceGoogLeNet` (classification and energy regression at once, "Calorimetry
with deep learning: particle simulation and reconstruction for collider physics", Belayneh et al., arXiv:1912.06794)
to the trainer (config, checkpoints, resume, selection on the validation misclassification rate, ``--init-from``);
``--export`` goes through :func:`caloml.export.triforce.export_trained`. See ``docs/reconstruction.md``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from caloml.atomic_files import atomic_write_json
from caloml.data.reconstruction_split import (
    SPLIT_FILE,
    SPLITS,
    filter_counts_line,
)
from caloml.data.split_record import write_split_record
from caloml.errors import CalomlError
from caloml.json_values import json_plain
from caloml.models.triforce_nets import TriforceCNN, TriforceDNN, TriforceGoogLeNet
from caloml.tasks.reconstruction_data import add_data_arguments, data_flags, default_data_sources, resample_suffix
from caloml.tasks.triforce.config import (
    ARCHS,
    PRESETS,
    TriforceConfig,
    TriforceModelSection,
    check_config,
    dropout_of,
    learning_rate_of,
    micro_batch_size_of,
)
from caloml.tasks.triforce.data import (
    TriforceInputs,
    locate_and_split,
    split_dataset,
    split_record_of,
    training_dataset,
)
from caloml.training.task import SelectionMetric

__all__ = ["ARCH_CLASSES", "SUMMARY_FILE", "TASK", "TriforceTask", "build_network", "validation_scores"]

#: Counts per split and class, and the fitted energy calibration, in the run directory.
SUMMARY_FILE = "data_summary.json"
#: The network class of each arch.
ARCH_CLASSES: dict[str, type[keras.Model]] = {"dnn": TriforceDNN, "cnn": TriforceCNN, "googlenet": TriforceGoogLeNet}
#: Validation events per batch, at most.
_VALIDATION_BATCH = 256


def build_network(model: TriforceModelSection, *, energy_coefficients: Sequence[float], seed: int) -> Any:
    """The network of the model section (not compiled)."""
    common: dict[str, Any] = {
        "n_classes": 2,
        "energy_loss_weight": float(model.energy_loss_weight),
        "initial_energy_coefficients": tuple(float(v) for v in energy_coefficients),
        "micro_batch_size": micro_batch_size_of(model),
        "seed": seed,
    }
    try:
        if model.arch == "dnn":
            return TriforceDNN(model.n_hidden_layers, model.hidden_units, dropout_of(model), **common)
        if model.arch == "cnn":
            kernel = int(model.ecal_kernel)
            return TriforceCNN(
                model.ecal_filters,
                (kernel, kernel, kernel),
                model.hcal_filters,
                (2, 2, 6),
                model.n_hidden_layers,
                model.hidden_units,
                dropout_of(model),
                **common,
            )
        return TriforceGoogLeNet(model.dense_units, model.width_multiplier, **common)
    except ValueError as error:
        raise CalomlError(f"model: {error}") from None


def _outputs_function(model: Any) -> Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, tf.Tensor]]:
    """A compiled ``batch -> (predicted class, energy GeV)`` of ``model`` (traced once per batch-shape kind)."""

    @tf.function(reduce_retracing=True)
    def outputs(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        out = model(model.select_inputs(batch), training=False)
        return tf.argmax(out["class_probability"], axis=-1, output_type=tf.int32), out["energy"]

    return outputs


def validation_scores(
    model: Any,
    dataset: tf.data.Dataset,
    outputs: Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, tf.Tensor]] | None = None,
) -> dict[str, float]:
    """Classification accuracy, and the relative energy bias and resolution over ``dataset``.

    The relative error is ``(E_true - E_pred) / E_true``, as in the evaluation
    (:func:`caloml.observables.reconstruction_metrics.binned_response`): ``energy_bias`` is its mean (positive: the
    energy is underestimated) and ``energy_resolution`` its standard deviation (``ddof=1``).

    ``outputs``: a function made by :func:`_outputs_function` for ``model``, reused across calls to avoid retracing.
    """
    outputs = outputs or _outputs_function(model)
    correct, relative = [], []
    for batch in dataset:
        predicted, energy = outputs(batch)
        correct.append(predicted.numpy() == batch["class_label"].numpy())
        true = batch["energy"].numpy().astype(np.float64)
        relative.append((true - energy.numpy().astype(np.float64)) / true)
    accuracy = float(np.mean(np.concatenate(correct)))
    errors = np.concatenate(relative)
    resolution = float(np.std(errors, ddof=1)) if errors.size > 1 else math.nan
    return {"accuracy": accuracy, "energy_resolution": resolution, "energy_bias": float(np.mean(errors))}


# ---------------------------------------------------------------------------------------------------------- task
class TriforceTask:
    """Triforce end-to-end reconstruction: classification and energy regression at once."""

    name = "triforce"
    config_class = TriforceConfig
    presets = PRESETS

    # -- command line
    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:  # type: ignore[override]
        parser.add_argument("--arch", choices=ARCHS, help="network (default: dnn)")
        parser.add_argument("--task", choices=("e-vs-pi", "gamma-vs-pi0"), help="classification task")
        parser.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the paper's)")
        add_data_arguments(
            parser,
            resample_help="train on the ECAL resampled to an ATLAS- or CMS-like granularity (default: none, CLIC's)",
        )

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "model.arch": args.arch,
            "model.task": args.task,
            "model.learning_rate": args.learning_rate,
            **data_flags(args),
        }

    def default_run_dir(self, config: TriforceConfig) -> Path:
        """``runs/triforce-<arch>-<task>``, with ``-<resample>`` appended for resampled data."""
        return Path("runs") / f"triforce-{config.model.arch}-{config.model.task}{resample_suffix(config.data)}"

    # -- data
    def prepare_data(self, config: TriforceConfig, *, chief: bool) -> TriforceInputs:
        task = check_config(config)
        data = config.data
        paths: list[str | Path]
        if data.files:
            paths = list(data.files)
        else:
            simulated, _numbers = default_data_sources(
                task.particles, data, progress=config.runtime.progress, create=chief
            )
            paths = list(simulated)
        inputs = locate_and_split(
            paths, task, fractions=data.split_fractions, seed=data.split_seed, resample=data.resample
        )
        print(filter_counts_line(task, inputs.splits))
        counts = ", ".join(f"{split} " + "/".join(str(n) for n in inputs.counts[split]) for split in SPLITS)
        print(f"triforce {task.name} ({'/'.join(task.particles)}): {counts} events after the split and filters")
        a, b, c = inputs.energy_coefficients
        print(f"energy calibration fitted on the training split: E = {a:.4g} ECAL_E + {b:.4g} HCAL_E + {c:.4g} GeV")
        if data.resample != "none":
            print(f"the ECAL is resampled to {data.resample.upper()}-like granularity before the crop (HCAL as is)")
        if config.runtime.run_dir:
            inputs.run_dir = Path(config.runtime.run_dir)
            if chief:
                write_split_record(inputs.run_dir / SPLIT_FILE, split_record_of(inputs))
                atomic_write_json(inputs.run_dir / SUMMARY_FILE, json_plain(_summary(inputs)))
        return inputs

    def make_dataset(
        self, config: TriforceConfig, data: TriforceInputs, input_context: tf.distribute.InputContext
    ) -> tf.data.Dataset:
        return training_dataset(
            data,
            global_batch_size=config.trainer.global_batch_size,
            seed=config.runtime.seed,
            shuffle_buffer=config.data.shuffle_buffer,
            input_context=input_context,
        )

    def input_records(self, config: TriforceConfig, data: TriforceInputs) -> list[Path]:
        """The TFRecord directories among the inputs ``fit`` reads (verified to name a shard damaged during
        training; the LCD HDF5 files are read by a generator that names its own file)."""
        return [source.path for source in data.sources if source.format == "tfrecords"]

    def steps_per_epoch(self, config: TriforceConfig, data: TriforceInputs) -> int:
        return max(1, data.n_events("train") // config.trainer.global_batch_size)

    # -- model
    def build_model(self, config: TriforceConfig, data: TriforceInputs) -> keras.Model:
        model = build_network(config.model, energy_coefficients=data.energy_coefficients, seed=config.runtime.seed)
        model.compile(keras.optimizers.Adam(learning_rate_of(config.model)))
        return model

    def optimizers(self, model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
        return {"optimizer": model.optimizer}

    def check_init_source(self, config: TriforceConfig, source: keras.Model) -> None:
        expected = ARCH_CLASSES[config.model.arch]
        if not isinstance(source, expected):
            raise CalomlError(f"--init-from: a {type(source).__name__}, this run trains a {expected.__name__}")

    # -- selection
    def selection_metric(self, config: TriforceConfig, data: TriforceInputs) -> SelectionMetric:
        dataset = split_dataset(
            data, "validation", batch_size=max(1, min(_VALIDATION_BATCH, config.trainer.global_batch_size))
        )

        compiled: dict[int, Callable[[dict[str, tf.Tensor]], tuple[tf.Tensor, tf.Tensor]]] = {}

        def compute(model: keras.Model) -> float:
            if id(model) not in compiled:
                compiled.clear()
                compiled[id(model)] = _outputs_function(model)
            scores = validation_scores(model, dataset, compiled[id(model)])
            print(
                f"validation: accuracy {scores['accuracy']:.4f}, relative energy resolution "
                f"{scores['energy_resolution']:.4f}, bias {scores['energy_bias']:+.4f}"
            )
            return 1.0 - scores["accuracy"]

        return SelectionMetric(
            "misclassification",
            compute,
            "1 - classification accuracy on the validation split (the energy resolution is printed with it)",
        )


def _summary(inputs: TriforceInputs) -> dict[str, Any]:
    a, b, c = inputs.energy_coefficients
    return {
        "task": inputs.task.name,
        "classes": list(inputs.task.particles),
        "pdgID": list(inputs.task.classes),
        "events_per_class": {split: inputs.counts[split] for split in SPLITS},
        "energy_calibration": {
            "formula": "E_GeV = a * ECAL_E + b * HCAL_E + c (least squares on the training split)",
            "a": a,
            "b": b,
            "c": c,
        },
        "has_hcal": inputs.has_hcal,
        "resample": inputs.resample,
        "sources": [{"path": str(s.path), "format": s.format, "n_events": s.n_events} for s in inputs.sources],
    }


TASK = TriforceTask()
