"""Reading and writing the CaloChallenge 2022 HDF5 layout (Zenodo 6366271, 6366324, 8099322).

Files hold ``incident_energies`` (N, 1) and ``showers`` (N, V) in **MeV**, the voxels flattened with the radial bin
fastest, then the angular bin, then the layer. The data set is recognized from V:

=========  ======  ==============================  ======================================
data set   V       in-memory ``showers``           geometry
=========  ======  ==============================  ======================================
1-photons  368     (N, 368) (irregular layers)     none (XML binning)
1-pions    533     (N, 533)                        none
2          6480    (N, 45, 16, 9)                  :data:`caloml.geometry.CALOCHALLENGE_2`
3          40500   (N, 45, 50, 18)                 :data:`caloml.geometry.CALOCHALLENGE_3`
=========  ======  ==============================  ======================================

In memory everything is GeV float32: ``incident_energies`` (N, 1) and ``showers`` as above (axes layer, alpha,
radius). The reader divides by :data:`caloml.units.MEV_PER_GEV`, the writer multiplies and flattens back.
See ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from caloml.data.checks import check_event_shape, check_values, format_shape
from caloml.data.hdf5 import HDF5EventReader, HDF5EventWriter, register_reader
from caloml.errors import DataError
from caloml.geometry import CALOCHALLENGE_2, CALOCHALLENGE_3, CylindricalCalorimeter
from caloml.units import MEV_PER_GEV

__all__ = ["DATASETS", "CaloChallengeDataset", "CaloChallengeReader", "CaloChallengeWriter", "dataset_from_voxels"]


class CaloChallengeDataset:
    """One CaloChallenge data set: its name, voxel count, in-memory event shape and geometry (None for dataset 1)."""

    def __init__(self, name: str, shape: tuple[int, ...], geometry: CylindricalCalorimeter | None) -> None:
        self.name = name
        self.shape = shape
        self.geometry = geometry
        self.n_voxels = int(np.prod(shape))

    @property
    def geometry_name(self) -> str:
        """Geometry name for metadata (``calochallenge-2``, ``calochallenge-1-photons``...)."""
        return self.geometry.name if self.geometry is not None else f"calochallenge-{self.name}"

    def __repr__(self) -> str:
        return f"CaloChallengeDataset({self.name!r}, shape={self.shape})"


#: The recognized data sets, keyed by the number of voxels of one shower.
DATASETS: dict[int, CaloChallengeDataset] = {
    d.n_voxels: d
    for d in (
        CaloChallengeDataset("1-photons", (368,), None),
        CaloChallengeDataset("1-pions", (533,), None),
        CaloChallengeDataset("2", CALOCHALLENGE_2.shape, CALOCHALLENGE_2),
        CaloChallengeDataset("3", CALOCHALLENGE_3.shape, CALOCHALLENGE_3),
    )
}

_KNOWN_VOXELS = ", ".join(str(v) for v in DATASETS)
_ENERGY_KEYS = frozenset({"incident_energies", "showers"})


def dataset_from_voxels(n_voxels: int, *, file: str | Path) -> CaloChallengeDataset:
    """The data set with ``n_voxels`` voxels per shower; DataError naming ``file`` if none has it."""
    try:
        return DATASETS[int(n_voxels)]
    except KeyError:
        raise DataError(
            f"{file}: key 'showers' has {n_voxels} voxels per event, not a CaloChallenge data set ({_KNOWN_VOXELS})"
        ) from None


@register_reader
class CaloChallengeReader(HDF5EventReader):
    """Streaming reader of a CaloChallenge file (datasets 1, 2, 3): events in GeV, validated as they are read.

    Same interface as :class:`caloml.data.lcd.LCDReader`: ``len()``, ``iter_chunks()``, ``read(indices or slice)``,
    ``event_shapes``, ``attrs``; plus :attr:`dataset` (a :class:`CaloChallengeDataset`) and :attr:`geometry`.
    ``incident_energies`` may be (N, 1) or (N,) in the file; it is always (N, 1) in memory.
    """

    layout: ClassVar[str] = "calochallenge"
    signature_keys: ClassVar[frozenset[str]] = frozenset({"showers", "incident_energies"})
    description: ClassVar[str] = "a CaloChallenge file (key 'showers')"
    required_keys: ClassVar[tuple[str, ...]] = ("incident_energies", "showers")
    energy_keys: ClassVar[frozenset[str]] = _ENERGY_KEYS
    cell_keys: ClassVar[frozenset[str]] = frozenset({"showers"})

    def _validate_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        showers = shapes["showers"]
        if len(showers) != 2:
            raise DataError(f"{self.path}: key 'showers' has shape {format_shape(showers)}, expected (N, voxels)")
        self.dataset: CaloChallengeDataset = dataset_from_voxels(showers[1], file=self.path)
        check_event_shape(shapes["incident_energies"], [(1,), ()], file=self.path, key="incident_energies")

    def _convert(self, key: str, raw: np.ndarray) -> np.ndarray:
        if key == "showers":
            showers = raw if raw.dtype == np.float32 else raw.astype(np.float32)
            showers /= np.float32(MEV_PER_GEV)
            return showers.reshape(len(showers), *self.dataset.shape)
        if key == "incident_energies":
            return (raw.astype(np.float32) / np.float32(MEV_PER_GEV)).reshape(len(raw), 1)
        return raw

    @property
    def geometry(self) -> CylindricalCalorimeter | None:
        """The cylinder of datasets 2 and 3; None for dataset 1 (irregular layers)."""
        return self.dataset.geometry

    @property
    def geometry_name(self) -> str:
        """``calochallenge-2``, ``calochallenge-3``, ``calochallenge-1-photons`` or ``calochallenge-1-pions``."""
        return self.dataset.geometry_name


class CaloChallengeWriter(HDF5EventWriter):
    """Atomic writer of the CaloChallenge layout: GeV in, MeV float32 out.

    ``append({"incident_energies": (N, 1) or (N,), "showers": (N, layers, alphas, radii) or (N, V)})``; the data
    set is fixed by the first batch. ``showers`` is stored flattened (N, V), radial bin fastest (a C-order
    reshape of the in-memory array), gzip-compressed in chunks of about 64 KiB; ``incident_energies`` as (N, 1).
    Same atomic / ``overwrite`` / ``attrs`` conventions as :class:`caloml.data.lcd.LCDWriter`.
    """

    layout: ClassVar[str] = "calochallenge"

    #: The data set of the file, fixed by the first batch (None before it).
    dataset: CaloChallengeDataset | None = None

    def _prepare(self, events: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        extra = sorted(set(events) - _ENERGY_KEYS)
        if extra:
            raise DataError(
                f"{self.path}: append: unexpected key '{extra[0]}' (the layout has incident_energies, showers)"
            )
        for key in ("incident_energies", "showers"):
            if key not in events:
                raise DataError(f"{self.path}: append: missing required key '{key}'")
        incident = np.asarray(events["incident_energies"])
        check_event_shape(incident.shape, [(1,), ()], file=self.path, key="incident_energies")
        showers = np.asarray(events["showers"])
        if showers.ndim < 2:
            raise DataError(f"{self.path}: key 'showers' has shape {format_shape(showers.shape)}, expected (N, ...)")
        dataset = dataset_from_voxels(int(np.prod(showers.shape[1:])), file=self.path)
        check_event_shape(showers.shape, [dataset.shape, (dataset.n_voxels,)], file=self.path, key="showers")
        if self.dataset is None:
            self.dataset = dataset
        check_values(
            {"incident_energies": incident, "showers": showers},
            file=self.path,
            energy_keys=_ENERGY_KEYS,
            offset=self.n_events,
        )
        return {
            "incident_energies": incident.astype(np.float32).reshape(len(incident), 1) * np.float32(MEV_PER_GEV),
            "showers": showers.astype(np.float32).reshape(len(showers), -1) * np.float32(MEV_PER_GEV),
        }

    def _chunk_rows(self, key: str, event_shape: tuple[int, ...], itemsize: int) -> int:
        if key == "showers":
            return max(1, 65536 // (int(np.prod(event_shape)) * itemsize))
        return 4096

    def __enter__(self) -> CaloChallengeWriter:
        return self
