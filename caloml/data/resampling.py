"""Resampling CLIC ECAL showers to ATLAS-like and CMS-like granularity, as in section 5.4 of "Calorimetry with
Deep Learning: Particle Simulation and Reconstruction for Collider Physics" (Triforce, arXiv:1912.06794).

The paper emulates coarser calorimeters on the CLIC data: each CLIC cell's energy is redistributed onto a coarser
grid by overlap fraction, then spread back onto the CLIC grid, so that the same networks (and array shapes) apply.
:func:`resample_ecal` does both steps at once; :class:`Resample` is the same as a pipeline transform, and
``python -m caloml.data resample IN.h5 OUT.h5 --detector atlas`` writes a resampled copy of an LCD file.

Geometry (decisions, since the paper gives only the table):

* **Axes.** ECAL arrays are (N, X, Y, Z) with X, Y transverse and Z the 25 layers. Y is the **eta** direction (the
  simulator's inclination in theta moves a shower along y, see :mod:`caloml.observables.angle`) and X the **phi**
  direction. The window may be any size (51 x 51, the 25 x 25 crop, ...); it must have the 25 CLIC layers.
* **Transverse cell size.** A target cell of angular size ``d`` (eta or phi) in a detector of Moliere radius
  ``RM`` spans ``(d / RM) / (0.003 / 0.9327 cm)`` CLIC cells (CLIC: d_eta = d_phi = 0.003, RM = 0.9327 cm): cell
  sizes are compared in Moliere radii, as in the paper (lengths in mm: that times
  :data:`caloml.geometry.CLIC_ECAL` ``.cell_mm`` = 5.1 mm). CMS-like (0.0175, RM 1.959 cm): 2.78 CLIC cells in
  both directions. ATLAS-like (RM 9.043 cm, as tabulated): strips 0.025 / 8 x 0.1 -> 0.107 (y) x 3.44 (x) cells,
  middle 0.025 x 0.025 -> 0.86 x 0.86, back 0.05 x 0.025 -> 1.72 (y) x 0.86 (x). (With the tabulated Moliere
  radius the ATLAS-like middle and strip cells are *finer* than CLIC's in eta; the information is then lost mostly
  along phi in the strips.)
* **Alignment.** The coarse grid is centred on the window centre: one coarse cell is centred there (the centre of
  the central cell for an odd window, where the LCD windows centre the shower), and the grid extends until it
  covers the window; the edge cells stick out of it.
* **Depth** (the paper uses radiation lengths along z). CMS-like: no depth segmentation, all 25 layers form one
  sampling. ATLAS-like: three samplings of CLIC layers 1-5, 6-22 and 23-25 (5 / 17 / 3 layers), each with its own
  transverse cells. Spreading back along depth is uniform in radiation lengths: a layer receives its share
  ``X0(layer) / X0(sampling)`` (:attr:`caloml.geometry.LayerStack.layer_x0`: the 4.8 mm W layers 18-25 get twice
  the share of the 2.4 mm ones). So after CMS-like resampling every (x, y) column has the same longitudinal profile
  (the layers' X0 shares) scaled by the column's energy.

The linear map and its exactness are described at :class:`ResamplingMap`. TensorFlow is imported only by
:class:`Resample`'s TensorFlow version (``python -m caloml.data resample`` runs without it). See ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from caloml.cli_args import output_file
from caloml.data.hdf5 import open_reader, provenance_attrs
from caloml.data.lcd import LCDReader, LCDWriter
from caloml.data.lcd_features import expert_features
from caloml.data.transforms import Transform
from caloml.errors import CalomlError, DataError, OutputExistsError
from caloml.geometry import CLIC_ECAL

__all__ = [
    "CLIC_D_ETA",
    "CLIC_MOLIERE_RADIUS_CM",
    "CLIC_RADIATION_LENGTH_CM",
    "DETECTORS",
    "RESAMPLE_CHOICES",
    "Resample",
    "ResamplingMap",
    "Sampling",
    "TargetDetector",
    "check_resample",
    "overlap_matrix",
    "resample_ecal",
    "resample_events",
    "resampling_map",
]

#: CLIC ECAL cell size in eta and phi, Moliere radius and radiation length (Triforce paper, table 1).
CLIC_D_ETA = 0.003
CLIC_MOLIERE_RADIUS_CM = 0.9327
CLIC_RADIATION_LENGTH_CM = 0.3504


@dataclass(frozen=True)
class Sampling:
    """One depth sampling of a target detector: ``n_layers`` consecutive CLIC layers, cells ``d_eta`` x ``d_phi``."""

    n_layers: int
    d_eta: float
    d_phi: float


@dataclass(frozen=True)
class TargetDetector:
    """A coarser calorimeter to emulate: Moliere radius (cm) and depth samplings (front to back, 25 layers in all)."""

    name: str
    moliere_radius_cm: float
    samplings: tuple[Sampling, ...]

    def pitch_cells(self, d: float) -> float:
        """Size in CLIC cells of a cell of angular size ``d``: ``(d / RM) / (0.003 / RM_CLIC)``."""
        return (d / self.moliere_radius_cm) / (CLIC_D_ETA / CLIC_MOLIERE_RADIUS_CM)

    def pitch_mm(self, d: float) -> float:
        """The same in mm of the CLIC ECAL (5.1 mm cells)."""
        return self.pitch_cells(d) * CLIC_ECAL.cell_mm


#: The emulated detectors (Triforce paper, table 1; the ATLAS-like back sampling is 0.05 x 0.025, ATLAS's real cells).
DETECTORS: dict[str, TargetDetector] = {
    "cms": TargetDetector("cms", 1.959, (Sampling(25, 0.0175, 0.0175),)),
    "atlas": TargetDetector(
        "atlas",
        9.043,
        (Sampling(5, 0.025 / 8, 0.1), Sampling(17, 0.025, 0.025), Sampling(3, 0.05, 0.025)),
    ),
}


def _detector(detector: str | TargetDetector) -> TargetDetector:
    if isinstance(detector, TargetDetector):
        return detector
    if detector not in DETECTORS:
        raise CalomlError(f"unknown detector {detector!r} for resampling; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[detector]


def overlap_matrix(n_cells: int, pitch_cells: float, *, snap: bool = False) -> np.ndarray:
    """Overlaps ``O`` (n_cells, K) in CLIC cells of the CLIC cells [i, i + 1) with the coarse cells of size
    ``pitch_cells`` centred on the window centre ``n_cells / 2`` (see the module docstring); rows sum to 1.

    With ``snap`` the coarse boundaries are rounded to whole CLIC cells (empty coarse cells dropped).
    """
    if n_cells < 1 or not pitch_cells > 0:
        raise ValueError(f"need n_cells >= 1 and a positive pitch, got {n_cells}, {pitch_cells}")
    centre = n_cells / 2.0
    reach = math.ceil(centre / pitch_cells + 0.5)  # coarse cells each side of the central one
    edges = centre + (np.arange(-reach, reach + 1) - 0.5) * pitch_cells
    edges = np.clip(edges, 0.0, float(n_cells))
    if snap:
        edges = np.unique(np.round(edges))
    fine = np.arange(n_cells + 1, dtype=np.float64)
    low = np.maximum(fine[:-1, None], edges[None, :-1])
    high = np.minimum(fine[1:, None], edges[None, 1:])
    overlap = np.clip(high - low, 0.0, None)
    return overlap[:, overlap.sum(axis=0) > 0]


def _projection(n_cells: int, pitch_cells: float, snap: bool) -> np.ndarray:
    """``P = O W^-1 O^T`` (n_cells, n_cells): ``x' = P x`` along one axis."""
    overlap = overlap_matrix(n_cells, pitch_cells, snap=snap)
    return (overlap / overlap.sum(axis=0)) @ overlap.T


