"""The data sets the simulator writes: which detector, which primary spectra, which file layout.
See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from caloml.sim.detector import DETECTORS, SimulationDetector
from caloml.sim.electromagnetic import HaloModel

DEGREE = np.pi / 180.0


@dataclass(frozen=True)
class SimulationLayout:
    """One simulated data set.

    Attributes:
        name: the ``--geometry`` name (``lcd-gen``, ``lcd-rec``, ``calochallenge-2``, ``calochallenge-3``).
        detector: key of :data:`caloml.sim.detector.DETECTORS`.
        file_layout: ``lcd`` (CLIC HDF5 keys, 50 x GeV cells), ``calochallenge`` (MeV, flat voxels) or ``crystal``
            (``showers`` (N, 5, 5) GeV, ``energy``, ``impact``, ``pdgID``; :mod:`caloml.sim.crystal`).
        energy_range_gev: default primary energy range (GeV); ``log_uniform_energy`` picks the spectrum.
        theta_range_rad: default incidence-angle range (radians, 90 degrees = perpendicular).
        halo: the soft halo of electromagnetic showers in this detector.
        expert_features: whether the Triforce expert features are computed and stored.
    """

    name: str
    detector: str
    file_layout: str
    energy_range_gev: tuple[float, float]
    log_uniform_energy: bool
    theta_range_rad: tuple[float, float]
    halo: HaloModel
    expert_features: bool = False

    def build_detector(self) -> SimulationDetector:
        """The layer arrays of this layout's detector (cached per process)."""
        return _detector(self.detector)


@cache
def _detector(name: str) -> SimulationDetector:
    return DETECTORS[name]()


_LCD_HALO = HaloModel(hits_at_100_gev=12000.0, radius_moliere=6.0)
_LCD_THETA = (60.0 * DEGREE, 120.0 * DEGREE)
_PERPENDICULAR = (90.0 * DEGREE, 90.0 * DEGREE)

LAYOUTS = {
    layout.name: layout
    for layout in (
        SimulationLayout("lcd-gen", "clic", "lcd", (2.0, 500.0), False, _LCD_THETA, _LCD_HALO),
        SimulationLayout("lcd-rec", "clic", "lcd", (10.0, 510.0), False, _LCD_THETA, _LCD_HALO, expert_features=True),
        SimulationLayout(
            "calochallenge-2",
            "calochallenge-2",
            "calochallenge",
            (1.0, 1000.0),
            True,
            _PERPENDICULAR,
            HaloModel(hits_at_100_gev=800.0),
        ),
        SimulationLayout(
            "calochallenge-3",
            "calochallenge-3",
            "calochallenge",
            (1.0, 1000.0),
            True,
            _PERPENDICULAR,
            HaloModel(hits_at_100_gev=3000.0),
        ),
        # a 5 x 5 CsI(Tl) crystal array (caloml.sim.crystal): showers of 0.5-5 GeV at normal incidence
        SimulationLayout("crystal-5x5", "crystal-5x5", "crystal", (0.5, 5.0), False, _PERPENDICULAR, HaloModel(0.0)),
    )
}
