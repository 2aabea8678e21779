"""Observables of showers in a square crystal array (``crystal-5x5``), per shower, from the crystal energies.

With the array's central crystal as the centre (the impact point lies on its face): E1 the central crystal, E9 the
3 x 3 around it, E21 the 5 x 5 without its four corners, E25 the whole 5 x 5. The observables of the VAE + WGAN
poster and of ``python -m caloml.evaluate gen`` for crystal files: the maximum crystal energy, E1/E9, E9/E21,
E25 / E, the number of hits (crystals with energy, i.e. above the readout threshold), and the energy of every
crystal (the cell spectrum). Energies in GeV; see ``docs/vaewgan.md``.
"""

from __future__ import annotations

import numpy as np

from caloml.observables.metrics import separation_power

__all__ = ["CRYSTAL_OBSERVABLES", "crystal_observables", "observable_edges", "ring_sums", "separation_powers"]

#: Observable name -> (label, unit) in the order of the reports.
CRYSTAL_OBSERVABLES: dict[str, tuple[str, str]] = {
    "max_cell_gev": ("maximum crystal energy", "GeV"),
    "e1_over_e9": ("E1/E9", ""),
    "e9_over_e21": ("E9/E21", ""),
    "e25_over_e": ("E25 / E", ""),
    "n_hits": ("number of hits", ""),
}


def ring_sums(showers_gev: np.ndarray) -> dict[str, np.ndarray]:
    """E1, E9, E21 and E25 (each (N,), GeV) of showers (N, n, n) with n odd and at least 5."""
    showers = np.asarray(showers_gev, dtype=np.float64)
    n = showers.shape[1]
    if showers.ndim != 3 or showers.shape[2] != n or n % 2 == 0 or n < 5:
        raise ValueError(f"expected showers (N, n, n) with odd n >= 5, got shape {showers.shape}")
    c = n // 2
    e25_block = showers[:, c - 2 : c + 3, c - 2 : c + 3]
    e25 = e25_block.sum(axis=(1, 2))
    corners = e25_block[:, 0, 0] + e25_block[:, 0, -1] + e25_block[:, -1, 0] + e25_block[:, -1, -1]
    return {
        "e1": showers[:, c, c],
        "e9": showers[:, c - 1 : c + 2, c - 1 : c + 2].sum(axis=(1, 2)),
        "e21": e25 - corners,
        "e25": e25,
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (an empty shower)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def crystal_observables(showers_gev: np.ndarray, energy_gev: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`CRYSTAL_OBSERVABLES` of showers (N, n, n) in GeV with primary energies (N,) in GeV, each (N,).

    Ratios of an empty shower are NaN (the comparisons drop non-finite values).
    """
    showers = np.asarray(showers_gev, dtype=np.float64)
    energy = np.asarray(energy_gev, dtype=np.float64).reshape(-1)
    sums = ring_sums(showers)
    return {
        "max_cell_gev": showers.reshape(len(showers), -1).max(axis=1),
        "e1_over_e9": _ratio(sums["e1"], sums["e9"]),
        "e9_over_e21": _ratio(sums["e9"], sums["e21"]),
        "e25_over_e": sums["e25"] / energy,
        "n_hits": (showers > 0).reshape(len(showers), -1).sum(axis=1).astype(np.float64),
    }


def observable_edges(name: str, reference: np.ndarray, bins: int = 40, n_cells: int = 25) -> np.ndarray:
    """Histogram edges of observable ``name`` from the reference sample: unit bins for the number of hits, else
    ``bins`` equal bins over the reference's range."""
    if name == "n_hits":
        return np.arange(-0.5, n_cells + 1.0, 1.0)
    finite = np.asarray(reference, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def separation_powers(
    generated: dict[str, np.ndarray], reference: dict[str, np.ndarray], bins: int = 40, n_cells: int = 25
) -> dict[str, float]:
    """Separation power of every observable (dicts of :func:`crystal_observables`) on the reference's edges; values
    outside them count in the first or last bin, so that outliers count as disagreement."""
    powers = {}
    for name, values in reference.items():
        edges = observable_edges(name, values, bins, n_cells)
        counts = []
        for sample in (generated[name], values):
            finite = np.asarray(sample, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            counts.append(np.histogram(np.clip(finite, edges[0], edges[-1]), edges)[0])
        powers[name] = separation_power(counts[0], counts[1])
    return powers
