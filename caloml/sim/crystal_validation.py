"""Physics targets of the ``crystal-5x5`` geometry (a 5 x 5 CsI(Tl) array): containment, E1/E9, E9/E25, resolution.

:func:`measure_crystal` simulates electrons at fixed energies (normal incidence, impact uniform over the central
crystal) and returns plain figures; :func:`crystal_figures` turns them into the scalars that
:data:`CRYSTAL_TARGETS` compare, in ``python -m caloml.data validate`` next to the other geometries' targets.

The expectations, with their sources (see also ``docs/crystal-geometry.md``):

* E25 / E: the transverse containment of electromagnetic showers, about 95% inside 2 Moliere radii and 99% inside
  3.5 (PDG, "Passage of particles through matter", electromagnetic cascades): the array reaches 4.2 R_M from its
  centre, 16.1 X0 deep, so 0.95-0.99 at 1 GeV.
* E9/E25: the 3 x 3 block reaches 1.7-3.4 R_M from an impact point on the central crystal: 0.93-0.99. CsI(Tl)
  arrays of 5-6 cm crystals select photons with E9/E25 > 0.95 (e.g. the Belle ECL, NIM A 479 (2002) 117), which
  keeps most electromagnetic showers.
* E1/E9: a 6 cm crystal is 1.68 R_M wide; with the impact uniform over its face the mean is 0.65-0.85.
* Resolution sigma/E = a / sqrt(E / GeV) (+) b of CsI(Tl) arrays: Belle 1.6% and BaBar 3.0% at 1 GeV (NIM A 479
  (2002) 117 and 1; CLEO II 2.2%, NIM A 320 (1992) 66), so 1.2-3.0% at 1 GeV; stochastic term a 0.3-2.5%,
  constant term b 0.5-2.0%.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from caloml.sim.crystal import CSI_5X5, simulate_crystal_batch
from caloml.sim.particles import Primaries

__all__ = ["CRYSTAL_TARGETS", "crystal_figures", "measure_crystal", "plot_crystal"]

_SOURCE = "docs/crystal-geometry.md"
#: The targets as rows of :class:`caloml.sim.validation_targets.Target`: name, figure key, expected, low, high,
#: unit, source.
CRYSTAL_TARGETS: tuple[tuple[Any, ...], ...] = (
    ("crystal-5x5 E25/E at 1 GeV (e-)", "crystal.e25_over_e_1gev", "≈ 0.97 (lateral and rear leakage)", 0.95, 0.99, "",
     f"{_SOURCE}: PDG transverse containment, 4.2 R_M half width, 16.1 X0"),
    ("crystal-5x5 E9/E25 at 1 GeV (e-)", "crystal.e9_over_e25_1gev", "≈ 0.97", 0.93, 0.99, "",
     f"{_SOURCE}: 3 x 3 block 1.7-3.4 R_M from the impact; Belle photon selection E9/E25 > 0.95"),
    ("crystal-5x5 E1/E9 at 1 GeV (e-)", "crystal.e1_over_e9_1gev", "≈ 0.75", 0.65, 0.85, "",
     f"{_SOURCE}: 1.68 R_M wide crystals, impact uniform over the face"),
    ("crystal-5x5 resolution σ/E at 1 GeV (e-, E25)", "crystal.resolution_1gev", "1.6% (Belle) - 3.0% (BaBar)", 0.012,
     0.030, "", f"{_SOURCE}: Belle, BaBar (NIM A 479 (2002)), CLEO II (NIM A 320 (1992) 66)"),
    ("crystal-5x5 stochastic term a (σ/E = a/√E ⊕ b)", "crystal.stochastic_term", "of order 1%", 0.003, 0.025, "",
     f"{_SOURCE}: CsI(Tl) arrays, no sampling term"),
    ("crystal-5x5 constant term b (σ/E = a/√E ⊕ b)", "crystal.constant_term", "1-2%", 0.005, 0.020, "",
     f"{_SOURCE}: Belle 1.34%, BaBar 1.85%"),
)  # fmt: skip


def measure_crystal(
    n: int = 2000, seed: int = 81, energies_gev: Sequence[float] = (0.5, 1.0, 2.0, 3.0, 5.0)
) -> dict[str, Any]:
    """Electron showers in ``crystal-5x5`` at each energy: means of E25/E, E9/E25, E1/E9 and sigma/E of E25
    (relative to its mean), plus the fit sigma/E = a / sqrt(E) (+) b over the energies."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {"e25_over_e": [], "e9_over_e25": [], "e1_over_e9": [], "resolution": []}
    for energy in energies_gev:
        primaries = Primaries(np.full(n, float(energy)), np.full(n, np.pi / 2), np.zeros(n))
        showers = simulate_crystal_batch(rng, CSI_5X5.name, "electron", primaries)["showers"].astype(np.float64)
        e25 = showers.sum(axis=(1, 2))
        e9 = showers[:, 1:4, 1:4].sum(axis=(1, 2))
        rows["e25_over_e"].append(float(np.mean(e25) / energy))
        rows["e9_over_e25"].append(float(np.mean(e9 / e25)))
        rows["e1_over_e9"].append(float(np.mean(showers[:, 2, 2] / e9)))
        rows["resolution"].append(float(np.std(e25) / np.mean(e25)))
    energies = np.asarray(energies_gev, dtype=np.float64)
    # sigma^2/E^2 = a^2 / E + b^2: linear least squares in (1/E, 1), non-negative squares
    design = np.stack([1.0 / energies, np.ones_like(energies)], axis=1)
    (a2, b2), *_ = np.linalg.lstsq(design, np.square(rows["resolution"]), rcond=None)
    return {
        "energies_gev": energies.tolist(),
        **rows,
        "stochastic_term": float(np.sqrt(max(a2, 0.0))),
        "constant_term": float(np.sqrt(max(b2, 0.0))),
    }


