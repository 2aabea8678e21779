"""The export command line: ``python -m caloml.export MODEL ...``.

Commands::

    gan --model PATH [--saved-models DIR] [--version V]    a trained 3DGAN as a TF Serving SavedModel

Each model family is one entry of :data:`SUBCOMMANDS`, a pair (add-parser function, run function) as in
``python -m caloml.data``; another exporter is one more call, for example
``register("triforce", add_triforce_parser, run_triforce)``. User errors are one line (exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from caloml.errors import run_cli
from caloml.export import gan

__all__ = ["SUBCOMMANDS", "build_parser", "cli", "main", "register"]

AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int | None]

#: The exporters, in the order of the help: name -> (add-parser function, run function).
SUBCOMMANDS: dict[str, tuple[AddParser, Run]] = {}


def register(name: str, add_parser: AddParser, run: Run) -> None:
    """Add (or replace) the export command ``name``: ``add_parser(subparsers)`` must add a parser ``name``."""
    SUBCOMMANDS[name] = (add_parser, run)


register("gan", gan.add_gan_parser, gan.run_gan)


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per registered exporter."""
    parser = argparse.ArgumentParser(
        prog="python -m caloml.export",
        description="Export a trained model as a TensorFlow SavedModel in TF Serving's layout.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="MODEL")
    for name, (add_parser, run) in SUBCOMMANDS.items():
        sub = add_parser(subparsers)
        if sub.prog.split()[-1] != name:
            raise RuntimeError(f"exporter {name!r}: its add-parser function added {sub.prog!r}")
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


def cli() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    cli()
