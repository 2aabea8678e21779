"""Reading and writing the CLIC / LCD calorimeter HDF5 layout (Zenodo 3603086; 3DGAN and Triforce data sets).

In memory (what :class:`LCDReader` yields and :class:`LCDWriter` takes), a batch of N events is a dict keyed by
the file's own dataset names:

=================  ==========================  ================================================================
key                shape, dtype                meaning and units
=================  ==========================  ================================================================
``ECAL``           (N, 51, 51, 25) float32     ECAL cells in **GeV**, axes x, y, z (or (N, 25, 25, 25) cropped)
``HCAL``           (N, 11, 11, 60) float32     HCAL cells in GeV (optional)
``energy``         (N,) float32                primary energy, GeV
``theta`` ...      (N,) float32                ``theta``, ``mtheta``, ``phi``, ``eta``, ``reco*``: radians
``pdgID``          (N,) int32                  11, 22, 111, +-211; derived from the file name when absent
``ECAL_E`` ...     (N,)                        window sums in GeV, expert features, ``openingAngle`` (rad), ...
=================  ==========================  ================================================================

Units at the edge: the files store the **cell arrays** ``ECAL`` and
``HCAL`` and the **window sums** ``ECAL_E`` and ``HCAL_E`` as 50 x GeV (:data:`caloml.units.LCD_STORED_PER_GEV`;
the sums of the real files are sums of the stored cells); the reader divides, the writer multiplies. Every other
key is stored as it is in memory. Only ``ECAL`` and ``energy`` are required; the real files may lack any other
key. Cells may be float64 (original releases) or float32 (repacked); scalars may be (N,) or (N, 1).
See ``docs/data.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from caloml.data.checks import check_event_shape, check_values
from caloml.data.hdf5 import HDF5EventReader, HDF5EventWriter, register_reader
from caloml.errors import DataError
from caloml.geometry import CLIC_ECAL, CLIC_HCAL
from caloml.units import LCD_STORED_PER_GEV

__all__ = [
    "ECAL_SHAPES",
    "HCAL_SHAPES",
    "PARTICLE_PDG_IDS",
    "LCDReader",
    "LCDWriter",
    "particle_from_filename",
    "pdg_id_from_filename",
]

#: Per-event ECAL shapes: the full window and the Triforce centre crop.
ECAL_SHAPES: tuple[tuple[int, int, int], ...] = (CLIC_ECAL.shape, (25, 25, CLIC_ECAL.stack.n_layers))
#: Per-event HCAL shape.
HCAL_SHAPES: tuple[tuple[int, int, int], ...] = (CLIC_HCAL.shape,)
#: Particle names of the file-name prefix (before ``Escan``) and their PDG codes (charged pion sign unknown: +211).
PARTICLE_PDG_IDS: dict[str, int] = {"Ele": 11, "Gamma": 22, "Pi0": 111, "ChPi": 211}

_CELL_SHAPES = {"ECAL": ECAL_SHAPES, "HCAL": HCAL_SHAPES}
_SCALAR_KEYS = frozenset(
    {"energy", "theta", "mtheta", "phi", "eta", "recoTheta", "recoPhi", "recoEta", "pdgID", "ECAL_E", "HCAL_E",
     "openingAngle", "conversion", "sum"}
)  # fmt: skip
_ENERGY_KEYS = frozenset({"ECAL", "HCAL", "energy", "ECAL_E", "HCAL_E"})
#: Window sums stored like the cells, in 50 x GeV (they are sums of the stored cells in the real files' code).
_STORED_SUM_KEYS = frozenset({"ECAL_E", "HCAL_E"})
_FILENAME = re.compile(r"^(?P<particle>[A-Za-z0-9]+?)Escan")


def particle_from_filename(path: str | Path) -> str | None:
    """Particle of an LCD file from its name (``Ele``, ``Gamma``, ``Pi0``, ``ChPi``: the prefix before ``Escan``).

    ``GammaEscan_RandomAngle_1_1.h5`` -> ``"Gamma"``; None when the name does not follow the convention.
    """
    match = _FILENAME.match(Path(path).name)
    if match and match["particle"] in PARTICLE_PDG_IDS:
        return match["particle"]
    return None


def pdg_id_from_filename(path: str | Path) -> int | None:
    """PDG code of the particle named by an LCD file name (11, 22, 111, 211), or None."""
    particle = particle_from_filename(path)
    return None if particle is None else PARTICLE_PDG_IDS[particle]


def _geometry_name(ecal_shape: tuple[int, ...]) -> str:
    return (
        CLIC_ECAL.name
        if tuple(ecal_shape) == CLIC_ECAL.shape
        else f"{CLIC_ECAL.name}-crop{ecal_shape[0]}x{ecal_shape[1]}"
    )


@register_reader
class LCDReader(HDF5EventReader):
    """Streaming reader of an LCD file: events in GeV, validated as they are read.

    Parameters
    ----------
    path:
        The HDF5 file. It is opened and its structure checked here (required keys ``ECAL`` and ``energy``, shapes,
        event counts, finite and non-negative scalars); cell arrays are read only on demand.
    chunk_events:
        Events per chunk of :meth:`iter_chunks`.
    keys:
        Keys to read (default: every per-event dataset of the file, plus ``pdgID`` from the file name if the file
        has none). The required keys are checked even when not selected.

    Use ``len(reader)``, ``reader.iter_chunks()`` (dicts of arrays, see the module docstring),
    ``reader.read(indices or slice)``, ``reader.event_shapes``, ``reader.attrs`` (provenance), and close it (or use
    it as a context manager).
    """

    layout: ClassVar[str] = "lcd"
    signature_keys: ClassVar[frozenset[str]] = frozenset({"ECAL"})
    description: ClassVar[str] = "an LCD file (key 'ECAL')"
    required_keys: ClassVar[tuple[str, ...]] = ("ECAL", "energy")
    energy_keys: ClassVar[frozenset[str]] = _ENERGY_KEYS
    cell_keys: ClassVar[frozenset[str]] = frozenset(_CELL_SHAPES)

    def __init__(self, path: str | Path, *, chunk_events: int = 256, keys: Sequence[str] | None = None) -> None:
        self.particle: str | None = particle_from_filename(path)
        super().__init__(path, chunk_events=chunk_events, keys=keys)

    def _derived_keys(self) -> tuple[str, ...]:
        assert self._file is not None
        return ("pdgID",) if "pdgID" not in self._file and self.particle is not None else ()

    def _derive(self, key: str, n: int) -> np.ndarray:
        if key == "pdgID" and self.particle is not None:
            return np.full(n, PARTICLE_PDG_IDS[self.particle], dtype=np.int32)
        raise KeyError(key)

    def _validate_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        for key, shape in shapes.items():
            if key in _CELL_SHAPES:
                check_event_shape(shape, _CELL_SHAPES[key], file=self.path, key=key)
            elif key in _SCALAR_KEYS:
                check_event_shape(shape, [(), (1,)], file=self.path, key=key)

    def _convert(self, key: str, raw: np.ndarray) -> np.ndarray:
        if key in _CELL_SHAPES:
            cells = raw if raw.dtype == np.float32 else raw.astype(np.float32)
            cells /= np.float32(LCD_STORED_PER_GEV)
            return cells
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if key in _STORED_SUM_KEYS:
            return raw.astype(np.float32) / np.float32(LCD_STORED_PER_GEV)
        if key == "pdgID":
            return raw.astype(np.int32)
        if np.issubdtype(raw.dtype, np.floating):
            return raw.astype(np.float32, copy=False)
        return raw

    @property
    def pdg_id(self) -> int | None:
        """PDG code of the file's particle: from the file name, else the ``pdgID`` dataset when it is constant."""
        from_name = pdg_id_from_filename(self.path)
        if from_name is not None or "pdgID" not in self._datasets:
            return from_name
        values = np.unique(self.read(slice(None))["pdgID"]) if self.n_events else np.array([])
        return int(values[0]) if values.size == 1 else None

    @property
    def geometry_name(self) -> str:
        """Name of the ECAL geometry: ``clic-ecal`` (51 x 51 x 25) or ``clic-ecal-crop25x25``."""
        return _geometry_name(self.event_shapes.get("ECAL", CLIC_ECAL.shape))


