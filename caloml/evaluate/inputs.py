"""Opening and checking the two files of an evaluation: a generated file and its reference, of the same layout.

:func:`open_pair` opens both files with the reader of their layout (:func:`caloml.data.hdf5.open_reader`: keys,
shapes, event counts and finite, non-negative scalars are validated there) and checks that they can be compared:

* the same layout (LCD or CaloChallenge) and the same calorimeter (51 x 51 x 25 or the 25 x 25 crop for LCD;
  CaloChallenge dataset 2 or 3; dataset 1 has no geometry in caloml and is refused);
* at least one event in each file;
* compatible incident-energy ranges: each end of the generated range within :data:`ENERGY_RANGE_TOLERANCE` (5%) of
  the reference's span of the reference's end, in E or in log E (:func:`check_energy_ranges`; 1% of the energy
  for a fixed-energy reference), so that two files of different energy scans are not compared bin by bin
  without a word.

Conditions are returned in caloml's units: the incident energy ``energy_gev`` (GeV; the CaloChallenge
``incident_energies`` are MeV in the file) and, for LCD files, the incidence angle ``theta_rad``: the true angle
``theta`` when both files have it, else the measured angle ``mtheta`` when both have that (:attr:`InputPair.angle_key`).
NaN or infinite cells are found later, as the cells are streamed (the readers validate every chunk).
See ``docs/evaluation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caloml.data.calochallenge import CaloChallengeReader
from caloml.data.hdf5 import HDF5EventReader, open_reader
from caloml.data.lcd import LCDReader
from caloml.errors import CalomlError, DataError
from caloml.geometry import CylindricalCalorimeter

__all__ = ["ANGLE_KEYS", "ENERGY_RANGE_TOLERANCE", "EvaluationInput", "InputPair", "check_energy_ranges", "open_pair"]

#: Largest allowed distance between the ends of the two incident-energy ranges, as a fraction of the reference span.
ENERGY_RANGE_TOLERANCE = 0.05
#: The same for a reference of a single energy, as a fraction of that energy.
FIXED_ENERGY_TOLERANCE = 0.01

#: The angle keys of LCD files, in order of preference for the angle condition.
ANGLE_KEYS = ("theta", "mtheta")
#: Written by ``python -m caloml.generate gan`` for a model conditioned on the measured angle: the measured angle
#: the shower was generated for. It is that file's ``mtheta`` condition (its ``mtheta`` key is the angle measured
#: on the generated shower, an output, and is compared as an observable).
GENERATED_MTHETA_CONDITION = "mtheta_condition"
_LCD_KEYS = ("ECAL", "energy", "theta", "mtheta", GENERATED_MTHETA_CONDITION)


@dataclass
class EvaluationInput:
    """One file of the evaluation, opened and checked.

    Attributes:
        path: the HDF5 file.
        reader: its open reader (LCD or CaloChallenge), reading only the keys the evaluation uses.
        layout: ``"lcd"`` or ``"calochallenge"``.
        geometry_name: ``clic-ecal``, ``clic-ecal-crop25x25``, ``calochallenge-2`` or ``calochallenge-3``.
        energy_gev: incident energy of every event, shape (N,), GeV.
        theta_rad: incidence angle of every event, shape (N,), radians (the pair's :attr:`InputPair.angle_key`);
            None if the pair has no common angle.
        angles: every angle key of the file (``theta``, ``mtheta``) with its values (N,), radians.
    """

    path: Path
    reader: HDF5EventReader
    layout: str
    geometry_name: str
    energy_gev: np.ndarray
    theta_rad: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    angles: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        """Number of showers in the file."""
        return int(self.reader.n_events)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one shower (51, 51, 25), (45, 16, 9)..."""
        key = "ECAL" if self.layout == "lcd" else "showers"
        return tuple(self.reader.event_shapes[key])

    @property
    def cylinder(self) -> CylindricalCalorimeter | None:
        """The CaloChallenge geometry (None for LCD files)."""
        return self.reader.geometry if isinstance(self.reader, CaloChallengeReader) else None

    def describe(self) -> dict:
        """JSON-ready summary: path, layout, geometry, events, condition ranges."""
        summary: dict = {
            "path": str(self.path),
            "layout": self.layout,
            "geometry": self.geometry_name,
            "n_events": self.n_events,
            "event_shape": list(self.event_shape),
            "energy_range_gev": [float(self.energy_gev.min()), float(self.energy_gev.max())],
            "angle_key": None
            if self.theta_rad is None
            else next((k for k, v in self.angles.items() if v is self.theta_rad), None),
            "theta_range_rad": None
            if self.theta_rad is None
            else [float(self.theta_rad.min()), float(self.theta_rad.max())],
        }
        config = self.attrs.get("caloml_config")
        if config is not None:
            summary["caloml_config"] = config
        return summary

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()


@dataclass
class InputPair:
    """The generated and reference files of one evaluation (see :func:`open_pair`)."""

    generated: EvaluationInput
    reference: EvaluationInput

    @property
    def layout(self) -> str:
        """The common layout, ``"lcd"`` or ``"calochallenge"``."""
        return self.reference.layout

    @property
    def geometry_name(self) -> str:
        """The common geometry name."""
        return self.reference.geometry_name

    @property
    def angle_key(self) -> str | None:
        """The angle condition of the pair: ``theta`` if both files have it, else ``mtheta`` if both do, else None."""
        for key in ANGLE_KEYS:
            if key in self.generated.angles and key in self.reference.angles:
                return key
        return None

    @property
    def has_theta(self) -> bool:
        """Whether the pair has a common angle condition (LCD files with ``theta`` or ``mtheta``)."""
        return self.generated.theta_rad is not None and self.reference.theta_rad is not None

    def close(self) -> None:
        """Close both readers."""
        self.generated.close()
        self.reference.close()

    def __enter__(self) -> InputPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _angle_conditions(reader: HDF5EventReader, path: Path) -> dict[str, np.ndarray]:
    """The file's angle conditions (rad) by key; a key with an invalid value (non-finite, or the measured
    angle's sentinel 100 of a shower whose angle cannot be measured) is left out, with a note."""
    angles = {}
    for key in ANGLE_KEYS:
        source = GENERATED_MTHETA_CONDITION if key == "mtheta" and GENERATED_MTHETA_CONDITION in reader.keys else key
        if source not in reader.keys:
            continue
        values = reader.read_key(source).reshape(-1).astype(np.float64)
        invalid = int(np.count_nonzero(~np.isfinite(values) | (values < 0) | (values > np.pi)))
        if invalid:
            print(f"note: {path}: {invalid} events have no valid '{source}'; it is not used as the angle condition")
            continue
        angles[key] = values
    return angles


def _open_one(path: Path, role: str, chunk_events: int) -> EvaluationInput:
    probe = open_reader(path, chunk_events=chunk_events)  # validates structure and scalars; detects the layout
    if isinstance(probe, LCDReader):
        keys = [key for key in _LCD_KEYS if key in probe.keys]
        probe.close()
        reader: HDF5EventReader = LCDReader(path, chunk_events=chunk_events, keys=keys)
    else:
        reader = probe
    try:
        if reader.n_events == 0:
            raise DataError(f"{path}: the {role} file has no events")
        if isinstance(reader, CaloChallengeReader):
            if reader.geometry is None:
                raise DataError(
                    f"{path}: CaloChallenge dataset {reader.dataset.name} has irregular layers (XML binning) that"
                    " caloml does not describe; the evaluation supports datasets 2 and 3"
                )
            energy = reader.read_key("incident_energies").reshape(-1).astype(np.float64)
            angles: dict[str, np.ndarray] = {}
        else:
            energy = reader.read_key("energy").reshape(-1).astype(np.float64)
            angles = _angle_conditions(reader, path)
        return EvaluationInput(
            path=path,
            reader=reader,
            layout=reader.layout,
            geometry_name=reader.geometry_name,
            energy_gev=energy,
            attrs=dict(reader.attrs),
            angles=angles,
        )
    except BaseException:
        reader.close()
        raise


def _energy_scale(energy_gev: np.ndarray) -> str:
    """``"log"`` for a spectrum spread evenly in log E (CaloChallenge), ``"linear"`` for one even in E (LCD).

    The space in which the median lies closest to the middle of the range.
    """
    low, high, median = float(energy_gev.min()), float(energy_gev.max()), float(np.median(energy_gev))
    if low <= 0 or high <= low:
        return "linear"
    linear_position = (median - low) / (high - low)
    log_position = np.log(median / low) / np.log(high / low)
    return "log" if abs(log_position - 0.5) < abs(linear_position - 0.5) else "linear"


def check_energy_ranges(generated: EvaluationInput, reference: EvaluationInput) -> None:
    """Raise CalomlError if the two incident-energy ranges differ beyond the tolerance of the module docstring.

    The tolerance is :data:`ENERGY_RANGE_TOLERANCE` of the reference's span, measured in E for a spectrum even in
    E and in log E for one even in log E (so that 10 GeV - 1 TeV is not taken for 1 GeV - 1 TeV); a reference of
    one energy allows :data:`FIXED_ENERGY_TOLERANCE` of it.
    """
    low_ref, high_ref = float(reference.energy_gev.min()), float(reference.energy_gev.max())
    low_gen, high_gen = float(generated.energy_gev.min()), float(generated.energy_gev.max())
    if high_ref > low_ref and _energy_scale(reference.energy_gev) == "log" and low_gen > 0:
        span = np.log(high_ref / low_ref)
        differs = max(abs(np.log(low_gen / low_ref)), abs(np.log(high_gen / high_ref))) > ENERGY_RANGE_TOLERANCE * span
        allowed = f"{ENERGY_RANGE_TOLERANCE:.0%} of the range in log E"
    else:
        tolerance = ENERGY_RANGE_TOLERANCE * (high_ref - low_ref) if high_ref > low_ref else 0.0
        tolerance = max(tolerance, FIXED_ENERGY_TOLERANCE * high_ref if high_ref == low_ref else 0.0)
        differs = abs(low_gen - low_ref) > tolerance or abs(high_gen - high_ref) > tolerance
        allowed = f"{tolerance:.3g} GeV at each end"
    if differs:
        raise CalomlError(
            f"incident energies differ: {generated.path} spans {low_gen:.4g}-{high_gen:.4g} GeV but the reference"
            f" {reference.path} spans {low_ref:.4g}-{high_ref:.4g} GeV (allowed difference {allowed}); generate"
            " the showers for the reference's energies"
        )


def open_pair(generated: str | Path, reference: str | Path, *, chunk_events: int = 256) -> InputPair:
    """Open and check the generated and reference files (see the module docstring); close with ``close()``.

    Raises:
        DataError: a file is missing, malformed, empty, holds NaN or negative scalars, or is CaloChallenge dataset 1.
        CalomlError: the files have different layouts or geometries, or incompatible incident-energy ranges.
    """
    generated_path, reference_path = Path(generated), Path(reference)
    if generated_path.resolve() == reference_path.resolve():
        raise CalomlError(f"{generated_path}: the generated and reference files are the same file")
    reference_input = _open_one(reference_path, "reference", chunk_events)
    try:
        generated_input = _open_one(generated_path, "generated", chunk_events)
    except BaseException:
        reference_input.close()
        raise
    pair = InputPair(generated_input, reference_input)
    try:
        if generated_input.layout != reference_input.layout:
            raise CalomlError(
                f"different layouts: {generated_path} is a{_article(generated_input.layout)} file and the reference"
                f" {reference_path} a{_article(reference_input.layout)} file; compare files of the same layout"
            )
        if generated_input.event_shape != reference_input.event_shape:
            raise CalomlError(
                f"different geometries: {generated_path} has showers of shape {generated_input.event_shape}"
                f" ({generated_input.geometry_name}) and the reference {reference_path}"
                f" {reference_input.event_shape} ({reference_input.geometry_name})"
            )
        check_energy_ranges(generated_input, reference_input)
        key = pair.angle_key
        if key is not None:
            generated_input.theta_rad = generated_input.angles[key]
            reference_input.theta_rad = reference_input.angles[key]
    except BaseException:
        pair.close()
        raise
    return pair


def _article(layout: str) -> str:
    return "n LCD" if layout == "lcd" else " CaloChallenge"