def crystal_figures(crystal: dict[str, Any] | None) -> dict[str, float | None]:
    """The scalar figures of :data:`CRYSTAL_TARGETS` from a :func:`measure_crystal` result (empty for None)."""
    if crystal is None:
        return {}
    energies = list(crystal["energies_gev"])

    def at_1gev(key: str) -> float | None:
        return float(crystal[key][energies.index(1.0)]) if 1.0 in energies else None

    return {
        "crystal.e25_over_e_1gev": at_1gev("e25_over_e"),
        "crystal.e9_over_e25_1gev": at_1gev("e9_over_e25"),
        "crystal.e1_over_e9_1gev": at_1gev("e1_over_e9"),
        "crystal.resolution_1gev": at_1gev("resolution"),
        "crystal.stochastic_term": float(crystal["stochastic_term"]),
        "crystal.constant_term": float(crystal["constant_term"]),
    }


def plot_crystal(folder: Any, crystal: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    """The crystal figures against energy: ratios and the resolution with its fit (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energies = np.asarray(crystal["energies_gev"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("e25_over_e", "E25/E"), ("e9_over_e25", "E9/E25"), ("e1_over_e9", "E1/E9")):
        left.plot(energies, crystal[key], "o-", label=label)
    left.set_xlabel("electron energy (GeV)")
    left.legend()
    grid = np.linspace(energies.min(), energies.max(), 100)
    fit = np.hypot(crystal["stochastic_term"] / np.sqrt(grid), crystal["constant_term"])
    right.plot(energies, np.asarray(crystal["resolution"]) * 100, "ko", label="crystal-5x5")
    right.plot(grid, fit * 100, "k-", label=f"{crystal['stochastic_term']:.2%}/√E ⊕ {crystal['constant_term']:.2%}")
    right.set_xlabel("electron energy (GeV)")
    right.set_ylabel("σ/E of E25 (%)")
    right.legend()
    fig.tight_layout()
    fig.savefig(f"{folder}/crystal_5x5.png", dpi=90)
    plt.close(fig)
    return ["crystal_5x5.png"]
