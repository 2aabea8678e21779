"""Filtered simulation: only the events that pass an HCAL / ECAL energy cut get cells, features and a file entry.

Triforce's e-vs-pi task keeps the charged pions with HCAL / ECAL < 0.1 (window sums), under 1% of the simulator's
pions. :func:`simulate_filtered_batch` draws every event's spots as :func:`caloml.sim.engine.simulate_batch` does
(the same generator calls in the same order), then a pre-selection on the spots, before any cell is filled, drops
the events that cannot pass; only the candidates are binned into cells, get their keys (the expert features...)
and meet the exact cut. See ``docs/simulator.md``.
"""

from __future__ import annotations

import numpy as np

from caloml.data.transforms import MaxHcalEcalRatio
from caloml.errors import CalomlError
from caloml.sim import readout
from caloml.sim.engine import assemble_lcd_event_keys, lcd_windows, simulate_spots
from caloml.sim.layouts import SimulationLayout
from caloml.sim.particles import Primaries
from caloml.sim.spots import Spots

__all__ = ["PRESELECTION_MARGIN", "simulate_filtered_batch"]

#: Relative margin of the pre-selection over the float32 rounding of the stored sums (proof: see
#: :func:`simulate_filtered_batch`); (1 + 2^-20) / (1 - 2^-20).
PRESELECTION_MARGIN = (1.0 + 2.0**-20) / (1.0 - 2.0**-20)


def simulate_filtered_batch(
    rng: np.random.Generator,
    layout: SimulationLayout,
    particle: str,
    primaries: Primaries,
    max_hcal_over_ecal: float,
    *,
    preselect: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The events of ``primaries`` with ``HCAL_E < max_hcal_over_ecal * ECAL_E`` (LCD layouts), and their indices.

    Returns the layout's keys (GeV) of the passing events, identical to those events of
    :func:`caloml.sim.engine.simulate_batch` on the same generator state, and their indices (K,) in the batch.

    **Why the passing events are exactly those of the unfiltered simulation.** Every random number is drawn before
    the pre-selection and for the whole batch (the spots, then the grids' offsets), so each event's spots and
    windows are the same with or without it. The pre-selection sums each event's spots inside its ECAL and HCAL
    windows in float64 (:func:`caloml.sim.readout.window_sums`: ``E_s``, ``H_s``) and keeps the candidates with
    ``H_s < r * E_s * m``, ``m`` = :data:`PRESELECTION_MARGIN`. It is a *necessary* condition of the exact cut
    ``H_c < r * E_c`` on the stored sums ``E_c``, ``H_c`` (float32 sums of the float32 cells): all deposits are
    >= 0, so each float32 rounding (a cell, the stored sum, the ratio ``r``, the product ``r * E_c``) changes a
    value by a relative 2^-24 at most and the float64 sums differ by far less; with ``d`` = 2^-20 covering them all,
    ``E_c <= E_s (1 + d)`` and ``H_c >= H_s (1 - d)``, so ``H_c < r E_c`` implies ``H_s (1 - d) < r E_s (1 + d)``,
    that is ``H_s < r E_s m``. An event rejected by the pre-selection would therefore have failed the cut. The
    candidates' cells are binned from the same spots in the same order (each cell is the same float64 sum), and
    the exact cut (:class:`caloml.data.transforms.MaxHcalEcalRatio`, the task's filter) is applied to their keys.
    With ``preselect=False`` every event is binned: the reference of the tests and of the benchmark.
    """
    if layout.file_layout != "lcd":
        raise CalomlError(f"filtered simulation needs an LCD layout (ECAL and HCAL windows), not {layout.name}")
    spots, truth = simulate_spots(rng, layout, particle, primaries)
    detector = layout.build_detector()
    n = primaries.energy_gev.size
    windows, bary = lcd_windows(rng, spots, detector, primaries)
    if preselect:
        sums = readout.window_sums(spots, detector, windows, n)
        candidates = np.flatnonzero(sums[:, 1] < max_hcal_over_ecal * sums[:, 0] * PRESELECTION_MARGIN)
    else:
        candidates = np.arange(n)
    chosen = np.zeros(n, bool)
    chosen[candidates] = True
    new_index = np.cumsum(chosen) - 1
    kept = chosen[spots.event]
    subset = Spots(
        new_index[spots.event[kept]], spots.layer[kept], spots.x_mm[kept], spots.y_mm[kept], spots.visible_gev[kept]
    )
    chosen_windows = [
        readout.Window(
            w.section,
            w.centre_x_mm[candidates],
            w.centre_y_mm[candidates],
            w.offset_x_mm[candidates],
            w.offset_y_mm[candidates],
        )
        for w in windows
    ]
    ecal, hcal = readout.bin_windows(subset, detector, chosen_windows, candidates.size)
    events = assemble_lcd_event_keys(
        layout,
        particle,
        Primaries(primaries.energy_gev[candidates], primaries.theta_rad[candidates], primaries.phi_rad[candidates]),
        ecal,
        hcal,
        readout.Barycentre(bary.x_mm[candidates], bary.y_mm[candidates], bary.depth_mm[candidates]),
        {key: value[candidates] for key, value in truth.items()},
    )
    passing = np.asarray(MaxHcalEcalRatio(max_hcal_over_ecal).keep(events), dtype=bool)
    return {key: value[passing] for key, value in events.items()}, candidates[passing]
