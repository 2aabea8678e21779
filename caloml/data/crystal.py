"""Reading and writing the crystal-array HDF5 layout (``--geometry crystal-5x5``, :mod:`caloml.sim.crystal`).

Files hold ``showers`` (N, 5, 5) float32 crystal energies in **GeV** (row = y, column = x), ``energy`` (N,) primary
energies in GeV, ``impact`` (N, 2) impact points (x, y) in mm from the array's centre and ``pdgID`` (N,), with the
simulation configuration in the root attribute ``caloml_config`` like the other layouts. Generated files may lack
``impact`` and ``pdgID``; :func:`caloml.data.hdf5.detect_layout` recognizes the layout from its keys (``showers``
with ``energy``, where CaloChallenge files have ``incident_energies``). See ``docs/crystal-geometry.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from caloml.data.checks import check_event_shape, check_values, format_shape
from caloml.data.hdf5 import HDF5EventReader, HDF5EventWriter, register_reader
from caloml.errors import DataError

__all__ = ["CRYSTAL_KEYS", "CrystalReader", "CrystalWriter", "is_crystal_shape"]

#: The keys of a crystal file; ``showers`` and ``energy`` are required.
CRYSTAL_KEYS = ("showers", "energy", "impact", "pdgID")
_REQUIRED = ("showers", "energy")
_ENERGY_KEYS = frozenset({"showers", "energy"})


def is_crystal_shape(shape: Sequence[int]) -> bool:
    """Whether a ``showers`` dataset shape (with the event axis) is a square crystal array (N, n, n)."""
    return len(shape) == 3 and shape[1] == shape[2]


@register_reader
class CrystalReader(HDF5EventReader):
    """Streaming reader of a crystal-array file: ``showers`` (N, n, n) GeV, ``energy`` (N,) GeV, ``impact`` (N, 2)
    mm, ``pdgID`` (N,); same interface as the other readers (``iter_chunks()``, ``read()``, ``attrs``)."""

    layout: ClassVar[str] = "crystal"
    required_keys: ClassVar[tuple[str, ...]] = _REQUIRED
    energy_keys: ClassVar[frozenset[str]] = _ENERGY_KEYS
    cell_keys: ClassVar[frozenset[str]] = frozenset({"showers"})
    signature_keys: ClassVar[frozenset[str]] = frozenset({"showers", "energy", "impact"})
    description: ClassVar[str] = "a crystal-array file (keys 'showers' (N, n, n) and 'energy')"

    def _validate_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        if not is_crystal_shape(shapes["showers"]):
            raise DataError(
                f"{self.path}: key 'showers' has shape {format_shape(shapes['showers'])}, expected (N, n, n) crystals"
            )
        check_event_shape(shapes["energy"], [()], file=self.path, key="energy")
        if "impact" in shapes:
            check_event_shape(shapes["impact"], [(2,)], file=self.path, key="impact")

    @property
    def geometry_name(self) -> str:
        """``crystal-5x5`` for a 5 x 5 array (``crystal-NxN`` in general)."""
        n = self.event_shapes["showers"][0] if hasattr(self, "event_shapes") else 5
        return f"crystal-{n}x{n}"


class CrystalWriter(HDF5EventWriter):
    """Atomic writer of the crystal layout: ``append({"showers": (N, n, n), "energy": (N,), ["impact": (N, 2)],
    ["pdgID": (N,)]})`` in GeV and mm; same ``overwrite`` / ``attrs`` conventions as the other writers."""

    layout: ClassVar[str] = "crystal"

    def _prepare(self, events: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        extra = sorted(set(events) - set(CRYSTAL_KEYS))
        if extra:
            raise DataError(
                f"{self.path}: append: unexpected key '{extra[0]}' (the layout has {', '.join(CRYSTAL_KEYS)})"
            )
        for key in _REQUIRED:
            if key not in events:
                raise DataError(f"{self.path}: append: missing required key '{key}'")
        showers = np.asarray(events["showers"], dtype=np.float32)
        if not is_crystal_shape(showers.shape):
            raise DataError(f"{self.path}: key 'showers' has shape {format_shape(showers.shape)}, expected (N, n, n)")
        arrays = {"showers": showers, "energy": np.asarray(events["energy"], dtype=np.float32).reshape(len(showers))}
        if "impact" in events:
            impact = np.asarray(events["impact"], dtype=np.float32)
            check_event_shape(impact.shape, [(2,)], file=self.path, key="impact")
            arrays["impact"] = impact
        if "pdgID" in events:
            arrays["pdgID"] = np.asarray(events["pdgID"], dtype=np.int32)
        check_values(arrays, file=self.path, energy_keys=_ENERGY_KEYS, offset=self.n_events)
        return arrays

    def _chunk_rows(self, key: str, event_shape: tuple[int, ...], itemsize: int) -> int:
        return 4096

    def __enter__(self) -> CrystalWriter:
        return self