@dataclass(frozen=True)
class ResamplingMap:
    """The precomputed linear map of one detector on one window shape (X, Y, 25).

    Per sampling ``g``: ``layers[g]`` (start, stop) of its CLIC layers, ``x[g]`` (X, X) and ``y[g]`` (Y, Y) the
    transverse maps and ``depth[g]`` (stop - start,) the layers' shares of the sampling (sum 1), all float64.
    ``out[n, i, j, z] = depth[g][z] * sum_{a, b} x[g][i, a] y[g][j, b] sum_{z' in g} E[n, a, b, z']``.

    The map. Per axis, with ``O[i, k]`` the length (in CLIC cells) of the overlap of CLIC cell ``i`` and coarse cell
    ``k`` and ``W[k] = sum_i O[i, k]`` the part of the coarse cell inside the window, the coarse energies are
    ``c_k = sum_i O[i, k] x_i`` (each CLIC cell split by overlap fraction) and the resampled cells
    ``x'_j = sum_k O[j, k] c_k / W[k]`` (each coarse cell spread uniformly over the CLIC cells it covers, by overlap).
    So ``x' = P x`` with the symmetric ``n x n`` matrix ``P = O W^-1 O^T``, precomputed per transverse axis and
    sampling; along the depth, a (25, G) matrix sums the layers of each of the G samplings and a (G, 25) matrix spreads
    them back (the layers' shares). All are applied as matrix products (``tf.einsum`` in the TensorFlow version). Both
    steps conserve the energy exactly (the columns of ``P`` and of the depth maps sum to 1; sums in float64, the output
    in the input's precision); cell energies stay non-negative.

    Exactness: ``P`` is a projection (resampling twice = once) when every coarse boundary falls on a CLIC boundary.
    With the real cell sizes it does not: a CLIC cell cut by a coarse boundary is split by area as if its energy were
    uniform inside it, and resampling again blurs such cells a little more (the paper's method, which it notes loses
    information at the edges). ``snap=True`` rounds every coarse boundary to the nearest CLIC boundary (cells of a whole
    number of CLIC cells whose mean size is the target's; cells smaller than half a CLIC cell disappear, i.e. the finer
    ATLAS-like strips keep CLIC's granularity along that axis): ``P`` is then an exact projection.
    """

    detector: str
    shape: tuple[int, int, int]
    snap: bool
    layers: tuple[tuple[int, int], ...]
    x: tuple[np.ndarray, ...]
    y: tuple[np.ndarray, ...]
    depth: tuple[np.ndarray, ...]

    def apply_numpy(self, cells: np.ndarray) -> np.ndarray:
        """Resample (N, X, Y, 25) cells; the result has the input's shape and float dtype (sums in float64)."""
        cells64 = np.asarray(cells, dtype=np.float64)
        n_layers = cells64.shape[-1]
        collapse = np.zeros((n_layers, len(self.layers)))  # (Z, G): layer z belongs to sampling g
        spread_back = np.zeros((len(self.layers), n_layers))  # (G, Z): the layers' shares of sampling g
        for g, ((start, stop), share) in enumerate(zip(self.layers, self.depth, strict=True)):
            collapse[start:stop, g] = 1.0
            spread_back[g, start:stop] = share
        summed = np.moveaxis(cells64 @ collapse, -1, 0)  # (G, N, X, Y)
        coarse = np.stack([np.matmul(np.matmul(px, s), py.T) for px, py, s in zip(self.x, self.y, summed, strict=True)])
        dtype = cells.dtype if np.issubdtype(cells.dtype, np.floating) else np.float64
        # the big output is written once, directly in the input's precision
        return np.moveaxis(coarse, 0, -1).astype(dtype) @ spread_back.astype(dtype)  # (N, X, Y, Z)

    def apply_tf(self, cells: Any) -> Any:
        """The same on a tensor (N, X, Y, 25), computed in its float dtype."""
        import tensorflow as tf

        cells = tf.convert_to_tensor(cells)
        dtype = cells.dtype if cells.dtype.is_floating else tf.float32
        cells = tf.cast(cells, dtype)
        parts = []
        for (start, stop), px, py, share in zip(self.layers, self.x, self.y, self.depth, strict=True):
            summed = tf.reduce_sum(cells[..., start:stop], axis=-1)
            spread = tf.einsum("ia,nab,jb->nij", tf.constant(px, dtype), summed, tf.constant(py, dtype))
            parts.append(spread[..., None] * tf.constant(share, dtype))
        return tf.concat(parts, axis=-1)


