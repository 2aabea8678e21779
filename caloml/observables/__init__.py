"""Shower observables and comparison metrics, shared by the simulator tests, the evaluation and the models.

* :mod:`~caloml.observables.grid` - Cartesian images (N, nx, ny, nz) of the LCD ECAL/HCAL windows: sums,
  profiles, moments, hits, energy ratios, R9, sparsity, cell spectrum.
* :mod:`~caloml.observables.angle` - the incidence angle measured from the image (the 3DGAN "O_theta").
* :mod:`~caloml.observables.cylinder` - CaloChallenge showers (N, layers, alpha, radius).
* :mod:`~caloml.observables.metrics` - separation power, common-edge histograms, KS, binned relative errors.
* :mod:`~caloml.observables.differentiable` - TensorFlow versions for losses (``total_energy_tf``,
  ``measured_angle_tf``), imported on first use so that NumPy users do not load TensorFlow.

Energies are in GeV, angles in radians, cell positions in cell indices, cylinder lengths in mm.
See ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caloml.observables.angle import MEASURED_ANGLE_EMPTY, measured_angle
from caloml.observables.cylinder import (
    apply_threshold,
    centres_of_energy,
    energy_per_layer,
    etot_over_einc,
    layer_centre_and_width,
    radial_centre,
    radial_width,
    sparsity_per_layer,
    voxel_spectrum,
    widths,
)
from caloml.observables.grid import (
    Projections,
    cell_spectrum,
    depth_energy_ratios,
    first_layer_ratios,
    hits_above,
    longitudinal_profile,
    max_deposit_position,
    moments,
    profile_moments,
    project,
    r9,
    r9_from_projection,
    sampling_fraction,
    sparsity_curve,
    total_energy,
    transverse_profiles,
)
from caloml.observables.metrics import (
    binned_mean,
    histogram_pair,
    histogram_per_event,
    ks_statistic,
    relative_mean_error_per_bin,
    separation_power,
)

if TYPE_CHECKING:
    from caloml.observables.differentiable import measured_angle_tf, total_energy_tf

__all__ = [
    "MEASURED_ANGLE_EMPTY",
    "Projections",
    "apply_threshold",
    "binned_mean",
    "cell_spectrum",
    "centres_of_energy",
    "depth_energy_ratios",
    "energy_per_layer",
    "etot_over_einc",
    "first_layer_ratios",
    "histogram_pair",
    "histogram_per_event",
    "hits_above",
    "ks_statistic",
    "layer_centre_and_width",
    "longitudinal_profile",
    "max_deposit_position",
    "measured_angle",
    "measured_angle_tf",
    "moments",
    "profile_moments",
    "project",
    "r9",
    "r9_from_projection",
    "radial_centre",
    "radial_width",
    "relative_mean_error_per_bin",
    "sampling_fraction",
    "separation_power",
    "sparsity_curve",
    "sparsity_per_layer",
    "total_energy",
    "total_energy_tf",
    "transverse_profiles",
    "voxel_spectrum",
    "widths",
]

_LAZY_TF = ("measured_angle_tf", "total_energy_tf")


def __getattr__(name: str) -> Any:
    if name in _LAZY_TF:
        from caloml.observables import differentiable

        return getattr(differentiable, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
