"""The data command line: ``python -m caloml.data COMMAND ...`` (also installed as ``caloml-data``).

Commands::

    prepare                      the main job: simulate the default data set, convert it, validate the simulator
    simulate --geometry G --particle P -n N --seed S --out FILE.h5    showers in a real layout
    validate --out DIR           the simulator's physics validation (plots, validation.md, validation.json)
    convert FILE.h5 [FILE.h5 ...] --out tf_records/NAME [--shard-events N] [--overwrite]
    inspect PATH                 summary of an HDF5 file or a TFRecord directory
    verify  tf_records/NAME      read every record, check counts and checksums
    resample IN.h5 OUT.h5 --detector {atlas,cms}   ECAL resampled to a coarser granularity

Each command is a pair (add-parser function, run function) in the registry :data:`COMMANDS`
(:class:`caloml.cli_commands.CommandRegistry`; ``SUBCOMMANDS``, ``register`` and ``build_parser`` are its
``commands``, ``register`` and ``build_parser``), so a command is one more ``COMMANDS.register(name, add_parser,
run)`` (for example the simulator's ``simulate``, from :mod:`caloml.sim.cli`); see ``docs/cli.md``. User errors raise
:class:`caloml.errors.CalomlError`, which :func:`cli` prints as one line (exit status 2).

TensorFlow is imported only by the commands that need it (``convert``, ``verify``), after the inputs were checked,
and quietly (:func:`caloml.quiet.import_tensorflow_quietly`), so that errors stay one line and ``inspect`` stays fast.
See ``docs/data.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caloml.cli_args import positive_int
from caloml.cli_commands import CommandRegistry
from caloml.data import resampling
from caloml.data.inspect import inspect_path
from caloml.data.tfrecord import (
    DEFAULT_SHARD_EVENTS,
    check_output,
    convert_to_tfrecords,
    open_sources,
    read_metadata,
    shard_paths,
    verify,
)
from caloml.errors import CalomlError
from caloml.output_paths import check_output_path
from caloml.quiet import import_tensorflow_quietly
from caloml.sim import cli as sim_cli

__all__ = ["SUBCOMMANDS", "build_parser", "cli", "main", "register"]


COMMANDS = CommandRegistry(
    "python -m caloml.data",
    "caloml data tools: convert calorimeter HDF5 files to TFRecords, inspect and verify them.",
)
#: The commands: name -> (add-parser function, run function).
SUBCOMMANDS = COMMANDS.commands
register = COMMANDS.register
build_parser = COMMANDS.build_parser


# -- convert ----------------------------------------------------------------------------------------------------------
def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``convert``: HDF5 files to sharded TFRecords."""
    parser = subparsers.add_parser(
        "convert",
        help="convert HDF5 files (LCD or CaloChallenge) into sharded TFRecords with metadata.json",
        description=(
            "Convert HDF5 files, all LCD or all CaloChallenge (detected), into GZIP-compressed TFRecord shards in the"
            " sparse encoding, with metadata.json (shapes, units, counts, source checksums, provenance). The output"
            " appears atomically; an existing one is kept unless --overwrite."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE.h5", help="HDF5 files, all LCD or all CaloChallenge")
    parser.add_argument("--out", required=True, metavar="tf_records/NAME", help="output directory")
    parser.add_argument(
        "--shard-events",
        type=positive_int,
        default=DEFAULT_SHARD_EVENTS,
        metavar="N",
        help=f"at most N events per shard, balanced over the shards (default {DEFAULT_SHARD_EVENTS})",
    )
    parser.add_argument(
        "--compression",
        choices=("gzip", "none"),
        default="gzip",
        help="shard compression (default gzip; none reads faster, files about 25%% larger)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    """Convert HDF5 files (LCD or CaloChallenge) into sharded TFRecords with metadata.json."""
    out = Path(args.out)
    for source in map(Path, args.files):
        if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
            raise CalomlError(f"{out}: the output would replace the input {source}; choose another --out")
    check_output_path(out, directory=True)  # not under a file, writable: before any work
    check_output(out, args.overwrite)
    readers = open_sources(args.files)  # checks keys, shapes and scalars before TensorFlow is loaded
    try:
        import_tensorflow_quietly()
        metadata = convert_to_tfrecords(
            readers,
            out,
            shard_events=args.shard_events,
            overwrite=args.overwrite,
            progress=True,
            compression=args.compression.upper(),
        )
    finally:
        for reader in readers:
            reader.close()
    total = sum(int(s["bytes"]) for s in metadata["shards"])
    n_events = int(metadata["n_events"])
    print(
        f"wrote {n_events} events in {len(metadata['shards'])} shards to {out}"
        f" ({total / 2**20:.1f} MiB, {total / max(1, n_events):.0f} bytes per event)"
    )
    return 0


# -- inspect ----------------------------------------------------------------------------------------------------------
def add_inspect_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``inspect``: summary of a file or records directory."""
    parser = subparsers.add_parser(
        "inspect",
        help="summarize an HDF5 file or a TFRecord directory",
        description="Summarize an HDF5 file (layout, keys, shapes, energy range, provenance) or a TFRecord directory.",
    )
    parser.add_argument("path", metavar="PATH", help="an HDF5 file or a TFRecord directory")
    return parser


def run_inspect(args: argparse.Namespace) -> int:
    """Summarize an HDF5 file or a TFRecord directory (layout, keys, shapes, energies, provenance)."""
    print(inspect_path(args.path))
    return 0


# -- verify -----------------------------------------------------------------------------------------------------------
def add_verify_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``verify``: read back every record."""
    parser = subparsers.add_parser(
        "verify",
        help="read every record of a TFRecord directory and check it against its metadata",
        description="Read every record of a TFRecord directory; check counts, cell indices and checksums.",
    )
    parser.add_argument("records", metavar="tf_records/NAME", help="a TFRecord directory")
    return parser


def run_verify(args: argparse.Namespace) -> int:
    """Read every record of a TFRecord directory and check it against its metadata."""
    shard_paths(args.records, read_metadata(args.records))  # cheap checks first
    import_tensorflow_quietly()
    summary = verify(args.records)
    print(f"ok: {summary['n_events']} events in {summary['n_shards']} shards, checksums match")
    return 0


# The simulator's commands come first: `prepare` is the main job.
register("prepare", sim_cli.add_prepare_parser, sim_cli.run_prepare)
register("simulate", sim_cli.add_simulate_parser, sim_cli.run_simulate)
register("validate", sim_cli.add_validate_parser, sim_cli.run_validate)
register("convert", add_convert_parser, run_convert)
register("inspect", add_inspect_parser, run_inspect)
register("verify", add_verify_parser, run_verify)
register("resample", resampling.add_resample_parser, resampling.run_resample)

main = COMMANDS.main
cli = COMMANDS.cli

if __name__ == "__main__":
    cli()
