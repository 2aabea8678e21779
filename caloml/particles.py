"""Particle codes shared by the simulator, the reconstruction tasks and their evaluation.

PDG identifiers as the LCD files store them in ``pdgID`` (sign ignored), the names caloml gives the particles, the
prefixes of the LCD file names, and the charged-pion selection of the energy regressions. See
``docs/reconstruction.md``.
"""

from __future__ import annotations

from caloml.units import LCD_STORED_PER_GEV

__all__ = [
    "CHPI_MIN_RAW_FRACTION",
    "CHPI_PDG",
    "PARTICLES",
    "PARTICLE_PDG",
    "PDG_ID",
    "PDG_PARTICLE",
    "RAW_SUM_PER_GEV",
]

#: caloml's particle names -> PDG identifiers stored in the LCD files' ``pdgID``.
PDG_ID: dict[str, int] = {"electron": 11, "photon": 22, "pi0": 111, "chpi": 211}
#: caloml's particle names.
PARTICLES: tuple[str, ...] = tuple(PDG_ID)
#: PDG identifier -> caloml's particle name.
PDG_PARTICLE: dict[int, str] = {pdg: name for name, pdg in PDG_ID.items()}
#: Particle names, caloml's and the LCD file-name prefixes (``Ele``, ``Gamma``, ``Pi0``, ``ChPi``) -> PDG identifier.
PARTICLE_PDG: dict[str, int] = {**PDG_ID, "Ele": 11, "Gamma": 22, "Pi0": 111, "ChPi": 211}
#: The charged pion's PDG identifier.
CHPI_PDG = PDG_ID["chpi"]
#: Raw sum per GeV: ``RAW_SUM_PER_GEV x (ECAL_E + HCAL_E)`` (window sums in GeV) is the files' stored raw sum, about
#: an electron's energy in GeV (sampling fraction 0.02).
RAW_SUM_PER_GEV = LCD_STORED_PER_GEV
#: Charged pions whose raw sum ``RAW_SUM_PER_GEV x (ECAL_E + HCAL_E)`` is below this fraction of the true energy are
#: left out of the energy regressions (fit and score), the selection of Belayneh et al., arXiv:1912.06794.
CHPI_MIN_RAW_FRACTION = 0.3
