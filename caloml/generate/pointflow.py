"""Generating showers with a trained CaloPointFlow model into the file layout of its geometry.

``python -m caloml.generate pointflow --model PATH -n N [--energy-range A B | --energies-like REF.h5] --seed S
--out FILE.h5`` loads a :class:`~caloml.models.pointflow.PointFlowVAE` (a run directory or a ``.keras`` file),
draws the incident energies (log-uniform in the range, default the model's trained range, or the reference file's
own energies in a seeded order), samples the showers with
:class:`caloml.models.pointflow_sampler.PointFlowShowerSampler` (batch ``k`` seeded by
:func:`~caloml.models.pointflow_sampler.batch_seeds` ``(seed, k)``) and writes them one batch at a time,
atomically: CaloChallenge dataset 2 in MeV (:class:`caloml.data.calochallenge.CaloChallengeWriter`) or LCD
(:class:`caloml.data.lcd.LCDWriter`). The resolved request is stored as the root attribute ``caloml_config``.
From an exported SavedModel (``saved_models/<name>/<v>``) the export's ``showers_from_seeds`` signature draws the
showers instead (:class:`caloml.generate.exported_model.ExportedPointFlow`): same layout, units and energies, other
draws. See ``docs/pointflow.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import caloml
from caloml.cli_args import check_memory, non_negative_seed, output_file, positive_int
from caloml.data.calochallenge import CaloChallengeWriter
from caloml.data.hdf5 import HDF5EventWriter, detect_layout, open_hdf5, open_reader, provenance_attrs
from caloml.data.lcd import LCDWriter
from caloml.errors import CalomlError, OutputExistsError
from caloml.generate.exported_model import ExportedPointFlow, per_shower_seeds
from caloml.generate.trained_model import load_trained_model, resolve_model_file
from caloml.geometry import POINT_CLOUD_GRIDS, point_cloud_grid_of_shape
from caloml.progress import progress_bar
from caloml.quiet import import_tensorflow_quietly
from caloml.sim.particles import PDG_ID

# caloml.models (which imports TensorFlow) stays imported inside the functions: ``python -m caloml.generate`` imports
# this module to build its parser, and a wrong path must fail before TensorFlow is loaded.

__all__ = [
    "PointFlowGenerationRequest",
    "add_generation_arguments",
    "add_pointflow_parser",
    "check_generation_arguments",
    "draw_incident_energies",
    "generate_pointflow_file",
    "iter_pointflow_batches",
    "output_layout",
    "reference_incident_energies",
    "run_pointflow",
]


@dataclass(frozen=True)
class PointFlowGenerationRequest:
    """What to generate.

    Attributes:
        n_events: number of showers.
        seed: seed of every random draw (energies, latent, points, cells).
        energy_range_gev: incident energies log-uniform in this range (GeV; equal ends: fixed); None: the model's
            trained range (unless ``energies_like``).
        energies_like: a CaloChallenge or LCD file whose incident energies are reused (exclusive with the range).
        n_points: flow points per shower for the cell sampler (the seed: about 10k).
        batch_size: showers sampled (and held in memory) at once.
    """

    n_events: int
    seed: int = 1
    energy_range_gev: tuple[float, float] | None = None
    energies_like: str | None = None
    n_points: int = 10_000
    batch_size: int = 100

    def resolve(self, model: Any) -> PointFlowGenerationRequest:
        """A copy with the model's range filled in, every value checked (CalomlError)."""
        if self.n_events < 1:
            raise CalomlError(f"the number of showers must be positive, got {self.n_events}")
        if self.batch_size < 1 or self.n_points < 1:
            raise CalomlError(f"batch size and n_points must be positive, got {self.batch_size}, {self.n_points}")
        if self.energies_like is not None:
            if self.energy_range_gev is not None:
                raise CalomlError("give either an energy range or --energies-like, not both")
            return self
        trained = tuple(float(v) for v in model.normalization.incident_energy_range_gev)
        low, high = (float(v) for v in (self.energy_range_gev or trained))
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise CalomlError(f"energy range ({low:g}, {high:g}) GeV must be finite with 0 < low <= high")
        model.check_incident_energy(np.array([low, high]), "the energy range's ends")
        return PointFlowGenerationRequest(
            self.n_events, int(self.seed), (low, high), None, self.n_points, self.batch_size
        )


