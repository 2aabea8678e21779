"""Unit conventions at the edges of caloml.

Inside caloml every energy is in GeV and every angle in radians. Files use their own conventions,
converted only by the readers and writers:

* LCD (CLIC) HDF5 files store cell energies as 50 x (visible energy in GeV): :data:`LCD_STORED_PER_GEV`.
* CaloChallenge HDF5 files store energies in MeV: :data:`MEV_PER_GEV`. See ``docs/data.md``.
"""

from __future__ import annotations

#: Stored LCD cell value per GeV of visible energy (undocumented in the data, found in its analysis code).
LCD_STORED_PER_GEV = 50.0

#: MeV per GeV, for the CaloChallenge files.
MEV_PER_GEV = 1000.0
