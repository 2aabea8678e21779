"""Detector descriptions: materials, sampling-layer stacks and readout grids (lengths in mm).

Three readout geometries cover the public data sets:

* :data:`CLIC_ECAL` - the CLIC/LCD silicon-tungsten ECAL barrel window, 51 x 51 cells of 5.1 mm x 25 layers
  (17 layers of 2.4 mm W then 8 of 4.8 mm W, each followed by 0.5 mm Si), front face at 1.5 m.
* :data:`CLIC_HCAL` - the steel-scintillator HCAL window behind it, 11 x 11 cells of 30 mm x 60 layers, front at 1.7 m.
* :data:`CALOCHALLENGE_2` / :data:`CALOCHALLENGE_3` - the CaloChallenge 2022 cylinders: 45 readout layers, each two
  physical layers of 1.4 mm W + 0.3 mm Si, with 16 x 9 (dataset 2) or 50 x 18 (dataset 3) angular x radial bins.

A registry of the cell grids a point-cloud model can be trained on (:data:`POINT_CLOUD_GRIDS`: where their showers
live in the files, their default incident energies and readout thresholds) closes the module.

Material constants are the values of the Review of Particle Physics (Particle Data Group, "Atomic and nuclear
properties of materials"). See ``docs/simulator.md`` (detectors) and ``docs/pointflow.md`` (point-cloud grids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from caloml.errors import CalomlError


@dataclass(frozen=True)
class Material:
    """A homogeneous material; lengths in mm, critical energy in MeV (computed with X0 in g/cm2)."""

    name: str
    atomic_number: float
    radiation_length_mm: float
    interaction_length_mm: float
    moliere_radius_mm: float
    critical_energy_mev: float


TUNGSTEN = Material("tungsten", 74.0, 3.50, 99.5, 9.3, 8.0)
SILICON = Material("silicon", 14.0, 93.7, 465.2, 48.8, 40.2)
STEEL = Material("steel", 26.0, 17.57, 167.7, 16.9, 21.7)
SCINTILLATOR = Material("polystyrene", 5.6, 413.1, 777.4, 94.1, 93.1)


@dataclass(frozen=True)
class LayerStack:
    """Readout layers along the depth, each an absorber slab followed by a sensor slab (mm).

    ``absorber_mm[k]`` is the absorber in front of sensor ``k``; a readout layer may group several physical
    layers (its absorber and sensor thicknesses are then the sums).
    """

    absorber: Material
    sensor: Material
    absorber_mm: tuple[float, ...]
    sensor_mm: float
    #: Depth of the stack's front face from the interaction point along the normal (mm).
    front_mm: float = 0.0

    @property
    def n_layers(self) -> int:
        """Number of readout layers."""
        return len(self.absorber_mm)

    @cached_property
    def boundaries_mm(self) -> np.ndarray:
        """Depths of the readout-layer boundaries from the stack front, shape (n_layers + 1,), mm."""
        pitch = np.asarray(self.absorber_mm) + self.sensor_mm
        return np.concatenate([[0.0], np.cumsum(pitch)])

    @property
    def depth_mm(self) -> float:
        """Total depth of the stack (mm)."""
        return float(self.boundaries_mm[-1])

    @cached_property
    def absorber_x0(self) -> np.ndarray:
        """Absorber thickness of each readout layer in radiation lengths, shape (n_layers,)."""
        return np.asarray(self.absorber_mm) / self.absorber.radiation_length_mm

    @cached_property
    def layer_x0(self) -> np.ndarray:
        """Absorber + sensor thickness of each readout layer in radiation lengths, shape (n_layers,)."""
        return self.absorber_x0 + self.sensor_mm / self.sensor.radiation_length_mm

    @cached_property
    def layer_lambda(self) -> np.ndarray:
        """Absorber + sensor thickness of each readout layer in interaction lengths, shape (n_layers,)."""
        return (
            np.asarray(self.absorber_mm) / self.absorber.interaction_length_mm
            + self.sensor_mm / self.sensor.interaction_length_mm
        )

    @cached_property
    def calibration_weights(self) -> np.ndarray:
        """Absorber thickness relative to the thinnest layer, shape (n_layers,): the weights of the calibrated sum."""
        absorber = np.asarray(self.absorber_mm)
        return absorber / absorber.min()

    def layer_at_depth(self, depth_mm: np.ndarray) -> np.ndarray:
        """Readout-layer index of each depth from the stack front (mm); -1 in front, n_layers behind."""
        return np.searchsorted(self.boundaries_mm, depth_mm, side="right") - 1


@dataclass(frozen=True)
class CartesianCalorimeter:
    """A window of square cells (``cell_mm``) of ``n_x`` x ``n_y`` cells over a layer stack.

    Arrays of this geometry have shape (..., n_x, n_y, n_layers): x and y transverse, z the depth,
    the axis order of the LCD files.
    """

    name: str
    stack: LayerStack
    n_x: int
    n_y: int
    cell_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape of one event: (n_x, n_y, n_layers)."""
        return (self.n_x, self.n_y, self.stack.n_layers)

    @property
    def n_cells(self) -> int:
        """Number of cells in the window."""
        return self.n_x * self.n_y * self.stack.n_layers


