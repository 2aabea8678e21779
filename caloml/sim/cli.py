"""The simulator's subcommands of ``python -m caloml.data``: ``simulate``, ``validate`` and ``prepare``.

Angles on the command line are radians, or degrees with a ``deg`` suffix (``--theta 90deg``); energies are GeV.
See ``docs/simulator.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import caloml
from caloml.cli_args import non_negative_seed, output_directory, output_file, parse_angle, positive_int
from caloml.data.hdf5 import open_hdf5, read_attrs
from caloml.data.tfrecord import convert_to_tfrecords, read_metadata
from caloml.errors import OutputExistsError
from caloml.sim.layouts import LAYOUTS
from caloml.sim.particles import PARTICLES
from caloml.sim.run import SimulationRequest, default_workers, simulate_file
from caloml.sim.validation_report import write_validation_report

#: The embedded default data set of the main job: CLIC generation-set electrons, as the 3DGAN trains on.
DEFAULT_GEOMETRY = "lcd-gen"
DEFAULT_PARTICLE = "electron"


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that define a :class:`~caloml.sim.run.SimulationRequest`."""
    parser.add_argument("--geometry", choices=sorted(LAYOUTS), default=DEFAULT_GEOMETRY, help="data set layout")
    parser.add_argument("--particle", choices=PARTICLES, default=DEFAULT_PARTICLE)
    parser.add_argument("-n", "--events", type=int, required=True, help="number of showers")
    parser.add_argument("--seed", type=non_negative_seed, default=1, help="seed of every random draw (default 1)")
    energy = parser.add_mutually_exclusive_group()
    energy.add_argument("--energy", type=float, metavar="GEV", help="fixed primary energy (GeV)")
    energy.add_argument("--energy-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="GeV")
    energy.add_argument("--energies", type=float, nargs="+", metavar="GEV", help="a grid of energies (GeV)")
    theta = parser.add_mutually_exclusive_group()
    theta.add_argument("--theta", type=parse_angle, metavar="ANGLE", help="fixed incidence angle (rad or NNdeg)")
    theta.add_argument("--theta-range", type=parse_angle, nargs=2, metavar=("LOW", "HIGH"), help="rad or NNdeg")
    spectrum = parser.add_mutually_exclusive_group()
    spectrum.add_argument("--log-uniform", dest="log_uniform", action="store_true", default=None)
    spectrum.add_argument("--uniform", dest="log_uniform", action="store_false")


def request_from_args(args: argparse.Namespace) -> SimulationRequest:
    """The resolved request of parsed ``simulate`` arguments (CalomlError on invalid values)."""
    energy = (args.energy, args.energy) if args.energy is not None else args.energy_range
    theta = (args.theta, args.theta) if args.theta is not None else args.theta_range
    return SimulationRequest(
        geometry=args.geometry,
        particle=args.particle,
        n_events=args.events,
        seed=args.seed,
        energy_range_gev=tuple(energy) if energy else None,
        theta_range_rad=tuple(theta) if theta else None,
        log_uniform_energy=args.log_uniform,
        energy_points_gev=tuple(args.energies) if getattr(args, "energies", None) else None,
    ).resolve()


def add_simulate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``simulate``: write a data set in a real layout."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate showers into an HDF5 file in the LCD or CaloChallenge layout",
        description="Simulate showers with the GFlash parametrization into an HDF5 file in the real layout.",
    )
    add_request_arguments(parser)
    parser.add_argument("--out", type=output_file, required=True, help="output HDF5 file")
    parser.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate into ``args.out`` and print one summary line."""
    request = request_from_args(args)
    start = time.perf_counter()
    simulate_file(request, args.out, overwrite=args.overwrite, workers=args.workers, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    print(
        f"wrote {request.n_events} {request.particle} showers ({request.geometry}, seed {request.seed}) to "
        f"{args.out} in {seconds:.1f} s ({request.n_events / seconds:.0f} showers/s)"
    )
    return 0


def add_validate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``validate``: the simulator's physics validation plots and table."""
    parser = subparsers.add_parser(
        "validate",
        help="measure the simulator against its physics targets; write plots and a table",
        description="Measure the simulator against the physics targets and write plots, validation.md and .json.",
    )
    parser.add_argument("--out", type=output_directory, default="runs/validation", help="output directory")
    parser.add_argument("--seed", type=non_negative_seed, default=1)
    parser.add_argument("--quick", action="store_true", help="small samples (about a minute)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run_validate(args: argparse.Namespace) -> int:
    """Write the validation report; exit status 1 if a target fails."""
    report = write_validation_report(
        args.out, seed=args.seed, quick=args.quick, overwrite=args.overwrite, progress=not args.no_progress
    )
    print((Path(args.out) / "validation.md").read_text())
    failed = [t for t in report.get("targets", []) if t.get("status") != "pass"]
    return 1 if failed else 0


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``prepare``: the main job on the embedded default data."""
    parser = subparsers.add_parser(
        "prepare",
        help="the main job: simulate the default data set, convert it to TFRecords, write the validation",
        description=(
            "Simulate the default data set (CLIC generation-set electrons, 2-500 GeV, 60-120 degrees), convert it "
            "to sharded TFRecords and write the simulator's validation plots. Steps whose outputs already exist "
            "with the same configuration are reused; different ones need --overwrite."
        ),
    )
    parser.add_argument("-n", "--events", type=int, default=2000, help="showers (default 2000)")
    parser.add_argument("--seed", type=non_negative_seed, default=1)
    parser.add_argument("--geometry", choices=sorted(LAYOUTS), default=DEFAULT_GEOMETRY)
    parser.add_argument("--particle", choices=PARTICLES, default=DEFAULT_PARTICLE)
    parser.add_argument("--run-dir", type=output_directory, default="runs/default", help="HDF5 file and validation")
    parser.add_argument(
        "--records", type=output_directory, default=None, help="TFRecord directory (tf_records/GEOM-PART)"
    )
    parser.add_argument(
        "--quick-validation", action="store_true", help="small validation samples (seconds; targets may miss)"
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _reuse_or_refuse(path: Path, config: dict, stored: dict | None, overwrite: bool) -> bool:
    """True when ``path`` exists with the same configuration (reuse it); raise if it differs (unless overwrite)."""
    if not path.exists() or overwrite:
        return False
    if stored == config:
        return True
    raise OutputExistsError(f"{path}: exists with a different configuration; pass --overwrite to replace it")


def run_prepare(args: argparse.Namespace) -> int:
    """Simulate -> convert -> validate, printing what was done and where."""
    request = SimulationRequest(args.geometry, args.particle, args.events, args.seed).resolve()
    config = request.to_config()
    name = f"{args.geometry}-{args.particle}"
    h5_path = args.run_dir / f"{name}.h5"
    records = args.records or Path("tf_records") / name
    progress = not args.no_progress
    start = time.perf_counter()

    config = json.loads(json.dumps(config))  # as it reads back from the file: tuples become lists
    stored = None
    if h5_path.exists():
        with open_hdf5(h5_path) as handle:
            stored = read_attrs(handle).get("caloml_config")
    if _reuse_or_refuse(h5_path, config, stored, args.overwrite):
        print(f"[1/3] reusing {h5_path} (same configuration)")
    else:
        simulate_file(request, h5_path, overwrite=args.overwrite, workers=default_workers(), progress=progress)
        print(f"[1/3] simulated {args.events} showers into {h5_path}")

    metadata = read_metadata(records) if (records / "metadata.json").exists() else None
    same_source = metadata is not None and metadata.get("config") == config
    if records.exists() and same_source and not args.overwrite:
        print(f"[2/3] reusing {records} (same source configuration)")
    else:
        if records.exists() and not args.overwrite and not same_source:
            raise OutputExistsError(f"{records}: exists with a different source; pass --overwrite to replace it")
        convert_to_tfrecords([h5_path], records, overwrite=bool(records.exists()))
        print(f"[2/3] converted to TFRecords in {records}")

    validation_dir = args.run_dir / "validation"
    previous = validation_dir / "validation.json"
    report = json.loads(previous.read_text()) if previous.exists() else None
    same = report is not None and (report.get("seed"), report.get("quick"), report.get("caloml_version")) == (
        args.seed,
        args.quick_validation,
        caloml.__version__,
    )
    if same and not args.overwrite:
        print(f"[3/3] reusing the validation in {validation_dir} (same seed and sizes)")
    else:
        if validation_dir.exists() and any(validation_dir.iterdir()) and not args.overwrite:
            raise OutputExistsError(
                f"{validation_dir}: holds a validation with another seed or size; pass --overwrite to replace it"
            )
        report = write_validation_report(
            validation_dir, seed=args.seed, quick=args.quick_validation, overwrite=args.overwrite, progress=progress
        )
        print(f"[3/3] validation plots and table in {validation_dir}")
    assert report is not None
    failed = [t["name"] for t in report.get("targets", []) if t.get("status") != "pass"]
    print(f"      {len(report.get('targets', [])) - len(failed)} of {len(report.get('targets', []))} targets pass")
    print(
        json.dumps(
            {
                "hdf5": str(h5_path),
                "tf_records": str(records),
                "validation": str(validation_dir),
                "seconds": round(time.perf_counter() - start, 1),
            },
            indent=2,
        )
    )
    return 0