@lru_cache(maxsize=32)
def _cached_map(name: str, shape: tuple[int, int, int], snap: bool) -> ResamplingMap:
    detector = DETECTORS[name]
    n_x, n_y, _ = shape
    layer_x0 = np.asarray(CLIC_ECAL.stack.layer_x0, dtype=np.float64)
    layers, xs, ys, depth = [], [], [], []
    start = 0
    for sampling in detector.samplings:
        stop = start + sampling.n_layers
        layers.append((start, stop))
        xs.append(_projection(n_x, detector.pitch_cells(sampling.d_phi), snap))
        ys.append(_projection(n_y, detector.pitch_cells(sampling.d_eta), snap))
        share = layer_x0[start:stop]
        depth.append(share / share.sum())
        start = stop
    for array in (*xs, *ys, *depth):
        array.setflags(write=False)
    return ResamplingMap(name, shape, snap, tuple(layers), tuple(xs), tuple(ys), tuple(depth))


def resampling_map(detector: str, shape: tuple[int, ...], *, snap: bool = False) -> ResamplingMap:
    """The map of ``detector`` ("atlas" or "cms") for ECAL events of ``shape`` (X, Y, 25) (cached).

    A one-line :class:`CalomlError` for an unknown detector or a shape that is not (X, Y, 25).
    """
    target = _detector(detector)
    n_layers = CLIC_ECAL.stack.n_layers
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[2] != n_layers or min(shape) < 1:
        raise DataError(f"resampling needs ECAL events of shape (X, Y, {n_layers}) (CLIC layers), got {shape}")
    if sum(s.n_layers for s in target.samplings) != n_layers:
        raise CalomlError(f"detector {target.name}: its samplings do not add up to the {n_layers} CLIC layers")
    return _cached_map(target.name, (shape[0], shape[1], shape[2]), bool(snap))