@dataclass(frozen=True)
class CylindricalCalorimeter:
    """Voxels in (layer, angular bin, radial bin) around the particle's direction, CaloChallenge style.

    Arrays of this geometry have shape (..., n_layers, n_alpha, n_radial); the flat file layout puts the radial
    bin fastest, then the angular bin, then the layer.
    """

    name: str
    stack: LayerStack
    n_alpha: int
    radial_edges_mm: tuple[float, ...]
    #: Readout threshold of the official evaluation (GeV).
    threshold_gev: float = 15.15e-6
    #: Physical layers summed into one readout layer.
    physical_layers_per_readout: int = 1
    radial_centres_mm: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        edges = np.asarray(self.radial_edges_mm)
        object.__setattr__(self, "radial_centres_mm", tuple(0.5 * (edges[1:] + edges[:-1])))

    @property
    def n_radial(self) -> int:
        """Number of radial bins."""
        return len(self.radial_edges_mm) - 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape of one event: (n_layers, n_alpha, n_radial)."""
        return (self.stack.n_layers, self.n_alpha, self.n_radial)

    @property
    def n_voxels(self) -> int:
        """Number of voxels of one event (the width of the flat ``showers`` dataset)."""
        n_layers, n_alpha, n_radial = self.shape
        return n_layers * n_alpha * n_radial

    @cached_property
    def alpha_centres_rad(self) -> np.ndarray:
        """Centres of the angular bins in [0, 2 pi), shape (n_alpha,), radians."""
        return (np.arange(self.n_alpha) + 0.5) * (2.0 * np.pi / self.n_alpha)


CLIC_ECAL_FRONT_MM = 1500.0
CLIC_HCAL_FRONT_MM = 1700.0

CLIC_ECAL = CartesianCalorimeter(
    name="clic-ecal",
    stack=LayerStack(
        absorber=TUNGSTEN,
        sensor=SILICON,
        absorber_mm=(2.4,) * 17 + (4.8,) * 8,
        sensor_mm=0.5,
        front_mm=CLIC_ECAL_FRONT_MM,
    ),
    n_x=51,
    n_y=51,
    cell_mm=5.1,
)

CLIC_HCAL = CartesianCalorimeter(
    name="clic-hcal",
    stack=LayerStack(
        absorber=STEEL, sensor=SCINTILLATOR, absorber_mm=(20.0,) * 60, sensor_mm=3.0, front_mm=CLIC_HCAL_FRONT_MM
    ),
    n_x=11,
    n_y=11,
    cell_mm=30.0,
)

#: CaloChallenge readout layer: two physical layers of 1.4 mm W + 0.3 mm Si (3.4 mm, 0.8 X0 of tungsten).
_CALOCHALLENGE_STACK = LayerStack(
    absorber=TUNGSTEN, sensor=SILICON, absorber_mm=(2.8,) * 45, sensor_mm=0.6, front_mm=0.0
)


def _calochallenge(dataset: int, n_alpha: int, ring_width_mm: float, n_rings: int) -> CylindricalCalorimeter:
    """A CaloChallenge dataset's readout: the shared stack, two physical layers a readout layer, ``n_rings`` rings
    of ``ring_width_mm``."""
    return CylindricalCalorimeter(
        name=f"calochallenge-{dataset}",
        stack=_CALOCHALLENGE_STACK,
        n_alpha=n_alpha,
        radial_edges_mm=tuple(round(ring_width_mm * i, 4) for i in range(n_rings + 1)),
        physical_layers_per_readout=2,
    )


CALOCHALLENGE_2 = _calochallenge(2, n_alpha=16, ring_width_mm=4.65, n_rings=9)
CALOCHALLENGE_3 = _calochallenge(3, n_alpha=50, ring_width_mm=2.325, n_rings=18)

CYLINDRICAL_GEOMETRIES = {g.name: g for g in (CALOCHALLENGE_2, CALOCHALLENGE_3)}


#: The 3DGAN hit threshold of the LCD ECAL (GeV), used as the LCD readout threshold.
LCD_HIT_THRESHOLD_GEV = 3e-4


@dataclass(frozen=True)
class PointCloudGrid:
    """A cell grid a point-cloud model can be trained on, and where its showers live in the files.

    Attributes:
        name: ``calochallenge-2`` or ``lcd-gen`` (also the simulator's layout name).
        cell_key: the cell array (``showers`` or ``ECAL``), in-memory shape ``grid_shape``, GeV per cell.
        energy_key: the incident-energy scalar (``incident_energies`` (1,) or ``energy`` ()), GeV.
        grid_shape: cells along the three axes (layer, alpha, radius / x, y, z).
        energy_range_gev: the default data's incident-energy range, GeV.
        hit_threshold_gev: default readout threshold, GeV.
        file_layout: ``calochallenge`` or ``lcd`` (the HDF5 layout generation writes).
    """

    name: str
    cell_key: str
    energy_key: str
    grid_shape: tuple[int, int, int]
    energy_range_gev: tuple[float, float]
    hit_threshold_gev: float
    file_layout: str


#: The point-cloud grids by name.
POINT_CLOUD_GRIDS: dict[str, PointCloudGrid] = {
    "calochallenge-2": PointCloudGrid(
        "calochallenge-2",
        "showers",
        "incident_energies",
        CALOCHALLENGE_2.shape,
        (1.0, 1000.0),
        CALOCHALLENGE_2.threshold_gev,
        "calochallenge",
    ),
    "lcd-gen": PointCloudGrid("lcd-gen", "ECAL", "energy", CLIC_ECAL.shape, (2.0, 500.0), LCD_HIT_THRESHOLD_GEV, "lcd"),
}


def point_cloud_grid_of_shape(grid_shape: Sequence[int]) -> PointCloudGrid | None:
    """The point-cloud grid of a model's grid shape (3 ints), None for a shape of none of :data:`POINT_CLOUD_GRIDS`."""
    grid = tuple(int(n) for n in grid_shape)
    return next((g for g in POINT_CLOUD_GRIDS.values() if g.grid_shape == grid), None)


def get_point_cloud_grid(name: str) -> PointCloudGrid:
    """The point-cloud grid called ``name`` (:class:`~caloml.errors.CalomlError` for another)."""
    if name not in POINT_CLOUD_GRIDS:
        raise CalomlError(f"unknown geometry {name!r} for pointflow; choose one of {', '.join(POINT_CLOUD_GRIDS)}")
    return POINT_CLOUD_GRIDS[name]
