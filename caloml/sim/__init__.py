"""The built-in parametrized shower simulator (GFlash): showers in the real calorimeter file layouts.

Electrons, photons, neutral and charged pions into the CLIC ECAL + HCAL windows (``lcd-gen``, ``lcd-rec``), the
CaloChallenge cylinders (``calochallenge-2``, ``calochallenge-3``) and a CsI(Tl) crystal array (``crystal-5x5``)::

    from caloml.sim import SimulationRequest, simulate_events, simulate_file

    request = SimulationRequest("lcd-gen", "electron", 256, seed=1, energy_range_gev=(100, 100))
    events = simulate_events(request)          # dict of arrays: "ECAL" (256, 51, 51, 25) GeV, "energy" GeV, ...
    simulate_file(request, "ele100.h5")        # the same showers in the LCD file layout (cells as 50 x GeV)

Public names: :class:`SimulationRequest` (what to simulate; ranges left None take the layout's defaults),
:func:`simulate_events` (in memory), :func:`simulate_file` (an HDF5 file, atomically, with the resolved request
stored), :func:`iter_chunks` (seeded chunks, in order, parallel over processes), :data:`LAYOUTS` (the
``geometry`` names), :data:`PARTICLES`, :func:`write_validation_report` (the physics validation, loaded on first
use: it draws plots). Every draw is seeded by the request's seed. ``caloml.data.dataset_from_events`` turns the
events into a ``tf.data`` dataset; ``python -m caloml.data simulate`` is the command line. Importing this package
does not import TensorFlow. See ``docs/simulator.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from caloml.sim.layouts import LAYOUTS, SimulationLayout
from caloml.sim.particles import PARTICLES
from caloml.sim.run import (
    LCD_THETA_LIMITS_RAD,
    MIN_ENERGY_GEV,
    SimulationRequest,
    default_workers,
    iter_chunks,
    simulate_events,
    simulate_file,
)

if TYPE_CHECKING:
    from caloml.sim.validation_report import write_validation_report

__all__ = [
    "LAYOUTS",
    "LCD_THETA_LIMITS_RAD",
    "MIN_ENERGY_GEV",
    "PARTICLES",
    "SimulationLayout",
    "SimulationRequest",
    "default_workers",
    "iter_chunks",
    "simulate_events",
    "simulate_file",
    "write_validation_report",
]

_LAZY = {"write_validation_report": "caloml.sim.validation_report"}


def __getattr__(name: str) -> Any:
    """Load the validation report (matplotlib) on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'caloml.sim' has no attribute {name!r}")
