"""The data of the reconstruction tasks (the Triforce networks and the baselines) on the command line and on disk.

The shared data flags (``--data``, ``--events``, ``--energy-range``, ``--resample``), the default data (one simulated,
cached TFRecord directory per particle type of the run, the same for the networks and the baselines) and the run
directory suffix of a resampled ECAL. See ``docs/reconstruction.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caloml.data.reconstruction_split import (
    ReconstructionData,
    check_default_data_size,
    default_data_request,
    task_of_particle,
)
from caloml.data.resampling import RESAMPLE_CHOICES
from caloml.tasks.default_data import cached_simulation

__all__ = ["DEFAULT_DATA_ROLE", "add_data_arguments", "data_flags", "default_data_sources", "resample_suffix"]

#: Role of the cached default data (one cache for the networks and the baselines).
DEFAULT_DATA_ROLE = "triforce"


def add_data_arguments(parser: argparse._ArgumentGroup, *, resample_help: str) -> None:
    """Add ``--data``, ``--events``, ``--energy-range`` (GeV) and ``--resample`` (described by ``resample_help``)."""
    parser.add_argument("--data", nargs="+", metavar="PATH", help="LCD HDF5 files or TFRecord dirs (default: "
                        "simulate lcd-rec data and cache it under tf_records/)")  # fmt: skip
    parser.add_argument("--events", type=int, help="showers per particle type of the default data")
    parser.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
    parser.add_argument("--resample", choices=RESAMPLE_CHOICES, help=resample_help)


def data_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration overrides of :func:`add_data_arguments`' flags."""
    return {
        "data.files": args.data,
        "data.events_per_particle": args.events,
        "data.energy_range_gev": args.energy_range,
        "data.resample": args.resample,
    }


def resample_suffix(data: ReconstructionData) -> str:
    """``""``, or ``-atlas`` / ``-cms`` for a run on a resampled ECAL (appended to the default run directory)."""
    return "" if data.resample == "none" else f"-{data.resample}"


def default_data_sources(
    particles: Sequence[str], data: ReconstructionData, *, progress: bool, create: bool = True
) -> tuple[list[Path], list[int]]:
    """The default data of ``particles`` (simulated once and cached under ``tf_records/``) and their source numbers
    ``k``, each particle's position in its task (the split seed is ``1000 split_seed + k``), so that a baseline of
    one particle splits its file as the network run does. Refuses (one line) more than
    ``data.max_simulated_showers`` showers in all; ``create=False`` refuses to simulate (non-chief workers)."""
    check_default_data_size(particles, data)
    paths = [
        cached_simulation(default_data_request(particle, data), DEFAULT_DATA_ROLE, progress=progress, create=create)
        for particle in particles
    ]
    return paths, [task_of_particle(particle).particles.index(particle) for particle in particles]