def resample_ecal(ecal_gev: np.ndarray, detector: str, *, snap: bool = False) -> np.ndarray:
    """ECAL cells (N, X, Y, 25) in GeV on the CLIC grid, resampled to ``detector``'s granularity ("atlas", "cms")
    and spread back onto the CLIC grid: same shape and dtype, the same total energy per event (float rounding).

    See the module docstring for the geometry; ``snap`` rounds the coarse boundaries to CLIC boundaries (an exact
    projection).
    """
    cells = np.asarray(ecal_gev)
    if cells.ndim != 4:
        raise DataError(f"resampling needs ECAL cells of shape (N, X, Y, 25), got shape {cells.shape}")
    return resampling_map(detector, cells.shape[1:], snap=snap).apply_numpy(cells)


#: Values of the ``data.resample`` setting of the reconstruction tasks (and ``--resample`` of their command lines):
#: the original CLIC granularity, or one of :data:`DETECTORS`.
RESAMPLE_CHOICES: tuple[str, ...] = ("none", *sorted(DETECTORS))


def check_resample(resample: str, *, where: str = "data.resample") -> str:
    """``resample`` if it is one of :data:`RESAMPLE_CHOICES`, else a one-line :class:`CalomlError` naming ``where``."""
    if resample not in RESAMPLE_CHOICES:
        raise CalomlError(
            f"configuration '{where}' must be one of {', '.join(RESAMPLE_CHOICES)} (the detector granularity to"
            f" emulate), got {resample!r}"
        )
    return resample


def resample_events(events: Mapping[str, np.ndarray], resample: str) -> dict[str, np.ndarray]:
    """A batch of LCD events (GeV) with its ECAL resampled to ``resample``'s granularity and, when the ECAL is the
    full 51 x 51 x 25 window and the HCAL is there, every expert feature recomputed from the resampled cells.

    ``events["ECAL"]`` (N, X, Y, 25) GeV, optionally ``events["HCAL"]`` (N, 11, 11, 60) GeV; ``resample`` one of
    :data:`RESAMPLE_CHOICES` (``"none"`` returns a shallow copy). The recomputed features are those of
    :func:`caloml.data.lcd_features.expert_features` (:data:`~caloml.data.lcd_features.EXPERT_FEATURE_KEYS`, (N,)
    float32 each): the ones that depend on the ECAL cell pattern (R9, hit counts, layer ratios, ECAL moments) change;
    ``ECAL_E`` equals the stored window sum up to float rounding (the resampling conserves the energy of the window);
    the HCAL is not resampled (the paper resampled the ECAL only), so the HCAL features keep their values. The
    features are defined on the 51 x 51 window, so a cropped ECAL keeps the stored features (the caller decides
    whether that is acceptable). Returns a new dict; the other keys are passed through.
    """
    out = dict(events)
    if check_resample(resample, where="resample") == "none":
        return out
    ecal = np.asarray(events["ECAL"], dtype=np.float32)
    resampled = resample_ecal(ecal, resample)
    out["ECAL"] = resampled
    if resampled.shape[1:3] == (51, 51) and "HCAL" in out:
        out.update(expert_features(resampled, np.asarray(out["HCAL"], dtype=np.float32)))
    return out