def output_layout(model: Any) -> tuple[str, str]:
    """(file layout ``calochallenge`` or ``lcd``, geometry name) of a model's grid; CalomlError for another grid."""
    geometry = point_cloud_grid_of_shape(model.grid_shape)
    if geometry is None:
        known = sorted(g.grid_shape for g in POINT_CLOUD_GRIDS.values())
        raise CalomlError(
            f"no file layout for a PointFlow model of the grid {tuple(model.grid_shape)} (known: {known})"
        )
    return geometry.file_layout, geometry.name


def reference_incident_energies(path: str | Path) -> np.ndarray:
    """The incident energies (N,) float32 GeV of a CaloChallenge (``incident_energies``) or LCD (``energy``) file."""
    with open_hdf5(path) as file:
        layout = detect_layout(file)
    if layout is None:
        raise CalomlError(f"{path}: neither a CaloChallenge nor an LCD file (no 'showers' or 'ECAL' key)")
    key = "incident_energies" if layout == "calochallenge" else "energy"
    with open_reader(path, keys=[key]) as reader:
        energies = np.asarray(reader.read_key(key), dtype=np.float32).reshape(-1)
    if energies.size == 0:
        raise CalomlError(f"{path}: no events")
    return energies


def draw_incident_energies(request: PointFlowGenerationRequest, reference: np.ndarray | None = None) -> np.ndarray:
    """The request's incident energies (N,) float32 GeV (see the module docstring), from their own seeded stream."""
    rng = np.random.default_rng(np.random.SeedSequence(int(request.seed) & 0xFFFFFFFF, spawn_key=(7,)))
    n = request.n_events
    if reference is not None:
        repeats = -(-n // len(reference))
        order = np.concatenate([rng.permutation(len(reference)) for _ in range(repeats)])[:n]
        return np.asarray(reference, np.float32)[order]
    assert request.energy_range_gev is not None, "resolve() first"
    low, high = request.energy_range_gev
    if low == high:
        return np.full(n, low, np.float32)
    energies = np.exp(rng.uniform(np.log(low), np.log(high), n))
    return np.clip(energies, low, high).astype(np.float32)


def iter_pointflow_batches(
    model: Any, energies_gev: np.ndarray, *, seed: int, n_points: int = 10_000, batch_size: int = 100
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(incident energies (b,) GeV, showers (b, *grid) GeV) batch by batch: the batches of
    :meth:`~caloml.models.pointflow_sampler.PointFlowShowerSampler.iter_batches`, as ``generate_showers`` draws them
    (from an :class:`~caloml.generate.exported_model.ExportedPointFlow`: its per-shower seeded signature).

    CalomlError for energies outside the model's trained range, before any sampling, and for invalid showers.
    """
    grid = tuple(int(n) for n in model.grid_shape)
    start = 0
    for chunk, showers in _iter_raw_batches(model, energies_gev, seed=seed, n_points=n_points, batch_size=batch_size):
        if showers.shape != (chunk.size, *grid) or not np.all(np.isfinite(showers)) or np.any(showers < 0):
            raise CalomlError(
                f"the model produced invalid showers for events {start}-{start + chunk.size - 1} "
                f"(shape {showers.shape}); the model file is broken"
            )
        start += chunk.size
        yield chunk, showers


def _iter_raw_batches(
    model: Any, energies_gev: np.ndarray, *, seed: int, n_points: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A Keras model: the sampler class's batches. An export: its ``showers_from_seeds`` signature, shower ``i``
    with the seed :func:`~caloml.generate.exported_model.per_shower_seeds` gives for ``(seed, i)`` (its own
    ``n_points``, fixed at export)."""
    if isinstance(model, ExportedPointFlow):
        energies = np.asarray(energies_gev, np.float32).reshape(-1)
        model.check_incident_energy(energies)
        if int(batch_size) < 1:
            raise CalomlError(f"batch_size must be positive, got {batch_size}")
        for start in range(0, energies.size, int(batch_size)):
            chunk = energies[start : start + int(batch_size)]
            showers, _ = model.sample_showers(chunk, per_shower_seeds(seed, start, chunk.size))
            yield chunk, showers
        return
    from caloml.models.pointflow_sampler import PointFlowShowerSampler

    sampler = PointFlowShowerSampler(model, n_points)
    for chunk, batch in sampler.iter_batches(energies_gev, batch_size=batch_size, seed=seed):
        yield chunk, batch.showers


def generate_pointflow_file(
    model: Any,
    out: str | Path,
    request: PointFlowGenerationRequest,
    *,
    overwrite: bool = False,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate ``request`` into ``out`` (the layout of the model's geometry), atomically; returns the configuration.

    An existing ``out`` raises :class:`~caloml.errors.OutputExistsError` unless ``overwrite``. ``run_config`` (the
    training run's ``config.yaml``, or an export's ``export.json``) supplies the particle of the LCD ``pdgID`` key.
    """

    out = Path(out)
    request = request.resolve(model)
    layout, geometry = output_layout(model)
    reference = reference_incident_energies(request.energies_like) if request.energies_like else None
    energies = draw_incident_energies(request, reference)
    what = f"{request.energies_like}: its incident energies" if request.energies_like else "the incident energies"
    model.check_incident_energy(energies, what)
    particle = _default_data_particle(run_config or {})
    if particle is None and isinstance(getattr(model, "info", None), dict):  # an export: its export.json says
        exported_particle = model.info.get("particle")
        particle = exported_particle if isinstance(exported_particle, str) else None
    config: dict[str, Any] = {
        **asdict(request),
        "generator": "pointflow",
        "geometry": geometry,
        "layout": layout,
        "energies": "reference file (seeded order)" if reference is not None else "log-uniform in energy_range_gev",
        "incident_energy_range_gev": [float(energies.min()), float(energies.max())],
        "trained_energy_range_gev": list(model.normalization.incident_energy_range_gev),
        "particle": particle,
        "model_config": model.get_config(),
        "caloml_version": caloml.__version__,
        **(provenance or {}),
    }
    attrs = provenance_attrs(config, caloml_generator="pointflow")
    writer: HDF5EventWriter
    if layout == "calochallenge":
        writer = CaloChallengeWriter(out, overwrite=overwrite, attrs=attrs)
    else:
        writer = LCDWriter(out, overwrite=overwrite, attrs=attrs)
    bar = progress_bar(request.n_events, unit="shower", desc="generate pointflow", enabled=progress)
    with writer, bar:
        for chunk, showers in iter_pointflow_batches(
            model, energies, seed=request.seed, n_points=request.n_points, batch_size=request.batch_size
        ):
            if layout == "calochallenge":
                writer.append({"incident_energies": chunk[:, None], "showers": showers})
            else:
                batch = {
                    "ECAL": showers,
                    "energy": chunk,
                    "ECAL_E": showers.sum(axis=(1, 2, 3), dtype=np.float64).astype(np.float32),
                }
                if particle in PDG_ID:
                    batch["pdgID"] = np.full(len(chunk), PDG_ID[particle], np.int32)
                writer.append(batch)
            bar.update(len(chunk))
    return {**config, "out": str(out)}


def _default_data_particle(run_config: dict[str, Any]) -> str | None:
    data = run_config.get("data") if isinstance(run_config, dict) else None
    if not isinstance(data, dict) or data.get("records"):
        return None
    particle = data.get("particle")
    return particle if isinstance(particle, str) else None


# -- command line -------------------------------------------------------------------------------------------------
def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The options a flow generator's command shares: ``--model``, ``-n``, ``--energy-range`` (GeV) or
    ``--energies-like``, ``--seed`` and ``--out`` (checked by :func:`check_generation_arguments`)."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="run directory, .keras file or exported SavedModel (saved_models/NAME/VERSION)",
    )
    parser.add_argument("-n", "--events", type=positive_int, required=True, help="number of showers")
    energy = parser.add_mutually_exclusive_group()
    energy.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV, log-uniform")
    energy.add_argument("--energies-like", metavar="REF.h5", help="reuse a reference file's incident energies")
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    parser.add_argument("--out", type=output_file, required=True, metavar="FILE.h5", help="output HDF5 file")


def add_pointflow_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``pointflow``: showers of a trained CaloPointFlow model into its geometry's file layout."""
    parser = subparsers.add_parser(
        "pointflow",
        help="generate showers with a trained CaloPointFlow model (CaloChallenge or LCD layout)",
        description=(
            "Generate showers with a trained CaloPointFlow model (a run directory, a .keras file or an exported"
            " SavedModel version directory) with the Monte-Carlo cell sampler, into an HDF5 file in the layout of its"
            " geometry: CaloChallenge dataset 2"
            " (incident_energies (N,1) and showers (N,6480) in MeV) or LCD (ECAL stored as 50 x GeV, energy in GeV)."
            " Incident energies are log-uniform in --energy-range (default: the trained range) or those of a"
            " reference file (--energies-like). The file appears atomically."
        ),
    )
    add_generation_arguments(parser)
    parser.add_argument(
        "--n-points", type=positive_int, default=10_000, help="flow points per shower (10000; an export: its own)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=100, help="showers per batch (default 100)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_generation_arguments(args: argparse.Namespace) -> Path:
    """Check a generation command's ``--out``, ``--overwrite``, ``--energies-like``, ``--energy-range`` and
    ``--model`` before TensorFlow is loaded (one-line CalomlError), then load TensorFlow; returns the output path."""
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out}: output exists; pass --overwrite to replace it")
    if args.energies_like is not None and not Path(args.energies_like).is_file():
        raise CalomlError(f"{args.energies_like}: no such reference file (--energies-like)")
    if args.energy_range is not None:
        low, high = args.energy_range
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise CalomlError(f"--energy-range {low:g} {high:g}: need finite GeV values with 0 < low <= high")
    points = args.batch_size * getattr(args, "n_points", 1)  # a point: 4 float32 features (a lower bound)
    check_memory(points * 16, f"--batch-size {args.batch_size} x {points // args.batch_size} points per shower")
    resolve_model_file(args.model)  # a missing or wrong path fails before TensorFlow is loaded
    import_tensorflow_quietly()
    return out


def run_pointflow(args: argparse.Namespace) -> int:
    """Load the model, check the request, generate into ``args.out`` and print one summary line."""
    out = check_generation_arguments(args)
    from caloml.models.pointflow import PointFlowVAE

    trained = load_trained_model(args.model, PointFlowVAE, allow_export=True)
    n_points = trained.model.n_points if isinstance(trained.model, ExportedPointFlow) else args.n_points
    request = PointFlowGenerationRequest(
        args.events,
        args.seed,
        tuple(args.energy_range) if args.energy_range is not None else None,
        args.energies_like,
        n_points,
        args.batch_size,
    )
    start = time.perf_counter()
    config = generate_pointflow_file(
        trained.model,
        out,
        request,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        provenance=trained.provenance(),
        run_config=trained.run_config,
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.events} showers (pointflow, {config['geometry']}, seed {args.seed}) to {out} in {seconds:.1f} s"
        f" ({args.events / seconds:.2f} showers/s); incident energies:"
        f" {json.dumps(config['incident_energy_range_gev'])} GeV ({config['energies']})"
    )
    return 0
