"""Per-layer arrays of a detector as the simulator needs them (lengths in mm, depths along the normal).

The simulator treats everything behind the entry point as one ordered list of readout layers: for the LCD
sets the 25 ECAL layers followed by the 60 HCAL layers (with the empty gap between them), for CaloChallenge
the 45 voxel layers. Each layer knows its depth, its material content in radiation and interaction lengths,
its lateral scales and its sampling fraction, so that electromagnetic and hadronic showers can be developed
through ECAL and HCAL with one code path. See ``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloml.geometry import (
    CALOCHALLENGE_2,
    CALOCHALLENGE_3,
    CLIC_ECAL,
    CLIC_HCAL,
    CartesianCalorimeter,
    CylindricalCalorimeter,
    LayerStack,
)

#: Visible (silicon) fraction of the energy an electromagnetic shower deposits in a thin (2.4 mm W) CLIC ECAL
#: layer. Thick (4.8 mm) layers see half of it per deposited GeV. Calibrated so that the ECAL sampling fraction
#: (visible sum / primary energy) of electrons is about 0.02, as in the CLIC data (see README "Simulator").
ECAL_THIN_LAYER_VISIBLE_FRACTION = 0.0252
#: Visible (scintillator) fraction of electromagnetic energy deposited in a CLIC HCAL layer (3 mm polystyrene
#: behind 20 mm steel; a minimum-ionizing particle leaves 2.6% of its loss in the scintillator).
HCAL_VISIBLE_FRACTION = 0.021
#: e/h of a non-compensating calorimeter: the hadronic part of a shower is seen 1.3 times less than the EM part.
E_OVER_H = 1.3


@dataclass(frozen=True)
class SimulationDetector:
    """The ordered readout layers of one simulated detector.

    Attributes (arrays of shape (L,) unless stated):
        sensor_depth_mm: depth of each layer's sensor plane behind the entry face, along the normal.
        x0_bounds, lambda_bounds: cumulative radiation / interaction lengths at the layer boundaries, shape (L+1,),
            along the normal (divide by sin(theta) for an inclined track).
        moliere_mm: effective Moliere radius of each layer (absorber radius scaled by the absorber share of the pitch).
        lambda_mm: effective interaction length of each layer, the scale of hadronic lateral spread.
        visible_fraction: visible / deposited energy for electromagnetic showers.
        section: 0 for the first calorimeter (ECAL or the only one), 1 for the HCAL.
        section_layer: readout-layer index inside its section.
        section_shapes: per section, the array shape of one event.
        stochastic_term: the sampling term c of the electromagnetic resolution, c / sqrt(E / GeV).
        em_fs, em_e_hat: the GFlash sampling-calorimeter parameters Fs and e_hat of the first section.
    """

    name: str
    sections: tuple[CartesianCalorimeter | CylindricalCalorimeter, ...]
    sensor_depth_mm: np.ndarray
    x0_bounds: np.ndarray
    lambda_bounds: np.ndarray
    moliere_mm: np.ndarray
    lambda_mm: np.ndarray
    visible_fraction: np.ndarray
    mip_mpv_gev: np.ndarray
    section: np.ndarray
    section_layer: np.ndarray
    stochastic_term: float
    em_fs: float
    em_e_hat: float
    atomic_number: float
    critical_energy_gev: float

    @property
    def n_layers(self) -> int:
        """Total number of readout layers over all sections."""
        return int(self.section.size)


def _stack_arrays(stack: LayerStack, visible: np.ndarray, mip_mpv_gev: float) -> dict[str, np.ndarray]:
    pitch = np.asarray(stack.absorber_mm) + stack.sensor_mm
    absorber_share = np.asarray(stack.absorber_mm) / pitch
    return {
        "front_mm": np.asarray(stack.front_mm),
        "boundaries_mm": stack.boundaries_mm,
        "sensor_depth_mm": stack.boundaries_mm[1:] - 0.5 * stack.sensor_mm,
        "x0": stack.layer_x0,
        "lambda": stack.layer_lambda,
        "moliere_mm": stack.absorber.moliere_radius_mm / absorber_share,
        "lambda_mm": stack.absorber.interaction_length_mm / absorber_share,
        "visible": visible,
        "mip": np.full(stack.n_layers, mip_mpv_gev),
    }


def _sampling_parameters(stack: LayerStack) -> tuple[float, float]:
    """GFlash Fs = X0_eff / pitch (radiation lengths per layer, inverted) and e_hat for the stack's first layer."""
    fs = 1.0 / float(stack.layer_x0[0])
    e_hat = 1.0 / (1.0 + 0.007 * (stack.absorber.atomic_number - stack.sensor.atomic_number))
    return fs, e_hat