@dataclass(frozen=True)
class Resample(Transform):
    """Resample the dense ``key`` (ECAL, (B, X, Y, 25), GeV) to ``detector``'s granularity (:func:`resample_ecal`).

    The sums (``ECAL_E``, ``ECAL/sum``) stay valid: the energy is conserved. Apply it before a centre crop to keep
    the edge effects outside the cropped window.
    """

    detector: str = "atlas"
    key: str = "ECAL"
    snap: bool = False

    def __post_init__(self) -> None:
        _detector(self.detector)

    def _cells(self, batch: Mapping[str, Any]) -> Any:
        if self.key not in batch:
            hint = " (sparse records: resampling needs dense arrays)" if f"{self.key}/values" in batch else ""
            raise KeyError(f"{self!r}: no dense '{self.key}' in the batch{hint}")
        return batch[self.key]

    def numpy(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Resample a NumPy batch."""
        out = dict(batch)
        out[self.key] = resample_ecal(self._cells(batch), self.detector, snap=self.snap)
        return out

    def tf(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Resample a tensor batch (``tf.einsum``; the event shape must be static)."""
        cells = self._cells(batch)
        shape = tuple(cells.shape[1:])
        if len(shape) != 3 or any(s is None for s in shape):
            raise DataError(f"{self!r}: needs '{self.key}' of static shape (B, X, Y, 25), got {cells.shape}")
        out = dict(batch)
        out[self.key] = resampling_map(self.detector, shape, snap=self.snap).apply_tf(cells)
        return out


# -- command line: python -m caloml.data resample ---------------------------------------------------------------------
def add_resample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``resample``: an LCD file with its ECAL resampled to ATLAS-like or CMS-like granularity."""
    parser = subparsers.add_parser(
        "resample",
        help="write a copy of an LCD file with the ECAL resampled to ATLAS-like or CMS-like granularity",
        description=(
            "Copy an LCD-layout HDF5 file with its ECAL cells resampled to a coarser detector's granularity and"
            " spread back onto the CLIC grid (Triforce, arXiv:1912.06794, section 5.4); every other key is copied."
            " The output appears atomically and an existing one is refused unless --overwrite."
        ),
    )
    parser.add_argument("input", metavar="IN.h5", help="LCD-layout file (51x51x25 or 25x25x25 ECAL)")
    parser.add_argument("output", type=output_file, metavar="OUT.h5", help="output file (same layout)")
    parser.add_argument("--detector", required=True, choices=sorted(DETECTORS), help="granularity to emulate")
    parser.add_argument("--snap", action="store_true", help="round coarse boundaries to CLIC cells (a projection)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def run_resample(args: argparse.Namespace) -> int:
    """Resample the ECAL of an LCD file into a new file (provenance in its attributes)."""
    source, target = Path(args.input), Path(args.output)
    if target.exists() and target.resolve() == source.resolve():
        raise CalomlError(f"{target}: the output would replace the input; choose another OUT.h5")
    if target.exists() and not args.overwrite:
        raise OutputExistsError(f"{target}: output exists; pass --overwrite to replace it")
    reader = open_reader(source)
    if not isinstance(reader, LCDReader):
        reader.close()
        raise DataError(f"{source}: not an LCD-layout file (resampling needs an ECAL dataset)")
    config = {"command": "resample", "input": str(source), "detector": args.detector, "snap": bool(args.snap)}
    n_events = 0
    with reader, LCDWriter(target, overwrite=args.overwrite, attrs=provenance_attrs(config)) as writer:
        resampling_map(args.detector, reader.event_shapes["ECAL"], snap=args.snap)  # shape check before any work
        for chunk in reader.iter_chunks():
            chunk["ECAL"] = resample_ecal(chunk["ECAL"], args.detector, snap=args.snap)
            writer.append(chunk)
            n_events += len(chunk["ECAL"])
    print(f"wrote {n_events} events with the ECAL resampled to {args.detector}-like granularity to {target}")
    return 0