class LCDWriter(HDF5EventWriter):
    """Atomic writer of the LCD layout; events in GeV go in, the cell arrays are stored as 50 x GeV float32.

    ``append(events)`` takes a dict as described in the module docstring (``ECAL`` and ``energy`` required, the
    first batch fixes the keys). Cell arrays (rank >= 2) are chunked one event per chunk, as in the repacked
    release, so that random access reads one chunk; scalars are (N,) in chunks of 4096 events. All datasets are
    resizable along the event axis and gzip-compressed (``compression_level``, see
    :data:`caloml.data.hdf5.DEFAULT_GZIP_LEVEL`; None for none). ``attrs`` go to the root group (provenance: use
    :func:`caloml.data.hdf5.provenance_attrs` for ``caloml_config`` with the seed).

    Use as a context manager; the file appears at ``path`` only when the block ends without an exception.
    """

    layout: ClassVar[str] = "lcd"

    def _prepare(self, events: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for key in ("ECAL", "energy"):
            if key not in events:
                raise DataError(f"{self.path}: append: missing required key '{key}'")
        arrays: dict[str, np.ndarray] = {}
        for key, value in events.items():
            array = np.asarray(value)
            if array.ndim == 0:
                raise DataError(f"{self.path}: append: key '{key}' is a scalar, expected one value per event")
            if key in _CELL_SHAPES:
                check_event_shape(array.shape, _CELL_SHAPES[key], file=self.path, key=key)
            elif key in _SCALAR_KEYS or (array.ndim == 2 and array.shape[1] == 1):
                check_event_shape(array.shape, [(), (1,)], file=self.path, key=key)
                array = array.reshape(len(array))
            arrays[key] = array
        check_values(arrays, file=self.path, energy_keys=_ENERGY_KEYS, offset=self.n_events)
        stored: dict[str, np.ndarray] = {}
        for key, array in arrays.items():
            if key in _CELL_SHAPES or key in _STORED_SUM_KEYS:
                stored[key] = np.multiply(array, np.float32(LCD_STORED_PER_GEV), dtype=np.float32)
            elif key == "pdgID":
                stored[key] = array.astype(np.int32)
            elif np.issubdtype(array.dtype, np.floating):
                stored[key] = array.astype(np.float32, copy=False)
            else:
                stored[key] = array
        return stored

    def _chunk_rows(self, key: str, event_shape: tuple[int, ...], itemsize: int) -> int:
        return 1 if len(event_shape) >= 2 else max(1, 4096 // max(1, int(np.prod(event_shape, dtype=np.int64))))

    def __enter__(self) -> LCDWriter:
        return self
