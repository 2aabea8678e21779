"""Generating CaloChallenge dataset-2 showers with a trained Calorimeter Pyramid.

``python -m caloml.generate pyramid --model PATH -n N [--energy-range A B | --energies-like REF.h5] --seed S
--out FILE.h5`` loads a :class:`~caloml.models.pyramid.CalorimeterPyramid` (a run directory or a ``.keras`` file),
draws the incident energies (log-uniform in the range, default the trained one, or a reference file's energies in a
seeded order, as :mod:`caloml.generate.pointflow` does), samples the showers batch by batch (batch ``k`` with the
stateless seed ``(S, k)``) and writes, atomically, ``incident_energies`` (N, 1) and ``showers`` (N, 6480) in MeV.

Root attributes: ``caloml_config`` (the request, the model's configuration and path) and the hit bookkeeping that
:mod:`caloml.evaluate.hit_patterns` reads, ``caloml_hits_requested`` (the hits the hit stages asked for) and
``caloml_hits_placed`` (the non-empty cells written): equal, since top-k selection cannot hit a cell twice.
Energies outside the trained range or not finite are a one-line error. See ``docs/pyramid.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import caloml
from caloml.cli_args import positive_int
from caloml.data.calochallenge import CaloChallengeWriter
from caloml.data.hdf5 import provenance_attrs
from caloml.errors import CalomlError
from caloml.evaluate.hit_patterns import HITS_PLACED_ATTR, HITS_REQUESTED_ATTR
from caloml.generate.pointflow import (
    PointFlowGenerationRequest,
    add_generation_arguments,
    check_generation_arguments,
    draw_incident_energies,
    reference_incident_energies,
)
from caloml.generate.trained_model import load_trained_model
from caloml.progress import progress_bar

# TensorFlow and caloml.models (which imports TensorFlow) stay imported inside the functions: ``python -m
# caloml.generate`` imports this module to build its parser, and a wrong path must fail before TensorFlow is loaded.

__all__ = [
    "add_pyramid_parser",
    "generate_pyramid_file",
    "iter_pyramid_batches",
    "run_pyramid",
]


class _CountingWriter(CaloChallengeWriter):
    """The CaloChallenge writer with root attributes set after the events (before the file is installed)."""

    def set_attribute(self, key: str, value: Any) -> None:
        assert self._file is not None, "writer closed"
        self._file.attrs[key] = value


def iter_pyramid_batches(
    model: Any, energies_gev: np.ndarray, *, seed: int, batch_size: int = 100
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(incident energies (b,) GeV, showers (b, 45, 16, 9) GeV, requested hits (b,)) batch by batch; batch ``k``
    draws with the stateless seed ``(seed, k)``. CalomlError for energies outside the trained range."""
    import tensorflow as tf

    model.check_incident_energy(energies_gev)
    sample = tf.function(model.sample, reduce_retracing=True)
    for index, start in enumerate(range(0, len(energies_gev), batch_size)):
        chunk = np.asarray(energies_gev[start : start + batch_size], np.float32)
        out = sample(tf.constant(chunk), tf.constant([int(seed), index], tf.int64))
        showers = out["showers"].numpy()
        if not np.all(np.isfinite(showers)) or np.any(showers < 0):
            raise CalomlError(f"the model produced invalid showers in batch {index}; the model file is broken")
        yield chunk, showers, out["requested_hits"].numpy()