def _build(name: str, sections: tuple, per_section: list[dict[str, np.ndarray]]) -> SimulationDetector:
    first = sections[0].stack
    fs, e_hat = _sampling_parameters(first)
    depth0 = float(first.front_mm)
    sensor_depth, x0, lam, section, section_layer = [], [], [], [], []
    for index, arrays in enumerate(per_section):
        sensor_depth.append(arrays["sensor_depth_mm"] + float(arrays["front_mm"]) - depth0)
        x0.append(arrays["x0"])
        lam.append(arrays["lambda"])
        section.append(np.full(arrays["x0"].size, index))
        section_layer.append(np.arange(arrays["x0"].size))
    # The gap between sections is treated as empty space: no material, no cumulative X0 or lambda.
    x0_layers = np.concatenate(x0)
    lambda_layers = np.concatenate(lam)
    return SimulationDetector(
        name=name,
        sections=sections,
        sensor_depth_mm=np.concatenate(sensor_depth),
        x0_bounds=np.concatenate([[0.0], np.cumsum(x0_layers)]),
        lambda_bounds=np.concatenate([[0.0], np.cumsum(lambda_layers)]),
        moliere_mm=np.concatenate([a["moliere_mm"] for a in per_section]),
        lambda_mm=np.concatenate([a["lambda_mm"] for a in per_section]),
        visible_fraction=np.concatenate([a["visible"] for a in per_section]),
        mip_mpv_gev=np.concatenate([a["mip"] for a in per_section]),
        section=np.concatenate(section),
        section_layer=np.concatenate(section_layer),
        stochastic_term=0.166,
        em_fs=fs,
        em_e_hat=e_hat,
        atomic_number=first.absorber.atomic_number,
        critical_energy_gev=first.absorber.critical_energy_mev * 1e-3,
    )


def clic_detector() -> SimulationDetector:
    """The CLIC ECAL window followed by the HCAL window (85 readout layers)."""
    ecal_visible = ECAL_THIN_LAYER_VISIBLE_FRACTION / CLIC_ECAL.stack.calibration_weights
    hcal_visible = np.full(CLIC_HCAL.stack.n_layers, HCAL_VISIBLE_FRACTION)
    # Most probable MIP deposits: 0.15 MeV in 0.5 mm Si, about 0.55 MeV in 3 mm of scintillator.
    ecal = _stack_arrays(CLIC_ECAL.stack, ecal_visible, 0.15e-3)
    hcal = _stack_arrays(CLIC_HCAL.stack, hcal_visible, 0.55e-3)
    return _build("clic", (CLIC_ECAL, CLIC_HCAL), [ecal, hcal])


def calochallenge_detector(geometry: CylindricalCalorimeter) -> SimulationDetector:
    """A CaloChallenge cylinder; its voxels are calibrated energies, so the visible fraction is 1."""
    stack = geometry.stack
    arrays = _stack_arrays(stack, np.ones(stack.n_layers), 0.15e-3 * geometry.physical_layers_per_readout)
    # Calibrated units: a MIP's calibrated energy is its silicon deposit over the EM sampling fraction of the stack.
    arrays["mip"] = arrays["mip"] / ECAL_THIN_LAYER_VISIBLE_FRACTION
    return _build(geometry.name, (geometry,), [arrays])


DETECTORS = {
    "clic": clic_detector,
    CALOCHALLENGE_2.name: lambda: calochallenge_detector(CALOCHALLENGE_2),
    CALOCHALLENGE_3.name: lambda: calochallenge_detector(CALOCHALLENGE_3),
}
