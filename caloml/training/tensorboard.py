"""TensorBoard logs of a run: per-step and per-epoch scalars, generated showers, observables and hyperparameters.

:class:`TensorBoardLogger` writes under ``RUN/logs`` in the layout of ``keras.callbacks.TensorBoard`` (runs
``train`` and ``validation``; tags ``batch_<metric>`` every ``trainer.tensorboard_update_freq`` steps and
``epoch_<metric>`` per epoch, the selection metric under ``validation``), plus:

- for generators (a task with ``tensorboard_samples(model, config, data) -> ShowerSamples``), each epoch an image
  ``showers`` (rows: showers; columns: the three projections of a generated shower, then of the reference shower of
  the same conditions; log color scale) and histograms ``generated/<observable>`` and ``reference/<observable>`` of
  the deposit over the primary energy, the total deposit, the depth of the energy barycentre and the number of hit
  cells;
- the run's configuration as hyperparameters (TensorBoard's hparams plugin, at the root of ``logs``).

Scalars, images and histograms are written as classic summary values (``simple_value``, ``image``, ``histo``), so
TensorBoard's own loaders (``EventAccumulator.Scalars``, ``Images``, ``Histograms``) read them. See
``docs/training.md`` (logs and TensorBoard).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api as hparams_api

#: Cells with more than this deposit count as hit (GeV).
HIT_THRESHOLD_GEV = 1e-4
#: Showers drawn in the per-epoch image.
IMAGE_SHOWERS = 4
#: Pixels per cell in the image.
IMAGE_ZOOM = 3
#: Color range of the image: decades below the brightest cell of the grid.
IMAGE_DECADES = 4.0
#: Bins of the observables' histograms.
HISTOGRAM_BINS = 30


@dataclass
class ShowerSamples:
    """Generated showers and the reference (real) showers of the same conditions, for TensorBoard.

    Attributes:
        generated: (N, X, Y, Z) cell deposits in GeV.
        reference: (N, X, Y, Z) cell deposits in GeV, event i of the same primary energy (and angle) as generated i.
        energy_gev: (N,) primary energies in GeV.
    """

    generated: np.ndarray
    reference: np.ndarray
    energy_gev: np.ndarray


SampleFunction = Callable[[keras.Model], ShowerSamples]


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes the run's TensorBoard logs (see the module docstring).

    ``update_freq``: steps between per-step scalars (0: none). ``samples``: returns the showers of the per-epoch
    image and histograms (None: none). ``hparams``: the run's configuration as flat ``{"section.key": value}``.
    """

    def __init__(
        self,
        log_dir: str | Path,
        *,
        update_freq: int,
        hparams: Mapping[str, Any] | None = None,
        samples: SampleFunction | None = None,
        run_name: str = "",
    ) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.update_freq = update_freq
        self.hparams = dict(hparams or {})
        self.samples = samples
        self.run_name = run_name
        self._writers: dict[str, Any] = {}
        self._epoch = 0
        self._steps = 0

    def _writer(self, run: str) -> Any:
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(str(self.log_dir / run) if run else str(self.log_dir))
        return self._writers[run]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._steps = int(self.params.get("steps") or 0) if self.params else 0
        if self.hparams:
            with self._writer("").as_default():
                hparams_api.hparams(self.hparams, trial_id=self.run_name or None)
            self._writer("").flush()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.update_freq <= 0:
            return
        step = self._epoch * self._steps + batch + 1
        if step % self.update_freq == 0:
            write_scalars(self._writer("train"), {f"batch_{k}": v for k, v in (logs or {}).items()}, step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        train = {f"epoch_{k}": v for k, v in logs.items() if not k.startswith("val_")}
        validation = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        write_scalars(self._writer("train"), train, epoch)
        if validation:
            write_scalars(self._writer("validation"), validation, epoch)
        if self.samples is not None:
            write_samples(self._writer("train"), self.samples(self.model), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def write_scalars(writer: Any, values: Mapping[str, Any], step: int) -> None:
    """Write numeric ``values`` as classic scalar summaries (``simple_value``) at ``step``."""
    summary = summary_pb2.Summary()
    for tag, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        summary.value.add(tag=tag, simple_value=number)
    _write(writer, summary, step)


def write_samples(writer: Any, samples: ShowerSamples, step: int) -> None:
    """Write the shower image and the observables' histograms of ``samples`` at ``step``."""
    summary = summary_pb2.Summary()
    n = min(IMAGE_SHOWERS, len(samples.generated))
    grid = shower_grid(samples.generated[:n], samples.reference[:n])
    png = tf.io.encode_png(grid).numpy()
    image = summary_pb2.Summary.Image(height=grid.shape[0], width=grid.shape[1], colorspace=3, encoded_image_string=png)
    summary.value.add(tag="showers", image=image)
    for kind, showers in (("generated", samples.generated), ("reference", samples.reference)):
        for name, values in shower_observables(showers, samples.energy_gev).items():
            summary.value.add(tag=f"{kind}/{name}", histo=histogram_proto(values))
    _write(writer, summary, step)


def _write(writer: Any, summary: summary_pb2.Summary, step: int) -> None:
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


def shower_observables(showers_gev: np.ndarray, energy_gev: np.ndarray) -> dict[str, np.ndarray]:
    """Key observables of (N, X, Y, Z) showers in GeV with (N,) primary energies in GeV, each (N,):

    ``deposit_over_primary`` (sampling fraction), ``total_deposit_gev``, ``barycentre_depth_cells`` (energy-weighted
    mean index along the last, longitudinal axis) and ``hit_cells`` (cells above :data:`HIT_THRESHOLD_GEV`).
    """
    showers = np.asarray(showers_gev, dtype=np.float64)
    total = showers.reshape(len(showers), -1).sum(axis=1)
    longitudinal = showers.sum(axis=tuple(range(1, showers.ndim - 1)))
    depth = np.arange(showers.shape[-1], dtype=np.float64)
    barycentre = (longitudinal * depth).sum(axis=1) / np.where(total > 0, total, 1.0)
    return {
        "deposit_over_primary": total / np.asarray(energy_gev, dtype=np.float64),
        "total_deposit_gev": total,
        "barycentre_depth_cells": barycentre,
        "hit_cells": (showers > HIT_THRESHOLD_GEV).reshape(len(showers), -1).sum(axis=1).astype(np.float64),
    }


def histogram_proto(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> summary_pb2.HistogramProto:
    """A classic TensorBoard histogram of the finite ``values`` (``bucket_limit``: right bin edges)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return summary_pb2.HistogramProto()
    counts, edges = np.histogram(finite, bins=bins if finite.min() < finite.max() else 1)
    return summary_pb2.HistogramProto(
        min=float(finite.min()),
        max=float(finite.max()),
        num=float(finite.size),
        sum=float(finite.sum()),
        sum_squares=float(np.square(finite).sum()),
        bucket_limit=[float(e) for e in edges[1:]],
        bucket=[float(c) for c in counts],
    )


def shower_grid(generated_gev: np.ndarray, reference_gev: np.ndarray) -> np.ndarray:
    """An RGB image (H, W, 3) uint8: row i shows the X-Y, X-Z and Y-Z projections (sums) of generated shower i, then
    of reference shower i; color: log10 of the deposit over :data:`IMAGE_DECADES` decades below the grid's maximum."""
    rows = []
    for generated, reference in zip(generated_gev, reference_gev, strict=True):
        rows.append([*_projections(generated), *_projections(reference)])
    tile_height = max(tile.shape[0] for row in rows for tile in row)
    widths = [max(row[c].shape[1] for row in rows) for c in range(len(rows[0]))]
    lefts = np.concatenate([[0], np.cumsum(np.asarray(widths) + 1)])
    peak = max(float(tile.max()) for row in rows for tile in row)
    floor = peak * 10.0 ** (-IMAGE_DECADES) if peak > 0 else 1.0
    canvas = np.full((len(rows) * (tile_height + 1) - 1, int(lefts[-1]) - 1), np.nan, dtype=np.float64)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            level = (np.log10(np.maximum(tile, floor)) - math.log10(floor)) / IMAGE_DECADES
            top, left = r * (tile_height + 1), int(lefts[c])
            canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = level
    rgb = colormaps["viridis"](np.nan_to_num(canvas, nan=0.0))[..., :3]
    rgb[np.isnan(canvas)] = 1.0  # white separators
    rgb = np.repeat(np.repeat(rgb, IMAGE_ZOOM, axis=0), IMAGE_ZOOM, axis=1)
    return (rgb * 255).round().astype(np.uint8)


def _projections(shower: np.ndarray) -> list[np.ndarray]:
    shower = np.asarray(shower, dtype=np.float64)
    return [shower.sum(axis=2), shower.sum(axis=1), shower.sum(axis=0)]


def flat_hparams(config_dict: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """The configuration as hparams: ``{"section.key": value}`` with bool, int, float or str values (lists and
    mappings as JSON text; empty values left out)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config_dict.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and prefix == "":
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            if value != "":
                flat[name] = value
        elif value is not None:
            flat[name] = json.dumps(value)
    return flat