def generate_pyramid_file(
    model: Any,
    out: str | Path,
    *,
    n_events: int,
    seed: int = 1,
    energy_range_gev: tuple[float, float] | None = None,
    energies_like: str | None = None,
    batch_size: int = 100,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate ``n_events`` showers into ``out`` (CaloChallenge layout, MeV), atomically; returns the configuration
    with ``hits_requested`` and ``hits_placed``. ``progress``: a progress display (:mod:`caloml.progress`)."""
    if n_events < 1 or batch_size < 1:
        raise CalomlError(f"the number of showers and the batch size must be positive, got {n_events}, {batch_size}")
    if energies_like is not None and energy_range_gev is not None:
        raise CalomlError("give either an energy range or --energies-like, not both")
    trained = tuple(float(v) for v in model.statistics.incident_energy_range_gev)
    low, high = energy_range_gev or trained
    if energies_like is None:
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise CalomlError(f"energy range ({low:g}, {high:g}) GeV must be finite with 0 < low <= high")
        model.check_incident_energy(np.array([low, high]), "the energy range's ends")
    request = PointFlowGenerationRequest(n_events, int(seed), None if energies_like else (low, high), energies_like)
    reference = reference_incident_energies(energies_like) if energies_like else None
    energies = draw_incident_energies(request, reference)
    model.check_incident_energy(energies, f"{energies_like}: its incident energies" if energies_like else "energy")
    config: dict[str, Any] = {
        "generator": "pyramid",
        "geometry": "calochallenge-2",
        "n_events": int(n_events),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "energies": "reference file (seeded order)" if energies_like else "log-uniform in energy_range_gev",
        "energies_like": energies_like,
        "energy_range_gev": None if energies_like else [low, high],
        "trained_energy_range_gev": list(trained),
        "model_config": model.get_config(),
        "caloml_version": caloml.__version__,
        **(provenance or {}),
    }
    requested, placed = 0, 0
    writer = _CountingWriter(out, overwrite=overwrite, attrs=provenance_attrs(config, caloml_generator="pyramid"))
    bar = progress_bar(len(energies), unit="shower", desc="generate pyramid", enabled=progress)
    with writer as w, bar:
        for chunk, showers, hits in iter_pyramid_batches(model, energies, seed=int(seed), batch_size=batch_size):
            w.append({"incident_energies": chunk[:, None], "showers": showers})
            bar.update(len(chunk))
            requested += int(hits.sum())
            placed += int(np.count_nonzero(showers))
        writer.set_attribute(HITS_REQUESTED_ATTR, requested)
        writer.set_attribute(HITS_PLACED_ATTR, placed)
    return {**config, "out": str(out), "hits_requested": requested, "hits_placed": placed}


# -- command line -------------------------------------------------------------------------------------------------
def add_pyramid_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``pyramid``: showers of a trained Calorimeter Pyramid (CaloChallenge dataset-2 layout, MeV)."""
    parser = subparsers.add_parser(
        "pyramid",
        help="generate showers with a trained Calorimeter Pyramid (CaloChallenge dataset 2, MeV)",
        description=(
            "Generate showers with a trained Calorimeter Pyramid (a run directory or a .keras file) into an HDF5"
            " file of the CaloChallenge dataset-2 layout (incident_energies (N,1) and showers (N,6480) in MeV)."
            " Incident energies are log-uniform in --energy-range (default: the trained range) or those of a"
            " reference file (--energies-like). The file appears atomically."
        ),
    )
    add_generation_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=100, help="showers per batch (default 100)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def run_pyramid(args: argparse.Namespace) -> int:
    """Load the model, check the request, generate into ``args.out`` and print one summary line."""
    out = check_generation_arguments(args)
    from caloml.models.pyramid import CalorimeterPyramid

    trained = load_trained_model(args.model, CalorimeterPyramid, allow_export=True)
    start = time.perf_counter()
    config = generate_pyramid_file(
        trained.model,
        out,
        n_events=args.events,
        seed=args.seed,
        energy_range_gev=tuple(args.energy_range) if args.energy_range is not None else None,
        energies_like=args.energies_like,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        provenance=trained.provenance(),
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.events} showers (pyramid, calochallenge-2, seed {args.seed}) to {out} in {seconds:.1f} s"
        f" ({args.events / seconds:.2f} showers/s); hits requested {config['hits_requested']}, placed"
        f" {config['hits_placed']}; {json.dumps(config['energies'])}"
    )
    return 0
