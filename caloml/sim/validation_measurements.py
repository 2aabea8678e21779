"""The validation report's own measurements: the CaloChallenge dataset-2 check, and the plot data that the
``measure_*`` functions of :mod:`caloml.sim.validation` do not return (mean profiles, cell spectrum, sparsity).

Plot data are computed from the same showers as the measurement they illustrate (same seeds and sizes). Energies
in GeV, depths in radiation lengths (X0). See ``docs/simulator.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from caloml.geometry import CALOCHALLENGE_2
from caloml.observables.cylinder import apply_threshold, energy_per_layer, etot_over_einc
from caloml.observables.grid import cell_spectrum, sparsity_curve
from caloml.sim import validation
from caloml.sim.layouts import LAYOUTS
from caloml.sim.run import SimulationRequest, simulate_events

__all__ = ["cell_statistics", "longitudinal_profiles", "measure_calochallenge"]

#: Energy ranges (GeV) of the CaloChallenge profiles.
CALOCHALLENGE_ENERGY_RANGES_GEV = ((1.0, 10.0), (10.0, 100.0), (100.0, 1000.0))
#: E_tot/E_inc histogram of the CaloChallenge check: the community's 0.5-1.5, bins of 0.02.
CALOCHALLENGE_RATIO_EDGES = np.linspace(0.5, 1.5, 51)
#: Thresholds of the sparsity curve (GeV) and edges of the cell spectrum (GeV).
SPARSITY_THRESHOLDS_GEV = np.logspace(-13, 0, 53)
SPECTRUM_EDGES_GEV = np.logspace(-14, 1, 76)


def measure_calochallenge(n: int = 2000, seed: int = 71) -> dict[str, Any]:
    """CaloChallenge dataset-2 electrons, log-uniform in 1 GeV - 1 TeV, after the 15.15 keV readout threshold.

    Returns plain figures: the E_tot/E_inc mode (centre of the fullest bin of 0.02 on 0.5-1.5), mean, median,
    standard deviation and share inside 0.5-1.5; the histogram (edges, counts); per incident-energy range
    (GeV) the mean energy per layer and per radial bin divided by the incident energy, with the layer depths
    (X0 of tungsten plus silicon, layer centres) and the radial bin centres (mm).
    """
    geometry = CALOCHALLENGE_2
    events = simulate_events(SimulationRequest("calochallenge-2", "electron", n, seed))
    showers = apply_threshold(events["showers"], geometry.threshold_gev)
    incident = events["incident_energies"][:, 0].astype(np.float64)
    ratio = etot_over_einc(showers, incident)
    counts, edges = np.histogram(ratio, bins=CALOCHALLENGE_RATIO_EDGES)
    centres = 0.5 * (edges[1:] + edges[:-1])
    mode = float(centres[np.argmax(counts)]) if counts.sum() > 0 else None
    layers = energy_per_layer(showers, geometry) / incident[:, None]
    radial = showers.sum(axis=(1, 2), dtype=np.float64) / incident[:, None]
    layer_fraction, radial_fraction, n_in_range = [], [], []
    for low, high in CALOCHALLENGE_ENERGY_RANGES_GEV:
        select = (incident >= low) & (incident < high)
        n_in_range.append(int(select.sum()))
        layer_fraction.append(layers[select].mean(axis=0).tolist() if select.any() else None)
        radial_fraction.append(radial[select].mean(axis=0).tolist() if select.any() else None)
    bounds = np.concatenate([[0.0], np.cumsum(geometry.stack.layer_x0)])
    return {
        "n_events": int(n),
        "threshold_gev": geometry.threshold_gev,
        "etot_over_einc_mode": mode,
        "etot_over_einc_mean": float(np.mean(ratio)),
        "etot_over_einc_median": float(np.median(ratio)),
        "etot_over_einc_std": float(np.std(ratio)),
        "share_in_0.5_1.5": float(np.mean((ratio >= 0.5) & (ratio <= 1.5))),
        "histogram_edges": edges.tolist(),
        "histogram_counts": counts.tolist(),
        "energy_ranges_gev": [list(r) for r in CALOCHALLENGE_ENERGY_RANGES_GEV],
        "events_per_range": n_in_range,
        "layer_centres_x0": (0.5 * (bounds[1:] + bounds[:-1])).tolist(),
        "layer_energy_over_einc": layer_fraction,
        "radial_centres_mm": list(geometry.radial_centres_mm),
        "radial_energy_over_einc": radial_fraction,
    }


def longitudinal_profiles(energies_gev: Sequence[float], n: int, seed: int) -> dict[str, Any]:
    """Mean calibrated dE/dt / E (1/X0) per layer for each energy, the showers of ``measure_longitudinal``."""
    stack = LAYOUTS["lcd-gen"].build_detector().sections[0].stack
    profiles = []
    for i, energy in enumerate(energies_gev):
        ecal = validation.simulate_showers("electron", energy, n, seed + i)["ECAL"]
        layers = validation.calibrated_layer_energy(ecal)
        del ecal
        profiles.append((layers.mean(axis=0) / stack.layer_x0 / energy).tolist())
    return {"layer_centres_x0": validation.layer_centres_x0().tolist(), "profiles_per_x0": profiles}


def cell_statistics(energy_gev: float, n: int, seed: int) -> dict[str, Any]:
    """ECAL cell spectrum (cells per event per bin) and sparsity curve of the showers of ``measure_occupancy``."""
    ecal = validation.simulate_showers("electron", energy_gev, n, seed)["ECAL"]
    spectrum = cell_spectrum(ecal, SPECTRUM_EDGES_GEV).sum(axis=0) / n
    sparsity = sparsity_curve(ecal, SPARSITY_THRESHOLDS_GEV).mean(axis=0)
    return {
        "spectrum_edges_gev": SPECTRUM_EDGES_GEV.tolist(),
        "cells_per_event": spectrum.tolist(),
        "thresholds_gev": SPARSITY_THRESHOLDS_GEV.tolist(),
        "share_above": sparsity.tolist(),
    }
